"""A search refused before it starts: one line, exit status 2, and nothing left behind.

The sweeper runs outside the task function, where an app such as xor-lightning turns bad
input into `error: ...` and exit status 2; `refuse` does the same here, so a search the
sweeper cannot run reads like any other refused run. By the time the sweeper is asked to
search, the app's Hydra callbacks may have made the sweep dir and locked it (xor-lightning's
run-dir lock: `.lock`), and opening
the storage makes its file, its lock file beside it and their dirs: `Made` notes what
exists beforehand and removes what the refused search made, and only that.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

from hydra.errors import CompactHydraException
from omegaconf import ListConfig

from hydra_plugins.xor_optuna_sweeper.trials import prunes

LOCK_SUFFIX = ".sweeper-lock"  # what `trials.study_lock` adds to a storage file
# A run-dir lock an app's Hydra callback keeps in the sweep dir (xor-lightning's `lock.py`):
# a refused search's sweep dir that holds only this is the search's to remove.
LOCK_FILE = ".lock"
DENIED = {errno.EACCES, errno.EPERM, errno.EROFS}
SQLITE_DENIED = {sqlite3.SQLITE_PERM, sqlite3.SQLITE_READONLY}


class SweeperError(CompactHydraException):
    """A search that stopped (its batch failed, say): Hydra prints the message alone."""


class Refused(SweeperError):
    """A search the sweeper cannot run, found before it starts: `refuse` says it."""


def check(sweeper: Any) -> list[str]:
    """A sweeper's directions; `Refused` for settings its search cannot run with."""
    given = (
        sweeper.direction
        if isinstance(sweeper.direction, (list, ListConfig))
        else [sweeper.direction]
    )
    directions = [getattr(d, "name", str(d)) for d in given]
    if not directions or set(directions) - {"minimize", "maximize"}:
        raise Refused(
            f"hydra.sweeper.direction={sweeper.direction}: use minimize or "
            "maximize, or a list of them (one per value the task returns)"
        )
    if not 0.0 <= sweeper.max_failure_rate <= 1.0:
        raise Refused(
            f"hydra.sweeper.max_failure_rate={sweeper.max_failure_rate}: use a "
            "number from 0.0 to 1.0"
        )
    if sweeper.n_jobs < 1:
        raise Refused(f"hydra.sweeper.n_jobs={sweeper.n_jobs}: use an integer >= 1")
    if sweeper.process_index is not None and sweeper.process_index < 0:
        raise Refused(
            f"hydra.sweeper.process_index={sweeper.process_index}: use an integer >= 0, "
            "or null (the lowest index no live process of the study holds)"
        )
    if not 0 < sweeper.heartbeat_interval < sweeper.grace_period:
        raise Refused(
            f"hydra.sweeper.heartbeat_interval={sweeper.heartbeat_interval}, grace_period="
            f"{sweeper.grace_period}: use 0 < heartbeat_interval < grace_period (seconds)"
        )
    if len(directions) > 1 and prunes(sweeper.pruner):
        raise Refused(
            f"hydra.sweeper.pruner={sweeper.pruner._target_} with {len(directions)} "
            "objectives: Optuna cannot prune a multi-objective search; use "
            "hydra/sweeper/pruner=none"
        )
    return directions


def misfit(study: Any, space: dict[str, Any]) -> Refused | None:
    """A search space that does not fit the trials the study holds (Optuna keeps one kind of
    distribution per parameter in a study), refused; None when it fits. Checked before this
    process registers or asks for a trial: Optuna's own check, in `study.ask`, comes once
    the trial is made, and leaves it RUNNING without parameters."""
    from optuna.distributions import check_distribution_compatibility

    first: dict[str, Any] = {}  # what the storage compares with: a parameter's first record
    for trial in study.get_trials(deepcopy=False):
        for name, dist in trial.distributions.items():
            first.setdefault(name, dist)
    for name in sorted(set(space) & set(first)):
        try:
            check_distribution_compatibility(first[name], space[name])
        except ValueError as e:
            return misfit_refused(study.study_name, space, e)
    return None


def misfit_refused(study_name: str, space: dict[str, Any], e: Exception) -> Refused:
    return Refused(
        f"the search space ({', '.join(space)}) does not fit the trials study "
        f"'{study_name}' already holds ({e}): use another "
        "hydra.sweeper.study_name or hydra.sweep.dir"
    )


class Made:
    """What a refused search may have made: the sweep dir (when it holds nothing but the
    run-dir lock, or is not there yet) and, with `storage`, a storage file, its lock file
    and the dirs above them that did not exist before."""

    def __init__(self, sweep_dir: Path) -> None:
        self.sweep_dir = sweep_dir.absolute()
        self.fresh = not self.sweep_dir.exists() or _only_lock(self.sweep_dir)
        self.files: list[Path] = []
        self.dirs: list[Path] = []

    def storage(self, file: Path | None) -> None:
        """Note what opening the storage kept in `file` (None: no file) would make."""
        if file is None:
            return
        file = file.absolute()
        self.files = [p for p in (file, Path(f"{file}{LOCK_SUFFIX}")) if not p.exists()]
        self.dirs = [d for d in file.parents if not d.exists()]  # deepest first

    def opened(self) -> None:
        """The study is in the storage: its files are the study's now (other processes may
        share them, and hold the lock), not the refused search's to remove."""
        self.files, self.dirs = [], []

    def undo(self) -> None:
        """Remove what the refused search made; a dir only when it is empty."""
        for path in self.files:
            path.unlink(missing_ok=True)
        for d in self.dirs:
            _rmdir(d)
        if self.fresh and self.sweep_dir.is_dir() and _only_lock(self.sweep_dir):
            (self.sweep_dir / LOCK_FILE).unlink(missing_ok=True)
            _rmdir(self.sweep_dir)


def _only_lock(d: Path) -> bool:
    return {p.name for p in d.iterdir()} <= {LOCK_FILE}


def _rmdir(d: Path) -> None:
    with contextlib.suppress(OSError):  # not empty, or gone: not ours to remove
        d.rmdir()


def refuse(refused: Refused, made: Made) -> NoReturn:
    """Undo what the search made and say why it cannot run: `error: <why>`, exit status 2
    (with HYDRA_FULL_ERROR=1, the exception and its traceback, as `run_app` does)."""
    made.undo()
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        raise refused
    print(f"error: {refused}", file=sys.stderr)
    sys.exit(2)


def _causes(e: BaseException) -> Iterator[BaseException]:
    """`e` and what it was raised from or during (SQLAlchemy's `orig` too)."""
    seen: set[int] = set()
    todo = [e]
    while todo:
        cause = todo.pop(0)
        if cause is None or id(cause) in seen:
            continue
        seen.add(id(cause))
        yield cause
        todo += [cause.__cause__, cause.__context__, getattr(cause, "orig", None)]


def denied(e: BaseException, database: str | None) -> str | None:
    """When `e` comes of this user's lacking the right to write the storage, that in one
    line naming the path; None for any other problem. `database`: an SQLite file's."""
    for cause in _causes(e):
        if isinstance(cause, OSError) and cause.errno in DENIED:
            path = str(cause.filename)
            if path.endswith(LOCK_SUFFIX):
                path += ", the study's lock file beside the storage file"
            why = "" if cause.errno == errno.EACCES else f" ({cause.strerror})"
            return f"permission denied: cannot write {path}{why}"
        code = getattr(cause, "sqlite_errorcode", None)
        if isinstance(cause, sqlite3.Error) and code is not None and code & 0xFF in SQLITE_DENIED:
            return f"permission denied: cannot write {database} ({cause})"
    return None


def sqlite_file(url: object) -> str | None:
    """The database an SQLite URL names (as written: `file:` URIs too), to say which file
    may not be written; None for any other storage."""
    if not (isinstance(url, str) and url.startswith("sqlite")):
        return None
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).database
    except Exception:  # not a URL: refused for that
        return None


def storage_refused(storage: object, e: BaseException, database: str | None) -> Refused:
    """The one line that refuses a storage that cannot be opened: a permission problem as
    one, anything else (an unknown database, a file that is not one) with what is allowed."""
    problem = denied(e, database)
    if problem is not None:
        return Refused(
            f"hydra.sweeper.storage={storage}: {problem}; use a storage this user can write "
            "(a file in a directory it may write to, or a database server)"
        )
    first = f"{type(e).__name__}: {e}".splitlines()[0].strip()
    return Refused(
        f"hydra.sweeper.storage={storage}: {first} (use an SQLAlchemy URL such as "
        "sqlite:///study.db, journal:<file>, or a _target_ config)"
    )
