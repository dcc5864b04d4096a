"""The job's side of a search: report a metric to this job's Optuna trial, ask whether to stop.

A job may run in another process than the sweeper (joblib, submitit, SLURM), so it reaches its
trial through the study's storage. Everything it needs is in its own Hydra config: the study's
storage and name (`hydra.sweeper`) and its trial number, which is its job number
(`hydra.job.num`: the sweeper launches trial n as job n).

    reporter = TrialReporter.from_hydra(HydraConfig.get())  # None: not a trial, or no pruner
    if reporter and reporter.report(value, step):
        raise optuna.TrialPruned()   # the sweeper records the trial as pruned
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# The sweeper whose trials these are, by name (`config.py` takes its `_target_` from here;
# this module imports only the standard library at its top, as Hydra imports `config.py`
# on every start).
SWEEPER = "hydra_plugins.xor_optuna_sweeper.sweeper.XorOptunaSweeper"

SQLITE_TIMEOUT_S = 120  # how long a write waits for another process's lock on an SQLite study


def storage(cfg: Any, hydra_cfg: Any) -> Any:
    """The study's storage: `hydra.sweeper.storage`, or SQLite at the sweep root.

    A string is an SQLAlchemy URL (`sqlite:///x.db`) or `journal:<file>` (Optuna's
    JournalStorage on a file, for shared file systems); a dict is a `_target_` config.
    SQLite waits for locks instead of failing with "database is locked"; a file storage is
    created under the study lock, so processes starting together do not collide."""
    from hydra.utils import instantiate
    from omegaconf import DictConfig

    if isinstance(cfg, (dict, DictConfig)):
        return instantiate(cfg)
    url = url_of(cfg, hydra_cfg)
    with study_lock(lock_file(url)):
        return _journal(url) if url.startswith(JOURNAL) else _rdb(url)


JOURNAL = "journal:"


@contextlib.contextmanager
def study_lock(path: Path | None) -> Iterator[None]:
    """Hold the lock that goes with a storage file (`<file>.sweeper-lock`); no file: none."""
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(f"{path}.sweeper-lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX)  # blocks until the holder releases it, or dies
        yield
    finally:
        os.close(fd)  # closing drops the lock


def url_of(cfg: Any, hydra_cfg: Any) -> str:
    if cfg is None:
        sweep_dir = Path(hydra_cfg.runtime.cwd, hydra_cfg.sweep.dir)  # as Hydra's job dirs
        return f"sqlite:///{sweep_dir.resolve() / 'optuna.db'}"
    return str(cfg)


def check_url(url: str) -> None:
    """Raise unless SQLAlchemy can parse the URL and load its database's driver."""
    from sqlalchemy.engine import make_url

    make_url(url).get_dialect()


def lock_file(url: Any) -> Path | None:
    """The file a storage URL keeps the study in (SQLite or journal), which the study lock
    goes with; None for a server database (its own transactions serialise the writers)."""
    if not isinstance(url, str):
        return None
    if url.startswith(JOURNAL):
        return Path(_journal_path(url)).absolute()
    if url.startswith("sqlite"):
        from sqlalchemy.engine import make_url

        database = make_url(url).database
        if database and database != ":memory:" and not database.startswith("file:"):
            return Path(database).absolute()
    return None


def _journal_path(url: str) -> str:
    path = url.removeprefix(JOURNAL)
    return path[2:] if path.startswith("//") else path


@functools.cache
def _journal(url: str) -> Any:
    import optuna

    path = Path(_journal_path(url))
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))


@functools.cache
def _rdb(url: str) -> Any:
    """One RDB storage (one connection pool) per URL in a process, whatever its jobs."""
    import optuna
    from sqlalchemy.exc import IntegrityError

    kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}} if url.startswith("sqlite") else None
    for attempt in range(3):  # a server database created by two processes at once
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        except IntegrityError:
            if attempt == 2:
                raise
            time.sleep(0.5)
    raise AssertionError("unreachable")


def prunes(pruner_cfg: Any) -> bool:
    """Whether a pruner config asks for pruning (null and NopPruner do not)."""
    return bool(pruner_cfg) and not str(pruner_cfg.get("_target_", "")).endswith("NopPruner")


class TrialReporter:
    """Reports one trial's intermediate values and says when the pruner stops it."""

    def __init__(
        self, storage_cfg: Any, study_name: str, number: int, pruner_cfg: Any, hydra_cfg: Any
    ) -> None:
        self.study_name, self.number = study_name, number
        self._storage_cfg, self._pruner_cfg, self._hydra_cfg = storage_cfg, pruner_cfg, hydra_cfg
        self._trial: Any = None
        self.last_step = -1
        self.pruned = False

    @classmethod
    def from_hydra(cls, hydra_cfg: Any) -> TrialReporter | None:
        """The reporter of the job this Hydra config (the `hydra` node) describes, if that job
        is a trial of this sweeper's search with a pruner; else None."""
        from hydra.types import RunMode
        from omegaconf import ListConfig

        sweeper = hydra_cfg.get("sweeper") or {}
        if hydra_cfg.get("mode") != RunMode.MULTIRUN or sweeper.get("_target_") != SWEEPER:
            return None
        if not prunes(sweeper.get("pruner")) or isinstance(sweeper.direction, ListConfig):
            return None  # nothing to prune for, or a multi-objective search (the sweeper refuses)
        return cls(
            sweeper.storage, sweeper.study_name, int(hydra_cfg.job.num), sweeper.pruner, hydra_cfg
        )

    def report(self, value: float, step: int) -> bool:
        """Record `value` at `step` (the epoch, say); True when the trial should stop now.

        A step at or before one already reported is ignored (the last answer is returned).
        """
        if step <= self.last_step:
            return self.pruned
        trial = self._trial or self._load()
        trial.report(float(value), step)
        self.last_step, self.pruned = step, trial.should_prune()
        return self.pruned

    def _load(self) -> Any:
        import optuna
        from hydra.utils import instantiate

        store = storage(self._storage_cfg, self._hydra_cfg)
        study = optuna.load_study(
            study_name=self.study_name,
            storage=store,
            sampler=optuna.samplers.RandomSampler(),  # this side never samples
            pruner=instantiate(self._pruner_cfg),
        )
        # Trial(study, trial_id) is Optuna's public constructor (what study.optimize passes).
        study_id = store.get_study_id_from_name(self.study_name)
        trial_id = store.get_trial_id_from_study_id_trial_number(study_id, self.number)
        self._trial = optuna.trial.Trial(study, trial_id)
        return self._trial
