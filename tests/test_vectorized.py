"""`hydra/launcher=vectorized`: every job of a stacked fit is the run it would be alone."""

import csv
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

from tests.conftest import cli, compose_train, curves, hparams_tab, load, wait_for
from xor_lightning.checkpoint import relocate
from xor_lightning.train import train

# Tests of a capability around the core: `make test` runs them, `make test-fast` does not.
pytestmark = pytest.mark.slow

VEC = "hydra/launcher=vectorized"


def sweep(*args: str, cwd: Path, logger: str = "none") -> subprocess.CompletedProcess:
    proc = cli("train", "-m", VEC, f"logger={logger}", *args, cwd=cwd, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def summary(sweep_dir: Path) -> dict[str, dict]:
    with open(sweep_dir / "summary.csv", newline="") as f:
        return {r["job"]: r for r in csv.DictReader(f)}


def alone(tmp_path: Path, job_dir: Path) -> dict:
    """The job's own overrides run as a single run, in-process: its metrics and checkpoint."""
    overrides = json.loads((job_dir / "job.json").read_text())["overrides"]
    out = tmp_path / "alone" / job_dir.name
    metrics = train(compose_train(*overrides, f"paths.output_dir={out}"))
    return {"metrics": metrics, "last": load(out / "checkpoints" / "last.ckpt"), "dir": out}


def same_checkpoint(a, b, path=""):
    """Equal all the way down: keys, types, shapes, and values (tensors and floats within
    1e-5: the stacked arithmetic's drift after 10 steps); paths compared as `b`'s moved to
    `a`'s dir by the caller."""
    if isinstance(a, dict):
        assert set(a) == set(b), (path, set(a) ^ set(b))
        for k in a:
            same_checkpoint(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.shape == b.shape and a.dtype == b.dtype, path
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0, equal_nan=True, msg=path)
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same_checkpoint(x, y, f"{path}[{i}]")
    elif isinstance(a, float):
        assert isinstance(b, float) and a == pytest.approx(b, abs=1e-5, nan_ok=True), path
    else:
        assert type(a) is type(b) and a == b, (path, a, b)


@pytest.mark.slow
def test_after_ten_steps_every_job_has_the_weights_of_its_run_alone(tmp_path):
    """Widths, activations and data seeds differ inside a fit; full batch and shuffled
    mini-batches (64 of 400 points) make two groups."""
    d = tmp_path / "s"
    no_pictures = [f"callbacks.{c}=null" for c in ("boundary_plot", "hidden_units_plot",
                                                   "histograms")]  # fmt: skip
    proc = sweep("seed=1,2", "model.hidden=3,8", "model.activation=tanh,sigmoid",
                 "data.batch_size=null,64", "model.optimizer.lr=0.1", "+trainer.max_steps=10",
                 "trainer.check_val_every_n_epoch=1", *no_pictures, f"hydra.sweep.dir={d}",
                 cwd=tmp_path, logger="tensorboard")  # fmt: skip
    log = proc.stdout + proc.stderr
    assert "16 jobs in 2 group(s)" in log and "apart from group 0 by: data.batch_size" in log
    for job in sorted(d.glob("[0-9]*")):
        ref = alone(tmp_path, job)
        last = load(job / "checkpoints" / "last.ckpt")
        assert last["global_step"] == ref["last"]["global_step"] == 10
        # a run's own checkpoint, key for key and value for value: weights, optimizer state,
        # loops, metrics, the checkpoint callbacks' state (paths in the job's own dir)
        same_checkpoint(last, relocate(ref["last"], str(ref["dir"]), str(job.resolve())))
        best = next((job / "checkpoints").glob("best-*.ckpt"))
        assert best.name == next((ref["dir"] / "checkpoints").glob("best-*.ckpt")).name
        ref_best = load(ref["dir"] / "checkpoints" / best.name)
        same_checkpoint(load(best), relocate(ref_best, str(ref["dir"]), str(job.resolve())))
        # TensorBoard: the same sub-runs, tags, steps and values; the same hparams.yaml
        mine, theirs = curves(job), curves(ref["dir"])
        assert {r: set(t) for r, t in mine.items()} == {r: set(t) for r, t in theirs.items()}
        for run, tags in theirs.items():
            for tag, points in tags.items():
                assert [s for s, _ in mine[run][tag]] == [s for s, _ in points], (run, tag)
                assert [v for _, v in mine[run][tag]] == pytest.approx([v for _, v in points]), (
                    job.name,
                    run,
                    tag,
                )
        hparams = (ref["dir"] / "hparams.yaml").read_text()
        assert (job / "hparams.yaml").read_text() == hparams
    names, values = hparams_tab(d)  # HPARAMS: the swept keys first, the runs' own metrics
    swept = ("seed", "model.hidden", "model.activation", "data.batch_size")
    assert max(names.index(k) for k in swept) < names.index("data.problem")  # before the rest
    alone_values = hparams_tab(tmp_path / "alone")[1]
    assert set(values) == set(alone_values)
    for run, scores in values.items():
        assert scores == pytest.approx(alone_values[run]), run


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """Four 150-epoch jobs in one vectorised fit, left alone; as a large group would, with
    no pictures and a training-curve point every 25 epochs."""
    tmp = tmp_path_factory.mktemp("ref")
    d = tmp / "s"
    sweep("model.hidden=3,8", "model.activation=tanh,relu", "trainer.max_epochs=150",
          "hydra.launcher.pictures_up_to=2", "hydra.launcher.curve_every_n_epochs=25",
          f"hydra.sweep.dir={d}", cwd=tmp, logger="tensorboard")  # fmt: skip
    return d


@pytest.mark.slow
def test_results_equal_those_of_the_runs_alone(reference, tmp_path):
    runs = curves(reference / "0")  # a group larger than pictures_up_to: its defaults
    assert [s for s, _ in runs["train"]["loss"]] == [*range(0, 150, 25), 149]
    assert len(runs["val"]["acc"]) == 15 and not (reference / "0" / "boundary.png").exists()
    for job in sorted(reference.glob("[0-9]*")):
        mine = json.loads((job / "metrics.json").read_text())
        ref = alone(tmp_path, job)["metrics"]
        for key in ("val/acc", "test/acc"):
            assert abs(mine[key] - ref[key]) <= 0.01, (job.name, key)
        for key in ("val/loss", "test/loss", "train/loss"):
            assert mine[key] == pytest.approx(ref[key], abs=0.01)
        # its epoch lines as a run prints them: losses to 4 decimals, accuracies to 3
        lines = [ln for ln in (job / "train.log").read_text().splitlines() if "epoch " in ln]
        assert lines and all(re.search(r"train/acc \d\.\d{3}( |$)", ln) for ln in lines)
        assert all(re.search(r"train/loss \d\.\d{4}( |$)", ln) for ln in lines)


@pytest.mark.slow
def test_ctrl_c_stops_every_job_then_each_resumes(reference, tmp_path):
    d = tmp_path / "s"
    args = [sys.executable, "-m", "xor_lightning.train", "-m", VEC, "logger=none",
            "model.hidden=3,8", "model.activation=tanh,relu", "trainer.max_epochs=150",
            f"hydra.sweep.dir={d}"]  # fmt: skip
    log = tmp_path / "log"
    with open(log, "w") as out:
        proc = subprocess.Popen(args, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
        wait_for(d / "0" / ".hydra", proc)
        while "epoch    0" not in log.read_text():
            assert proc.poll() is None
        # each job's dir is locked while the fit writes it, as a run's is
        os.kill(proc.pid, signal.SIGSTOP)  # (held mid-fit while we try)
        refused = cli("train", f"resume={d / '1'}", cwd=tmp_path)
        assert refused.returncode == 2 and f"pid {proc.pid}" in refused.stderr
        os.kill(proc.pid, signal.SIGCONT)
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=120) == 128 + signal.SIGTERM
    rows = summary(d)
    assert {r["status"] for r in rows.values()} == {"interrupted"}
    import pyarrow.parquet as pq  # the sweep's table is written on the way out too

    assert set(pq.read_table(d / "results.parquet").column("status").to_pylist()) == {"interrupted"}
    steps = {load(j / "checkpoints" / "last.ckpt")["global_step"] for j in d.glob("[0-9]*")}
    assert len(steps) == 1 and 0 < steps.pop() < 150  # every job at the same epoch
    # one job alone, then the whole sweep: the others continue, the finished one is kept
    resumed = cli("train", f"resume={d / '1'}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    kept = (d / "1" / "metrics.json").read_text()
    proc = sweep("model.hidden=3,8", "model.activation=tanh,relu", "trainer.max_epochs=150",
                 f"hydra.sweep.dir={d}", cwd=tmp_path)  # fmt: skip
    assert "1 job(s) finished in an earlier launch of this sweep: kept" in proc.stderr + proc.stdout
    assert (d / "1" / "metrics.json").read_text() == kept
    for job in sorted(d.glob("[0-9]*")):
        mine = json.loads((job / "metrics.json").read_text())
        ref = json.loads((reference / job.name / "metrics.json").read_text())
        assert abs(mine["val/acc"] - ref["val/acc"]) <= 0.01
        assert abs(mine["test/acc"] - ref["test/acc"]) <= 0.01
        assert len(list((job / "checkpoints").glob("best-*.ckpt"))) == 1
    assert {r["status"] for r in summary(d).values()} == {"ok"}


@pytest.mark.slow
def test_failures_stay_with_their_job(tmp_path):
    """A diverging job stops alone, a bad value is refused in its row, an optimizer the
    stacked module does not have runs as a fit of its own; the rest train as usual."""
    d = tmp_path / "s"
    proc = sweep("model.optimizer.lr=0.05,1e38,-1",
                 "model.optimizer._target_=torch.optim.Adam,torch.optim.Adagrad",
                 "trainer.max_epochs=20", f"hydra.sweep.dir={d}", cwd=tmp_path)  # fmt: skip
    by = {}
    for r in summary(d).values():
        o = dict(x.split("=", 1) for x in r["overrides"].split())
        by[(o["model.optimizer.lr"], o["model.optimizer._target_"].rsplit(".", 1)[1])] = r
    ok, nan = by[("0.05", "Adam")], by[("1e+38", "Adam")]
    assert ok["status"] == "ok" and nan["status"] == "failed"
    assert "the loss became nan at epoch 1, optimizer step 2" in nan["error"]
    assert "weights before that step; no best yet" in nan["error"]  # no validation before
    assert load(d / nan["job"] / "checkpoints" / "last.ckpt")["global_step"] == 20
    for opt in ("Adam", "Adagrad"):
        refused = by[("-1", opt)]
        assert refused["status"] == "failed" and not refused["val/acc"]
        assert "model.optimizer.lr=-1 is not allowed: use a number > 0" in refused["error"]
    assert by[("0.05", "Adagrad")]["status"] == "ok"
    assert by[("1e+38", "Adagrad")]["status"] == "failed"
    log = proc.stdout + proc.stderr
    assert "runs as a fit of its own: model.optimizer._target_=torch.optim.Adagrad" in log
    ref = alone(tmp_path, d / ok["job"])["metrics"]
    assert float(ok["val/acc"]) == pytest.approx(ref["val/acc"], abs=0.01)


@pytest.mark.slow
def test_a_multiclass_sweep_draws_each_jobs_pictures_for_its_task(tmp_path):
    """The stacked jobs' boundary pictures read the jobs' task (3 logits), as a run's do."""
    d = tmp_path / "s"
    sweep("task=multiclass", "task.num_classes=3", "seed=1,2", "trainer.max_epochs=11",
          f"hydra.sweep.dir={d}", cwd=tmp_path, logger="tensorboard")  # fmt: skip
    assert all((d / job / "boundary.png").is_file() for job in ("0", "1"))


def test_ddp_is_refused_in_one_line(tmp_path):
    proc = cli("train", "-m", VEC, "trainer=ddp", "seed=1,2", f"hydra.sweep.dir={tmp_path}/s",
               cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: trainer.strategy=ddp")
    assert "Traceback" not in proc.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_the_gpu_the_stacked_weights_and_data_live_there(tmp_path):
    from omegaconf import OmegaConf

    from xor_vectorized.fit import fit_group

    seen = {}

    class Where(L.Callback):
        def on_train_epoch_end(self, trainer, module):
            seen["weights"] = module.net.weights[0].device.type
            seen["data"] = trainer.datamodule.sets["train"].X.device.type

    cfgs = []
    for seed in (1, 2):
        cfg = compose_train(f"seed={seed}", "trainer.accelerator=gpu", "trainer.max_epochs=20",
                            f"paths.output_dir={tmp_path / str(seed)}")  # fmt: skip
        cfgs.append(OmegaConf.to_container(cfg, resolve=True))
    on_gpu = fit_group(cfgs, str(tmp_path), callbacks=[Where()])
    assert seen == {"weights": "cuda", "data": "cuda"}
    for c in cfgs:
        c["trainer"]["accelerator"] = "cpu"
    on_cpu = fit_group(cfgs, str(tmp_path))
    assert torch.allclose(on_gpu.tested["test/acc"], on_cpu.tested["test/acc"], atol=0.01)


@pytest.mark.slow
def test_a_large_sweep_is_prepared_and_written_by_worker_processes(tmp_path):
    """256 jobs: prepared here (one composition, the other 255 from it: less work than a
    worker costs); the first fit's 200 job dirs written by two workers (64 a worker), the
    second fit's 56 here."""
    d = tmp_path / "s"
    proc = sweep("seed=range(256)", "trainer.max_epochs=2",
                 "hydra.launcher.workers=2", "hydra.launcher.max_models_per_fit=200",
                 f"hydra.sweep.dir={d}", cwd=tmp_path)  # fmt: skip
    log = proc.stdout + proc.stderr
    assert "preparing" not in log and log.count("worker processes") == 1
    assert "256 jobs in 1 group(s): 2 fit(s) of at most 200 models each" in log
    assert log.count("writing 200 job dirs in 2 worker processes") == 1
    assert "writing 56 job dirs" not in log
    rows = summary(d)
    assert len(rows) == 256 and {r["status"] for r in rows.values()} == {"ok"}
    for job in ("0", "127", "128", "199", "200", "255"):  # each worker's and each fit's ends
        config = yaml.safe_load((d / job / ".hydra" / "config.yaml").read_text())
        assert config["seed"] == int(job)
        last = load(d / job / "checkpoints" / "last.ckpt")
        assert last["global_step"] == 2 and last["run_config"]["seed"] == int(job)
        overrides = json.loads((d / job / "job.json").read_text())["overrides"]
        assert f"seed={job}" in overrides


def test_periodic_saves_leave_every_job_resumable(tmp_path):
    """hydra.launcher.last_every_n_epochs: checkpoints written during the fit, so a sweep
    killed outright (before its end wrote anything) resumes from them."""
    from omegaconf import OmegaConf

    from xor_vectorized.fit import fit_group
    from xor_vectorized.outputs import PeriodicSave
    from xor_vectorized.reruns import earlier
    from xor_vectorized.run import Job

    jobs = []
    for seed in (1, 2):
        cfg = compose_train(f"seed={seed}", "trainer.max_epochs=25", "logger=none",
                            f"paths.output_dir={tmp_path / str(seed)}")  # fmt: skip
        jobs.append(Job(seed, [f"seed={seed}"], tmp_path / str(seed),
                        resolved=OmegaConf.to_container(cfg, resolve=True)))  # fmt: skip
    fit_group([j.resolved for j in jobs], str(tmp_path), callbacks=[PeriodicSave(jobs, 10, 1)])
    for job in jobs:  # no end-of-fit outputs were written here: only the periodic ones
        assert load(job.dir / "checkpoints" / "last.ckpt")["global_step"] == 20
        assert json.loads((job.dir / "job.json").read_text())["status"] == "running"
        earlier(job)
        assert not job.done and job.resume == job.dir / "checkpoints" / "last.ckpt"


@pytest.mark.slow
def test_an_optuna_search_asks_a_batch_and_trains_it_as_one_fit(tmp_path):
    """Batches of 2 trials, one fit each; the median pruner (2 startup trials) stops models
    of later batches alone. The first batch cannot be pruned: nothing has finished yet."""
    d = tmp_path / "s"
    proc = cli("train", "hparams_search=xor_optuna", VEC, "hydra.sweeper.n_jobs=2",
               "hydra.sweeper.n_trials=8", "hydra/sweeper/pruner=median",
               "hydra.sweeper.pruner.n_startup_trials=2", "trainer.max_epochs=30",
               "trainer.check_val_every_n_epoch=5", "hydra.launcher.pictures_up_to=0",
               "logger=none",
               f"hydra.sweep.dir={d}", cwd=tmp_path, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (proc.stdout + proc.stderr).count("2 jobs in 1 group(s): 1 fit(s)") == 4  # 4 batches
    results = yaml.safe_load((d / "optimization_results.yaml").read_text())
    assert results["n_trials"] == 8 and results["n_failed"] == 0
    rows = summary(d)
    pruned = sorted(int(j) for j, r in rows.items() if r["status"] == "pruned")
    assert pruned and len(pruned) == results["n_pruned"] and min(pruned) >= 2
    for j in range(8):  # a pruned model stopped at a validation before the end; the rest ran on
        step = load(d / str(j) / "checkpoints" / "last.ckpt")["global_step"]
        assert (step < 30) == (j in pruned), j
        if j in pruned:
            assert step % 5 == 0
