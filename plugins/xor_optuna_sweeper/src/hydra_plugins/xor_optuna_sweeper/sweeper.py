"""A Hydra Sweeper over Optuna 5's ask/tell API, with hydra-optuna-sweeper 1.3's config surface.

Why not the release: it pins optuna < 3 (2.10, from 2021), which pulls in scipy (seconds of
start-up for every run, as torchmetrics then imports scipy.signal), its RDB storage breaks
under SQLAlchemy 2, and a trial that raises aborts the whole search. This one accepts what
the release accepts and adds: the study lives in SQLite at the sweep root, so rerunning with
the same `hydra.sweep.dir` resumes an interrupted search; a trial that fails or returns NaN is
recorded as failed and the search goes on; a pruner stops hopeless trials early (the job
reports through `trial.TrialReporter` and raises `optuna.TrialPruned`). Many processes may
share one study (`shared.py`, docs/optuna-processes.md): `n_trials` counts the study, each
process seeds its sampler by its index, and the trials of a process that is gone (Ctrl-C,
kill) are run again as the same jobs, from their last.ckpt.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.errors import HydraDeprecationError
from hydra.plugins.sweeper import Sweeper
from hydra.utils import get_method, instantiate
from omegaconf import DictConfig, OmegaConf, read_write

from hydra_plugins.xor_optuna_sweeper import record
from hydra_plugins.xor_optuna_sweeper import space as sp
from hydra_plugins.xor_optuna_sweeper.refusal import (
    Made,
    Refused,
    SweeperError,
    check,
    denied,
    misfit,
    misfit_refused,
    refuse,
    sqlite_file,
    storage_refused,
)
from hydra_plugins.xor_optuna_sweeper.shared import Process, resume_overrides
from hydra_plugins.xor_optuna_sweeper.trials import (
    JOURNAL,
    check_url,
    lock_file,
    prunes,
    storage,
    study_lock,
    url_of,
)

log = logging.getLogger(__name__)
URL = "https://hydra.cc/docs/upgrades/1.1_to_1.2/changes_to_sweeper_config/"
GRID = "optuna.samplers.GridSampler"
PROCESS_STRIDE = 1_000_003  # seed + this x the process index + the trials its index asked for


class XorOptunaSweeper(Sweeper):
    def __init__(
        self,
        sampler: Any,
        direction: Any,
        storage: Any,
        study_name: str | None,
        n_trials: int,
        n_jobs: int,
        max_failure_rate: float,
        search_space: Any,
        params: Any,
        custom_search_space: str | None,
        pruner: Any,
        process_index: int | None = None,
        heartbeat_interval: float = 60.0,
        grace_period: float = 180.0,
    ) -> None:
        self.sampler, self.direction, self.storage = sampler, direction, storage
        self.study_name, self.n_trials, self.n_jobs = study_name, n_trials, n_jobs
        self.max_failure_rate, self.pruner, self.params = max_failure_rate, pruner, params
        self.search_space, self.custom_search_space = search_space, custom_search_space
        self.process_index = process_index
        self.heartbeat_interval, self.grace_period = heartbeat_interval, grace_period

    def setup(self, *, hydra_context: Any, task_function: Any, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def _space(self, arguments: list[str]) -> tuple[dict[str, Any], list[Any]]:
        """Distributions (search_space, then params, then the command line) and fixed overrides."""
        space = {}
        if self.search_space is not None and self.params is not None:
            warnings.warn(
                "Both hydra.sweeper.params and hydra.sweeper.search_space are configured."
                "\nHydra will use hydra.sweeper.params for defining search space."
                f"\n{URL}",
                stacklevel=3,
            )
        elif self.search_space is not None:
            message = (
                "`hydra.sweeper.search_space` is deprecated and will be removed in the next "
                "major release.\nPlease configure with `hydra.sweeper.params`.\n"
                f"{URL}\n"
            )
            if os.environ.get("HYDRA_DEPRECATION_WARNINGS_AS_ERRORS"):  # as Hydra's own warnings
                raise HydraDeprecationError(message)
            warnings.warn(message, stacklevel=3)
            space = {str(k): sp.from_config(str(k), v) for k, v in self.search_space.items()}
        lines = [f"{k}={v}" for k, v in (self.params or {}).items()] + list(arguments)
        swept, fixed = sp.split(lines)
        keys = {o.key_or_group for o in fixed}  # a fixed value takes its key out of the space
        return {k: v for k, v in {**space, **swept}.items() if sp.key_of(k) not in keys}, fixed

    def _sampler(self, space: dict[str, Any], done: int, index: int = 0) -> Any:
        cfg = OmegaConf.to_container(self.sampler, resolve=True) if self.sampler else None
        if not cfg:
            return None  # Optuna's default
        if cfg["_target_"] == "optuna.samplers.MOTPESampler":  # Optuna folded it into TPE
            cfg.update(
                _target_="optuna.samplers.TPESampler",
                n_ei_candidates=cfg.pop("n_ehvi_candidates", 24),
            )
        if cfg.get("seed") is not None:  # a resumed search must not replay its suggestions,
            cfg["seed"] = (cfg["seed"] + PROCESS_STRIDE * index + done) % 2**32  # nor a process

        if cfg["_target_"] != GRID:
            return instantiate(cfg)
        cfg.pop("_partial_", None)
        grid = sp.grid(space)
        if math.prod(len(v) for v in grid.values()) < self.n_trials:
            self.n_trials = math.prod(len(v) for v in grid.values())
            log.info(f"Updating num of trials to {self.n_trials} due to using GridSampler.")
        return instantiate(cfg, search_space=grid)

    def sweep(self, arguments: list[str]) -> None:
        """Refusals (`Refused`) come before the first trial: `error: <why>`, exit status 2,
        and what the sweep made so far removed (`refusal.py`)."""
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        made = Made(sweep_dir)
        try:
            directions = check(self)
            try:
                space, fixed = self._space(arguments)
                custom = get_method(self.custom_search_space) if self.custom_search_space else None
                if (self.sampler or {}).get("_target_") == GRID:
                    sp.grid(space)
            except (ValueError, ImportError) as e:
                raise Refused(str(e)) from e
            study, me, lock, done = self._open(directions, space, made)
            sweep_dir.mkdir(parents=True, exist_ok=True)
            try:
                study.sampler = self._sampler(space, done, me.index) or study.sampler
                self._search(study, me, lock, space, fixed, custom, len(directions))
            finally:
                me.end()
        except Refused as e:
            refuse(e, made)
        record.write_results(study, sweep_dir, len(directions))

    def _open(
        self, directions: list[str], space: dict[str, Any], made: Made
    ) -> tuple[Any, Process, Any, int]:
        """The study, this process registered in it (`Process.register`: how many trials
        its index asked for before), and the study lock. A storage that cannot be opened
        is refused in one line, one this user may not write as a permission problem; and
        a space the study's trials do not fit, before this process registers."""
        import optuna

        url = url_of(self.storage, self.config.hydra)
        lock, database = lock_file(url), sqlite_file(url)
        made.storage(lock)
        try:
            if isinstance(self.storage, str) and not self.storage.startswith(JOURNAL):
                check_url(self.storage)
            store = storage(self.storage, self.config.hydra)
        except Exception as e:
            raise storage_refused(self.storage, e, database) from e
        try:  # processes starting together create one study, and take distinct indices
            with study_lock(lock):
                study = optuna.create_study(
                    study_name=self.study_name,
                    storage=store,
                    pruner=instantiate(self.pruner) if prunes(self.pruner) else None,
                    directions=directions,
                    load_if_exists=True,
                )
                made.opened()  # its files hold a study now, which other processes may share
                if refused := misfit(study, space):
                    raise refused
                me = Process(study, store, self.heartbeat_interval, self.grace_period)
                _, done = me.register(self.process_index)
        except Exception as e:  # a read-only SQLite file opens, and fails at the first write
            if isinstance(e, Refused) or denied(e, database) is None:
                raise
            raise storage_refused(self.storage, e, database) from e
        return study, me, lock, done

    def _ask(self, study: Any, space: dict[str, Any]) -> Any:
        try:
            return study.ask(space)
        except ValueError as e:  # another process told a trial on another space meanwhile
            raise misfit_refused(study.study_name, space, e) from e

    def _search(self, study: Any, me: Process, lock: Any, space: Any, *job: Any) -> None:
        """Batches of trials until the study holds n_trials (counting every process's)."""
        import optuna

        log.info(f"Study name: {study.study_name}")
        log.info(f"Storage: {url_of(self.storage, self.config.hydra)}")
        log.info(f"Sampler: {type(study.sampler).__name__}, process index {me.index}")
        log.info(f"Directions: {[d.name.lower() for d in study.directions]}")
        if study.trials:  # an earlier launch's, or other processes'
            log.info(
                f"resuming study '{study.study_name}': {len(study.trials)} of {self.n_trials} "
                "trials done"
            )
        # Jobs find their study by name: tell them the one Optuna made up for study_name=null,
        # in their overrides and in the sweep's own config, which the launcher reads.
        extra = [f"hydra.sweeper.study_name={study.study_name}"] if not self.study_name else []
        with read_write(self.config.hydra), read_write(self.config.hydra.sweeper):
            self.config.hydra.sweeper.study_name = study.study_name
        fixed, custom, n_values = job
        sweep_dir = Path(self.config.hydra.sweep.dir)
        waiting = (optuna.trial.TrialState.WAITING,)
        while True:
            with study_lock(lock):  # the budget and the takeovers, one process at a time
                me.take_over()
                room = self.n_trials - len(study.trials)
                ready = len(study.get_trials(deepcopy=False, states=waiting))
                trials = [
                    self._ask(study, space) for _ in range(min(self.n_jobs, ready + max(room, 0)))
                ]
                dirs = [me.own(t, sweep_dir) for t in trials]
            if not trials:
                return
            try:  # a bad override stops the search; its trials are not left running
                jobs = [self._overrides(t, fixed, custom) + extra for t in trials]
                for i, (t, ran_in) in enumerate(zip(trials, dirs, strict=True)):
                    if ran_in is not None:  # taken over: continued where it stopped
                        jobs[i] += resume_overrides(self.config, t.number, ran_in, jobs[i])
                returns = self._launch(trials, jobs)
            except Exception:
                for t in trials:
                    record.fail(study, t)
                raise
            record.tell_batch(study, trials, returns, n_values, self.max_failure_rate)

    def _overrides(self, trial: Any, fixed: list[Any], custom: Any) -> list[str]:
        """The job's overrides; fixed ones are recorded as the trial's user attributes."""
        for o in fixed:
            if not o.is_delete():
                trial.set_user_attr(o.get_key_element(), o.get_value_element_as_str())
        if custom is not None:
            custom(self.config, trial)
        overlap = {sp.key_of(k) for k in trial.params} & {sp.key_of(k) for k in trial.user_attrs}
        if overlap:
            raise SweeperError(
                f"{self.custom_search_space} suggests {sorted(overlap)}, which the "
                "command line fixes: drop one of them"
            )
        swept = [sp.as_override(k, v) for k, v in trial.params.items()]
        return swept + [o.input_line for o in fixed]

    def _launch(self, trials: list[Any], jobs: list[list[str]]) -> list[Any]:
        """Trial n runs as job n (so a job finds its trial): runs of consecutive numbers go
        to the launcher together."""
        returns: list[Any] = []
        start = 0
        for i in range(1, len(trials) + 1):
            if i == len(trials) or trials[i].number != trials[i - 1].number + 1:
                returns += self.launcher.launch(jobs[start:i], initial_job_idx=trials[start].number)
                start = i
        return returns
