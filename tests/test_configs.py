"""Every config group option docs/configuration.md lists exists, composes, and does what it says."""

import logging
import re
import shlex
from pathlib import Path

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from lightning.pytorch.strategies import DDPStrategy
from omegaconf import OmegaConf

from tests.conftest import cli, doc_block, doc_table, fit, load
from xor_lightning.config import CONF_DIR
from xor_lightning.data import make_xor
from xor_lightning.train import build, train


def listed_options() -> list[tuple[str, str]]:
    """(group, option) for every option in the Configuration page's table."""
    options = []
    for groups, cell in doc_table("docs/configuration.md", "# Configuration"):
        names = re.findall(r"`([\w/]+)`", re.sub(r"\([^)]*\)", "", cell))
        options += [(g, o) for g in re.findall(r"`([\w/]+)`", groups) for o in names]
    return options


OPTIONS = listed_options()


def test_the_docs_list_every_option_in_conf():
    listed = set(OPTIONS)
    for group_dir in Path(CONF_DIR).rglob("*.yaml"):
        group = str(group_dir.parent.relative_to(CONF_DIR))
        if group != ".":
            assert (group, group_dir.stem) in listed, f"{group}={group_dir.stem} not in the docs"


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_listed_option_composes(group, option):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", [f"{group}={option}"], return_hydra_config=True)
    assert cfg.hydra.runtime.choices[group] == option


def test_experiment_chapter_is_the_default_run_on_the_fitted_clusters(make_cfg):
    """The clusters and the seed chosen with them (docs/chapter-numbers.md); the rest is the
    default run."""
    assert OmegaConf.to_container(make_cfg("experiment=chapter"), resolve=True) == (
        OmegaConf.to_container(make_cfg("data=clusters", "seed=12"), resolve=True)
    )


ZOO = {  # problem -> (noise, aspect)
    re.match(r"`(\w+)`", row[0])[1]: (float(row[3]), float(row[4]))
    for row in doc_table("docs/data.md", "## The toy-data zoo")
}


@pytest.mark.parametrize("problem", sorted(ZOO))
def test_data_options_draw_their_problem_with_its_documented_noise(make_cfg, problem):
    _, _, datamodule = build(make_cfg(f"data={problem}", "data.n_samples=50"))
    datamodule.setup()
    noise, aspect = ZOO[problem]
    X, y = make_xor(50, noise=noise, seed=0, split=0, problem=problem, aspect=aspect)
    assert torch.equal(datamodule.datasets["train"].X, X)
    assert torch.equal(datamodule.datasets["train"].y, y)


def test_trainer_options(make_cfg):
    for option in ("default", "cpu"):
        trainer, _, _ = build(make_cfg(f"trainer={option}"))
        assert trainer.accelerator.__class__.__name__ == "CPUAccelerator"
    trainer, _, _ = build(make_cfg("trainer=ddp"))
    assert isinstance(trainer.strategy, DDPStrategy) and trainer.num_devices == 2


QUICK = ("debug=quick", "trainer.max_epochs=2", "callbacks.boundary_plot=null")
WRITES = {  # logger option: (TensorBoard events in the run dir, csv/metrics.csv)
    "tensorboard": (True, False),
    "csv": (False, True),
    "all": (True, True),
    "none": (False, False),
}


@pytest.mark.parametrize("logger", sorted(WRITES))
def test_logger_options_write_their_files(make_cfg, tmp_path, logger):
    train(make_cfg(*QUICK, f"logger={logger}"))
    events = any(tmp_path.glob("events.out.tfevents.*"))
    assert (events, (tmp_path / "csv" / "metrics.csv").is_file()) == WRITES[logger]


def test_callbacks_none_writes_no_checkpoint(make_cfg, tmp_path):
    metrics = train(
        make_cfg("debug=quick", "trainer.max_epochs=2", "callbacks=none", "logger=none")
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]
    assert 0 <= metrics["test/acc"] <= 1


def test_debug_quick_is_20_epochs_with_every_output(make_cfg, tmp_path):
    train(make_cfg("debug=quick", "logger=all"))
    assert load(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == 20
    written = {p.name for p in tmp_path.iterdir()}
    assert {"checkpoints", "metrics.json", "boundary.png", "hparams.yaml", "csv"} <= written


@pytest.mark.slow
def test_debug_overfit_memorises_its_8_points(make_cfg):
    trainer, _, logged = fit(make_cfg("debug=overfit", "logger=none"))
    assert trainer.datamodule.hparams.n_samples == 8
    assert logged.series("train/loss")[-1] < 0.01 and logged.series("train/acc")[-1] == 1.0


def test_debug_profiler_reports_where_the_time_goes(make_cfg, caplog):
    with caplog.at_level(logging.INFO, logger="lightning.pytorch.profilers"):
        fit(make_cfg("debug=profiler", "trainer.max_epochs=3"))
    assert "FIT Profiler Report" in caplog.text and "run_training_epoch" in caplog.text


STABLE = ("seed=5", "data.n_samples=50", "data.noise=0.1", "data.batch_size=16", "model.hidden=4",
          "model.activation=relu", "model.optimizer.lr=0.01", "trainer.max_epochs=3",
          "trainer.accelerator=cpu", "trainer.devices=1", "ckpt_path=/some/file.ckpt")  # fmt: skip


def test_stable_override_names(make_cfg):
    trainer, module, datamodule = build(make_cfg(*STABLE))
    assert datamodule.seed == 5  # data.seed follows seed
    hparams = datamodule.hparams
    assert (hparams.n_samples, hparams.noise, hparams.batch_size) == (50, 0.1, 16)
    assert module.net.fc1.out_features == 4 and isinstance(module.net.act, torch.nn.ReLU)
    assert module.configure_optimizers().param_groups[0]["lr"] == 0.01
    assert (trainer.max_epochs, trainer.num_devices) == (3, 1)


def test_the_configuration_examples_do_what_they_say(make_cfg, tmp_path):
    lines = doc_block("docs/configuration.md", "These override names are stable")
    examples = [shlex.split(re.search(r"ARGS='([^']*)'", line)[1]) for line in lines[:4]]
    assert examples[0] == ["experiment=noisy"]  # 2000 points in batches of 128: 16 steps
    trainer, _, _ = fit(make_cfg(*examples[0], "trainer.max_epochs=1", "logger=none"))
    assert trainer.global_step == 16 and trainer.datamodule.hparams.noise == 0.1
    assert examples[1] == ["debug=quick", "logger=csv"]
    train(make_cfg(*examples[1], "trainer.max_epochs=2", out=tmp_path / "csv"))
    assert (tmp_path / "csv" / "csv" / "metrics.csv").is_file()
    trainer, _, _ = fit(make_cfg(*examples[2], "trainer.max_epochs=1", "logger=none"))
    [optimizer] = trainer.optimizers
    assert type(optimizer) is torch.optim.SGD and optimizer.param_groups[0]["lr"] == 0.5
    assert examples[3] == ["scheduler=cosine", "scheduler.warmup_epochs=20"]
    _, _, logged = fit(make_cfg(*examples[3], "+trainer.max_steps=1", "logger=none"))
    assert logged.series("train/lr") == [pytest.approx(0.05 / 21)]  # 1/(20 + 1) of the rate


@pytest.mark.slow
def test_cfg_job_prints_the_composed_config_and_makes_nothing(tmp_path):
    assert doc_block("docs/configuration.md", "These override names are stable")[4].startswith(
        ".venv/bin/xor-train --cfg job"
    )
    proc = cli("train", "--cfg", "job", "model.hidden=3", cwd=tmp_path)
    assert proc.returncode == 0 and list(tmp_path.iterdir()) == []
    cfg = yaml.safe_load(proc.stdout)
    assert cfg["model"]["hidden"] == 3 and cfg["trainer"]["max_epochs"] == 401
