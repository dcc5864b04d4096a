"""What a multirun leaves at its root: `summary.csv` and `summary.md`, one row per job,
and the sweep's tables `results.parquet` and `curves.parquet` (see `tables.py`), and
from these its TensorBoard summary runs (`tb_summary.py`).

Each job writes `job.json` (its overrides, status, error, wall time) beside its
`metrics.json`; the `SweepSummary` Hydra callback gathers them when the multirun ends,
whatever the launcher (basic, joblib, submitit, vectorized) or sweeper (grid, Optuna).
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from xor_lightning.files import read_json

log = logging.getLogger(__name__)
FITS = "fits"  # a sweep's fits without job dirs: `xor_vectorized/compact.py`
METRICS = ("val/acc", "val/loss", "test/acc", "test/loss", "train/loss")


def job_record(job_dir: Path) -> dict[str, Any] | None:
    """One row: the job's overrides, status, metrics, best epoch and wall time."""
    row = read_json(job_dir / "job.json")
    if row is None:  # not a job's dir, or a record cut short by a kill: not finished
        return None
    row.update(read_json(job_dir / "metrics.json") or {})
    best = sorted(job_dir.glob("checkpoints/best-*.ckpt"))
    if best and "best_epoch" not in row:  # a vectorised job records it (no load per job)
        import torch

        row["best_epoch"] = torch.load(best[-1], map_location="cpu", weights_only=True)["epoch"]
    return row


def metric_mode(hydra: Any, metric: str) -> str:
    """Whether the sweep's `metric` is best high ("max") or low ("min"): the Optuna
    sweeper's `direction` when it has one, otherwise a loss is minimised, anything else
    (an accuracy) maximised."""
    direction = OmegaConf.select(hydra, "sweeper.direction", default=None)
    if OmegaConf.is_list(direction) or isinstance(direction, list):
        direction = direction[0] if len(direction) else None  # multi-objective: the first
    if direction is not None:
        return "min" if str(direction).lower().endswith("minimize") else "max"
    return "min" if "loss" in metric.rsplit("/", 1)[-1] else "max"


def packed_records(sweep_dir: Path) -> dict[int, tuple[dict[str, Any], Path, float]]:
    """Each job's latest row in the sweep's fit dirs (`fits/*/jobs.json`), with its fit dir
    and when that was written."""
    found: dict[int, tuple[float, dict[str, Any], Path]] = {}
    for path in sorted(Path(sweep_dir).glob(f"{FITS}/*/jobs.json")):
        fit = read_json(path)
        for row in (fit or {}).get("jobs", []):
            num, written = int(row["job"]), fit.get("written", 0.0)
            if num not in found or found[num][0] <= written:
                found[num] = (written, row, path.parent)
    return {num: (row, where, when) for num, (when, row, where) in found.items()}


def job_records(sweep_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    """(job dir, `job_record`) of every finished job under `sweep_dir`; a job of a fit
    without job dirs (`fits/`, see `xor_vectorized/compact.py`): (its fit dir, its row there)."""
    packed = packed_records(sweep_dir)
    dirs = sorted(d for d in sweep_dir.iterdir() if d.is_dir())
    found = {}
    for d in dirs:
        if (r := job_record(d)) is None:
            continue
        num = r.get("job")
        if num in packed and (d / "job.json").stat().st_mtime < packed[num][2]:
            continue  # written again since, in a fit without job dirs
        packed.pop(num, None)
        found[num] = (d, r)
    found.update((num, (fit, row)) for num, (row, fit, _) in packed.items())
    return [found[num] for num in sorted(found, key=lambda n: -1 if n is None else n)]


def summarize(
    sweep_dir: Path,
    metric: str = "val/acc",
    mode: str = "max",
    records: list[tuple[Path, dict[str, Any]]] | None = None,
) -> list[dict[str, Any]]:
    """Write summary.csv and summary.md at the sweep root; return the rows, best first
    (`mode`: "max" or "min", whether `metric` is best high or low; `records`: the jobs'
    `job_records`, read here when not given)."""
    rows = [dict(r) for _, r in (job_records(sweep_dir) if records is None else records)]
    if not rows:
        return []

    def key(row: dict[str, Any]) -> tuple[int, bool, float]:
        value = row.get(metric, math.nan)
        rank = {"ok": 0, "pruned": 1}.get(row["status"], 2)  # pruned: stopped early by Optuna
        bad = rank == 2 or not isinstance(value, float) or math.isnan(value)
        return (rank, bad, 0.0 if bad else (-value if mode == "max" else value))

    rows.sort(key=key)
    from xor_lightning.sweeps.tables import metric_names

    columns = ["job", "status", "overrides", *metric_names(rows, METRICS), "best_epoch",
               "wall_s", "error"]  # fmt: skip
    with open(sweep_dir / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "overrides": " ".join(row["overrides"])})
    table = _markdown(rows, columns)
    (sweep_dir / "summary.md").write_text(table + "\n")
    return rows


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if not value.is_integer() or abs(value) < 1 else f"{value:.1f}"
    if isinstance(value, list):
        return " ".join(value)
    return "" if value is None else str(value).replace("|", "\\|").replace("\n", " ")


def _markdown(rows: list[dict[str, Any]], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def write_all(sweep_dir: Path, metric: str, mode: str) -> list[Path]:
    """Summarize the jobs under `sweep_dir` and write the sweep's tables: the files written
    (none when no job finished). A table that fails says so in one line: the jobs are
    done and summarised."""
    from xor_lightning.sweeps import tables, tb_summary

    records = job_records(sweep_dir)
    if not summarize(sweep_dir, metric, mode, records):
        return []
    written = [sweep_dir / "summary.csv", sweep_dir / "summary.md"]
    try:
        written += tables.write_sweep(sweep_dir, records)
    except Exception as e:
        log.error("the sweep's tables were not written: %s: %s", type(e).__name__, e)
    try:  # of the jobs no vectorised fit summarised, from curves.parquet
        runs = tb_summary.from_curves(sweep_dir, [r for _, r in records])
        written += [runs] if runs else []
    except Exception as e:
        log.error("the sweep's TensorBoard summary was not written: %s: %s", type(e).__name__, e)
    return written


class SweepSummary(Callback):
    """Hydra callback: at the end of every multirun, summarize its jobs and write the
    sweep's tables."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        metric = config.get("optimized_metric", "val/acc")
        report(sweep_dir, metric, metric_mode(config.hydra, metric))


def report(sweep_dir: Path, metric: str, mode: str) -> None:
    """`write_all`, then log the summary's first rows and the files written."""
    written = write_all(sweep_dir, metric, mode)
    if written:
        lines = (sweep_dir / "summary.md").read_text().splitlines()
        more = f"\n... {len(lines) - 22} more rows in summary.md" if len(lines) > 22 else ""
        log.info("sweep summary, best %s first:\n%s%s", metric, "\n".join(lines[:22]),
                 more)  # fmt: skip
        log.info("written: %s", ", ".join(map(str, written)))
