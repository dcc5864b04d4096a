"""Large fits without a dir per job: one dir per fit, `<sweep dir>/fits/fit<N>/`.

A fit of more than the launcher's `job_dirs_up_to` models (1,000 by default) would write
15 files a job; a 65,536-cell map, a million files. Such a fit writes instead:
`jobs.json` (every job's record: what its `job.json` and `metrics.json` would hold),
`curves.parquet` (its jobs' curves, a point every `curve_every_n_epochs` epochs and the
last), `fit.pt` (what the fit left: every job's best and last weights, optimizer state and
curves, and the jobs' configs as differences from the first job's) and, while it can be
resumed, `last.ckpt` (the stacked module's own Lightning checkpoint: written when the fit
stops on Ctrl-C/SIGTERM, and every `last_every_n_epochs` epochs when set). The sweep's
tables gather the rows; `xor-unpack <sweep dir> <job>` (`unpack.py`) writes any job's dir
from `fit.pt`, as a sweep with job dirs would have written it. `fit.pt` and `last.ckpt`
are data only, read with `torch.load(weights_only=True)` (`fitfile.py`): a sweep dir may
have been changed by anyone who can write there.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Checkpoint

from xor_vectorized import app, fitfile
from xor_vectorized.fit import GroupResult
from xor_vectorized.outputs import job_record, outcome
from xor_vectorized.reruns import empty, same_job

log = logging.getLogger(__name__)
read_json, write_json, write_atomically = (
    app.function("files", f) for f in ("read_json", "write_json", "write_atomically")
)
hold, in_use, let_go = (app.function("lock", f) for f in ("hold", "in_use", "let_go"))
packed_records = app.function("sweeps.summary", "packed_records")


def run(jobs: list[Any], settings: dict[str, Any], sweep_dir: Path, metric: str, hooks: Any,
        returns: dict[int, Any], fit: Callable[[int, list[Any], Path], None],
        first_group: int = 0) -> None:  # fmt: skip
    """Train `jobs` (of groups too large for job dirs) in fits of at most
    `max_models_per_fit`, each in its fit dir; a job finished in an earlier launch of the
    sweep (its record there: the same overrides and config) is kept, if its fit's `fit.pt`
    can still be read as data (else its dir could never be unpacked: it trains again)."""
    earlier = packed_records(sweep_dir)
    groups: dict[str, list[Any]] = {}
    unreadable: dict[Path, str | None] = {}  # a fit dir's fit.pt: why it cannot be read
    for job in jobs:
        row, where, _ = earlier.get(job.num, ({}, None, 0))
        if (same_job(row, job) and row.get("status") in ("ok", "failed", "pruned")
                and _readable(where, unreadable)):  # fmt: skip
            hooks.started([job])
            returns[job.num] = hooks.job_return(job, row.get(metric, math.nan))
            hooks.ended(job, returns[job.num])
        else:
            groups.setdefault(job.key, []).append(job)
    for where, why in unreadable.items():
        if why is not None:
            n = sum(earlier.get(j.num, (None, None))[1] == where for j in jobs)
            log.warning("%s: its %d job(s) train again", why, n)
    kept = len(jobs) - sum(map(len, groups.values()))
    if kept:
        log.info("%d job(s) finished in an earlier launch of this sweep: kept", kept)
    size = settings["max_models_per_fit"]
    fits = sum(-(-len(g) // size) for g in groups.values())
    if groups:
        log.info("%d jobs in %d group(s): %d fit(s) of more than job_dirs_up_to=%d models, "
                 "without job dirs", sum(map(len, groups.values())), len(groups), fits,
                 settings["job_dirs_up_to"])  # fmt: skip
    for g, members in enumerate(groups.values(), start=first_group):
        for start in range(0, len(members), size):
            chunk = members[start : start + size]
            path = fit_dir(sweep_dir, chunk)
            busy = hold(path)
            if busy is not None:
                log.error("%d jobs not run: %s", len(chunk), in_use(path, busy))
                for job in chunk:
                    returns[job.num] = hooks.job_return(job, math.nan)
                continue
            try:
                resume = prepare(path, chunk)
                for job in chunk:
                    job.resume = resume
                log.info("%d jobs in one fit: %s%s", len(chunk), path,
                         ", resumed from its last.ckpt" if resume else "")  # fmt: skip
                fit(g, chunk, path)
            finally:
                let_go(path)


def _readable(fit: Path, seen: dict[Path, str | None]) -> bool:
    """Whether the fit dir's `fit.pt` can be read as data (`fitfile.py`): a finished job is
    kept only when its dir can still be unpacked from it. The reason not, in `seen`."""
    if fit not in seen:
        try:
            fitfile.load(fit)
            seen[fit] = None
        except fitfile.Unreadable as e:
            seen[fit] = str(e)
    return seen[fit] is None


class PeriodicLast(Checkpoint):
    """The fit's `last.ckpt` every `every_n_epochs` epochs (a fit killed outright resumes
    from it), written whole or not at all. A `Checkpoint`, so that Lightning calls it after
    the module's own epoch end (which records the epoch's training metrics)."""

    def __init__(self, path: Path, every_n_epochs: int) -> None:
        self.path, self.every_n_epochs = path, every_n_epochs

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            write_atomically(self.path / "last.ckpt", trainer.save_checkpoint)


def fit_dir(sweep_dir: Path, chunk: list[Any]) -> Path:
    """The chunk's fit dir: `fits/fit<its first job>`, or `.1`, `.2`... when that one holds
    other jobs (a rerun that changed some jobs of an earlier fit)."""
    nums = sorted(j.num for j in chunk)
    base = Path(sweep_dir) / app.read("sweeps.summary").FITS / f"fit{nums[0]}"
    for n in range(1000):
        path = base if n == 0 else base.with_name(f"{base.name}.{n}")
        record = read_json(path / "jobs.json")
        held = sorted(r.get("job") for r in (record or {}).get("jobs") or [])
        if not path.exists() or (held and held == nums):
            return path
        if record is None and not (path / "jobs.json").exists():
            return path  # created but never written (killed before the fit started)
    raise RuntimeError(f"{base}: a thousand fits of other jobs there already")


def prepare(path: Path, chunk: list[Any]) -> Path | None:
    """Make the fit dir (held by the caller) ready for `chunk`: the stacked `last.ckpt` to
    resume from when an earlier launch of the same jobs, in the same order (model k of
    the checkpoint is the chunk's job k), stopped; else emptied and marked `running`."""
    rows = (read_json(path / "jobs.json") or {}).get("jobs") or []
    last = path / "last.ckpt"
    same = [r.get("job") for r in rows] == [j.num for j in chunk] and all(
        same_job(r, j) and r.get("status") in ("interrupted", "running")
        for r, j in zip(rows, chunk, strict=True)
    )
    if same and last.is_file():
        why = _not_resumable(last, len(chunk))
        if why is None:
            return last
        log.warning("%s: the fit starts again", why)
    empty(path)
    rows = [job_record(j, {"status": "running"}) for j in chunk]
    write_json(path / "jobs.json", {"written": time.time(), "app": app.name(), "jobs": rows})
    return None


def _not_resumable(last: Path, models: int) -> str | None:
    """Why the fit's `last.ckpt` cannot be resumed from (read as data only, and a stacked
    checkpoint of `models` models); None when it can."""
    try:
        ckpt = fitfile.read(last, "checkpoint")
    except fitfile.Unreadable as e:
        return str(e)
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not state or "global_step" not in ckpt:
        return f"{last} is not a checkpoint of a fit"
    if any(not isinstance(t, torch.Tensor) or not t.ndim or len(t) != models
           for t in state.values()):  # fmt: skip
        return f"{last} is not a checkpoint of this fit's {models} models"
    return None


def write_fit(path: Path, jobs: list[Any], result: GroupResult, info: dict[str, Any]) -> list[dict]:
    """Write the fit dir's `fit.pt`, `curves.parquet` and `jobs.json` (in that order: the
    record says last that the others are whole); the jobs' rows."""
    rows, outcomes = [], []
    for k, job in enumerate(jobs):
        done = outcome(job, k, result, info)
        outcomes.append(done)
        rows.append({**job_record(job, done.fields), **(done.metrics or {})})
    write_atomically(path / "fit.pt", lambda tmp: fitfile.save(tmp, result, jobs, info))
    write_atomically(
        path / "curves.parquet", lambda tmp: _write_curves(tmp, jobs, result, outcomes)
    )
    write_json(path / "jobs.json", {"written": time.time(), "app": app.name(), "jobs": rows})
    if result.signal is None:  # finished: nothing to resume
        (path / "last.ckpt").unlink(missing_ok=True)
    return rows


def _write_curves(path: Path, jobs: list[Any], result: GroupResult, outcomes: list[Any]) -> None:
    """The jobs' curves as `curves.parquet` rows: every `curve_every` epochs and each job's
    last (a failed job's up to the epoch before it failed), its best and its test."""
    import pyarrow.parquet as pq

    from xor_vectorized.fit import logging_step

    CURVE_COLUMNS, curves_table = (getattr(app.read("sweeps.tables"), n)
                                   for n in ("CURVE_COLUMNS", "curves_table"))  # fmt: skip

    every = result.extra.get("curve_every", 1)
    nums = np.array([j.num for j in jobs], dtype=np.int64)
    final = np.array([o.final for o in outcomes], dtype=np.int64)
    failed = result.failed_at[:, 0].numpy()
    parts: list[tuple[Any, ...]] = []  # job, stage, epoch, step, metric, value
    for key in result.curves:
        epochs, values = result.series(key)
        if not len(epochs):
            continue
        e = epochs[:, None]
        keep = (e <= final) & ((e % every == 0) | (e == final)) & ((failed < 0) | (e < failed))
        rows, cols = np.nonzero(keep)
        stage, metric = key.split("/")
        parts.append((nums[cols], stage, epochs[rows], logging_step(result, epochs[rows]), metric,
                      values[rows, cols]))  # fmt: skip
    best = [k for k, o in enumerate(outcomes) if o.best is not None]
    tested = [k for k, o in enumerate(outcomes) if o.tested]
    for metric in ("loss", *result.metric_names):
        if best:
            epochs = result.best["epoch"].numpy()[best]
            value = [outcomes[k].best[2].get(f"val/{metric}", np.nan) for k in best]
            parts.append((nums[best], "best", epochs, logging_step(result, epochs), metric, value))
        if tested:
            epochs = final[tested]
            value = result.tested[f"test/{metric}"].numpy()[tested]
            parts.append((nums[tested], "test", epochs, logging_step(result, epochs) + 1, metric,
                          value))  # fmt: skip
    columns: dict[str, list[np.ndarray]] = {c: [] for c in CURVE_COLUMNS}
    for part in parts:
        size = len(part[0])
        for c, v in zip(CURVE_COLUMNS, part, strict=True):
            columns[c].append(np.full(size, v) if isinstance(v, str) else np.asarray(v))
    joined = {c: np.concatenate(v) if v else np.zeros(0) for c, v in columns.items()}
    joined["value"] = joined["value"].astype(np.float64)
    order = np.lexsort((joined["epoch"], joined["metric"], joined["stage"], joined["job"]))
    pq.write_table(curves_table({c: v[order] for c, v in joined.items()}), path)
