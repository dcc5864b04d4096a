"""Ctrl-C outside a vectorised sweep's fits (`xor_vectorized/interrupts.py`): while the jobs are
composed, while their dirs are written, between fits and in a job run alone. Each sweep
runs in a process of its own that sends itself SIGINT at one such point (the patch below),
as a user's Ctrl-C would arrive: one line, the summary of what finished, exit 130, nothing
half-written, and the same command then finishes the sweep."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import cli

# Tests of a capability around the core: `make test` runs them, `make test-fast` does not.
pytestmark = pytest.mark.slow

# Patches the point named by the first argument to send SIGINT to this process, then runs
# xor-train with the remaining arguments.
RUN = """
import os, signal, sys
point, sys.argv = sys.argv[1], ["xor-train", *sys.argv[2:]]

def after(owner, name):  # one Ctrl-C, after the first call
    original, sent = getattr(owner, name), []
    def patched(*args, **kwargs):
        out = original(*args, **kwargs)
        if not sent:
            sent.append(os.kill(os.getpid(), signal.SIGINT))
        return out
    setattr(owner, name, patched)

if point == "prepare":  # (Hydra loads its plugins' modules anew: patch what they call)
    from xor_vectorized import groups
    after(groups, "stack_problem")
elif point == "hydra_files":
    from xor_vectorized import run
    after(run, "write_hydra_files")
elif point == "job_dirs":
    from xor_vectorized import run
    after(run, "write_group")
elif point == "alone":
    from xor_lightning import callbacks
    after(callbacks.GracefulStop, "on_train_start")
from xor_lightning.train import main
main()
"""
VEC = ("hydra/launcher=vectorized", "logger=none", "trainer.max_epochs=3")


def stopped_at(point: str, d: Path, *overrides: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-c", RUN, point, "-m", *VEC, *overrides,
                           f"hydra.sweep.dir={d}"], cwd=d.parent, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 128 + signal.SIGINT, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    return proc


def rows(d: Path) -> dict[str, str]:
    with open(d / "summary.csv", newline="") as f:
        return {r["job"]: r["status"] for r in csv.DictReader(f)}


def finish(d: Path, *overrides: str) -> dict[str, str]:
    """The same command again, uninterrupted: every job's status."""
    proc = cli("train", "-m", *VEC, *overrides, f"hydra.sweep.dir={d}", cwd=d.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return rows(d)


def test_ctrl_c_while_the_jobs_are_composed_writes_nothing(tmp_path):
    d = tmp_path / "s"
    proc = stopped_at("prepare", d, "seed=1,2")
    assert "SIGINT: stopped between jobs, nothing half-written" in proc.stderr + proc.stdout
    assert not [p for p in d.iterdir() if p.name not in (".lock", "multirun.yaml")]


@pytest.mark.slow
def test_ctrl_c_while_job_dirs_are_written_leaves_each_whole(tmp_path):
    d = tmp_path / "s"
    stopped_at("hydra_files", d, "seed=1,2,3")  # after job 0's .hydra/ files
    for job in ("0", "1", "2"):  # every job's files written whole, none trained
        assert sorted(p.name for p in (d / job / ".hydra").iterdir()) == [
            "config.yaml", "hydra.yaml", "overrides.yaml"]  # fmt: skip
        assert not (d / job / "job.json").exists()
    assert finish(d, "seed=1,2,3") == {"0": "ok", "1": "ok", "2": "ok"}


@pytest.mark.slow
def test_ctrl_c_between_fits_keeps_the_finished_fit_and_its_summary(tmp_path):
    d = tmp_path / "s"
    grid = ("seed=1,2", "data.batch_size=null,4")  # two groups: two fits
    proc = stopped_at("job_dirs", d, *grid)  # while the first fit's job dirs are written
    assert "written: " in proc.stderr + proc.stdout  # the summary of what finished
    done = rows(d)
    assert sorted(done.values()) == ["ok", "ok"]  # the first fit's two jobs, whole
    for job in done:
        assert (d / job / "metrics.json").is_file()
    again = finish(d, *grid)
    assert again == {"0": "ok", "1": "ok", "2": "ok", "3": "ok"}


@pytest.mark.slow
def test_ctrl_c_in_a_job_run_alone_stops_the_sweep_with_its_summary(tmp_path):
    d = tmp_path / "s"
    alone = ("seed=1,2", "scheduler=cosine")  # a schedule: each job runs alone
    stopped_at("alone", d, *alone)
    assert rows(d) == {"0": "interrupted"}  # job 1 not started
    assert (d / "0" / "checkpoints" / "last.ckpt").is_file()
    assert finish(d, *alone) == {"0": "ok", "1": "ok"}


def test_held_signals_are_those_of_a_stop():
    from xor_vectorized.interrupts import Held

    held = Held()
    assert not held.take(0) and not held.take(1) and not held.take("error")
    assert held.take(128 + signal.SIGTERM) and held.signal == signal.SIGTERM


def test_forked_writers_end_when_their_pool_does_while_signals_are_held():
    """A worker idle at the end of `fork_map` is ended by `Pool.terminate` (SIGTERM) even
    while the sweep holds SIGTERM: the parent's handler is not the workers'."""
    code = ("from xor_vectorized.forks import fork_map\n"
            "from xor_vectorized.interrupts import HELD\n"
            "with HELD.holding():\n"
            "    for _ in range(5):\n"
            "        assert fork_map(abs, [-1, -2], workers=2) == [1, 2]\n")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
