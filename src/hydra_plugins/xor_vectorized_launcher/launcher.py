"""`hydra/launcher=vectorized`: a sweep's jobs trained together, each one a run of its own.

The launcher takes the batch of jobs any sweeper hands it, composes each job's config
(`compose.py`: once per set of group choices, then the job's values), checks it as a run
alone would, and sorts the jobs into groups that can share one computation: the same
config but for the keys in `xor_lightning.stacked.groups.VARYING`. Each group (in fits of at
most `max_models_per_fit` models) is one Lightning fit of a stacked module; then every
job's dir is written as its own run would have left it. Jobs the stacked module cannot
train run as ordinary jobs, one after another, as the basic launcher runs them.

Hydra imports this module on every start (without registering it, so no `from __future__
import annotations` here): torch and Lightning are imported in `launch`.
"""

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import (
    JobReturn,
    configure_log,
    filter_overrides,
    run_job,
    setup_globals,
)
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from hydra_plugins.xor_vectorized_launcher.compose import (
    FastSweepConfigLoader,
    HydraNodes,
    task_containers,
)

log = logging.getLogger(__name__)


class VectorizedLauncher(Launcher):
    def __init__(
        self,
        max_models_per_fit: int,
        pictures_up_to: int,
        curve_every_n_epochs: int,
        last_every_n_epochs: int,
        workers: int | None,
    ) -> None:
        self.settings = {
            "max_models_per_fit": max_models_per_fit,
            "pictures_up_to": pictures_up_to,
            "curve_every_n_epochs": curve_every_n_epochs,
            "last_every_n_epochs": last_every_n_epochs,
            "workers": workers or os.cpu_count() or 1,
        }

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config, self.task_function = config, task_function
        self.settings["hydra"] = config.hydra  # the sweep's: an Optuna search's pruner, say
        # The sweeper checks every job by composing it with this same loader: make that
        # quick too (Hydra's own composition costs ~80 ms a job).
        if not isinstance(hydra_context.config_loader, FastSweepConfigLoader):
            hydra_context.config_loader = FastSweepConfigLoader(hydra_context.config_loader)
        self.hydra_context = hydra_context

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info("Launching %d jobs, vectorised", len(job_overrides))
        # torch and Lightning imported once, here, before any worker process forks
        import xor_lightning.stacked.run
        import xor_lightning.validate  # noqa: F401

        jobs = self._prepare_all(initial_job_idx, [list(o) for o in job_overrides])
        for job in jobs:
            log.info("\t#%d : %s", job.num, " ".join(filter_overrides(job.overrides)))
        fatal = next((job.fatal for job in jobs if job.fatal), None)
        if fatal:
            print(f"error: {fatal}", file=sys.stderr)
            sys.exit(2)
        from xor_lightning.stacked.run import run_jobs

        returns = run_jobs(jobs, self.settings, sweep_dir, self._run_alone)
        return [returns[job.num] for job in jobs]

    def _prepare_all(self, first: int, overrides: list[list[str]]) -> list[Any]:
        """`_prepare` every job: in forked worker processes when there are many."""
        global _LAUNCHER
        numbered = [(first + i, o) for i, o in enumerate(overrides)]
        workers = min(self.settings["workers"], len(numbered) // 128)
        original = HydraConfig.instance().cfg
        try:
            if workers <= 1:
                return [self._prepare(num, o) for num, o in numbered]
            import multiprocessing

            _LAUNCHER = self
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                return pool.starmap(_prepare, numbered, chunksize=64)
        finally:
            _LAUNCHER = None
            HydraConfig.instance().cfg = original

    def _prepare(self, num: int, overrides: list[str]) -> Any:
        """Compose the job's config, check it, write its .hydra/ as Hydra would."""
        from xor_lightning.stacked.groups import stack_key, stack_problem
        from xor_lightning.stacked.run import Job, earlier

        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        with open_dict(cfg):
            cfg.hydra.job.id = num
            cfg.hydra.job.num = num
        job_dir = Path(str(cfg.hydra.sweep.dir)) / str(OmegaConf.select(cfg, "hydra.sweep.subdir"))
        with open_dict(cfg.hydra.runtime):
            cfg.hydra.runtime.output_dir = str(job_dir.resolve())
        job = Job(num, overrides, job_dir)
        earlier(job, cfg.get("optimized_metric", "val/acc"))
        if job.done is not None:
            return job
        HydraConfig.instance().cfg = cfg  # what run_job does, without copying the config
        if "ddp" in str(OmegaConf.select(cfg, "trainer.strategy", default="")):
            job.fatal = (
                "trainer.strategy=ddp cannot run under hydra/launcher=vectorized (it trains "
                "many models in one process); use the basic, joblib or slurm launcher"
            )
            return job
        task, resolved = task_containers(cfg)
        job.unresolved = task
        _write_hydra_files(job_dir, cfg, task)
        from xor_lightning.config import UserError, check_accelerator
        from xor_lightning.validate import validate_train

        try:
            validate_train(cfg)
            check_accelerator(OmegaConf.select(cfg, "trainer.accelerator"))
        except UserError as e:
            job.error = f"UserError: {e}"
            return job
        job.resolved = resolved
        job.problem = stack_problem(job.resolved)
        job.key = "" if job.problem else stack_key(task)
        return job

    def _run_alone(self, job: Any) -> JobReturn:
        """A job the stacked module cannot train: an ordinary run, as the basic launcher runs it."""
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, job.overrides)
        with open_dict(cfg):
            cfg.hydra.job.id = job.num
            cfg.hydra.job.num = job.num
        ret = run_job(
            hydra_context=self.hydra_context,
            task_function=self.task_function,
            config=cfg,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return ret


_LAUNCHER: VectorizedLauncher | None = None  # the launcher whose jobs forked workers prepare


def _prepare(num: int, overrides: list[str]) -> Any:
    assert _LAUNCHER is not None
    return _LAUNCHER._prepare(num, overrides)


HYDRA_NODES = HydraNodes()


def _write_hydra_files(job_dir: Path, cfg: DictConfig, task: dict[str, Any]) -> None:
    """`.hydra/config.yaml`, `hydra.yaml`, `overrides.yaml`, as `run_job` saves them."""
    import yaml

    if cfg.hydra.output_subdir is None:
        return
    out = job_dir / str(cfg.hydra.output_subdir)
    out.mkdir(parents=True, exist_ok=True)
    hydra_node = {"hydra": HYDRA_NODES.container(cfg)}
    for name, content in (
        ("config.yaml", task),
        ("hydra.yaml", hydra_node),
        ("overrides.yaml", list(cfg.hydra.overrides.task)),
    ):
        text = yaml.dump(content, Dumper=yaml.CSafeDumper, sort_keys=False, allow_unicode=True)
        (out / name).write_text(text)
