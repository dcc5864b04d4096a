"""Large vectorised fits without a dir per job (`stacked/compact.py`, `xor-unpack`)."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import cli, compose_train, curves, load
from tests.test_vectorized import VEC, same_checkpoint, sweep
from xor_lightning.checkpoint import relocate

GRID = ("model.hidden=3,8", "seed=1,2", "trainer.max_epochs=30")
PACKED = "hydra.launcher.job_dirs_up_to=3"  # a fit of 4 models: more than 3, no job dirs


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[Path, Path]:
    """The same four jobs, one fit each way: with job dirs (`full`) and without (`packed`)."""
    tmp = tmp_path_factory.mktemp("pair")
    full, packed = tmp / "full", tmp / "packed"
    sweep(*GRID, f"hydra.sweep.dir={full}", cwd=tmp, logger="tensorboard")
    sweep(*GRID, PACKED, f"hydra.sweep.dir={packed}", cwd=tmp, logger="tensorboard")
    return full, packed


def table(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


@pytest.mark.slow
def test_a_fit_above_the_size_writes_its_tables_and_one_fit_dir(pair):
    full, packed = pair
    assert sorted(p.name for p in packed.iterdir() if p.name.isdigit()) == []
    fit = packed / "fits" / "fit0"
    assert sorted(p.name for p in fit.iterdir()) == [".lock", "curves.parquet", "fit.pt",
                                                     "jobs.json"]  # fmt: skip
    assert sorted(p.name for p in full.iterdir() if p.name.isdigit()) == ["0", "1", "2", "3"]
    # the same fit, so the same numbers: rows and curves equal those read from job dirs
    rows, theirs = (
        [{k: v for k, v in r.items() if k != "wall_s"} for r in table(d / "results.parquet")]
        for d in (packed, full)
    )
    assert rows == theirs
    assert [r["status"] for r in rows] == ["ok"] * 4 and rows[3]["model.hidden"] == 8
    assert table(packed / "curves.parquet") == table(full / "curves.parquet")
    # a small fit: each job's train loss, acc and lr every epoch, val every 10, best, test
    assert len(table(packed / "curves.parquet")) == 4 * (30 * 3 + 3 * 2 + 2 + 2)
    assert (packed / "tb" / "fit0" / "mean").is_dir()  # the fit's TensorBoard summary


def _same_file_text(a: Path, b: Path, old: str, new: str) -> None:
    assert a.read_text().replace(old, new) == b.read_text(), a.name


@pytest.mark.slow
def test_xor_unpack_writes_a_job_dir_equal_to_the_full_output(pair, tmp_path):
    full, packed = pair
    proc = subprocess.run([sys.executable, "-m", "xor_lightning.tools.unpack", str(packed), "2"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == [str((packed / "2").resolve())]
    mine, theirs = packed / "2", full / "2"
    old, new = str(packed.resolve()), str(full.resolve())
    names = lambda d: sorted(p.name for p in (d / "checkpoints").iterdir())  # noqa: E731
    assert names(mine) == names(theirs) and len(names(mine)) == 2  # best and last
    for name in names(theirs):
        same_checkpoint(load(theirs / "checkpoints" / name),
                        relocate(load(mine / "checkpoints" / name), old, new))  # fmt: skip
    assert json.loads((mine / "metrics.json").read_text()) == json.loads(
        (theirs / "metrics.json").read_text()
    )
    for name in ("config.yaml", "overrides.yaml"):
        _same_file_text(mine / ".hydra" / name, theirs / ".hydra" / name, old, new)
    hydra = [yaml.safe_load((d / ".hydra" / "hydra.yaml").read_text()) for d in (mine, theirs)]
    assert relocate(hydra[0], old, new)["hydra"]["job"] == hydra[1]["hydra"]["job"]
    _same_file_text(mine / "hparams.yaml", theirs / "hparams.yaml", old, new)
    record = [json.loads((d / "job.json").read_text()) for d in (mine, theirs)]
    for r in record:
        r.pop("wall_s"), r["vectorized"].pop("fit_s")
    assert record[0] == record[1]
    assert curves(mine) == curves(theirs)  # TensorBoard's per-job runs
    # the unpacked job is a run like any other: it evaluates
    best = next((mine / "checkpoints").glob("best-*.ckpt"))
    ev = cli("tools.evaluate", f"ckpt_path={best}", f"hydra.run.dir={tmp_path}/ev", cwd=tmp_path)
    assert ev.returncode == 0, ev.stderr[-2000:]
    # a job it does not hold: one line, exit 2
    bad = subprocess.run([sys.executable, "-m", "xor_lightning.tools.unpack", str(packed), "9"],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        f"error: job 9 is not in a fit without job dirs under {packed} (its jobs: 0-3)"
    ]


@pytest.mark.slow
def test_a_rerun_keeps_finished_jobs_and_trains_changed_ones(tmp_path):
    d = tmp_path / "s"
    common = ("trainer.max_epochs=10", "hydra.launcher.job_dirs_up_to=0", f"hydra.sweep.dir={d}")
    sweep("seed=1,2", "model.optimizer.lr=0.05", *common, cwd=tmp_path)
    first = table(d / "results.parquet")
    proc = sweep("seed=1,3", "model.optimizer.lr=0.05,-1", *common, cwd=tmp_path)
    assert "1 job(s) finished in an earlier launch of this sweep: kept" in proc.stdout
    rows = {r["job"]: r for r in table(d / "results.parquet")}
    assert rows[0] == first[0]  # seed=1 lr=0.05: kept
    assert rows[2]["seed"] == 3 and rows[2]["status"] == "ok"  # job 2 changed: trained anew
    assert rows[1]["status"] == "failed" and "model.optimizer.lr" in rows[1]["error"]
    assert (d / "1" / "job.json").is_file()  # a refused job keeps its dir, as in any sweep
    assert sorted(p.name for p in (d / "fits").iterdir()) == ["fit0", "fit2"]


@pytest.mark.slow
def test_ctrl_c_leaves_the_fit_resumable_and_the_rerun_finishes_it(tmp_path):
    d = tmp_path / "s"
    args = ("seed=1,2", "trainer.max_epochs=300", "hydra.launcher.job_dirs_up_to=1",
            f"hydra.sweep.dir={d}")  # fmt: skip
    log = tmp_path / "log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "xor_lightning.train", "-m", VEC,
                                 "logger=none", *args], cwd=tmp_path, stdout=out,
                                stderr=subprocess.STDOUT)  # fmt: skip
        while "epoch    0" not in log.read_text():
            assert proc.poll() is None
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=120) == 128 + signal.SIGINT
    fit = d / "fits" / "fit0"
    step = load(fit / "last.ckpt")["global_step"]
    assert 0 < step < 300
    assert {r["status"] for r in table(d / "results.parquet")} == {"interrupted"}
    proc = sweep(*args, cwd=tmp_path)
    assert "resumed from its last.ckpt" in proc.stdout
    assert not (fit / "last.ckpt").exists()  # finished: nothing left to resume
    rows = table(d / "results.parquet")
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert [r["best_epoch"] is not None for r in rows] == [True, True]
    # the curves run from epoch 0 to the last, across the interruption
    points = [r for r in table(d / "curves.parquet") if r["stage"] == "val" and r["job"] == 0]
    assert sorted(r["epoch"] for r in points if r["metric"] == "acc") == list(range(9, 300, 10))


def test_periodic_saves_leave_the_fit_resumable_after_a_kill(tmp_path):
    """`last_every_n_epochs` with a fit without job dirs: the stacked module's own
    checkpoint every n epochs, holding the curves so far, which a new fit resumes from."""
    from omegaconf import OmegaConf

    from xor_lightning.stacked.compact import PeriodicLast
    from xor_lightning.stacked.fit import fit_group

    composed = [compose_train(f"seed={s}", "trainer.max_epochs=25", "logger=none",
                              f"paths.output_dir={tmp_path / str(s)}") for s in (1, 2)]  # fmt: skip
    cfgs = [OmegaConf.to_container(c, resolve=True) for c in composed]
    fit_group(cfgs, str(tmp_path), callbacks=[PeriodicLast(tmp_path, 10)])
    ckpt = load(tmp_path / "last.ckpt")
    assert ckpt["global_step"] == 20 and len(ckpt["stacked_history"]["train/loss"]) == 20
    again = fit_group(cfgs, str(tmp_path), resume=tmp_path / "last.ckpt")
    epochs, values = again.series("train/loss")
    assert epochs.tolist() == list(range(25)) and values.shape == (25, 2)
