"""A copier's own network in a vectorised sweep (issue 19): stacked copies of their network
(torch.func), as one fit, each job the run it would be alone; a network that cannot be
stacked runs alone, saying why."""

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
from {p}.stacked.fit import init_net, stacked_net
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
