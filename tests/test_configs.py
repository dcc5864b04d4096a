"""Every option of every config group composes, and the pieces it names build."""

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from tests.conftest import write_points
from xor_lightning.config import CONF_DIR

GROUPS = [
    "data",
    "model",
    "trainer",
    "logger",
    "callbacks",
    "paths",
    "hydra",
    "experiment",
    "debug",
]
OPTIONS = [
    (group, path.stem)
    for group in GROUPS
    for path in sorted((Path(CONF_DIR) / group).glob("*.yaml"))
]


def test_every_group_has_options():
    assert {g for g, _ in OPTIONS} == set(GROUPS)


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_option_composes_and_builds(make_cfg, tmp_path, group, option):
    csv = (group, option) == ("data", "csv")  # your own points need a file
    more = [f"data.path={write_points(tmp_path / 'p.csv')}"] if csv else []
    cfg = make_cfg(f"{group}={option}", *more)
    dm = instantiate(cfg.data)
    dm.setup("fit")
    net = instantiate(cfg.model.net)
    assert net(dm.datasets["train"].X[:4]).shape == (4, 1)
    assert isinstance(instantiate(cfg.model.optimizer)(net.parameters()), torch.optim.Optimizer)
    for c in (cfg.get("callbacks") or {}).values():
        instantiate(c)
    for c in (cfg.get("logger") or {}).values():
        instantiate(c)
    if cfg.trainer.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        return  # the trainer itself needs the GPU; tests/test_cli.py covers the error
    instantiate(cfg.trainer)


def test_default_run_is_the_chapters_run(make_cfg):
    cfg = make_cfg()
    assert cfg.trainer.max_epochs == 401
    assert cfg.data.n_samples == 400 and cfg.data.batch_size is None  # full batch: 1 step/epoch
    assert cfg.model.hidden == 8 and cfg.model.activation == "tanh"
    assert cfg.model.optimizer._target_ == "torch.optim.Adam" and cfg.model.optimizer.lr == 0.05
    assert cfg.data.noise == 0.0 and cfg.trainer.check_val_every_n_epoch <= 10
    assert list(cfg.logger) == ["tensorboard"]


def test_stable_override_names(make_cfg):
    cfg = make_cfg(
        "seed=5",
        "data.n_samples=50",
        "data.noise=0.1",
        "data.batch_size=16",
        "model.hidden=4",
        "model.activation=relu",
        "model.optimizer.lr=0.01",
        "trainer.max_epochs=3",
        "trainer.accelerator=cpu",
        "trainer.devices=1",
        "ckpt_path=/some/file.ckpt",
    )
    assert cfg.data.seed == 5  # follows seed
    net = instantiate(cfg.model.net)
    assert net[0].out_features == 4 and isinstance(net[1], torch.nn.ReLU)
    assert instantiate(cfg.model.optimizer)(net.parameters()).param_groups[0]["lr"] == 0.01
    dm = instantiate(cfg.data)
    assert (dm.sizes["train"], dm.noise, dm.batch_size) == (50, 0.1, 16)
    assert cfg.trainer.max_epochs == 3 and cfg.ckpt_path == "/some/file.ckpt"
