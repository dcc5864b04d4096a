"""What an earlier launch of a sweep left in a job's dir: kept, continued or replaced.

A sweep's command run again into the same `hydra.sweep.dir` keeps the jobs that finished,
continues the interrupted ones from their `last.ckpt`, and trains anew a dir that holds
another job's outputs. Each job's dir is held (`lock.py`) before anything is read or
written there, as a run alone holds its own.
"""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path
from typing import Any

import yaml

from xor_vectorized import app

log = logging.getLogger(__name__)
digest, read_json, write_json = (
    app.function("files", f) for f in ("digest", "read_json", "write_json")
)
hold = app.function("lock", "hold")


def read_value(job_dir: Path, metric: str) -> float:
    return float((read_json(job_dir / "metrics.json") or {}).get(metric, math.nan))


def same_job(record: dict[str, Any], job: Any) -> bool:
    """Whether an earlier launch's `job.json` is this job's: the same overrides and the same
    composed config (a record without the config's digest: the `.hydra/config.yaml` beside)."""
    if record.get("overrides") != job.overrides:
        return False
    if "config" in record:
        return record["config"] == job.digest
    saved = job.dir / ".hydra" / "config.yaml"
    return not saved.is_file() or digest(yaml.safe_load(saved.read_text())) == job.digest


def empty(held: Path) -> None:
    """Remove what a dir this process holds contains, but its `.lock`."""
    for entry in held.iterdir() if held.is_dir() else ():
        if entry.name != ".lock":
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def earlier(job: Any) -> None:
    """What an earlier launch of this sweep left in the job's dir (which the job holds).

    The same job finished (ok or failed, or finished since by `resume=<job dir>`) is kept
    (`job.done`); interrupted, it is continued from its last.ckpt (`job.resume`). Another
    job's outputs (other overrides or another config) are removed and the job trains.
    """
    record_file = job.dir / "job.json"
    record = read_json(record_file)
    if record is None:
        if record_file.exists():
            log.warning("job %d: its job.json is unreadable (cut short?): trained anew", job.num)
        return
    if not same_job(record, job):
        log.warning("job %d: %s held another job's outputs (%s): removed, the job trains",
                    job.num, job.dir, " ".join(record.get("overrides") or []))  # fmt: skip
        empty(job.dir)
        return
    if record.get("status") == "interrupted" and read_json(job.dir / "metrics.json"):
        record["status"] = "ok"  # resumed alone since, and finished
        write_json(record_file, record)
    last = job.dir / "checkpoints" / "last.ckpt"
    if record.get("status") in ("ok", "failed"):
        job.done = True
    elif record.get("status") in ("interrupted", "running") and last.is_file():
        job.resume = last


def claim(jobs: list[Any]) -> list[Any]:
    """Take each job's dir lock, as a run alone holds its own (`lock.py`), before anything
    is written there; the jobs held. A dir another live process holds (say `resume=` of
    that job) is left untouched, its job marked `busy`."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = len(jobs) + 256  # an open file per lock held
    if soft != resource.RLIM_INFINITY and soft < wanted:
        limit = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    held = []
    for job in jobs:
        job.busy = hold(job.dir)
        if job.busy is None:
            held.append(job)
    return held
