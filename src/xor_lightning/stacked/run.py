"""The vectorised launcher's work: group the jobs, fit each group, write every job's dir.

The Hydra side (composing each job, `.hydra/`, JobReturns) is the launcher plugin in
`hydra_plugins/xor_vectorized_launcher/`; it hands this module `Job`s.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from hydra.core.utils import JobReturn, JobStatus

from xor_lightning.stacked.fit import fit_group
from xor_lightning.stacked.groups import VARYING, split_keys
from xor_lightning.stacked.outputs import PeriodicSave, record_job, write_group
from xor_lightning.stacked.pruning import trial_pruning

log = logging.getLogger(__name__)


@dataclass
class Job:
    num: int
    overrides: list[str]
    dir: Path
    resolved: dict[str, Any] = field(default_factory=dict)  # the task config, resolved
    unresolved: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # refused before training, as a run alone would refuse it
    problem: str | None = None  # why it must run as a fit of its own
    key: str = ""  # jobs with the same key can share a fit
    done: JobReturn | None = None  # finished in an earlier launch of the same sweep
    resume: Path | None = None  # interrupted in an earlier launch: its last.ckpt
    fatal: str | None = None  # a setting the launcher refuses outright


def job_return(job: Job, value: float) -> JobReturn:
    """What a job run by `run_job` returns: the optimized metric, NaN if it failed."""
    ret = JobReturn(overrides=job.overrides, status=JobStatus.COMPLETED, task_name="train")
    ret.working_dir = str(Path.cwd())
    ret.return_value = value
    return ret


def read_value(job_dir: Path, metric: str) -> float:
    path = job_dir / "metrics.json"
    if not path.is_file():
        return math.nan
    return float(json.loads(path.read_text()).get(metric, math.nan))


def earlier(job: Job, metric: str) -> None:
    """What an earlier launch of this sweep left in the job's dir.

    A finished job (ok or failed, or finished since by `resume=<job dir>`) is kept
    (`job.done`); an interrupted one is continued from its last.ckpt (`job.resume`).
    """
    record_file = job.dir / "job.json"
    if not record_file.is_file():
        return
    record = json.loads(record_file.read_text())
    if record.get("status") == "interrupted" and (job.dir / "metrics.json").is_file():
        record["status"] = "ok"  # resumed alone since, and finished
        record_file.write_text(json.dumps(record, indent=2) + "\n")
    last = job.dir / "checkpoints" / "last.ckpt"
    if record.get("status") in ("ok", "failed"):
        job.done = job_return(job, read_value(job.dir, metric))
    elif record.get("status") in ("interrupted", "running") and last.is_file():
        job.resume = last


def run_jobs(
    jobs: list[Job], settings: dict[str, Any], sweep_dir: Path, run_alone: Callable
) -> dict[int, JobReturn]:
    """Train `jobs` (stacked where they can be, alone where not); their results by number."""
    metric = next((j.resolved.get("optimized_metric", "val/acc") for j in jobs if j.resolved),
                  "val/acc")  # fmt: skip
    returns: dict[int, JobReturn] = {}
    groups: dict[str, list[Job]] = {}
    locks = _lock([j for j in jobs if j.done is None and not j.error and j.problem is None])
    for job in jobs:
        if job.done is not None:
            returns[job.num] = job.done
        elif job.error:
            log.error("job %d failed: %s", job.num, job.error)
            record_job(job, {"status": "failed", "error": job.error, "wall_s": 0.0})
            returns[job.num] = job_return(job, math.nan)
        elif job.problem is None:
            step = None
            if job.resume is not None:  # jobs stopped at different steps resume apart
                step = torch.load(job.resume, map_location="cpu", weights_only=True)["global_step"]
            groups.setdefault(f"{job.key}@{step}", []).append(job)
    kept = sum(j.done is not None for j in jobs)
    if kept:
        log.info("%d job(s) finished in an earlier launch of this sweep: kept", kept)
    _describe(list(groups.values()), settings["max_models_per_fit"])
    size = settings["max_models_per_fit"]
    for g, members in enumerate(groups.values()):
        for start in range(0, len(members), size):
            chunk = members[start : start + size]
            tic = time.perf_counter()
            resume = [j.resume for j in chunk] if chunk[0].resume is not None else None
            every = settings["last_every_n_epochs"]
            periodic = [PeriodicSave(chunk, every, settings["workers"])] if every > 0 else []
            pruning = trial_pruning(chunk, settings["hydra"], metric)
            small = len(chunk) <= settings["pictures_up_to"]  # pictures and every epoch's point
            result = fit_group([j.resolved for j in chunk], str(sweep_dir), resume,
                               [*periodic, *pruning], pictures=small)  # fmt: skip
            result.extra["curve_every"] = 1 if small else settings["curve_every_n_epochs"]
            info = {"group": g, "models": len(chunk), "fit_s": round(time.perf_counter() - tic, 3)}
            write_group(chunk, result, info, settings["workers"])
            for k, job in enumerate(chunk):
                returns[job.num] = job_return(job, read_value(job.dir, metric))
                if int(result.stopped_at[k]) >= 0:  # what Hydra records when a task raises
                    import optuna

                    returns[job.num].status = JobStatus.FAILED
                    returns[job.num].return_value = optuna.TrialPruned(
                        f"pruned by the study's pruner after epoch {int(result.stopped_at[k])}"
                    )
                os.close(locks.pop(job.num))
            if result.signal is not None:
                _stop(sweep_dir, result.signal, metric)
    for job in jobs:
        if job.num not in returns:
            log.info("job %d runs as a fit of its own: %s", job.num, job.problem)
            returns[job.num] = run_alone(job)
    return returns


def _lock(jobs: list[Job]) -> dict[int, int]:
    """Each job's dir lock, as a run alone holds it (`lock.py`), until its dir is written.

    A dir that another process holds (say `resume=` of that job) fails its job in one line.
    """
    import resource

    from xor_lightning.lock import acquire, in_use

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = len(jobs) + 256  # an open file per lock held
    if soft != resource.RLIM_INFINITY and soft < wanted:
        limit = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    locks = {}
    for job in jobs:
        fd, holder = acquire(job.dir)
        if fd is None:
            job.error = f"UserError: {in_use(job.dir, holder)}"
        else:
            locks[job.num] = fd
    return locks


def _describe(groups: list[list[Job]], size: int) -> None:
    """Log how the jobs were grouped, and which keys set the groups apart."""
    fits = sum(-(-len(g) // size) for g in groups)
    log.info("%d jobs in %d group(s): %d fit(s) of at most %d models each",
             sum(map(len, groups)), len(groups), fits, size)  # fmt: skip
    for i, g in enumerate(groups[1:], start=1):
        keys = [k for k in split_keys(groups[0][0].unresolved, g[0].unresolved) if k not in VARYING]
        why = ", ".join(keys[:4]) if keys else "resumed from another step"
        log.info("group %d (%d jobs) is apart from group 0 by: %s", i, len(g), why)


def _stop(sweep_dir: Path, signum: int, metric: str) -> None:
    """After Ctrl-C or SIGTERM: the summary, how to resume, exit 128 + the signal number."""
    from xor_lightning.sweep import summarize

    summarize(sweep_dir, metric)
    log.warning(
        "%s: every job of the fit stopped at the same epoch, its last.ckpt written. Resume "
        "the sweep with the same command and hydra.sweep.dir=%s (finished jobs are kept), "
        "or one job alone with: xor-train resume=<job dir>",
        signal.Signals(signum).name,
        sweep_dir,
    )
    sys.exit(128 + signum)
