"""One writer per run dir: a second `xor-train` on a dir in use is refused, changing nothing.

`RunDirLock` is a Hydra callback. In a single run it takes the lock in `on_run_start`,
before Hydra makes the run dir, writes `.hydra/` or opens the log, so a refused process
leaves the dir exactly as it was. A multirun locks its sweep dir the same way, and each
job its own dir when it starts (so `resume=<sweep dir>/<job>` waits for the sweep). The lock
is `flock` on `<dir>/.lock`, which holds the pid of its holder: the kernel drops it when
that process ends, even by `kill -9`, so a stale file never blocks a resume. The other DDP
ranks of a job work in rank 0's dir under rank 0's lock.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, read_write

from xor_lightning.errors import UserError, refuse

LOCK_FILE = ".lock"


def secondary_rank() -> bool:
    """A DDP rank other than 0, started by Lightning (LOCAL_RANK), torchrun (RANK) or SLURM."""
    return any(
        os.environ.get(k, "0") not in ("", "0") for k in ("LOCAL_RANK", "RANK", "SLURM_PROCID")
    )


def acquire(run_dir: Path) -> tuple[int | None, str]:
    """Lock `run_dir` (made if missing): (the open file holding the lock, "") or, when a
    live process holds it, (None, that process's pid as written in the lock file)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        return None, holder
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd, ""


_HELD: dict[Path, list[int]] = {}  # dir -> [open file, holds]: the locks this process holds


def hold(run_dir: Path) -> str | None:
    """Lock `run_dir` for this process, or count one more hold of a lock it has already (a
    vectorised sweep's launcher and the `RunDirLock` callback both hold a job's dir).
    None when held; the pid of the live process holding it otherwise."""
    key = run_dir.resolve()  # one key per dir, however it is spelled
    if key in _HELD:
        _HELD[key][1] += 1
        return None
    fd, holder = acquire(key)
    if fd is None:
        return holder
    _HELD[key] = [fd, 1]
    return None


def let_go(run_dir: Path) -> None:
    """One hold of `run_dir` fewer; the last one closes the file, which drops the lock."""
    key = run_dir.resolve()  # one key per dir, however it is spelled
    entry = _HELD.get(key)
    if entry is None:
        return
    entry[1] -= 1
    if entry[1] == 0:
        del _HELD[key]
        os.close(entry[0])


def in_use(run_dir: Path, holder: str) -> str:
    return (
        f"{run_dir} is in use by another run (pid {holder}): wait for it to end, or "
        "stop it first (Ctrl-C saves last.ckpt); nothing was changed"
    )


def unwritable(run_dir: Path, error: OSError) -> str:
    """Why `run_dir` cannot be made or written, in words: the file in its way (a path
    under a regular file), or the system's reason (no permission, say)."""
    for path in (run_dir, *run_dir.parents):
        if path.exists() or path.is_symlink():
            if not path.is_dir():
                return f"{path} is a file, not a dir"
            break
    return f"{error.strerror or type(error).__name__}"


class RunDirLock(Callback):
    """Hydra callback: hold the lock on the run dir (or sweep dir) while the run lasts."""

    def __init__(self) -> None:
        self._held: list[Path] = []

    def _take(self, run_dir: Path) -> None:
        holder = hold(run_dir)
        if holder is not None:
            raise UserError(in_use(run_dir, holder))
        self._held.append(run_dir)

    def _release(self, run_dir: Path) -> None:
        if run_dir in self._held:
            self._held.remove(run_dir)
            let_go(run_dir)

    def _take_or_exit(self, config: DictConfig, key: str) -> None:
        # Resolved once and pinned, so the dir locked is the dir Hydra uses (`${now:}`).
        HydraConfig.instance().set_config(config)  # for `${hydra:...}` in the dir's name
        run_dir = Path(str(OmegaConf.select(config, key))).absolute()
        parent, name = key.rsplit(".", 1)
        with read_write(OmegaConf.select(config, parent)):
            OmegaConf.select(config, parent)[name] = str(run_dir)
        try:
            try:
                self._take(run_dir)
            except OSError as e:  # under a regular file, no permission: said in one line
                raise UserError(f"{key}={run_dir} cannot be written: {unwritable(run_dir, e)}; "
                                "give a dir this user can make and write") from None  # fmt: skip
        except UserError as e:  # before Hydra's logging exists: stderr, like run_app
            refuse(e)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not secondary_rank():
            self._take_or_exit(config, "hydra.run.dir")

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        for run_dir in list(self._held):
            self._release(run_dir)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._take_or_exit(config, "hydra.sweep.dir")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self.on_run_end(config)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        # A sweep's job, in whatever process runs it (Hydra has just made its dir). A
        # refusal here becomes Hydra's warning: another sweep is already refused above.
        if config.hydra.mode == RunMode.MULTIRUN and not secondary_rank():
            self._take(Path(config.hydra.runtime.output_dir))

    def on_job_end(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.mode == RunMode.MULTIRUN:
            self._release(Path(config.hydra.runtime.output_dir))
