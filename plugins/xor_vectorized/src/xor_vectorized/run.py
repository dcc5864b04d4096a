"""The vectorised launcher's work: claim each job's dir, group the jobs, fit each group,
write every job's dir.

The Hydra side (composing each job, its JobReturn and job callbacks) is the launcher plugin
in `hydra_plugins/xor_vectorized_launcher/`; it hands this module `Job`s and `Hooks`.
"""

from __future__ import annotations

import logging
import math
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, Protocol

import torch
import yaml
from hydra.core.utils import JobReturn

from xor_vectorized import app, compact, tensorboard
from xor_vectorized.fit import fit_group
from xor_vectorized.forks import fork_map
from xor_vectorized.groups import VARYING, split_keys
from xor_vectorized.interrupts import HELD
from xor_vectorized.outputs import PeriodicSave, record_job, write_group
from xor_vectorized.pruning import trial_pruning
from xor_vectorized.reruns import claim, earlier, read_value

log = logging.getLogger(__name__)
read_json, write_json = (app.function("files", f) for f in ("read_json", "write_json"))
in_use, let_go = (app.function("lock", f) for f in ("in_use", "let_go"))


@dataclass
class Job:
    num: int
    overrides: list[str]
    dir: Path
    resolved: dict[str, Any] = field(default_factory=dict)  # the task config, resolved
    unresolved: dict[str, Any] = field(default_factory=dict)
    digest: str = ""  # of `unresolved`: an earlier launch's job with another is another job
    hydra_files: tuple[Path, dict[str, Any]] | None = None  # `.hydra/`, written once ours
    study_name: str | None = None  # the Optuna study the job is a trial of (its own config's)
    error: str | None = None  # refused before training, as a run alone would refuse it
    problem: str | None = None  # why it must run as a fit of its own
    key: str = ""  # jobs with the same key can share a fit
    busy: str | None = None  # another live process holds its dir: this pid
    done: bool = False  # finished in an earlier launch of the same sweep
    resume: Path | None = None  # interrupted in an earlier launch: its last.ckpt
    fatal: str | None = None  # a setting the launcher refuses outright
    cfg: Any = None  # the composed config while Hydra's job callbacks have the job open


class Hooks(Protocol):
    """What the launcher plugin does for a job on Hydra's side (`jobs.JobHooks`)."""

    def job_return(self, job: Job, value: Any, failed: bool = False) -> JobReturn: ...
    def started(self, jobs: list[Job]) -> None: ...
    def ended(self, job: Job, ret: JobReturn) -> None: ...
    def run_alone(self, job: Job) -> JobReturn: ...


def run_jobs(
    jobs: list[Job], settings: dict[str, Any], sweep_dir: Path, hooks: Hooks
) -> dict[int, JobReturn]:
    """Train `jobs` (stacked where they can be, alone where not); their results by number."""
    metric = next((j.resolved.get("optimized_metric", "val/acc") for j in jobs if j.resolved),
                  "val/acc")  # fmt: skip
    returns: dict[int, JobReturn] = {}
    groups: dict[str, list[Job]] = {}
    packed = _packed(jobs, settings)  # in fits of more than `job_dirs_up_to`: no job dirs
    stop = lambda: _stop(sweep_dir, HELD.signal, metric, settings["hydra"], False)  # noqa: E731
    if HELD.signal is not None:  # while the jobs were composed: nothing written yet
        stop()
    held = claim([j for j in jobs if not j.fatal and j.num not in packed])
    try:
        for job in held:
            earlier(job)
        fresh = [j for j in held if not j.done and j.problem is None and j.hydra_files]
        fork_map(write_hydra_files, fresh, min(settings["workers"], len(fresh) // 128))
        if HELD.signal is not None:
            stop()
        for job in jobs:
            if job.num in packed:
                continue
            if job.busy is not None:  # not run, nothing written: a later rerun runs it
                log.error("job %d not run: %s", job.num, in_use(job.dir, job.busy))
                returns[job.num] = hooks.job_return(job, math.nan)
            elif job.done or job.error:
                if job.error and not job.done:
                    log.error("job %d failed: %s", job.num, job.error)
                    record_job(job, {"status": "failed", "error": job.error, "wall_s": 0.0})
                hooks.started([job])
                returns[job.num] = hooks.job_return(job, read_value(job.dir, metric))
                hooks.ended(job, returns[job.num])
            elif job.problem is None:
                step = None
                if job.resume is not None:  # jobs stopped at different steps resume apart
                    ckpt = torch.load(job.resume, map_location="cpu", weights_only=True)
                    step = ckpt["global_step"]
                groups.setdefault(f"{job.key}@{step}", []).append(job)
        for key in [k for k, g in groups.items() if (why := _unstackable(g[0]))]:
            for job in groups.pop(key):
                job.problem = why  # run alone below, the reason in the log and its job.json
        kept = sum(j.done for j in jobs)
        if kept:
            log.info("%d job(s) finished in an earlier launch of this sweep: kept", kept)
        if groups:
            _describe(list(groups.values()), settings["max_models_per_fit"])
        for g, members in enumerate(groups.values()):
            size = settings["max_models_per_fit"]
            for start in range(0, len(members), size):
                name = f"group{g}" if len(members) <= size else f"group{g}-fit{start // size}"
                _fit(g, members[start : start + size], settings, sweep_dir, metric, hooks, returns,
                     name)  # fmt: skip
        if packed:
            fit = lambda g, chunk, path: _fit(  # noqa: E731
                g, chunk, settings, sweep_dir, metric, hooks, returns, path.name, path
            )
            compact.run(list(packed.values()), settings, sweep_dir, metric, hooks, returns, fit,
                        first_group=len(groups))  # fmt: skip
        for job in jobs:
            if job.num not in returns:
                if HELD.signal is not None:
                    stop()
                log.info("job %d runs as a fit of its own: %s", job.num, job.problem)
                try:
                    returns[job.num] = hooks.run_alone(job)
                except SystemExit as e:  # Ctrl-C stopped it as it stops a run
                    if not HELD.take(e.code):
                        raise
                record = read_json(job.dir / "job.json")
                if record is not None:
                    write_json(job.dir / "job.json", {**record, "alone": job.problem})
        if HELD.signal is not None:  # while the last job's dir was written
            stop()
    finally:
        for job in held:
            let_go(job.dir)
    return returns


def _fit(g: int, chunk: list[Job], settings: dict[str, Any], sweep_dir: Path, metric: str,
         hooks: Hooks, returns: dict[int, JobReturn], name: str = "",
         packed: Path | None = None) -> None:  # fmt: skip
    """One fit of a group's `chunk` of jobs; each job's dir written (or, `packed`, the fit's
    own dir: `compact.py`) and its return made, and the fit's TensorBoard summary
    (`<sweep dir>/tb/<name>`, `name` by default `group<g>`)."""
    if HELD.signal is not None:  # while the fit before was written
        _stop(sweep_dir, HELD.signal, metric, settings["hydra"], False)
    hooks.started(chunk)
    tic = time.perf_counter()
    every = settings["last_every_n_epochs"]
    if packed is not None:  # the fit's own last.ckpt, when it stops or every n epochs
        resume: Any = chunk[0].resume
        periodic: list[Any] = [compact.PeriodicLast(packed, every)] if every > 0 else []
    else:
        resume = [j.resume for j in chunk] if chunk[0].resume is not None else None
        periodic = [PeriodicSave(chunk, every, settings["workers"])] if every > 0 else []
    pruning = trial_pruning(chunk, settings["hydra"], metric)
    small = len(chunk) <= settings["pictures_up_to"]  # pictures and every epoch's point
    result = fit_group([j.resolved for j in chunk], str(sweep_dir), resume,
                       [*periodic, *pruning], pictures=small,
                       last_path=None if packed is None else packed / "last.ckpt")  # fmt: skip
    result.extra["curve_every"] = 1 if small else settings["curve_every_n_epochs"]
    info = {"group": g, "models": len(chunk), "fit_s": round(time.perf_counter() - tic, 3)}
    if packed is not None:
        rows = compact.write_fit(packed, chunk, result, info)
        values = {row["job"]: row.get(metric, math.nan) for row in rows}
    else:
        write_group(chunk, result, info, settings["workers"])
    if any(tensorboard.logs_to_tensorboard(j.resolved) for j in chunk):
        prefix = settings.get("summary_prefix", "")  # an array task's: task<i>-
        runs = tensorboard.write_summary(sweep_dir, prefix + (name or f"group{g}"), result)
        log.info("TensorBoard: the fit's mean, p10 and p90 in %s", runs)
    for k, job in enumerate(chunk):
        if int(result.stopped_at[k]) >= 0:  # what Hydra records when a task raises
            import optuna

            why = f"pruned by the study's pruner after epoch {int(result.stopped_at[k])}"
            returns[job.num] = hooks.job_return(job, optuna.TrialPruned(why), failed=True)
        else:
            value = values[job.num] if packed is not None else read_value(job.dir, metric)
            returns[job.num] = hooks.job_return(job, value)
        hooks.ended(job, returns[job.num])
    if result.signal is not None:
        _stop(sweep_dir, result.signal, metric, settings["hydra"], True)


def _packed(jobs: list[Job], settings: dict[str, Any]) -> dict[int, Job]:
    """The jobs whose fits hold more than `job_dirs_up_to` models (their groups' sizes,
    split by `max_models_per_fit`), by number; a network found unstackable runs alone."""
    stackable = [j for j in jobs if not j.fatal and not j.error and j.problem is None]
    sizes = Counter(j.key for j in stackable)
    size, limit = settings["max_models_per_fit"], settings["job_dirs_up_to"]
    why = {key: _unstackable(next(j for j in stackable if j.key == key))
           for key, n in sizes.items() if min(n, size) > limit}  # fmt: skip
    for job in stackable:
        job.problem = why.get(job.key)
    return {j.num: j for j in stackable if j.key in why and j.problem is None}


def _unstackable(job: Job) -> str | None:
    """Why the jobs of a group cannot share a fit, found on one of them (None: they can): a
    network other than the chapter's MLPs built once (buffers, outputs that do not fit the
    task), a datamodule other than XOR's set up once (`anydata.data_problem`)."""
    from xor_vectorized.anydata import data_problem
    from xor_vectorized.anynet import stack_problem_of
    from xor_vectorized.fit import xor_data
    from xor_vectorized.groups import mlp_targets

    cfg = job.resolved
    if cfg["data"].get("_target_") != xor_data() and (problem := data_problem(cfg["data"])):
        return problem
    net_cfg = cfg["model"]["net"]
    if net_cfg["_target_"] in mlp_targets():
        return None
    outputs = app.read("tasks").make_task(cfg.get("task")).outputs
    net = app.read("targets").make_net(net_cfg)
    return stack_problem_of(net, int(net_cfg.get("n_in", 2)), outputs)


def write_hydra_files(job: Job) -> None:
    """`.hydra/config.yaml`, `hydra.yaml`, `overrides.yaml`, as `run_job` saves them."""
    assert job.hydra_files is not None
    out, files = job.hydra_files
    out.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        text = yaml.dump(content, Dumper=yaml.CSafeDumper, sort_keys=False, allow_unicode=True)
        (out / name).write_text(text)


def _describe(groups: list[list[Job]], size: int) -> None:
    """Log how the jobs were grouped, and which keys set the groups apart."""
    fits = sum(-(-len(g) // size) for g in groups)
    log.info("%d jobs in %d group(s): %d fit(s) of at most %d models each",
             sum(map(len, groups)), len(groups), fits, size)  # fmt: skip
    for i, g in enumerate(groups[1:], start=1):
        keys = [k for k in split_keys(groups[0][0].unresolved, g[0].unresolved) if k not in VARYING]
        why = ", ".join(keys[:4]) if keys else "resumed from another step"
        log.info("group %d (%d jobs) is apart from group 0 by: %s", i, len(g), why)


def _stop(sweep_dir: Path, signum: int, metric: str, hydra: Any, in_fit: bool) -> NoReturn:
    """After Ctrl-C or SIGTERM: the summary, how to go on, exit 128 + the signal number."""
    summary = app.read("sweeps.summary")

    summary.report(sweep_dir, metric, summary.metric_mode(hydra, metric))  # summary, tables
    what = "stopped between jobs, nothing half-written"
    alone = ""
    if in_fit:
        what = "every job of the fit stopped at the same epoch, its last.ckpt written"
        alone = ", or one job alone with: xor-train resume=<job dir>"
    log.warning("%s: %s. Go on with the same command and hydra.sweep.dir=%s (finished jobs are "
                "kept)%s", signal.Signals(signum).name, what, sweep_dir, alone)  # fmt: skip
    sys.exit(128 + signum)
