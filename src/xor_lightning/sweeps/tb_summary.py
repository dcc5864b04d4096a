"""A sweep's TensorBoard summary runs: per epoch, the mean and the 10th and 90th percentiles
of its jobs' loss and metrics (acc, say), as runs `<sweep dir>/tb/<name>/{mean,p10,p90}`.

TensorBoard selects no run at all when it finds more than 500 (each job has 5), so a
sweep's story gets a dir of its own, with a few runs. The vectorised launcher writes one a
fit from the fit's results (`xor_vectorized/tensorboard.py`); a sweep of any other launcher gets
one at its end from its jobs' curves (`from_curves`, reading `curves.parquet`). Events are
written in one go with TensorBoard's record writer (a `SummaryWriter` starts a thread).
"""

from __future__ import annotations

import itertools
import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

SUMMARY_DIR = "tb"  # the summary runs' dir in the sweep dir
STATISTICS = {"mean": None, "p10": 10.0, "p90": 90.0}  # run name -> percentile
_files = itertools.count()


def write_events(run_dir: Path, events: list[tuple[Any, int]]) -> None:
    """One events file in `run_dir` holding these (Summary, step) records."""
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.summary.writer.record_writer import RecordWriter

    if not events:
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    now = time.time()
    name = f"events.out.tfevents.{now:.0f}.{socket.gethostname()}.{os.getpid()}.{next(_files)}"
    with open(run_dir / name, "wb") as f:
        writer = RecordWriter(f)
        writer.write(Event(wall_time=now, file_version="brain.Event:2").SerializeToString())
        for summary, step in events:
            writer.write(Event(wall_time=now, step=step, summary=summary).SerializeToString())


def scalar(tag: str, value: float) -> Any:
    from tensorboard.compat.proto.summary_pb2 import Summary

    return Summary(value=[Summary.Value(tag=tag, simple_value=value)])


def statistics(values: np.ndarray, counts: np.ndarray) -> dict[str, np.ndarray]:
    """Per row of `values` (NaN: left out; `counts` the others, > 0): the mean, and each
    percentile of `STATISTICS` by linear interpolation between the sorted values (numpy's
    default method), from one sort: `np.nanpercentile` takes ~10x longer on 16,384 models."""
    ordered = np.sort(values, axis=1)  # NaN last
    out = {}
    for stat, q in STATISTICS.items():
        if q is None:
            out[stat] = np.nansum(ordered, axis=1, dtype=np.float64) / counts
            continue
        pos = q / 100 * (counts - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, counts - 1)
        a = np.take_along_axis(ordered, lo[:, None], 1)[:, 0].astype(np.float64)
        b = np.take_along_axis(ordered, hi[:, None], 1)[:, 0].astype(np.float64)
        out[stat] = a + (b - a) * (pos - lo)
    return out


def write_runs(
    root: Path,
    stages: Mapping[str, tuple[np.ndarray, Mapping[str, np.ndarray], np.ndarray]],
) -> Path:
    """The runs `root/{mean,p10,p90}` from `stages`: stage -> (steps (E,), each metric's
    values {name: (E, K)}: the loss and the task's, kept (E, K): the models in each epoch's
    statistics). Tags `<metric>/<stage>`, and `models/<stage>` (how many were kept) in
    `mean`. Written anew: a rerun into the same sweep dir replaces them. Returns `root`."""
    events: dict[str, list[tuple[Any, int]]] = {stat: [] for stat in STATISTICS}
    for stage, (steps, metrics, kept) in stages.items():
        for values in metrics.values():
            kept = kept & np.isfinite(values)
        counts, at = kept.sum(axis=1), steps.tolist()
        rows = np.flatnonzero(counts)  # epochs with a model in the statistics
        for metric, values in metrics.items():
            stats = statistics(np.where(kept, values, np.nan)[rows], counts[rows])
            for stat, x in stats.items():
                pairs = zip(rows.tolist(), x.tolist(), strict=True)
                events[stat] += [(scalar(f"{metric}/{stage}", v), at[r]) for r, v in pairs]
        pairs = zip(at, counts.tolist(), strict=True)
        events["mean"] += [(scalar(f"models/{stage}", c), s) for s, c in pairs]
    for stat, stat_events in events.items():
        for old in (root / stat).glob("events.out.tfevents.*"):
            old.unlink()
        write_events(root / stat, stat_events)
    return root


def from_curves(sweep_dir: Path, records: list[Mapping[str, Any]]) -> Path | None:
    """`<sweep_dir>/tb/sweep`: the summary of the jobs of `records` that no vectorised fit
    summarised (theirs have a `vectorized` entry), from `curves.parquet`; None when fewer
    than two. A job is in an epoch's statistics where its curves have a finite point: a
    failed or pruned job's curves end where it stopped. The step is the epoch's smallest
    among the jobs (they agree unless their batches an epoch differ)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    jobs = sorted(int(r["job"]) for r in records if "vectorized" not in r and "job" in r)
    path = Path(sweep_dir) / "curves.parquet"
    if len(jobs) < 2 or not path.is_file():
        return None
    table = pq.read_table(path)
    table = table.filter(pc.is_in(table["job"], value_set=pa.array(jobs)))
    column = {c: table[c].to_numpy(zero_copy_only=False) for c in table.column_names}
    index = {j: i for i, j in enumerate(jobs)}
    stages = {}
    for stage in ("train", "val"):
        here = column["stage"] == stage
        epochs = np.unique(column["epoch"][here])
        if not len(epochs):
            continue
        names = np.unique(column["metric"][here]).tolist()
        names = ["loss", *(m for m in names if m not in ("loss", "lr"))]  # acc, or mse, mae
        grid = {m: np.full((len(epochs), len(jobs)), np.nan) for m in names}
        steps = np.full(len(epochs), np.iinfo(np.int64).max)
        for metric, values in grid.items():
            rows = here & (column["metric"] == metric)
            e = np.searchsorted(epochs, column["epoch"][rows])
            values[e, [index[int(j)] for j in column["job"][rows]]] = column["value"][rows]
            np.minimum.at(steps, e, column["step"][rows].astype(np.int64))
        stages[stage] = (steps, grid, np.ones(grid["loss"].shape, dtype=bool))
    return write_runs(Path(sweep_dir) / SUMMARY_DIR / "sweep", stages) if stages else None
