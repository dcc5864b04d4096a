"""One writer per run dir: the lock, a refused second process, and the first run unharmed."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig

from tests.conftest import cli, load, wait_for
from xor_lightning.config import CONF_DIR
from xor_lightning.lock import RunDirLock

HOLD = "import sys, time; from xor_lightning.lock import acquire; " \
       "fd, _ = acquire(__import__('pathlib').Path(sys.argv[1])); print(fd, flush=True); " \
       "time.sleep(120)"  # fmt: skip

REFUSED = (
    "error: {run} is in use by another run (pid {pid}): wait for it to end, or stop it first "
    "(Ctrl-C saves last.ckpt); nothing was changed\n"
)


@pytest.fixture(autouse=True)
def keep_hydra_config():
    """The callback sets Hydra's global config, as in a run: put back the one before."""
    before = HydraConfig.instance().cfg
    yield
    HydraConfig.instance().cfg = before


@pytest.fixture
def holder(tmp_path):
    """Another process holding the lock on tmp_path/run, as a running xor-train would."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "run")],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout.readline().strip().isdigit()  # it holds the lock now
    yield proc
    proc.kill()
    proc.wait()


def hydra_config(*overrides: str):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("train", list(overrides), return_hydra_config=True)


def files(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in d.rglob("*") if p.is_file()}


@pytest.mark.parametrize("mode", ["run", "multirun"])
def test_a_dir_in_use_is_refused_in_one_line_naming_the_holder(tmp_path, holder, capsys, mode):
    run = tmp_path / "run"
    cfg = hydra_config(f"hydra.run.dir={run}", f"hydra.sweep.dir={run}")
    before = files(run)
    with pytest.raises(SystemExit) as exit_:
        getattr(RunDirLock(), f"on_{mode}_start")(config=cfg)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err == REFUSED.format(run=run, pid=holder.pid)
    assert files(run) == before  # the holder's pid, as it wrote it


@pytest.mark.parametrize("mode", ["run", "multirun"])
def test_a_dir_that_cannot_be_made_is_refused_in_one_line(tmp_path, capsys, mode):
    """A run or sweep dir under a regular file: `error: hydra.<mode>.dir=... cannot be
    written`, naming the file in the way, exit 2, no traceback, nothing written."""
    (tmp_path / "notes").write_text("mine\n")
    where = tmp_path / "notes" / "run"
    key = "hydra.run.dir" if mode == "run" else "hydra.sweep.dir"
    cfg = hydra_config(f"{key}={where}")
    with pytest.raises(SystemExit) as exit_:
        getattr(RunDirLock(), f"on_{mode}_start")(config=cfg)
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (
        f"error: {key}={where} cannot be written: {tmp_path / 'notes'} is a file, not a dir; "
        "give a dir this user can make and write\n"
    )
    assert files(tmp_path) == {"notes": b"mine\n"}


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_dir_without_permission_is_refused_in_one_line(tmp_path, capsys):
    tmp_path.joinpath("closed").mkdir(mode=0o500)
    cfg = hydra_config(f"hydra.run.dir={tmp_path / 'closed' / 'run'}")
    with pytest.raises(SystemExit) as exit_:
        RunDirLock().on_run_start(config=cfg)
    assert exit_.value.code == 2
    assert capsys.readouterr().err.endswith(
        "cannot be written: Permission denied; give a dir this user can make and write\n"
    )


def test_a_lock_left_by_a_killed_process_does_not_block(tmp_path, holder):
    holder.kill()
    holder.wait()
    lock = RunDirLock()
    lock.on_run_start(config=hydra_config(f"hydra.run.dir={tmp_path / 'run'}"))
    assert (tmp_path / "run" / ".lock").read_text() == f"{os.getpid()}\n"
    lock.on_run_end(config=None)


def test_other_ddp_ranks_work_in_rank_0s_dir(tmp_path, holder, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")  # how Lightning starts rank 1
    RunDirLock().on_run_start(config=hydra_config(f"hydra.run.dir={tmp_path / 'run'}"))


@pytest.mark.slow
def test_resume_of_a_running_run_is_refused_and_the_run_goes_on(tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "xor_lightning.train", "debug=quick", "trainer.max_epochs=100",
           "logger=none", "callbacks.boundary_plot=null", f"hydra.run.dir={run}"]  # fmt: skip
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(run / "checkpoints" / "last.ckpt", first)
    first.send_signal(signal.SIGSTOP)  # hold it still, so that any change is the second's
    try:
        before = {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in run.rglob("*")}
        second = cli("train", f"resume={run}", cwd=tmp_path)
        after = {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in run.rglob("*")}
    finally:
        first.send_signal(signal.SIGCONT)
    assert second.returncode == 2 and second.stdout == ""
    assert second.stderr == REFUSED.format(run=run, pid=first.pid)
    assert after == before
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-2000:]
    assert load(run / "checkpoints" / "last.ckpt")["global_step"] == 100
    assert (run / "metrics.json").is_file()


def test_each_sweep_job_holds_its_dir_until_it_ends(tmp_path):
    from hydra.types import RunMode
    from omegaconf import open_dict

    from xor_lightning.lock import acquire

    cfg = hydra_config("hydra.mode=MULTIRUN")
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(tmp_path / "0")
    assert cfg.hydra.mode == RunMode.MULTIRUN
    lock = RunDirLock()
    lock.on_job_start(config=cfg, task_function=None)
    probe = (
        "import sys; from pathlib import Path; from xor_lightning.lock import acquire; "
        "print(acquire(Path(sys.argv[1]))[1])"
    )
    held = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "0")],
                          capture_output=True, text=True)  # fmt: skip
    assert held.stdout.strip() == str(os.getpid())  # another process is told who holds it
    lock.on_job_end(config=cfg, job_return=None)
    fd, _ = acquire(tmp_path / "0")  # free again
    assert fd is not None
