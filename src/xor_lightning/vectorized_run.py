"""The vectorised launcher's work: group the jobs, fit each group, write every job's dir.

Hydra-facing parts (composing, `.hydra/`, JobReturns) are in
`hydra_plugins/xor_vectorized_launcher/launcher.py`; the training is `vectorized.py`;
what a job's dir holds is written here, with checkpoints from `job_outputs.py`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from hydra.core.utils import JobReturn
from torch import Tensor

from xor_lightning.job_outputs import CheckpointWriter, best_filename, model_slice, write_json
from xor_lightning.vectorized import GroupResult, fit_group, split_keys

log = logging.getLogger(__name__)


def earlier(job_dir: Path, metric: str) -> tuple[JobReturn | None, Path | None]:
    """What an earlier launch of this sweep left in `job_dir`.

    A finished job (ok or failed, or finished since by `resume=<job dir>`) is kept: its
    result is returned. An interrupted one is continued: its last.ckpt is returned.
    """
    from hydra_plugins.xor_vectorized_launcher.launcher import Job, job_return, read_value

    record_file = job_dir / "job.json"
    if not record_file.is_file():
        return None, None
    record = json.loads(record_file.read_text())
    if record.get("status") == "interrupted" and (job_dir / "metrics.json").is_file():
        record["status"] = "ok"  # resumed alone since, and finished
        write_json(record_file, record)
    if record.get("status") in ("ok", "failed"):
        return job_return(Job(-1, [], job_dir), read_value(job_dir, metric)), None
    last = job_dir / "checkpoints" / "last.ckpt"
    return None, last if record.get("status") == "interrupted" and last.is_file() else None


def run_jobs(
    jobs: list[Any], settings: dict[str, Any], sweep_dir: Path, run_alone: Callable
) -> dict[int, JobReturn]:
    from hydra_plugins.xor_vectorized_launcher.launcher import job_return

    returns: dict[int, JobReturn] = {}
    groups: dict[str, list[Any]] = {}
    for job in jobs:
        if job.done is not None:
            returns[job.num] = job.done
        elif job.error:
            log.error("job %d failed: %s", job.num, job.error)
            _record(job, {"status": "failed", "error": job.error, "wall_s": 0.0})
            returns[job.num] = job_return(job, math.nan)
        elif job.problem is None:
            step = None
            if job.resume is not None:
                step = torch.load(job.resume, map_location="cpu", weights_only=True)["global_step"]
            groups.setdefault(f"{job.key}@{step}", []).append(job)
    kept = sum(j.done is not None for j in jobs)
    if kept:
        log.info("%d jobs already finished in %s: kept", kept, sweep_dir)
    _describe(list(groups.values()), settings["max_models_per_fit"])
    metric = jobs[0].resolved.get("optimized_metric", "val/acc") if jobs else "val/acc"
    stopped = None
    for g, members in enumerate(groups.values()):
        size = settings["max_models_per_fit"]
        for start in range(0, len(members), size):
            chunk = members[start : start + size]
            tic = time.perf_counter()
            resume = [j.resume for j in chunk] if chunk[0].resume is not None else None
            result = fit_group([j.resolved for j in chunk], str(sweep_dir), resume)
            fit_s = time.perf_counter() - tic
            info = {"group": g, "models": len(chunk), "fit_s": round(fit_s, 3)}
            write_outputs(chunk, result, info, settings)
            for k, job in enumerate(chunk):
                ok = result.signal is None and int(result.failed_at[k, 0]) < 0
                returns[job.num] = job_return(job, _value(job.dir, metric) if ok else math.nan)
            if result.signal is not None:
                stopped = result.signal
                break
        if stopped is not None:
            break
    if stopped is not None:
        _stop(sweep_dir, stopped, jobs)
    for job in jobs:
        if job.num not in returns and job.problem is not None:
            log.info("job %d runs as a fit of its own: %s", job.num, job.problem)
            returns[job.num] = run_alone(job)
    return returns


def _value(job_dir: Path, metric: str) -> float:
    from hydra_plugins.xor_vectorized_launcher.launcher import read_value

    return read_value(job_dir, metric)


def _describe(groups: list[list[Any]], size: int) -> None:
    """Log how the jobs were grouped and which keys set the groups apart."""
    fits = sum(-(-len(g) // size) for g in groups)
    log.info("%d jobs in %d group(s), %d fit(s) of at most %d models",
             sum(map(len, groups)), len(groups), fits, size)  # fmt: skip
    for i, g in enumerate(groups[1:], start=1):
        keys = split_keys(groups[0][0].unresolved, g[0].unresolved)
        keys = [k for k in keys if not k.startswith(("seed", "model.optimizer.lr"))] or keys
        log.info("group %d (%d jobs) differs from group 0 in: %s", i, len(g), ", ".join(keys[:5]))


def _stop(sweep_dir: Path, signum: int, jobs: list[Any]) -> None:
    """After Ctrl-C or SIGTERM: the summary, how to resume, exit 128 + the signal number."""
    from xor_lightning.sweep import summarize

    summarize(sweep_dir, jobs[0].resolved.get("optimized_metric", "val/acc"))
    log.warning(
        "%s: every job stopped at the same epoch with its last.ckpt written. Resume the "
        "sweep with the same command and hydra.sweep.dir=%s, or one job with "
        "xor-train resume=<job dir>",
        signal.Signals(signum).name,
        sweep_dir,
    )
    sys.exit(128 + signum)


def _record(job: Any, fields: dict[str, Any]) -> None:
    job.dir.mkdir(parents=True, exist_ok=True)
    record = {"job": job.num, "overrides": job.overrides, "status": "ok", "error": None}
    record.update(fields)
    record.update(threads=torch.get_num_threads(), slurm_job_id=os.environ.get("SLURM_JOB_ID"))
    write_json(job.dir / "job.json", record)


def _history(
    result: GroupResult, key: str, k: int, until: int, before: bool = False
) -> float | None:
    """Model k's latest value of `key` at epoch `until` (or before it)."""
    value = None
    for epoch, _step, v in result.history.get(key, []):
        if epoch < until or (epoch == until and not before):
            value = float(v[k])
    return value


def write_outputs(
    jobs: list[Any], result: GroupResult, info: dict[str, Any], settings: dict[str, Any]
) -> None:
    writer = CheckpointWriter(jobs[0].resolved)
    for k, job in enumerate(jobs):
        write_job(job, k, result, writer, info, pictures=len(jobs) <= settings["pictures_up_to"])


def write_job(
    job: Any,
    k: int,
    result: GroupResult,
    writer: CheckpointWriter,
    info: dict[str, Any],
    pictures: bool,
) -> None:
    """Job k's checkpoints, metrics.json, job.json, train.log and TensorBoard curves."""
    cfg = job.resolved
    shapes = result.net.shapes[k]
    ckpt_dir = Path(cfg["paths"]["ckpt_dir"])
    final = result.epoch - 1 if result.epoch > 0 else 0
    monitor = writer.best_cb.monitor if writer.best_cb is not None else None
    latest = {
        key: _history(result, key, k, final)
        for key in ("train/loss", "train/acc", "val/loss", "val/acc")
    }
    best = None
    if result.best and int(result.best["epoch"][k]) >= 0:
        epoch, step = int(result.best["epoch"][k]), int(result.best["step"][k])
        best_path = ckpt_dir / best_filename(cfg, epoch, step)
        score = float(result.best["score"][k])
        at_best = {key: _history(result, key, k, epoch, before=key.startswith("train/"))
                   for key in latest}  # fmt: skip
        at_best = {key: v for key, v in at_best.items() if v is not None}
        at_best = result.best.get("metrics", {}).get(k) or at_best  # from before a resume
        writer.load(
            cfg,
            model_slice(result.best["params"], shapes, k),
            _adam(result.best["state"], shapes, k),
        )
        writer.save(best_path, result.best["loops"][epoch], at_best, (best_path, score, score))
        best = (best_path, score, at_best)
    if job.resume is not None and best is not None:  # a best from before the resume, replaced
        old = _best_path(job.resume)
        if old is not None and old.name != best[0].name:
            (ckpt_dir / old.name).unlink(missing_ok=True)
    current = latest.get(monitor) if monitor else None
    writer.load(cfg, model_slice(result.last, shapes, k), _adam(result.last_state, shapes, k))
    writer.save(
        ckpt_dir / "last.ckpt",
        result.loops,
        {key: v for key, v in latest.items() if v is not None},
        (best[0], best[1], current if current is not None else best[1]) if best else None,
    )
    failed_epoch, failed_step = (int(v) for v in result.failed_at[k])
    record: dict[str, Any] = {"wall_s": info["fit_s"], "vectorized": info}
    if result.signal is not None:
        record["status"] = "interrupted"
    elif failed_epoch >= 0:
        record["status"] = "failed"
        record["error"] = (
            f"NonFiniteLossError: the loss became {float(result.failed_loss[k]):g} at epoch "
            f"{failed_epoch}, optimizer step {failed_step}: this model stopped there, the others "
            "went on; last.ckpt and the best checkpoint hold its last good state "
            "(try a smaller model.optimizer.lr)"
        )
    else:
        metrics = {
            "train/loss": latest["train/loss"] if latest["train/loss"] is not None else math.nan,
            "val/loss": best[2].get("val/loss", math.nan) if best else math.nan,
            "val/acc": best[2].get("val/acc", math.nan) if best else math.nan,
            "test/loss": float(result.tested["test/loss"][k]),
            "test/acc": float(result.tested["test/acc"][k]),
        }
        write_json(job.dir / "metrics.json", metrics)
    if best:
        record["best_epoch"] = int(result.best["epoch"][k])
    _record(job, record)


def _adam(
    stacked: list[dict[str, Tensor]], shapes: list[tuple[int, int]], k: int
) -> list[dict[str, Tensor]]:
    """Model k's Adam state per parameter, shaped as its own optimizer holds it."""
    avg = model_slice([s["exp_avg"] for s in stacked], shapes, k)
    sq = model_slice([s["exp_avg_sq"] for s in stacked], shapes, k)
    return [
        {"step": s["step"][k].clone(), "exp_avg": a, "exp_avg_sq": q}
        for s, a, q in zip(stacked, avg, sq, strict=True)
    ]


def _best_path(last: Path) -> Path | None:
    from xor_lightning.stacked_resume import _best_state

    state = _best_state(torch.load(last, map_location="cpu", weights_only=True))
    return Path(state["best_model_path"]) if state else None
