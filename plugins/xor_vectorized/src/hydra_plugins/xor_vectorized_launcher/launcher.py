"""`hydra/launcher=vectorized`: a sweep's jobs trained together, each one a run of its own.

The launcher takes the batch of jobs any sweeper hands it, composes each job's config and
checks it as a run alone would, without writing anything (`prepare.py`: one composition
per shape of job, `template.py` making the shape's other jobs from it; `compose.py`, the
composition). `xor_vectorized.run` then takes each
job's dir lock, writes its `.hydra/`, sorts the jobs into groups that can share one
computation (the same config but for the keys in `xor_vectorized.groups.VARYING`),
fits each group (in fits of at most `max_models_per_fit` models) and writes every job's
dir as its own run would have left it. Jobs the stacked module cannot train run as
ordinary jobs, one after another, as the basic launcher runs them; so does every job of
an app other than `xor-train` (Hydra registers this launcher for every app).

Hydra imports this module on every start (without registering it, so no `from __future__
import annotations` here): torch and Lightning are imported in `launch`.
"""

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from hydra.core.utils import (
    JobReturn,
    JobRuntime,
    configure_log,
    filter_overrides,
    run_job,
    setup_globals,
)
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

from hydra_plugins.xor_vectorized_launcher.compose import FastSweepConfigLoader
from hydra_plugins.xor_vectorized_launcher.config import refused
from xor_vectorized import app

log = logging.getLogger(__name__)


def stacks(task_function: Any) -> bool:
    """Whether the app is xor-train or a copy of it (`xor_vectorized/app.py`); any other
    app's jobs run as the basic launcher's."""
    return app.package_of(task_function) is not None


class VectorizedLauncher(Launcher):
    def __init__(
        self,
        max_models_per_fit: int,
        pictures_up_to: int,
        curve_every_n_epochs: int,
        last_every_n_epochs: int,
        workers: int | None,
        job_dirs_up_to: int = 1000,
    ) -> None:
        self.settings = {
            "max_models_per_fit": max_models_per_fit,
            "pictures_up_to": pictures_up_to,
            "curve_every_n_epochs": curve_every_n_epochs,
            "last_every_n_epochs": last_every_n_epochs,
            "workers": workers,
            "job_dirs_up_to": job_dirs_up_to,
        }
        why = refused(self.settings)  # when Hydra builds the launcher: before any file
        if why:
            self.refuse(why)
        self.settings["workers"] = workers or os.cpu_count() or 1

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config, self.task_function = config, task_function
        self.app = app.package_of(task_function)  # None: not an app the engine stacks
        self.settings["hydra"] = config.hydra  # the sweep's: an Optuna search's pruner, say
        # The sweeper checks every job by composing it with this same loader: make that
        # quick too (Hydra's own composition costs ~80 ms a job). Only for xor-train, whose
        # configs the tests compare with Hydra's.
        if self.app is not None and not isinstance(
            hydra_context.config_loader, FastSweepConfigLoader
        ):
            hydra_context.config_loader = FastSweepConfigLoader(hydra_context.config_loader)
        self.hydra_context = hydra_context

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if self.app is None:
            return self._launch_basic(job_overrides, initial_job_idx)
        app.use(self.app)
        return self.launch_stacked(job_overrides, initial_job_idx, sweep_dir)

    def launch_stacked(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int, sweep_dir: Path
    ) -> list[JobReturn]:
        """xor-train's jobs, stacked; their returns in job order (also what each array task
        of `hydra/launcher=vectorized_slurm` runs on its share of the jobs)."""
        log.info("Launching %d jobs, vectorised", len(job_overrides))
        from xor_vectorized.interrupts import HELD

        with HELD.holding():  # a Ctrl-C from here on: `interrupts.py`
            # torch and Lightning imported once, here, before any worker process forks
            app.read("validate")
            from hydra_plugins.xor_vectorized_launcher.jobs import JobHooks

            self.working_dir, self.task_name = os.getcwd(), JobRuntime.instance().get("name")
            jobs = self._prepare_all(initial_job_idx, [list(o) for o in job_overrides])
            for job in jobs:
                log.info("\t#%d : %s", job.num, " ".join(filter_overrides(job.overrides)))
            fatal = next((job.fatal for job in jobs if job.fatal), None)
            if fatal:
                self.refuse(fatal)
            from xor_vectorized.run import run_jobs

            returns = run_jobs(jobs, self.settings, sweep_dir, JobHooks(self))
            return [returns[job.num] for job in jobs]

    def refuse(self, why: str) -> NoReturn:
        """Refuse the whole sweep before anything is written: `error: <why>`, exit 2."""
        print(f"error: {why}", file=sys.stderr)
        sys.exit(2)

    def compose(self, num: int, overrides: list[str]) -> DictConfig:
        """Job `num`'s config, as the basic launcher composes it."""
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with open_dict(cfg):
            cfg.hydra.job.id = num
            cfg.hydra.job.num = num
        return cfg

    def _prepare_all(self, first: int, overrides: list[list[str]]) -> list[Any]:
        """Every job composed and checked (`prepare.py`); nothing written."""
        from hydra_plugins.xor_vectorized_launcher.prepare import Preparation

        return Preparation(self).all(first, overrides)

    def run_alone(self, num: int, overrides: list[str]) -> JobReturn:
        """One job as the basic launcher runs it (`run_job`: its callbacks, its files)."""
        ret = run_job(
            hydra_context=self.hydra_context,
            task_function=self.task_function,
            config=self.compose(num, overrides),
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return ret

    def _launch_basic(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> list[JobReturn]:
        """What hydra's `BasicLauncher.launch` does, for an app that is not xor-train."""
        log.info(f"Launching {len(job_overrides)} jobs locally")
        runs = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            runs.append(self.run_alone(idx, list(overrides)))
        return runs
