"""`hydra/launcher=vectorized_slurm`: the vectorised launcher across machines.

The sweep's jobs, in order, are cut into chunks of `models_per_task` (raised when the
chunks would outnumber the cluster's `MaxArraySize`, `array.py`), and one SLURM array is
submitted with submitit, task i running the vectorised launcher's work on chunk i: it
composes its jobs itself (so composing scales with the tasks too), groups them, fits each
group and writes every job's dir into the shared sweep dir, as `hydra/launcher=vectorized`
does on one machine; Hydra's job callbacks fire there, as under `submitit_slurm`. The
launcher waits for every task and returns one JobReturn per job, in job order; the sweep's
summary and tables are then written from the job dirs by the `SweepSummary` callback, as
for any launcher. A task that fails or is cancelled makes its jobs' returns FAILED with
one line saying why and where its log is.

An app other than xor-train runs exactly as under `hydra/launcher=submitit_slurm` (one
array task a job, hydra-submitit-launcher's own code), with the same SLURM settings.

Hydra imports this module on every start: submitit, torch and Lightning are imported
where they are needed (submitit in `launch`, torch in the tasks).
"""

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobRuntime, JobStatus, configure_log, setup_globals
from hydra.errors import CompactHydraException
from hydra.types import HydraContext
from omegaconf import DictConfig, OmegaConf, open_dict

from hydra_plugins.xor_vectorized_launcher.compose import FastSweepConfigLoader
from hydra_plugins.xor_vectorized_launcher.launcher import VectorizedLauncher
from hydra_plugins.xor_vectorized_slurm_launcher import array
from xor_vectorized import app

log = logging.getLogger(__name__)


class TaskFailed(CompactHydraException):
    """A job whose array task failed or was cancelled (a compact Hydra exception: Hydra
    prints its one-line message without a traceback)."""


class Refused(Exception):
    """Inside a task: the vectorised launcher refused the jobs (`refuse`), said in main."""


class VectorizedSlurmLauncher(VectorizedLauncher):
    def __init__(
        self,
        models_per_task: int,
        max_models_per_fit: int,
        pictures_up_to: int,
        curve_every_n_epochs: int,
        last_every_n_epochs: int,
        workers: int | None,
        job_dirs_up_to: int = 1000,
        **slurm: Any,
    ) -> None:
        super().__init__(max_models_per_fit, pictures_up_to, curve_every_n_epochs,
                         last_every_n_epochs, workers, job_dirs_up_to)  # fmt: skip
        self.models_per_task, self.workers, self.in_task = models_per_task, workers, False
        self.slurm = {
            k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
            for k, v in slurm.items()
        }

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        if self.app is None:
            return self._launch_submitit(job_overrides, initial_job_idx)
        app.use(self.app)
        problem = array.unsupported(self.slurm, self.models_per_task)
        if problem:
            self.refuse(problem)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        n, limit = len(job_overrides), array.max_array_size()
        size = array.task_size(n, self.models_per_task, limit)
        if size != self.models_per_task:
            log.warning("%d jobs at models_per_task=%d would need more array tasks than this "
                        "cluster's MaxArraySize (%d): %d jobs a task instead",
                        n, self.models_per_task, limit, size)  # fmt: skip
        parts = array.chunks(job_overrides, initial_job_idx, size)
        jobs = array.executor(self.slurm).map_array(
            self.run_task,
            range(len(parts)),
            *zip(*parts, strict=True),
            [Singleton.get_state()] * len(parts),
        )
        log.info("Launching %d jobs, vectorised, in %d SLURM array task(s) of up to %d jobs: "
                 "array %s, logs in %s", n, len(parts), size, jobs[0].job_id.split("_")[0],
                 self.slurm["submitit_folder"])  # fmt: skip
        outcomes = array.wait(jobs)
        refused = [why["refused"] for kind, why in outcomes if kind == "ok" and "refused" in why]
        if refused:
            VectorizedLauncher.refuse(self, refused[0])
        self.working_dir, self.task_name = os.getcwd(), JobRuntime.instance().get("name")
        returns = []
        for (first, overrides), (kind, outcome) in zip(parts, outcomes, strict=True):
            for k, job in enumerate(overrides):
                if kind == "ok":
                    completed, value = outcome["returns"][k]
                else:
                    completed, value = False, TaskFailed(outcome)
                returns.append(self._return(first + k, job, completed, value))
        failed = [why for kind, why in outcomes if kind == "failed"]
        if failed:
            self._after_failure(sweep_dir, failed)
        return returns

    def __getstate__(self) -> dict[str, Any]:
        """What each task's pickle holds: Hydra's own config loader in place of the fast
        one (`FastSweepConfigLoader` cannot be unpickled: its `__getattr__` recurses);
        `run_task` makes a fast one again."""
        state = dict(self.__dict__)
        context = state.get("hydra_context")
        if isinstance(getattr(context, "config_loader", None), FastSweepConfigLoader):
            inner = context.config_loader.inner
            state["hydra_context"] = HydraContext(config_loader=inner, callbacks=context.callbacks)
        return state

    def _task_loader(self) -> None:
        """In a task, once Hydra's state is restored: a fast config loader over a loader
        built anew. The pickled loader holds its own copy of the ConfigStore, whose plugin
        config classes Hydra's plugin scan (in `Singleton.set_state`) has since created
        again: the fast loader, which pickles what it composes, would find them stale."""
        context = self.hydra_context
        old = context.config_loader
        loader = type(old)(config_search_path=old.config_search_path)
        self.hydra_context = HydraContext(
            config_loader=FastSweepConfigLoader(loader), callbacks=context.callbacks
        )

    def refuse(self, why: str) -> NoReturn:
        """In a task, hand the refusal back to the launching process, which says it."""
        if self.in_task:
            raise Refused(why)
        super().refuse(why)

    def run_task(
        self, index: int, first: int, overrides: list[list[str]], state: dict[type, Any]
    ) -> dict[str, Any]:
        """Array task `index`: the vectorised launcher's work on its jobs (numbered from
        `first`); each job's (completed, return value), or why the jobs were refused."""
        import torch

        Singleton.set_state(state)
        app.use(self.app)  # the app this launcher found in the launching process
        self._task_loader()
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        self.in_task = True
        cpus = array.task_cpus()
        torch.set_num_threads(cpus)  # the task's share of the node, not all of its cores
        self.settings["workers"] = self.workers or cpus
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        # the tasks write into one sweep dir at once: each fit's summary runs as
        # tb/task<i>-<fit>, not the tb/group<g> every task would name its first
        self.settings["summary_prefix"] = f"task{index}-"
        try:
            returns = self.launch_stacked(overrides, first, sweep_dir)
        except Refused as e:
            return {"refused": str(e)}
        self._note_task()
        return {"returns": [(r.status == JobStatus.COMPLETED, r._return_value) for r in returns]}

    def _prepare_all(self, first: int, overrides: list[list[str]]) -> list[Any]:
        self.prepared = super()._prepare_all(first, overrides)  # their dirs, for _note_task
        return self.prepared

    def _note_task(self) -> None:
        """Add the array's id and the task's index to each `job.json` this task wrote (its
        `slurm_job_id` is the task's own id), so a job leads to its task's log."""
        files = app.read("files")

        here = os.environ.get("SLURM_JOB_ID")
        ids = {"slurm_array_job_id": os.environ.get("SLURM_ARRAY_JOB_ID"),
               "slurm_array_task_id": os.environ.get("SLURM_ARRAY_TASK_ID")}  # fmt: skip
        for job in self.prepared:
            record = files.read_json(job.dir / "job.json")
            if record is not None and here is not None and record.get("slurm_job_id") == here:
                files.write_json(job.dir / "job.json", {**record, **ids})

    def _return(self, num: int, overrides: list[str], completed: bool, value: Any) -> JobReturn:
        """Job `num`'s return, its `cfg` and `hydra_cfg` composed here when first read."""
        from hydra_plugins.xor_vectorized_launcher.jobs import StackedJobReturn

        ret = StackedJobReturn(lambda: self._job_config(num, overrides), overrides=overrides)
        ret.working_dir, ret.task_name = self.working_dir, self.task_name
        ret.status = JobStatus.COMPLETED if completed else JobStatus.FAILED
        ret.return_value = value
        return ret

    def _job_config(self, num: int, overrides: list[str]) -> DictConfig:
        cfg = self.compose(num, overrides)
        job_dir = Path(str(cfg.hydra.sweep.dir)) / str(OmegaConf.select(cfg, "hydra.sweep.subdir"))
        with open_dict(cfg.hydra.runtime):
            cfg.hydra.runtime.output_dir = str(job_dir.absolute())
        return cfg

    def _after_failure(self, sweep_dir: Path, failed: list[str]) -> None:
        """Say which tasks failed; write the summary of the jobs that finished (the sweeper
        stops at a FAILED return, before the `SweepSummary` callback would run)."""
        summary = app.read("sweeps.summary")
        for why in failed:
            log.error("%s", why)
        metric = self.config.get("optimized_metric", "val/acc")
        summary.write_all(sweep_dir, metric, summary.metric_mode(self.config.hydra, metric))
        log.error("%d array task(s) failed: their jobs have no results. The same command with "
                  "hydra.sweep.dir=%s keeps the finished jobs and trains the others",
                  len(failed), sweep_dir)  # fmt: skip

    def _launch_submitit(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        """An app other than xor-train: what `hydra/launcher=submitit_slurm` does with it."""
        from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher

        basic = SlurmLauncher(**self.slurm)
        basic.setup(
            hydra_context=self.hydra_context, task_function=self.task_function, config=self.config
        )
        return basic.launch(job_overrides, initial_job_idx)
