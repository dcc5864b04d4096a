"""A sweep's two tables: `results.parquet` (one row per job) and `curves.parquet` (every
point of every job's curves), at the sweep root.

A sweep of thousands of jobs is a directory of thousands of run dirs; one columnar file per
question ("which setting won?", "how did the seeds' curves spread?") is what pandas, polars
and DuckDB read in one call. `results.parquet` has the job number, status, each overridden
key as its own typed column (the value as Hydra reads it), the metrics of `metrics.json`,
best epoch, wall time and error; `curves.parquet` is long: job, stage, epoch, step, metric,
value, read from each job's TensorBoard sub-runs (train, val, test, best).

`write` builds both from rows handed to it (a launcher that holds its results in memory);
`write_sweep` reads them from the job dirs. pyarrow is imported inside the functions, so
`xor-train` does not pay for it at start-up.
"""

from __future__ import annotations

import re
import struct
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from xor_lightning.files import write_atomically

RESULTS, CURVES = "results.parquet", "curves.parquet"
ONE_POINT = ("best", "test")  # stages with one point a run: a resumed run's replaces it
METRICS = ("train/loss", "val/loss", "val/acc", "test/loss", "test/acc")  # the binary task's
LEADING = ("job", "status", "overrides")
TRAILING = (*METRICS, "best_epoch", "wall_s", "error")


def metric_names(rows: Sequence[Mapping[str, Any]], order: Sequence[str] = METRICS) -> list[str]:
    """The rows' metric columns (`stage/name`): those of `order` whose name is a loss or
    one some row has (`acc`: the classification tasks'), in its order; then any others (a
    regression's val/mse, ...) sorted."""
    found = {k for r in rows for k in r if "/" in k}
    names = {k.split("/", 1)[1] for k in found} | {"loss"}
    kept = [k for k in order if k.split("/", 1)[1] in names]
    return kept + sorted(found - set(kept))


CURVE_COLUMNS = ("job", "stage", "epoch", "step", "metric", "value")
# Values Hydra's grammar reads as an int or a float for sure: parsed here without its
# (ANTLR) parser, which costs ~0.1 ms an override; anything else goes to Hydra's parser.
_INT = r"[+-]?(?:0|[1-9]\d*)"
_FLOAT = r"[+-]?(?:0|[1-9]\d*)(?:\.\d+(?:[eE][+-]?\d+)?|[eE][+-]?\d+)"  # 0.05, 1e-05
_PLAIN = re.compile(rf"([A-Za-z_][\w.\-]*)=(?:({_INT})|({_FLOAT}))")


def parse_override(text: str) -> tuple[str, Any, str]:
    """(key, value as Hydra reads it, the value's text): `model.hidden=8` -> ("model.hidden",
    8, "8"); `+a@pkg=x` -> ("a@pkg", "x", "x"); a list or dict value stays Python's."""
    plain = _PLAIN.fullmatch(text)
    if plain:
        key, whole, decimal = plain.groups()
        return key, int(whole) if whole is not None else float(decimal), whole or decimal
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        [override] = OverridesParser.create().parse_overrides([text])
    except HydraException:  # not Hydra's syntax (a record of another tool): its text
        key, _, value = text.lstrip("+~").partition("=")
        return key, value, value
    key = override.key_or_group + (f"@{override.package}" if override.package else "")
    value = None if override.is_delete() else override.value()
    return key, value, override.get_value_element_as_str()


def _typed(values: list[Any], texts: list[str | None]) -> tuple[list[Any], str]:
    """One column's values and its Arrow type: int, float (ints among floats widened),
    bool or str; a column of mixed (or list) values holds the values' texts."""
    kinds = {type(v) for v in values if v is not None}
    if kinds == {bool}:
        return values, "bool"
    if kinds and kinds <= {int, float}:
        if kinds == {int} and all(-(2**63) <= v < 2**63 for v in values if v is not None):
            return values, "int64"
        if kinds == {int, float} or kinds == {float}:
            return [None if v is None else float(v) for v in values], "float64"
    if kinds <= {str}:
        return values, "string"
    return texts, "string"


def results_table(rows: Sequence[Mapping[str, Any]]) -> Any:
    """The results as a pyarrow Table, one row per job in job order. A row: `job`, `status`,
    `overrides` (a list of `key=value`), the metrics (`metric_names`), `best_epoch`,
    `wall_s`, `error`."""
    import pyarrow as pa

    rows = sorted(rows, key=lambda r: r["job"])
    parsed = [[parse_override(o) for o in r.get("overrides") or ()] for r in rows]
    keys: dict[str, None] = {}
    for job in parsed:
        keys.update((k, None) for k, _, _ in job)
    columns: dict[str, Any] = {
        "job": pa.array([int(r["job"]) for r in rows], pa.int64()),
        "status": pa.array([r.get("status") for r in rows], pa.string()),
        "overrides": pa.array([" ".join(r.get("overrides") or ()) for r in rows], pa.string()),
    }
    fixed = set(LEADING) | set(TRAILING) | set(metric_names(rows))
    for key in keys:
        found = [{k: (v, t) for k, v, t in job}.get(key, (None, None)) for job in parsed]
        values, kind = _typed([v for v, _ in found], [t for _, t in found])
        columns[f"override.{key}" if key in fixed else key] = pa.array(values, kind)
    for name in metric_names(rows):
        columns[name] = pa.array([_float(r.get(name)) for r in rows], pa.float64())
    best = [r.get("best_epoch") for r in rows]
    columns["best_epoch"] = pa.array([None if b is None else int(b) for b in best], pa.int64())
    columns["wall_s"] = pa.array([_float(r.get("wall_s")) for r in rows], pa.float64())
    columns["error"] = pa.array([r.get("error") for r in rows], pa.string())
    return pa.table(columns)


def curves_table(curves: Mapping[str, Sequence[Any]] | Iterable[Sequence[Any]]) -> Any:
    """The curves as a pyarrow Table: `curves` is columns (a mapping of CURVE_COLUMNS to
    sequences or numpy arrays) or rows (job, stage, epoch, step, metric, value)."""
    import pyarrow as pa

    if not isinstance(curves, Mapping):
        rows = list(curves)
        curves = {c: [r[i] for r in rows] for i, c in enumerate(CURVE_COLUMNS)}
    types = (pa.int64(), pa.string(), pa.int64(), pa.int64(), pa.string(), pa.float64())
    return pa.table({c: pa.array(curves[c], t) for c, t in zip(CURVE_COLUMNS, types, strict=True)})


def write(
    sweep_dir: Path,
    results: Sequence[Mapping[str, Any]],
    curves: Mapping[str, Sequence[Any]] | Iterable[Sequence[Any]],
) -> tuple[Path, Path]:
    """Write `results.parquet` and `curves.parquet` in `sweep_dir` from rows handed over
    (see `results_table`, `curves_table`); each file is whole or what it was before."""
    tables = ((RESULTS, results_table(results)), (CURVES, curves_table(curves)))
    return tuple(_write_parquet(Path(sweep_dir) / name, table) for name, table in tables)


def write_sweep(
    sweep_dir: Path, jobs: Iterable[tuple[Path, Mapping[str, Any]]]
) -> tuple[Path, Path]:
    """Both tables of a sweep whose jobs wrote their dirs: `jobs` is (job dir, record) with
    the record as `sweep.job_record` reads it; the curves come from each dir's sub-runs."""
    results: list[Mapping[str, Any]] = []
    columns: dict[str, list[Any]] = {c: [] for c in CURVE_COLUMNS}
    packed: dict[Path, list[int]] = {}  # a fit without job dirs: its curves.parquet rows
    for job_dir, record in jobs:
        results.append(record)
        if (job_dir / CURVES).is_file() and (job_dir / "jobs.json").is_file():
            packed.setdefault(job_dir, []).append(int(record["job"]))
            continue
        stages, epochs, steps, metrics, values = read_curves(job_dir)
        columns["job"].extend([int(record["job"])] * len(values))
        for name, got in zip(CURVE_COLUMNS[1:], (stages, epochs, steps, metrics, values),
                             strict=True):  # fmt: skip
            columns[name].extend(got)
    if not packed:
        return write(sweep_dir, results, columns)
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    parts = [curves_table(columns)]
    for fit, nums in packed.items():
        table = pq.read_table(fit / CURVES)
        parts.append(table.filter(pc.is_in(table["job"], value_set=pa.array(nums, pa.int64()))))
    curves = pa.concat_tables(parts)
    order = pc.sort_indices(curves, [("job", "ascending")])  # stable: each job's order kept
    written = (_write_parquet(Path(sweep_dir) / RESULTS, results_table(results)),
               _write_parquet(Path(sweep_dir) / CURVES, curves.take(order)))  # fmt: skip
    return written


def read_curves(run_dir: Path) -> tuple[list[str], list[int], list[int], list[str], list[float]]:
    """Every scalar of `run_dir`'s sub-runs (its subdirectories holding event files) as
    columns stage, epoch, step, metric, value; a step logged twice (a resumed run) keeps its
    last value, and the one-point stages (`best`, `test`) keep their last point only (a
    resumed run's best replaces the one written when it stopped). Steps count training
    batches (Lightning's logging step); an epoch's point is at step (epoch + 1) * n - 1, the
    test's at (last epoch + 1) * n, where n, the batches an epoch, is the first `train`
    point's step + 1 (1 without one)."""
    points: dict[tuple[str, str, int], float] = {}
    one: dict[tuple[str, str], tuple[int, float]] = {}  # ONE_POINT stages: the last written
    for stage_dir in sorted(p for p in Path(run_dir).iterdir() if p.is_dir()):
        for file in sorted(stage_dir.glob("events.out.tfevents.*"), key=_written):
            for step, tag, value in _scalars(file):
                if stage_dir.name in ONE_POINT:
                    one[stage_dir.name, tag] = (step, value)
                else:
                    points[stage_dir.name, sys.intern(tag), step] = value
    points.update({(stage, tag, step): value for (stage, tag), (step, value) in one.items()})
    train = [step for stage, _, step in points if stage == "train"]
    n = min(train) + 1 if train else 1
    out: tuple[list[Any], ...] = ([], [], [], [], [])
    for (stage, tag, step), value in sorted(points.items()):
        epoch = step // n - 1 if stage == "test" else (step + 1) // n - 1
        for column, item in zip(out, (stage, epoch, step, tag, value), strict=True):
            column.append(item)
    return out  # type: ignore[return-value]


def _scalars(path: Path) -> Iterable[tuple[int, str, float]]:
    """(step, tag, value) of each scalar in one event file: TFRecords read with `struct`
    (TensorBoard's own loader checks each record's CRC in Python, several times slower)
    and parsed with its Event proto; a record cut short (a killed writer) ends the file."""
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.util import tensor_util

    data, at, scalar_tags = path.read_bytes(), 0, set()
    while at + 12 <= len(data):
        (length,) = struct.unpack_from("<Q", data, at)
        start, at = at + 12, at + 12 + length + 4
        if at > len(data):
            break
        event = Event.FromString(data[start : start + length])
        for v in event.summary.value:
            kind = v.WhichOneof("value")
            if kind == "simple_value":
                yield event.step, v.tag, v.simple_value
            elif kind == "tensor" and (
                v.metadata.plugin_data.plugin_name == "scalars" or v.tag in scalar_tags
            ):  # the plugin is named on a tag's first event only
                scalar_tags.add(v.tag)
                yield event.step, v.tag, float(tensor_util.make_ndarray(v.tensor))


def _written(file: Path) -> tuple[int, int, str]:
    """An event file's order of writing: its name is events.out.tfevents.<time>.<host>.<pid>.
    <count>, and the count goes 9, 10 within a second (sorted as text, 10 would come first)."""
    parts = file.name.split(".")
    number = lambda s: int(s) if s.isdigit() else -1  # noqa: E731
    return number(parts[3]), number(parts[-1]), file.name


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _write_parquet(path: Path, table: Any) -> Path:
    """`path` holds the whole table or what it held before; a failed write leaves no
    temporary file behind (`files.write_atomically`)."""
    import pyarrow.parquet as pq

    write_atomically(path, lambda tmp: pq.write_table(table, tmp))
    return path
