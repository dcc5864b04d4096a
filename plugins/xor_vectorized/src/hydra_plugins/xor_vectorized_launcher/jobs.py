"""Hydra's side of a stacked job: its `JobReturn` and its job callbacks, as `run_job` gives
them to a job of the basic launcher.

A stacked job never passes through `run_job`, so this module does for it what `run_job`
does around a task: `on_job_start` before the job's fit, `on_job_end` once its dir is
written, and a return with the job's `cfg` and `hydra_cfg`. Composing a job's config costs
about a millisecond; a sweep of thousands of jobs whose returns nobody reads should not
pay it, so a return composes its configs when first read, and the callbacks are called
only when some callback has job hooks (the project's own `RunDirLock` has, but the
launcher holds the same locks itself: the app's `lock.hold`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write


class StackedJobReturn(JobReturn):
    """A `JobReturn` whose `cfg` and `hydra_cfg` are composed when first read."""

    def __init__(self, compose: Callable[[], DictConfig], **kwargs: Any) -> None:
        self._compose, self._configs = compose, None
        super().__init__(**kwargs)

    def _get(self, i: int) -> DictConfig:
        if self._configs is None:
            self._configs = job_configs(self._compose())
        return self._configs[i]

    cfg = property(lambda self: self._get(0), lambda self, v: self._set(0, v))  # type: ignore[assignment]
    hydra_cfg = property(lambda self: self._get(1), lambda self, v: self._set(1, v))  # type: ignore[assignment]

    def _set(self, i: int, value: Any) -> None:
        if value is not None:  # JobReturn's own __init__ sets None: compose later instead
            configs = list(self._configs or (None, None))
            configs[i] = value
            self._configs = tuple(configs)


def job_configs(config: DictConfig) -> tuple[DictConfig, DictConfig]:
    """`run_job`'s `ret.cfg` (the task's config) and `ret.hydra_cfg` (`{hydra: ...}`)."""
    task_cfg = copy.deepcopy(config)
    with read_write(task_cfg), open_dict(task_cfg):
        del task_cfg["hydra"]
    hydra_cfg = OmegaConf.masked_copy(config, "hydra")
    return task_cfg, hydra_cfg


def has_job_hooks(callback: Any) -> bool:
    """Whether a Hydra callback does anything when a job starts or ends."""
    from xor_vectorized import app

    if isinstance(
        callback, app.read("lock").RunDirLock
    ):  # its job locks: the launcher holds them itself
        return False
    kind = type(callback)
    return (
        kind.on_job_start is not Callback.on_job_start or kind.on_job_end is not Callback.on_job_end
    )


class JobHooks:
    """What `xor_vectorized.run.run_jobs` asks of Hydra for each job."""

    def __init__(self, launcher: Any) -> None:
        self.launcher = launcher
        self.callbacks = launcher.hydra_context.callbacks
        self.fire = any(has_job_hooks(cb) for cb in getattr(self.callbacks, "callbacks", []))

    def compose(self, job: Any) -> DictConfig:
        """The job's whole config, as `run_job` holds it (its output dir set)."""
        cfg = self.launcher.compose(job.num, job.overrides)
        with read_write(cfg.hydra.runtime), open_dict(cfg.hydra.runtime):
            cfg.hydra.runtime.output_dir = str(job.dir.absolute())
        return cfg

    def job_return(self, job: Any, value: Any, failed: bool = False) -> JobReturn:
        """The job's return: `value` (the optimized metric), or the exception it failed with."""
        ret = StackedJobReturn(lambda: job.cfg or self.compose(job), overrides=list(job.overrides))
        ret.working_dir = self.launcher.working_dir
        ret.task_name = self.launcher.task_name
        ret.status = JobStatus.FAILED if failed else JobStatus.COMPLETED
        ret.return_value = value
        return ret

    def started(self, jobs: list[Any]) -> None:
        """`on_job_start` for each job, before its fit (its config kept until it ends)."""
        if not self.fire:
            return
        original = HydraConfig.instance().cfg
        try:
            for job in jobs:
                job.cfg = self.compose(job)
                HydraConfig.instance().set_config(job.cfg)
                self.callbacks.on_job_start(
                    config=job.cfg, task_function=self.launcher.task_function
                )
        finally:
            HydraConfig.instance().cfg = original

    def ended(self, job: Any, ret: JobReturn) -> None:
        """`on_job_end` once the job's dir is written, with its return."""
        if not self.fire:
            return
        original = HydraConfig.instance().cfg
        try:
            job.cfg = job.cfg or self.compose(job)
            HydraConfig.instance().set_config(job.cfg)
            self.callbacks.on_job_end(config=job.cfg, job_return=ret)
        finally:
            HydraConfig.instance().cfg = original
            job.cfg = None

    def run_alone(self, job: Any) -> JobReturn:
        return self.launcher.run_alone(job.num, job.overrides)
