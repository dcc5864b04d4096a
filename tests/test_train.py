"""The train entry, in-process on short configs: run dir, metrics, checkpoints, resume."""

import json

import pytest
import torch

from tests.conftest import curves, load
from xor_lightning.train import train

METRIC_KEYS = {"train/loss", "val/loss", "val/acc", "test/loss", "test/acc"}


def test_quick_run_writes_a_complete_run_dir_and_a_run_per_stage(make_cfg, tmp_path):
    metrics = train(make_cfg("debug=quick", "model.optimizer.lr=0.2"))  # best: epoch 14 of 20
    assert set(metrics) == METRIC_KEYS
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk == pytest.approx(metrics) and all(isinstance(v, float) for v in on_disk.values())

    ckpts = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert "last.ckpt" in ckpts and any(n.startswith("best-") for n in ckpts)
    assert not any(n.endswith(".tmp") for n in ckpts)

    runs = curves(tmp_path)
    # sub-runs of the run dir, each with the same two tags: no `epoch` line, no hp/* charts
    assert {run: set(tags) for run, tags in runs.items()} == {
        stage: {"loss", "acc"} for stage in ("train", "val", "test", "best")
    }
    train_loss, val_acc = runs["train"]["loss"], runs["val"]["acc"]
    assert [s for s, _ in train_loss] == list(range(20))  # one point per epoch
    assert [s for s, _ in val_acc] == [4, 9, 14, 19]  # every 5 epochs in debug=quick
    assert train_loss[-1][1] < train_loss[0][1]
    [(test_step, test_acc)] = runs["test"]["acc"]  # a point at the end
    assert test_step == 20 and test_acc == pytest.approx(metrics["test/acc"])
    [(best_step, best_acc)] = runs["best"]["acc"]  # on the val line, at the best epoch
    assert next((tmp_path / "checkpoints").glob("best-*")).name == "best-epoch014.ckpt"
    assert (best_step, best_acc) == (14, pytest.approx(dict(val_acc)[14]))
    assert best_acc == pytest.approx(metrics["val/acc"]) == max(v for _, v in val_acc)
    [(_, best_loss)] = runs["best"]["loss"]
    assert best_loss == pytest.approx(metrics["val/loss"])


def test_checkpoints_are_self_contained_and_weights_only(make_cfg, tmp_path):
    metrics = train(make_cfg("debug=quick"))
    best = next((tmp_path / "checkpoints").glob("best-*.ckpt"))
    ckpt = load(best)
    hp = ckpt["hyper_parameters"]
    assert hp["model"]["hidden"] == 8 and hp["data"]["n_samples"] == 64
    assert hp["model"]["optimizer"]["_partial_"] is True  # the plain config, not a partial

    def plain(x):
        if isinstance(x, dict):
            return all(isinstance(k, str) and plain(v) for k, v in x.items())
        if isinstance(x, list):
            return all(plain(v) for v in x)
        return x is None or isinstance(x, (bool, int, float, str))

    assert plain(hp)
    # metrics.json reports the tested (best) checkpoint's own validation scores
    assert ckpt["metrics"]["val/acc"] == pytest.approx(metrics["val/acc"])
    assert ckpt["metrics"]["val/loss"] == pytest.approx(metrics["val/loss"])
    assert load(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == 20


def test_same_seed_same_metrics_other_seed_differs(make_cfg, tmp_path):
    a = train(make_cfg("debug=quick", "data.batch_size=16", out=tmp_path / "a"))
    b = train(make_cfg("debug=quick", "data.batch_size=16", out=tmp_path / "b"))
    c = train(make_cfg("debug=quick", "data.batch_size=16", "seed=1", out=tmp_path / "c"))
    assert a == b
    assert a != c


def test_resume_from_ckpt_path_continues_to_the_same_end(make_cfg, tmp_path):
    straight = train(make_cfg("debug=quick", "trainer.max_epochs=30", out=tmp_path / "straight"))
    train(make_cfg("debug=quick", out=tmp_path / "first"))  # 20 epochs
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    resumed = train(
        make_cfg(
            "debug=quick", "trainer.max_epochs=30", f"ckpt_path={last}", out=tmp_path / "resumed"
        )
    )
    end = load(tmp_path / "resumed" / "checkpoints" / "last.ckpt")
    assert end["global_step"] == 30 and end["epoch"] == 30
    ref = load(tmp_path / "straight" / "checkpoints" / "last.ckpt")
    for k, v in ref["state_dict"].items():
        torch.testing.assert_close(end["state_dict"][k], v, atol=1e-5, rtol=0)
    assert resumed["train/loss"] == pytest.approx(straight["train/loss"], abs=1e-5)


def test_fast_dev_run_writes_metrics_without_checkpoints(make_cfg, tmp_path):
    metrics = train(make_cfg("debug=fast_dev_run"))
    assert set(metrics) == METRIC_KEYS
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.slow
def test_default_run_is_the_chapters_result(make_cfg, tmp_path):
    metrics = train(make_cfg())
    assert metrics["val/acc"] >= 0.97
    assert metrics["test/acc"] >= 0.95
    last = load(tmp_path / "checkpoints" / "last.ckpt")
    assert last["global_step"] == 401  # 401 full-batch optimizer steps, saved after the last
    runs = curves(tmp_path)
    assert len(runs["train"]["loss"]) == 401
    assert len(runs["val"]["acc"]) >= 40  # validation at least every 10 epochs


def test_every_minibatch_is_one_optimizer_step(make_cfg, tmp_path):
    cfg = make_cfg(
        "debug=quick",
        "data.n_samples=100",
        "data.batch_size=10",
        "data.batches_per_chunk=4",
        "trainer.max_epochs=2",
    )
    train(cfg)
    assert load(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == 20  # 10 per epoch


def test_max_steps_stops_inside_a_chunk(make_cfg, tmp_path):
    cfg = make_cfg(
        "debug=quick", "data.n_samples=100", "data.batch_size=10", "+trainer.max_steps=7"
    )
    train(cfg)
    assert load(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == 7


def test_gradient_clipping_bounds_each_step(make_cfg):
    from xor_lightning.train import build

    cfg = make_cfg(
        "debug=quick",
        "trainer.max_epochs=1",
        "model.optimizer._target_=torch.optim.SGD",
        "model.optimizer.lr=1.0",
        "~model.optimizer.fused",
        "model.gradient_clip_val=0.01",
    )
    trainer, module, datamodule = build(cfg)
    before = torch.cat([p.detach().clone().flatten() for p in module.parameters()])
    trainer.fit(module, datamodule=datamodule)
    after = torch.cat([p.detach().flatten() for p in module.parameters()])
    assert 0 < (after - before).norm() <= 0.01 + 1e-6  # SGD step = lr * clipped gradient
