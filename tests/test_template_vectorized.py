"""A copier's own network, data and task in a vectorised sweep: stacked copies of their
network (torch.func) on each job's own datamodule, as one fit, each job the run it would be
alone; a network with Dropout stacked with each model's own randomness; a network that
cannot be stacked runs alone, saying why."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from tests.conftest import load
from tests.test_template import PACKAGE, env, new_project, ok, run


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return new_project(tmp_path_factory)  # this module's own copy: a test adds a network


STEPS = ("model=two_layer", "+trainer.max_steps=10", "trainer.check_val_every_n_epoch=1",
         "logger=none")  # fmt: skip


@pytest.mark.slow
def test_a_seed_sweep_of_ones_own_network_is_one_stacked_fit_of_runs_alone(project, tmp_path):
    d = tmp_path / "s"
    proc = ok(run(project, "train", "-m", "hydra/launcher=vectorized", "seed=1,2,3", *STEPS,
                  f"hydra.sweep.dir={d}"))  # fmt: skip
    log = proc.stdout + proc.stderr
    assert "3 jobs in 1 group(s): 1 fit(s)" in log and "runs as a fit of its own" not in log
    for job, seed in (("0", 1), ("1", 2), ("2", 3)):
        alone = tmp_path / f"alone{seed}"
        ok(run(project, "train", f"seed={seed}", *STEPS, f"hydra.run.dir={alone}"))
        mine, theirs = (
            load(d / job / "checkpoints" / "last.ckpt"),
            load(alone / "checkpoints/last.ckpt"),
        )
        assert mine["global_step"] == theirs["global_step"] == 10
        assert set(mine["state_dict"]) == set(theirs["state_dict"])  # fc1, fc2, head
        for name, value in theirs["state_dict"].items():
            torch.testing.assert_close(mine["state_dict"][name], value, atol=1e-5, rtol=0)
        scores = json.loads((d / job / "metrics.json").read_text())
        ref = json.loads((alone / "metrics.json").read_text())
        for key in ("val/acc", "test/acc"):
            assert abs(scores[key] - ref[key]) <= 0.01, (job, key)


INITIAL = """
import torch
from {p}.config import CONF_DIR
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from xor_vectorized import app
from xor_vectorized.fit import init_net, stacked_net
app.use("{p}")  # the copy's own package: the installed engine reads the run through it
from {p}.train import build
cfgs = []
with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
    for seed in (4, 5):
        cfgs.append(compose("train", ["model=two_layer", f"seed={{seed}}", "logger=none",
                                      "paths.output_dir=out"]))
plain = [OmegaConf.to_container(c, resolve=True) for c in cfgs]
nets = [init_net(c)[0] for c in plain]
stacked = stacked_net(plain, nets)
for k, cfg in enumerate(cfgs):
    own = build(cfg)[1].net.state_dict()
    mine = stacked.net_state(k)
    assert list(mine) == list(own), (list(mine), list(own))
    assert all(torch.equal(mine[n], own[n]) for n in own), k
print("bit for bit", type(stacked).__name__)
"""


@pytest.mark.slow
def test_initial_weights_are_the_runs_bit_for_bit(project):
    script = INITIAL.format(p=PACKAGE)
    proc = subprocess.run([sys.executable, "-c", script], cwd=project, capture_output=True,
                          text=True, env=env(project), timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "bit for bit StackedNet" in proc.stdout


NORMED = '''
import torch
from torch import nn


class NormedNet(nn.Module):
    """A network with running statistics (buffers): not stackable."""

    def __init__(self, n_in: int = 2, width: int = 8) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(n_in, width), nn.BatchNorm1d(width), nn.ReLU())
        self.head = nn.Linear(width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))
'''


@pytest.mark.slow
def test_a_network_that_cannot_be_stacked_runs_alone_saying_why(project, tmp_path):
    (project / "src" / PACKAGE / "normed.py").write_text(NORMED)
    (project / "conf" / "model" / "normed.yaml").write_text(
        textwrap.dedent(f"""\
        width: 8
        net:
          _target_: {PACKAGE}.normed.NormedNet
          n_in: 2
          width: ${{..width}}
        optimizer:
          _target_: torch.optim.Adam
          _partial_: true
          lr: 0.02
        gradient_clip_val: null
        """)
    )
    d = tmp_path / "s"
    proc = ok(run(project, "train", "-m", "hydra/launcher=vectorized", "model=normed",
                  "seed=1,2", "trainer.max_epochs=3", "logger=none", "callbacks=none",
                  f"hydra.sweep.dir={d}"))  # fmt: skip
    why = "NormedNet has buffers (running statistics?): stacked nets have none"
    assert f"job 0 runs as a fit of its own: {why}" in proc.stdout + proc.stderr
    for job in ("0", "1"):
        record = json.loads((d / job / "job.json").read_text())
        assert record["status"] == "ok" and record["alone"] == why
    assert Path(d / "summary.csv").is_file()


ALONE = """
import json, sys
from hydra import compose, initialize_config_dir
from {p}.config import CONF_DIR
from {p}.train import train
with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
    for i, args in enumerate(json.loads(sys.argv[1])):
        train(compose("train", [*args, "paths.output_dir=" + sys.argv[2] + "/" + str(i)]))
"""


def runs_alone(project: Path, jobs: list[list[str]], out: Path) -> list[Path]:
    """Each job's overrides trained as a run of its own (in one process: quicker)."""
    script = ALONE.format(p=PACKAGE)
    proc = subprocess.run([sys.executable, "-c", script, json.dumps(jobs), str(out)],
                          cwd=project, capture_output=True, text=True, env=env(project),
                          timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [out / str(i) for i in range(len(jobs))]


def sweep_and_alone(project: Path, tmp_path: Path, seeds: int, *common: str) -> list[tuple]:
    """A vectorised seed sweep and the same jobs alone: (job dir, its run alone's dir)."""
    d = tmp_path / "sweep"
    proc = ok(run(project, "train", "-m", "hydra/launcher=vectorized", *common,
                  f"seed=range({seeds})", f"hydra.sweep.dir={d}"))  # fmt: skip
    log = proc.stdout + proc.stderr
    assert f"{seeds} jobs in 1 group(s): 1 fit(s)" in log and "of its own" not in log, log[-2000:]
    alone = runs_alone(project, [[*common, f"seed={s}"] for s in range(seeds)], tmp_path / "a")
    return [(d / str(s), alone[s]) for s in range(seeds)]


def same_weights(job: Path, alone: Path) -> None:
    mine, theirs = load(job / "checkpoints/last.ckpt"), load(alone / "checkpoints/last.ckpt")
    assert mine["global_step"] == theirs["global_step"]
    for name, value in theirs["state_dict"].items():
        torch.testing.assert_close(mine["state_dict"][name], value, atol=1e-5, rtol=0)


TEN_EPOCHS = ("model=two_layer", "trainer.max_epochs=10", "trainer.check_val_every_n_epoch=5",
              "logger=none", "callbacks.boundary_plot=null")  # fmt: skip


# Full batches: 10 epochs are 10 steps. Float rounding differs between a stacked and a lone
# computation (batched kernels), and over many steps training can amplify it: docs/vectorized.md.
@pytest.mark.slow
def test_ones_own_datamodule_stacks_each_job_its_run_alone(project, tmp_path):
    """16 seeds of the copier's network on the copier's waves: one fit, every job's weights
    within 1e-5 of its own run's after 10 epochs."""
    waves = ("data=waves", "data.batch_size=512")
    for job, alone in sweep_and_alone(project, tmp_path, 16, *TEN_EPOCHS, *waves):
        same_weights(job, alone)


@pytest.mark.slow
def test_three_classes_of_ones_own_stack_each_job_its_run_alone(project, tmp_path):
    spirals = ("data=spirals", "data.batch_size=600", "task=multiclass", "task.num_classes=3")
    jobs = sweep_and_alone(project, tmp_path, 8, *TEN_EPOCHS, *spirals)
    for job, alone in jobs:
        same_weights(job, alone)
        scores = json.loads((job / "metrics.json").read_text())
        ref = json.loads((alone / "metrics.json").read_text())
        for key in ("val/acc", "val/loss", "test/acc", "test/loss"):
            assert abs(scores[key] - ref[key]) <= 0.01, (job, key)


DROPPED = '''
import torch
from torch import nn


class DroppedNet(nn.Module):
    """A network with Dropout: random in training, off in validation and test."""

    def __init__(self, n_in: int = 2, width: int = 32, p: float = 0.2) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(n_in, width), nn.ReLU(), nn.Dropout(p))
        self.head = nn.Linear(width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))
'''


@pytest.mark.slow
def test_a_dropout_network_stacks_with_its_own_randomness(project, tmp_path):
    """Not bit-exact with its runs alone (each model draws its own masks from the fit's
    random state): every job finishes, and the sweep's mean val/acc is the runs' within
    0.02."""
    (project / "src" / PACKAGE / "dropped.py").write_text(DROPPED)
    (project / "conf" / "model" / "dropped.yaml").write_text(textwrap.dedent(f"""\
        net:
          _target_: {PACKAGE}.dropped.DroppedNet
          n_in: 2
        optimizer:
          _target_: torch.optim.Adam
          _partial_: true
          lr: 0.02
        """))  # fmt: skip
    common = ("model=dropped", "data=waves", "trainer.max_epochs=30", "logger=none",
              "callbacks.boundary_plot=null", "callbacks.hidden_units_plot=null")  # fmt: skip
    jobs = sweep_and_alone(project, tmp_path, 16, *common)
    stacked, alone = (
        [json.loads((d / "metrics.json").read_text())["val/acc"] for d in dirs]
        for dirs in zip(*jobs, strict=True)
    )
    assert sum(alone) / 16 > 0.8  # it learned the wave (chance: about 0.5)
    assert abs(sum(stacked) / 16 - sum(alone) / 16) <= 0.02
