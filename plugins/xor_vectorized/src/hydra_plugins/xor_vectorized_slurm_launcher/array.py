"""The SLURM side of `hydra/launcher=vectorized_slurm`: how many jobs a task, the site's
array limit, the submitit executor, and waiting for the array's tasks.

Plain functions, apart from Hydra, so the fast tests can check them without a cluster.
Waiting is done here rather than with submitit's `Job.result()`: submitit learns that a
task ended from SLURM's accounting (`sacct`), and on a cluster without it (as the one-node
test cluster) a task that died without a result would be waited for forever; `squeue`
and `scontrol`, which every cluster has, say when a task has left the queue and how.
Once a task has left the queue, its result is read as `Job.result()` reads it, with
submitit's own wait for the result file: on a shared file system the file a task wrote
on its node may show on this one seconds after SLURM has dropped the task.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

log = logging.getLogger(__name__)
DEFAULT_MAX_ARRAY_SIZE = 1001  # SLURM's own default, when `scontrol` cannot say


def max_array_size(default: int = DEFAULT_MAX_ARRAY_SIZE) -> int:
    """The cluster's `MaxArraySize` (an array's task indices run from 0 to one less), read
    from `scontrol show config`; `default` when scontrol is missing or does not say."""
    try:
        out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True,
                             timeout=30).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return default
    found = re.search(r"^MaxArraySize\s*=\s*(\d+)", out, re.MULTILINE)
    return int(found[1]) if found else default


def task_size(n_jobs: int, models_per_task: int, limit: int) -> int:
    """Jobs a task: `models_per_task`, or more when `n_jobs` would need more than `limit`
    tasks (one array, so `array_parallelism` keeps meaning what it says)."""
    size = max(1, models_per_task)
    if math.ceil(n_jobs / size) > limit:
        size = math.ceil(n_jobs / limit)
    return size


def chunks(overrides: Sequence[Sequence[str]], first: int, size: int) -> list[tuple[int, list]]:
    """The jobs in order, `size` a task: (the number of the task's first job, its overrides)."""
    return [
        (first + start, [list(o) for o in overrides[start : start + size]])
        for start in range(0, len(overrides), size)
    ]


def unsupported(params: dict[str, Any], models_per_task: int) -> str | None:
    """Why these settings cannot run, in one line; None when they can."""
    if models_per_task < 1:
        return f"hydra.launcher.models_per_task must be at least 1, not {models_per_task}"
    if params.get("nodes", 1) != 1 or params.get("tasks_per_node", 1) != 1:
        return ("hydra/launcher=vectorized_slurm runs one process a task: leave "
                "hydra.launcher.nodes and tasks_per_node at 1")  # fmt: skip
    if shutil.which("sbatch") is None:
        return "hydra/launcher=vectorized_slurm needs SLURM's sbatch on the PATH"
    return None


def task_cpus() -> int:
    """The CPUs SLURM gave this task (`cpus_per_task`); the machine's where it does not say:
    a task's share of a node, which its torch threads and workers should not exceed."""
    return int(os.environ.get("SLURM_CPUS_PER_TASK") or os.cpu_count() or 1)


def executor(params: dict[str, Any]) -> Any:
    """A submitit SLURM executor from the `submitit_slurm` settings, built as
    hydra-submitit-launcher builds its own (the same names mean the same sbatch options)."""
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    ex = submitit.AutoExecutor(folder=params["submitit_folder"], cluster="slurm",
                               slurm_max_num_timeout=params["max_num_timeout"])  # fmt: skip
    base = set(BaseQueueConf.__dataclass_fields__)
    own = {"submitit_folder", "max_num_timeout"}
    ex.update_parameters(
        **{k if k in base else f"slurm_{k}": v for k, v in params.items() if k not in own}
    )
    return ex


def in_queue(jobs: Sequence[Any]) -> set[str] | None:
    """The ids (`<array>_<index>`) of the tasks SLURM still has pending or running (none
    when it no longer knows the arrays); None when squeue cannot say."""
    arrays = sorted({j.job_id.split("_")[0] for j in jobs})
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-o", "%i", "-j", ",".join(arrays)],
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return set() if "Invalid job id" in out.stderr else None
    return set(out.stdout.split())


def ended(job: Any) -> str:
    """Why a task that left the queue without a result ended, in one line."""
    try:
        out = subprocess.run(["scontrol", "-o", "show", "job", job.job_id],
                             capture_output=True, text=True, timeout=60).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        out = ""
    fields = dict(re.findall(r"(\w+)=(\S*)", out))
    how = "its state no longer known to SLURM"
    if "JobState" in fields:
        how = f"{fields['JobState']}, exit code {fields.get('ExitCode', '?')}"
        if fields.get("Reason", "None") != "None":
            how += f", reason {fields['Reason']}"
    return f"SLURM array task {job.job_id} ended without a result ({how}); log: {job.paths.stderr}"


def collect(job: Any) -> tuple[str, Any]:
    """A finished task's outcome: ("ok", what it returned) or ("failed", why, in one line)."""
    from submitit.core.utils import FailedJobError, UncompletedJobError

    try:
        return "ok", job.result()
    except FailedJobError as e:  # the task raised: the last line of its traceback
        trace = str(e).split("-" * 22)[1] if str(e).count("-" * 22) >= 2 else str(e)
        last = [line for line in trace.splitlines() if line.strip()][-1:] or ["an error"]
        why = f"SLURM array task {job.job_id} failed: {last[0].strip()}"
        return "failed", f"{why}; log: {job.paths.stderr}"
    except UncompletedJobError:
        return "failed", ended(job)


def collect_left(job: Any) -> tuple[str, Any]:
    """The outcome (`collect`) of a task squeue no longer lists. Its result file may not
    show yet: submitit's wait for it (the second half of `Job.result()`, up to
    `Job._results_timeout_s`, 15 s) decides. The first half, waiting for the accounting
    to call the task done, is what squeue has just said, and would never end for a task
    that died without a result on a cluster without `sacct`."""
    from submitit.core.utils import UncompletedJobError

    try:
        job._get_outcome_and_result()  # returns once the result file shows
    except UncompletedJobError:  # none within submitit's time: the task died without one
        return "failed", ended(job)
    return collect(job)  # the file is there: `job.result()` reads it at once


def wait(jobs: Sequence[Any], poll_s: float = 1.0, misses: int = 2) -> list[tuple[str, Any]]:
    """Each task's outcome (`collect`), in order, once all have ended. A task is over when
    its result is there (or submitit's accounting says so), or when squeue has not listed
    it `misses` polls in a row (then `collect_left`, for the tasks that left at one poll
    together: a cancelled array's tasks wait for their result files at the same time);
    the poll slows from `poll_s` to 10 s as the wait grows.
    Ctrl-C cancels the tasks still running: the sweep stops with the process that
    launched it, and the same command with the same
    `hydra.sweep.dir` keeps the jobs that finished."""
    try:
        return _wait(jobs, poll_s, misses)
    except KeyboardInterrupt:
        for job in jobs:
            if not job.done():
                job.cancel(check=False)
        raise


def _wait(jobs: Sequence[Any], poll_s: float, misses: int) -> list[tuple[str, Any]]:
    outcomes: dict[int, tuple[str, Any]] = {}
    missed = [0] * len(jobs)
    start = time.monotonic()
    while len(outcomes) < len(jobs):
        queued = in_queue([j for i, j in enumerate(jobs) if i not in outcomes])
        left = []
        for i, job in enumerate(jobs):
            if i in outcomes:
                continue
            if job.done():
                outcomes[i] = collect(job)
            elif queued is not None and job.job_id not in queued:
                missed[i] += 1
                if missed[i] >= misses:
                    left.append(i)
            else:
                missed[i] = 0
        if left:
            with ThreadPoolExecutor(min(len(left), 32)) as pool:
                results = pool.map(collect_left, [jobs[i] for i in left])
                outcomes.update(zip(left, results, strict=True))
        if len(outcomes) < len(jobs):
            time.sleep(min(10.0, poll_s + (time.monotonic() - start) / 60))
    return [outcomes[i] for i in range(len(jobs))]
