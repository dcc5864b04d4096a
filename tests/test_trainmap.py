"""`make map`: per-layer learning rates (a run's parameter groups, a stacked fit's rate per
model per parameter), the stacked plain SGD, and the map drawn from a sweep's table."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import lightning as L
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from tests.conftest import cli, compose_train, load
from tests.test_vectorized import alone, same_checkpoint, sweep
from xor_lightning.checkpoint import relocate
from xor_lightning.data import make_xor
from xor_lightning.errors import UserError
from xor_lightning.model import MLP
from xor_lightning.module import XORModule
from xor_lightning.sweeps import tables
from xor_lightning.sweeps.trainmap import cells, grid, plot
from xor_lightning.validate import validate_train
from xor_vectorized.groups import stack_key
from xor_vectorized.net import StackedAdam, StackedMLP, StackedSGD

ADAM = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 0.05}
SGD = {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.05}


def test_the_grid_is_log_spaced():
    # by hand: 1e-4..1e2 in 3 cells is every third decade; 1e-2..1 in 5 is every half decade
    assert grid(1e-4, 1e2, 3) == [1e-4, 0.1, 100.0]
    assert grid(1e-2, 1.0, 5) == [0.01, 0.031622777, 0.1, 0.31622777, 1.0]
    assert len(grid(1e-4, 1e2, 256)) == 256 and grid(1e-4, 1e2, 256)[-1] == 100.0


def _steps(module: XORModule, x: torch.Tensor, y: torch.Tensor, n: int = 5) -> None:
    opt = module.configure_optimizers()
    for _ in range(n):
        opt.zero_grad()
        F.binary_cross_entropy_with_logits(module.net(x), y).backward()
        opt.step()


@pytest.mark.parametrize("optimizer", [ADAM, SGD], ids=["Adam", "SGD"])
def test_each_rate_reaches_its_own_layers(optimizer):
    """A two-hidden-layer net of the test's own (Linear layers 0, 2 and 4): lr_out=0 leaves
    the output layer (4) exactly as it was and moves both hidden ones; lr_hidden=0 the
    other way round."""
    net = {"_target_": "xor_lightning.deep_mlp.DeepMLP", "hidden": 5, "depth": 2}
    x, y = make_xor(64, 0.1, 0, 0)
    for rates, frozen in (({"lr_out": 0.0}, {"4"}), ({"lr_hidden": 0.0}, {"0", "2"})):
        torch.manual_seed(0)
        module = XORModule(net, optimizer, **rates)
        before = {k: v.clone() for k, v in module.net.state_dict().items()}
        _steps(module, x, y)
        for name, value in module.net.state_dict().items():
            assert torch.equal(value, before[name]) == (name.split(".")[0] in frozen), name


def test_bad_rates_and_other_networks_are_refused():
    with pytest.raises(UserError, match=r"model.lr_out=-1.0 is not allowed: use null"):
        validate_train(compose_train("model.lr_out=-1.0"))
    validate_train(compose_train("model.lr_out=0", "model.lr_hidden=3.0"))  # 0: a frozen layer


def test_per_layer_rates_vary_within_one_stacked_fit():
    def key(*overrides):
        return stack_key(OmegaConf.to_container(compose_train(*overrides), resolve=False))

    assert key("model.lr_hidden=0.1", "model.lr_out=3.0") == key() == key("model.lr_out=1e-4")


RATES = [(0.3, 0.01), (0.001, 2.0), (0.05, None)]  # (lr_hidden, lr_out): None is the lr


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["Adam", "SGD"])
def test_stacked_per_layer_rates_train_as_each_alone(kind):
    """Ten steps of three nets with different per-layer rates, stacked, against torch's own
    optimizer with two parameter groups on each alone: within 1e-5."""
    nets, alone, X, Y = [], [], [], []
    for seed, (hidden, out) in enumerate(RATES):
        torch.manual_seed(seed)
        nets.append(MLP(hidden=4))
        net = copy.deepcopy(nets[-1])
        x, y = make_xor(200, 0.1, seed, 0)
        X.append(x), Y.append(y)
        groups = [{"params": [net.fc1.weight, net.fc1.bias], "lr": hidden},
                  {"params": [net.fc2.weight, net.fc2.bias], "lr": out or 0.05}]  # fmt: skip
        opt = (torch.optim.Adam(groups, lr=0.05, fused=True) if kind == "Adam"
               else torch.optim.SGD(groups, lr=0.05))  # fmt: skip
        for _ in range(10):
            opt.zero_grad()
            F.binary_cross_entropy_with_logits(net(x), y).backward()
            opt.step()
        alone.append(net)
    stacked = StackedMLP(nets, ["tanh"] * 3)
    t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    hidden, out = t([h for h, _ in RATES]), t([o or 0.05 for _, o in RATES])
    hyper = {"lr": hidden, "weight_decay": t([0.0] * 3),
             "lr_layers": torch.stack([hidden, hidden, out, out])}  # fmt: skip
    if kind == "Adam":
        opt = StackedAdam(stacked.flat_params(), beta1=t([0.9] * 3), beta2=t([0.999] * 3),
                          eps=t([1e-8] * 3), **hyper)  # fmt: skip
    else:
        opt = StackedSGD(stacked.flat_params(), **hyper)
    X, Y = torch.stack(X), torch.stack(Y)
    for _ in range(10):
        opt.zero_grad()
        F.binary_cross_entropy_with_logits(stacked(X), Y, reduction="none").mean((1, 2)).sum(
        ).backward()  # fmt: skip
        opt.step()
    for k, net in enumerate(alone):
        for name, value in net.state_dict().items():
            torch.testing.assert_close(stacked.net_state(k)[name], value, atol=1e-5, rtol=0)
            assert not torch.equal(value, nets[k].state_dict()[name])  # every layer moved


def test_the_map_reads_each_cell_from_the_table(tmp_path):
    """A results table made by hand, rows shuffled: each value lands in its (out, hidden)
    cell, a failed job is diverged, a missing job is NaN and not diverged."""
    rows = [{"job": 0, "status": "ok", "overrides": ["model.lr_hidden=0.1", "model.lr_out=1.0"],
             "train/loss": 0.5},
            {"job": 1, "status": "failed", "overrides": ["model.lr_hidden=10.0",
                                                         "model.lr_out=1.0"]},
            {"job": 2, "status": "ok", "overrides": ["model.lr_hidden=0.1", "model.lr_out=0.01"],
             "train/loss": 0.25}]  # fmt: skip
    tables.write(tmp_path, rows, [])
    xs, ys, value, diverged = cells(tmp_path / "results.parquet", "train/loss")
    assert list(xs) == [0.1, 10.0] and list(ys) == [0.01, 1.0]
    assert value[1, 0] == 0.5 and value[0, 0] == 0.25 and math.isnan(value[1, 1])
    assert diverged.tolist() == [[False, False], [False, True]]
    assert math.isnan(value[0, 1]) and not diverged[0, 1]  # job (10.0, 0.01) never ran
    with pytest.raises(ValueError, match=r"results\.parquet has"):
        cells(tmp_path / "results.parquet", "nope")
    plot(tmp_path / "results.parquet", tmp_path / "map.png")
    from matplotlib.image import imread

    pixels = (imread(tmp_path / "map.png")[..., :3] * 255).round().astype(int)
    red = (pixels == [214, 39, 40]).all(axis=-1).sum()  # DIVERGED, #d62728
    assert red > 1000  # the diverged cell: a quarter of the axes, and its legend patch


def test_bad_input_is_one_line(tmp_path):
    """Refused before the sweep starts: nothing written (a sweep would have made its dir
    and printed its first line)."""
    (tmp_path / "notes").write_text("mine\n")
    for args, says in ((["--res", "1"], "--res=1 is not allowed"),
                       (["--hidden", "1,0.1"], "use 0 < LOW < HIGH"),
                       (["--metric", "acc"], "--metric 'acc' is not allowed"),
                       (["--epochs", "0"], "--epochs=0 is not allowed: use an integer >= 1"),
                       (["--sweep-dir", str(tmp_path / "notes" / "m")],
                        f"--sweep-dir={tmp_path / 'notes' / 'm'} cannot be written: "
                        f"{tmp_path / 'notes'} is a file, not a dir")):  # fmt: skip
        proc = cli("sweeps.trainmap", "--res", "2", "--sweep-dir", str(tmp_path / "m"), *args,
                   cwd=tmp_path, timeout=120)  # fmt: skip
        assert proc.returncode == 2 and proc.stdout == "", proc.stdout[-2000:]
        assert len(proc.stderr.splitlines()) == 1 and says in proc.stderr, proc.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == ["notes"]


@pytest.mark.parametrize(
    ("args", "says"),
    [(["hydra.sweep.dir=m/${now:%H}"], "must be one plain path: give it as --sweep-dir DIR"),
     (["hydra.sweep.dir=a,b"], "must be one plain path: give it as --sweep-dir DIR"),
     (["~hydra.sweep.dir"], "must be one plain path: give it as --sweep-dir DIR"),
     (["hydra.sweep.dir=a", "++hydra.sweep.dir=b"], "give the map's dir once (--sweep-dir DIR)"),
     (["--sweep-dir", "a", "hydra.sweep.dir=b"], "give the map's dir once (--sweep-dir DIR)"),
     (["hydra.sweep.dir=notes/m"], "hydra.sweep.dir=notes/m cannot be written: notes is a file")],
    ids=["interpolation", "sweep", "deletion", "twice", "and-sweep-dir", "unwritable"],
)  # fmt: skip
def test_a_hydra_sweep_dir_that_cannot_be_the_maps_is_refused(
    tmp_path, monkeypatch, capsys, args, says
):
    """`hydra.sweep.dir=DIR` is the map's dir when it is one plain path; anything else is
    refused in one line naming --sweep-dir, exit 2, before the sweep: nothing written."""
    from xor_lightning.sweeps.trainmap import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes").write_text("mine\n")
    with pytest.raises(SystemExit) as exited:
        main(["--res", "2", *args])
    out, err = capsys.readouterr()
    assert exited.value.code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and says in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes"]


@pytest.mark.slow
@pytest.mark.parametrize("sgd", [False, True], ids=["Adam", "SGD"])
def test_a_tiny_map_end_to_end(tmp_path, sgd):
    """RES=3, 20 epochs: one vectorised fit of 9 jobs, results.parquet with 9 rows on the
    grid, map.png and timing.json beside it; every job's last.ckpt is its own run's, with
    its own two parameter groups. The dir given as --sweep-dir (Adam) or the Hydra way,
    `hydra.sweep.dir=m` relative to the working dir (SGD), is the map's."""
    d = tmp_path / "m"
    where = ["hydra.sweep.dir=m"] if sgd else ["--sweep-dir", str(d)]
    args = ["--res", "3", "--epochs", "20", *where, *(["--sgd"] if sgd else [])]
    proc = cli("sweeps.trainmap", *args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"written: {Path('m') if sgd else d}/map.png" in proc.stdout, proc.stdout[-2000:]
    assert not (tmp_path / "outputs").exists()  # not the default dir
    assert "9 jobs in 1 group(s)" in proc.stdout + proc.stderr
    table = pq.read_table(d / "results.parquet").to_pydict()
    assert len(table["job"]) == 9 and set(table["model.lr_hidden"]) == {1e-4, 0.1, 100.0}
    assert (d / "map.png").stat().st_size > 10_000 and (d / "timing.json").is_file()
    pairs = zip(table["model.lr_hidden"], table["model.lr_out"], strict=True)
    job = int(np.argmax([h == 0.1 and o == 100.0 for h, o in pairs]))
    groups = load(d / str(table["job"][job]) / "checkpoints" / "last.ckpt")["optimizer_states"]
    assert [g["lr"] for g in groups[0]["param_groups"]] == [0.1, 100.0]
    assert groups[0]["state"] == {} if sgd else len(groups[0]["state"]) == 4


@pytest.mark.slow
def test_after_ten_steps_each_job_is_its_run_alone(tmp_path):
    """Two per-layer rates, Adam and plain SGD (two groups), stacked through the launcher:
    each job's last.ckpt (weights, optimizer state and parameter groups, hyperparameters)
    equals that of its run alone to 1e-5 after 10 steps."""
    d = tmp_path / "s"
    log = sweep("model.lr_hidden=0.3,0.001", "model.lr_out=2.0",
                "model.optimizer._target_=torch.optim.Adam,torch.optim.SGD",
                "+trainer.max_steps=10", f"hydra.sweep.dir={d}", cwd=tmp_path)  # fmt: skip
    assert "4 jobs in 2 group(s)" in log.stdout + log.stderr
    for job in sorted(d.glob("[0-9]*")):
        ref = alone(tmp_path, job)
        last = load(job / "checkpoints" / "last.ckpt")
        assert last["global_step"] == ref["last"]["global_step"] == 10
        same_checkpoint(last, relocate(ref["last"], str(ref["dir"]), str(job.resolve())))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["Adam", "SGD"])
def test_a_stopped_fit_resumes_from_its_jobs_checkpoints(tmp_path, kind):
    """Per-layer rates, stopped at epoch 20 (the periodic last.ckpt) and resumed from the
    jobs' own checkpoints, end where one uninterrupted fit ends (SGD keeps no state)."""
    from xor_vectorized.fit import fit_group
    from xor_vectorized.outputs import PeriodicSave
    from xor_vectorized.run import Job

    def cfgs(where):
        out = []
        for seed, (hidden, lr_out) in enumerate(RATES[:2]):
            cfg = compose_train(f"seed={seed}", "trainer.max_epochs=25", "logger=none",
                                f"model.lr_hidden={hidden}", f"model.lr_out={lr_out}",
                                f"model.optimizer._target_=torch.optim.{kind}",
                                f"paths.output_dir={where / str(seed)}")  # fmt: skip
            out.append(OmegaConf.to_container(cfg, resolve=True))
        return out

    whole = fit_group(cfgs(tmp_path / "whole"), str(tmp_path))
    first = cfgs(tmp_path / "stopped")
    jobs = [Job(k, [], tmp_path / "stopped" / str(k), resolved=c) for k, c in enumerate(first)]
    fit_group(first, str(tmp_path), callbacks=[PeriodicSave(jobs, 10, 1)])
    lasts = [j.dir / "checkpoints" / "last.ckpt" for j in jobs]
    assert [load(p)["global_step"] for p in lasts] == [20, 20]
    assert (load(lasts[0])["optimizer_states"][0]["state"] == {}) == (kind == "SGD")
    epochs = []  # the epochs the resumed fit trains: 20 to 24, not from 0

    class Epochs(L.Callback):
        def on_train_epoch_end(self, trainer, module):
            epochs.append(trainer.current_epoch)

    resumed = fit_group(first, str(tmp_path), resume=lasts, callbacks=[Epochs()])
    assert resumed.global_step == whole.global_step == 25 and epochs == list(range(20, 25))
    for a, b in zip(resumed.last, whole.last, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
