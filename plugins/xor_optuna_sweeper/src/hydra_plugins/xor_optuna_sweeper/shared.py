"""One study, many sweeper processes: who owns a running trial, and when another may take it.

Several processes (or SLURM tasks) may run the same search on one storage. Each registers
itself in the study (a study system attribute `xor:process:<token>`: host, boot id, pid
namespace, pid, the pid's start time, its index, a heartbeat) and marks every trial it asks
for as its own (trial system attribute `xor:owner`). A RUNNING trial whose owner is gone
(it ended, by Ctrl-C say; its pid is dead, where that pid is one of this process's pid
namespace; or, elsewhere, its heartbeat is older than the grace period) is taken over: set
back to WAITING, which keeps its number and parameters, so the next `study.ask` pops it
and the sweeper launches it again as the same job.

A host name alone does not say where a pid is valid: containers run with `--uts=host`
and pods with `hostNetwork` share the host's name, each in a pid namespace of its own,
where a live process's pid may not exist or be another's. So only an entry whose host
name, boot id and pid namespace all match this process's is judged by its pid.

`StudyLock` serialises what must not interleave between processes (creating the storage,
registering, taking over and asking for trials against the budget): an `fcntl` lock beside
an SQLite or journal file (POSIX locks, as SQLite's own, work on NFS), dropped by the
kernel when its holder dies, even by `kill -9`.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf, open_dict

log = logging.getLogger(__name__)
OWNER = "xor:owner"  # trial system attr: the token of the process that runs it
SWEEP_DIR = "xor:sweep_dir"  # trial system attr: the sweep dir its job runs in
PROCESS = "xor:process:"  # study system attr prefix: one entry per sweeper process


def _started(pid: int) -> str | None:
    """The start time of a process on this host (Linux `/proc`), to tell a reused pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def _where() -> dict[str, str | None]:
    """Where this process's pid means something: its host name, the machine's boot id (a
    pid from before a reboot is no one's) and its pid namespace (Linux; None elsewhere)."""
    try:
        boot: str | None = BOOT_ID.read_text().strip()
    except OSError:
        boot = None
    try:
        pidns: str | None = os.readlink("/proc/self/ns/pid")
    except OSError:
        pidns = None
    return {"host": socket.gethostname(), "boot": boot, "pidns": pidns}


def _pid_alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    return started is None or _started(pid) in (None, started)


class Process:
    """This sweeper process's entry in a study, kept alive by a heartbeat thread."""

    def __init__(self, study: Any, storage: Any, interval: float, grace: float) -> None:
        self.study, self.storage, self.interval, self.grace = study, storage, interval, grace
        self.study_id = storage.get_study_id_from_name(study.study_name)
        self.token = uuid.uuid4().hex
        self.index = 0
        self.entry = {**_where(), "pid": os.getpid(), "started": _started(os.getpid())}
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def _write(self, **changes: Any) -> None:
        self.entry.update(changes)
        key = PROCESS + self.token
        self.storage.set_study_system_attr(self.study_id, key, self.entry)

    def others(self) -> dict[str, dict[str, Any]]:
        attrs = self.storage.get_study_system_attrs(self.study_id)
        return {k.removeprefix(PROCESS): v for k, v in attrs.items() if k.startswith(PROCESS)}

    def alive(self, entry: dict[str, Any] | None, now: float) -> bool:
        """Whether the process an entry describes still runs (its trials are its own): by
        its pid where its pid is valid here (`here`), otherwise by its heartbeat."""
        if not entry or entry.get("ended"):
            return False
        if self.here(entry):
            return _pid_alive(int(entry["pid"]), entry.get("started"))
        return now - float(entry["beat"]) <= self.grace

    def here(self, entry: dict[str, Any]) -> bool:
        """Whether an entry's pid is one in this process's pid namespace, on this boot of
        this machine. A field that is missing (an entry written by an earlier version) or
        unknown here (no /proc) does not count as a match: the heartbeat decides."""
        return all(
            self.entry[k] is not None and entry.get(k) == self.entry[k]
            for k in ("host", "boot", "pidns")
        )

    def register(self, index: int | None) -> tuple[int, int]:
        """Join the study (under the study lock) with `index`, or the lowest index no live
        process holds; start the heartbeat. The index and the trials that earlier processes
        with that index asked for (ownerless ones count for index 0), which seed this
        process's sampler: processes differ, and a resumed process does not replay."""
        now, entries = time.time(), self.others()
        taken = {int(e["index"]) for e in entries.values() if self.alive(e, now)}
        self.index = index if index is not None else min(set(range(len(taken) + 1)) - taken)
        mine = {token for token, e in entries.items() if int(e["index"]) == self.index}
        if self.index == 0:
            mine.add(None)
        done = sum(t.system_attrs.get(OWNER) in mine for t in self.study.get_trials(deepcopy=False))
        self._write(index=self.index, beat=now)
        self._beat = threading.Thread(target=self._heartbeat, daemon=True, name="xor-heartbeat")
        self._beat.start()
        return self.index, done

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._write(beat=time.time())
            except Exception as e:  # a missed beat only lets others take over sooner
                log.warning(f"heartbeat of the sweeper process not recorded: {e}")

    def end(self) -> None:
        """Leave the study: the trials it still holds may be taken over at once."""
        self._stop.set()
        with contextlib.suppress(Exception):
            self._write(ended=True)

    def own(self, trial: Any, sweep_dir: Path) -> Path | None:
        """Mark a trial just asked for as this process's. None for a new trial (it runs in
        this process's sweep dir); for one taken over, the sweep dir its job ran in."""
        trial_id = self._id(trial.number)
        before = self.storage.get_trial(trial_id).system_attrs.get(SWEEP_DIR)
        self.storage.set_trial_system_attr(trial_id, OWNER, self.token)
        if before is None:
            self.storage.set_trial_system_attr(trial_id, SWEEP_DIR, str(sweep_dir.resolve()))
        return Path(before) if before else None

    def _id(self, number: int) -> int:
        return self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)

    def take_over(self) -> int:
        """Put back the RUNNING trials whose owner is gone (to WAITING: the next ask pops
        them with their number and parameters); fail the ones no sweeper process owns
        (re-asking their parameters). Call under the study lock. How many were put back."""
        import optuna

        from hydra_plugins.xor_optuna_sweeper import record

        state = optuna.trial.TrialState
        processes, now = self.others(), time.time()
        back = 0
        for t in self.study.get_trials(deepcopy=False, states=(state.RUNNING,)):
            owner = t.system_attrs.get(OWNER)
            if owner is None:  # not asked by this sweeper: nothing to resume it from
                record.fail(self.study, t.number)
                if t.params:
                    self.study.enqueue_trial(t.params, user_attrs=t.user_attrs)
                log.warning(f"trial {t.number} was left running by an unknown process: failed")
            elif owner != self.token and not self.alive(processes.get(owner), now):
                self.storage.set_trial_state_values(self._id(t.number), state=state.WAITING)
                back += 1
        if back:
            log.info(f"{back} trial(s) left running by a process that is gone: resuming them")
        return back


def resume_overrides(config: Any, number: int, trial_dir: Path, job: list[str]) -> list[str]:
    """The overrides that continue a trial taken over (its `job` overrides so far) in its own
    job dir: its sweep dir (another process's), and with the basic, joblib or submitit
    launcher its last.ckpt, when that dir holds this same job (its `.hydra/overrides.yaml`).
    The vectorised launcher resumes an interrupted job by itself."""
    mine = Path(config.hydra.sweep.dir).resolve()
    extra = [f"hydra.sweep.dir={trial_dir}"] if trial_dir != mine else []
    launcher = str(config.hydra.launcher.get("_target_", ""))
    if "ckpt_path" not in config or "xor_vectorized_launcher" in launcher:
        return extra
    cfg = copy.deepcopy(config)
    OmegaConf.set_readonly(cfg.hydra, False)
    with open_dict(cfg.hydra):
        cfg.hydra.job.num = number
        try:
            job_dir = trial_dir / str(OmegaConf.select(cfg, "hydra.sweep.subdir"))
        except Exception:  # a subdir made of what only the job knows: train it afresh
            return extra
    last, ran = job_dir / "checkpoints" / "last.ckpt", job_dir / ".hydra" / "overrides.yaml"
    if not (last.is_file() and ran.is_file()):
        return extra
    before = [o for o in OmegaConf.load(ran) if not str(o).startswith("ckpt_path=")]
    if before != [o for o in job if not o.startswith("hydra.")]:
        log.warning(f"{job_dir} holds another job than trial {number}: it trains afresh")
        return extra
    log.info(f"trial {number} continues from {last}")
    return [*extra, f"ckpt_path={last}"]
