"""DDP: the data split across ranks, and real two-process runs under Hydra (single and -m)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import cli, load, wait_for
from xor_lightning.datamodule import XORDataModule
from xor_lightning.errors import UserError
from xor_lightning.sampler import BatchIndexSampler, Chunk, as_index


def rows_of(sampler: BatchIndexSampler, n: int) -> list[list[int]]:
    """The row indices of every batch the sampler yields."""
    out = []
    for piece in sampler:
        index = as_index(piece.index if isinstance(piece, Chunk) else piece)
        out.append(torch.arange(n)[index].tolist())
    return out


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 60),
    world=st.integers(1, 4),
    batch=st.integers(1, 70),
    shuffle=st.booleans(),
    chunk=st.sampled_from([None, 1, 3]),
    epoch=st.integers(0, 3),
)
def test_ranks_split_the_data(n, world, batch, shuffle, chunk, epoch):
    def shards(pad: bool) -> list[list[list[int]]]:
        out = []
        for rank in range(world):
            s = BatchIndexSampler(n, batch, shuffle, 7, chunk, rank, world, pad)
            s.set_epoch(epoch)
            batches = rows_of(s, n)
            assert len(batches) == len(s)
            out.append(batches)
        return out

    # Evaluation: every point scored exactly once, on one rank.
    seen = sorted(i for shard in shards(pad=False) for b in shard for i in b)
    assert seen == list(range(n))
    # Training: every rank runs the same number of steps on the same number of rows (DDP
    # would hang otherwise), and together they cover every point.
    train = shards(pad=True)
    assert len({len(shard) for shard in train}) == 1
    assert len({sum(map(len, shard)) for shard in train}) == 1
    assert {i for shard in train for b in shard for i in b} == set(range(n))


def test_one_rank_sees_what_a_single_process_sees():
    a = BatchIndexSampler(100, 16, shuffle=True, seed=3, chunk=2)
    b = BatchIndexSampler(100, 16, shuffle=True, seed=3, chunk=2, rank=0, world_size=1, pad=True)
    for s in (a, b):
        s.set_epoch(5)
    assert rows_of(a, 100) == rows_of(b, 100)


def test_more_ranks_than_points_is_refused():
    dm = XORDataModule(n_samples=400, n_val=1)
    dm.trainer = SimpleNamespace(world_size=2, strategy=SimpleNamespace(root_device="cpu"))
    with pytest.raises(UserError, match="val set: 1 points cannot be split across 2 ranks"):
        dm.setup("fit")


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    ckpt = load(run_dir / "checkpoints" / "last.ckpt")
    return {k: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}


@pytest.mark.slow
def test_ddp_run_matches_one_process_and_only_rank_0_writes(tmp_path):
    short = ["trainer.max_epochs=30", "callbacks.boundary_plot=null"]
    single = cli("train", *short, "hydra.run.dir=single", cwd=tmp_path)
    assert single.returncode == 0, single.stderr[-3000:]
    # Rank 0 prints the world size whatever the log level; here the log shows only errors.
    ddp = cli("train", "trainer=ddp", *short, "hydra.job_logging.root.level=ERROR", cwd=tmp_path)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert ddp.stdout.splitlines() == ["world size: 2"]
    [run] = (tmp_path / "outputs" / "runs").iterdir()  # both ranks in one dir, no stray dirs
    assert sorted(p.name for p in (tmp_path / "outputs").iterdir()) == ["runs"]
    # Rank 0 wrote everything; rank 1 only its log. The names match the one-process run's.
    names = {p.name.rsplit(".", 2)[-1] if "tfevents" in p.name else p.name for p in run.iterdir()}
    single_names = {
        p.name.rsplit(".", 2)[-1] if "tfevents" in p.name else p.name
        for p in (tmp_path / "single").iterdir()
    }
    assert names - single_names == {"rank1.log"} and single_names <= names
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == sorted(
        p.name for p in (tmp_path / "single" / "checkpoints").iterdir()
    )
    # Full batch split in two halves, gradients averaged: the same run as one process,
    # and metrics reduced over both ranks (each rank alone scores only half the points).
    a, b = weights(tmp_path / "single"), weights(run)
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    m1 = json.loads((tmp_path / "single" / "metrics.json").read_text())
    m2 = json.loads((run / "metrics.json").read_text())
    assert m1 == pytest.approx(m2, abs=1e-5)


@pytest.mark.slow
def test_ddp_inside_a_multirun_keeps_each_job_in_its_dir(tmp_path):
    proc = cli(
        "train", "-m", "trainer=ddp", "model.hidden=4,8", "trainer.max_epochs=20",
        "data.batch_size=64", "logger=none", cwd=tmp_path,  # mini-batches: 4 steps per epoch
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("world size: 2") == 2
    assert sorted(p.name for p in (tmp_path / "outputs").iterdir()) == ["multirun"]
    [sweep] = (tmp_path / "outputs" / "multirun").iterdir()
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]
    for job in ("0", "1"):
        assert json.loads((sweep / job / "job.json").read_text())["status"] == "ok"
        assert (sweep / job / "metrics.json").is_file() and (sweep / job / "rank1.log").is_file()
        ckpt = load(sweep / job / "checkpoints" / "last.ckpt")
        assert ckpt["global_step"] == 20 * 4  # 400 points, 200 per rank, batches of 64
    summary = (sweep / "summary.csv").read_text()
    assert summary.count(",ok,") == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (NCCL)")
def test_ddp_on_gpus_with_nccl(tmp_path):
    n = torch.cuda.device_count()
    proc = cli(
        "train", "trainer=ddp", "trainer.accelerator=gpu", f"trainer.devices={n}",
        "trainer.max_epochs=30", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"world size: {n}" in proc.stdout
    [run] = (tmp_path / "outputs" / "runs").iterdir()
    assert (run / "metrics.json").is_file()


def test_an_untested_strategy_is_refused(make_cfg):
    from xor_lightning.validate import validate_train

    with pytest.raises(UserError, match=r"trainer.strategy='fsdp' is not allowed: use one of auto"):
        validate_train(make_cfg("+trainer.strategy=fsdp"))


@pytest.mark.slow
def test_sigterm_to_rank_0_stops_every_rank_and_the_run_resumes(tmp_path):
    run_dir = tmp_path / "run"
    last = run_dir / "checkpoints" / "last.ckpt"
    cmd = [sys.executable, "-m", "xor_lightning.train", "trainer=ddp", "trainer.max_epochs=100000",
           "logger=none", "callbacks.boundary_plot=null", f"hydra.run.dir={run_dir}"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(last, proc)
    proc.send_signal(signal.SIGTERM)  # rank 0 only, as `kill <pid>` would
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "Resume with: xor-train resume=" in out and "Traceback" not in err
    time.sleep(1)
    assert not any(str(run_dir) in cmdline(pid) for pid in os.listdir("/proc") if pid.isdigit())
    stopped = load(last)["global_step"]
    resumed = cli("train", f"resume={run_dir}", "trainer.max_epochs=" + str(stopped + 20),
                  cwd=tmp_path)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "world size: 2" in resumed.stdout
    assert load(last)["global_step"] == stopped + 20


def cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def test_lightning_still_starts_ranks_through_the_function_ddp_py_replaces():
    import inspect

    from lightning.pytorch.strategies.launchers import subprocess_script as launcher

    from xor_lightning.ddp import child_command, job_dir_for_ranks

    # Lightning's launcher looks the function up by this name each time it starts ranks,
    # with this signature, so replacing the module attribute is enough.
    calls = launcher._SubprocessScriptLauncher._call_children_scripts.__code__.co_names
    assert "_hydra_subprocess_cmd" in calls
    original = launcher._hydra_subprocess_cmd
    assert list(inspect.signature(original).parameters) == list(
        inspect.signature(child_command).parameters
    )
    with pytest.raises(RuntimeError, match="inside"), job_dir_for_ranks():
        assert launcher._hydra_subprocess_cmd is child_command
        raise RuntimeError("inside")
    assert launcher._hydra_subprocess_cmd is original  # put back, even after an error


def test_a_lightning_without_it_is_refused_in_one_line(monkeypatch):
    import lightning
    from lightning.pytorch.strategies.launchers import subprocess_script as launcher

    from xor_lightning.ddp import job_dir_for_ranks

    monkeypatch.delattr(launcher, "_hydra_subprocess_cmd")
    message = rf"_hydra_subprocess_cmd, which lightning {lightning.__version__} no longer has"
    with pytest.raises(UserError, match=message), job_dir_for_ranks():
        pass


def test_each_rank_of_a_search_trial_is_one_run(tmp_path):
    """A trial of `hparams_search=xor_optuna` (whose config sets hydra.mode: MULTIRUN) with
    trainer=ddp: the command that starts its other ranks runs one job, not a new search."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import open_dict

    from xor_lightning.config import CONF_DIR
    from xor_lightning.ddp import child_command

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        trial = compose("train", ["hparams_search=xor_optuna", "trainer=ddp"],
                        return_hydra_config=True)  # fmt: skip
        assert trial.hydra.mode == RunMode.MULTIRUN
        with open_dict(trial):
            trial.hydra.runtime.output_dir = trial.hydra.runtime.cwd = str(tmp_path)
        HydraConfig.instance().set_config(trial)
        command, _ = child_command(1)
        rank = compose("train", [o.replace('"', "") for o in command[3:]],
                       return_hydra_config=True)  # fmt: skip
    assert rank.hydra.mode == RunMode.RUN and rank.hydra.run.dir == str(tmp_path)
