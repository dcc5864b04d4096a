"""What a checkpoint holds, Lightning's own ways to load one, and resuming a moved run dir."""

import shutil
from pathlib import Path

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from tests.conftest import cli, load
from xor_lightning.checkpoint import load_checkpoint
from xor_lightning.data import make_xor
from xor_lightning.datamodule import XORDataModule
from xor_lightning.errors import UserError
from xor_lightning.module import XORModule
from xor_lightning.tools.predict import predict
from xor_lightning.train import train

# What the `trained_ckpt` run (conftest: debug=quick, 60 epochs) was given.
MODULE_HPARAMS = {
    "net": {"_target_": "xor_lightning.model.MLP", "n_in": 2, "hidden": 8, "activation": "tanh",
            "n_out": 1},
    "optimizer": {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 0.05, "fused": True},
    "scheduler": None,
    "task": {"_target_": "xor_lightning.binary.Binary", "monitor": "val/acc", "mode": "max"},
    "steps_per_call": 1,
    "gradient_clip_val": None,
    "lr_hidden": None,
    "lr_out": None,
}  # fmt: skip
DATA_HPARAMS = {"n_samples": 400, "n_val": 400, "n_test": 400, "noise": 0.0, "batch_size": None,
                "seed": 0, "problem": "xor", "path": None, "val_fraction": 0.2,
                "test_fraction": 0.2, "aspect": 1.0}  # fmt: skip


def plain(x) -> bool:
    if isinstance(x, dict):
        return all(isinstance(k, str) and plain(v) for k, v in x.items())
    if isinstance(x, list):
        return all(plain(v) for v in x)
    return x is None or isinstance(x, (bool, int, float, str))


def test_the_checkpoint_holds_plain_hyperparameters_the_run_config_and_metrics(trained_ckpt):
    ckpt = load(trained_ckpt)  # weights_only=True
    assert ckpt["hyper_parameters"] == MODULE_HPARAMS
    assert ckpt["datamodule_hyper_parameters"] == DATA_HPARAMS
    config = ckpt["run_config"]
    assert plain(config) and config["trainer"]["max_epochs"] == 60
    assert config["paths"]["output_dir"] == str(trained_ckpt.parents[1])
    assert set(ckpt["metrics"]) == {"train/loss", "train/acc", "train/lr", "val/loss", "val/acc"}


def test_load_from_checkpoint_predicts_what_xor_predict_prints(trained_ckpt, tmp_path, capsys):
    module = XORModule.load_from_checkpoint(trained_ckpt, weights_only=True).eval()
    assert module.hparams == MODULE_HPARAMS
    points = [[0.6, -0.7], [0.5, 0.5], [-0.9, 0.8], [0.05, 0.9]]
    cfg_points = "points=[" + ",".join(f"[{a},{b}]" for a, b in points) + "]"
    from tests.conftest import compose_app

    predict(compose_app("predict", f"ckpt_path={trained_ckpt}", cfg_points))
    printed = [float(line.split(",")[2]) for line in capsys.readouterr().out.splitlines()[1:]]
    with torch.no_grad():
        probs = torch.sigmoid(module(torch.tensor(points))).squeeze(1)
    assert printed == pytest.approx(probs.tolist(), abs=1e-6)


def test_the_datamodule_loads_the_runs_data_settings(make_cfg, tmp_path):
    train(make_cfg("debug=quick", "trainer.max_epochs=5", "data.n_test=64", "data.seed=3"))
    dm = XORDataModule.load_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert (dm.hparams.n_test, dm.hparams.seed) == (64, 3)  # not the defaults (400, 0)
    dm.setup()
    X, y = make_xor(64, noise=0.0, seed=3, split=2)  # the run's test set: seed 3, split 2
    assert torch.equal(dm.datasets["test"].X, X) and torch.equal(dm.datasets["test"].y, y)


def test_hparams_yaml_holds_the_hyperparameters_and_hparams_tab_does_not(make_cfg, tmp_path):
    train(make_cfg("debug=quick", "trainer.max_epochs=10"))
    assert yaml.safe_load((tmp_path / "hparams.yaml").read_text()) == {
        **MODULE_HPARAMS,
        **DATA_HPARAMS,
    }
    shown = set()
    for f in tmp_path.glob("events.out.tfevents.*"):
        ea = EventAccumulator(str(f))
        ea.Reload()
        if "_hparams_/session_start_info" in ea.summary_metadata:
            content = ea.summary_metadata["_hparams_/session_start_info"].plugin_data.content
            shown |= set(
                plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
            )
    assert shown and not shown & {"net", "optimizer", "net/hidden", "optimizer/lr"}


def test_a_network_target_outside_the_project_is_refused_by_every_loader(trained_ckpt, tmp_path):
    ckpt = load(trained_ckpt)
    evil = {"_target_": "os.mkdir", "path": str(tmp_path / "PWNED")}
    ckpt["hyper_parameters"]["net"] = ckpt["run_config"]["model"]["net"] = evil
    torch.save(ckpt, tmp_path / "sneaky.ckpt")
    with pytest.raises(UserError, match=r"^refusing model.net._target_='os.mkdir': use one of"):
        XORModule.load_from_checkpoint(tmp_path / "sneaky.ckpt", weights_only=True)
    from xor_lightning.checkpoint import build_net

    with pytest.raises(UserError, match=r"^refusing model.net._target_='os.mkdir'"):
        build_net(load_checkpoint(tmp_path / "sneaky.ckpt"))
    assert not (tmp_path / "PWNED").exists()


def tree(d: Path) -> dict[str, tuple[int, int]]:
    """Every file under `d`: (size, mtime in ns)."""
    return {str(p.relative_to(d)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(d.rglob("*")) if p.is_file()}  # fmt: skip


@pytest.mark.slow
def test_a_copied_run_dir_resumes_in_its_new_place(make_cfg, tmp_path):
    first, copy = tmp_path / "first", tmp_path / "copy"
    train(make_cfg("debug=quick", out=first))  # 20 epochs
    shutil.copytree(first, copy)
    before = tree(first)
    proc = cli("train", f"resume={copy}", "trainer.max_epochs=30", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert tree(first) == before  # the original is untouched
    last = load(copy / "checkpoints" / "last.ckpt")
    assert last["global_step"] == 30 and last["run_config"]["paths"]["output_dir"] == str(copy)
    best = next(iter(last["callbacks"].values()))
    assert Path(best["best_model_path"]).parent == copy / "checkpoints"
    assert yaml.safe_load((copy / ".hydra" / "config.yaml").read_text())["paths"]["output_dir"] == (
        str(copy)
    )
    assert len(list(copy.glob("events.out.tfevents.*"))) > len(list(first.glob("events.*")))


@pytest.mark.slow
def test_a_moved_run_dir_continues_from_its_own_checkpoints(make_cfg, tmp_path):
    first, moved = tmp_path / "first", tmp_path / "moved"
    common = ("debug=quick", "logger=none", "callbacks.boundary_plot=null",
              "callbacks.best_checkpoint.save_top_k=2")  # fmt: skip
    train(make_cfg(*common, out=first))
    shutil.move(first, moved)
    last = moved / "checkpoints" / "last.ckpt"
    train(make_cfg(*common, "trainer.max_epochs=30", f"ckpt_path={last}", out=moved))
    assert not first.exists()
    state = next(iter(load(last)["callbacks"].values()))
    # the best two of the whole run, all in the new place (Lightning would have forgotten
    # the first 20 epochs' scores and kept a best path in the old one)
    assert set(state["best_k_models"]) == {str(p) for p in (moved / "checkpoints").glob("best-*")}
    assert len(state["best_k_models"]) == 2 and state["dirpath"] == str(moved / "checkpoints")
