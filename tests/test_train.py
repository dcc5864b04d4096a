"""The train entry, in-process on short configs: run dir, metrics, checkpoints, resume."""

import csv
import json
import logging
import math
import re
from pathlib import Path

import pytest
import torch

from tests.conftest import compose_app, curves, doc_block, fit, load, readme_block
from xor_lightning import intro
from xor_lightning.checkpoint import build_net, load_checkpoint
from xor_lightning.data import make_xor
from xor_lightning.tools.predict import predict
from xor_lightning.train import train

METRIC_KEYS = {"train/loss", "val/loss", "val/acc", "test/loss", "test/acc"}


def csv_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "csv" / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


SIXTY_FOUR = ("data.n_samples=64", "data.n_val=64", "data.n_test=64")


def test_quick_run_writes_a_complete_run_dir_and_a_run_per_stage(make_cfg, tmp_path):
    metrics = train(
        make_cfg("debug=quick", *SIXTY_FOUR, "model.optimizer.lr=0.2")
    )  # best: 14 of 20
    assert set(metrics) == METRIC_KEYS
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk == pytest.approx(metrics) and all(isinstance(v, float) for v in on_disk.values())

    ckpts = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert "last.ckpt" in ckpts and any(n.startswith("best-") for n in ckpts)
    assert not any(n.endswith(".tmp") for n in ckpts)

    runs = curves(tmp_path)
    # sub-runs of the run dir, each with the same two tags: no `epoch` line, no hp/* charts
    assert {run: set(tags) for run, tags in runs.items()} == {
        stage: {"loss", "acc"} | ({"lr"} if stage == "train" else set())
        for stage in ("train", "val", "test", "best")
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


def test_quick_run_writes_a_complete_run_dir(make_cfg, tmp_path):
    metrics = train(make_cfg("debug=quick", "logger=all"))
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk == pytest.approx(metrics) and set(on_disk) == METRIC_KEYS
    # metrics.json against what the CSV logger saw: the last epoch's train/loss, and the
    # validation scores of the best epoch, the one whose checkpoint was kept and tested
    rows = csv_rows(tmp_path)
    train_loss = [float(r["train/loss"]) for r in rows if r["train/loss"]]
    val = [
        (float(r["val/acc"]), float(r["val/loss"]), int(r["epoch"])) for r in rows if r["val/acc"]
    ]
    best_acc, best_loss, best_epoch = max(val, key=lambda v: (v[0], -v[2]))
    assert on_disk["train/loss"] == pytest.approx(train_loss[-1])
    assert (on_disk["val/acc"], on_disk["val/loss"]) == pytest.approx((best_acc, best_loss))
    ckpts = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert ckpts == [f"best-epoch{best_epoch:03d}.ckpt", "last.ckpt"]  # no temporary file left


def test_epoch_lines_print_losses_to_4_decimals_and_accuracies_to_3(make_cfg, caplog):
    """A short run's epoch lines as the chapter prints its own (`epoch 100 loss 0.0200
    train-acc 0.995`): each loss to 4 decimals, each accuracy to 3."""
    with caplog.at_level(logging.INFO, logger="xor_lightning"):
        train(make_cfg("debug=quick", "trainer.max_epochs=10", "logger=none"))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch ")]
    loss, acc = r"\d\.\d{4}", r"\d\.\d{3}"
    assert len(lines) == 2, lines  # epoch 0 and the last, 9 (every 10 epochs in debug=quick)
    assert re.fullmatch(rf"epoch +0  train/loss {loss}  train/acc {acc}", lines[0]), lines
    both = rf"train/loss {loss}  train/acc {acc}  val/loss {loss}  val/acc {acc}"
    assert re.fullmatch(rf"epoch +9  {both}", lines[1]), lines


def test_same_seed_same_metrics_other_seed_differs(make_cfg, tmp_path):
    short = ("debug=quick", "data.batch_size=16", "trainer.max_epochs=5")  # one validation
    a = train(make_cfg(*short, out=tmp_path / "a"))
    b = train(make_cfg(*short, out=tmp_path / "b"))
    c = train(make_cfg(*short, "seed=1", out=tmp_path / "c"))
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


def test_fast_dev_run_is_one_step_without_checkpoints_or_logs(make_cfg, tmp_path):
    metrics = train(make_cfg("debug=fast_dev_run"))
    written = {p.name for p in tmp_path.iterdir()}
    assert "metrics.json" in written and not {"checkpoints", "hparams.yaml"} & written
    assert not list(tmp_path.glob("events.out.tfevents.*"))
    assert all(math.isfinite(v) for v in metrics.values())
    trainer, _, _ = fit(make_cfg("debug=fast_dev_run", "data.batch_size=16"))
    assert trainer.global_step == 1  # one mini-batch, not one chunk of them


@pytest.mark.slow
def test_the_default_run_is_the_chapters_loop_and_shows_what_the_readme_says(
    make_cfg, tmp_path, caplog, capsys
):
    with caplog.at_level(logging.INFO, logger="xor_lightning"):
        train(make_cfg())
    # the console lines, as the README shows them (its run dir is outputs/runs/...)
    printed = [r.getMessage().replace(str(tmp_path), "<dir>") for r in caplog.records
               if r.name.startswith("xor_lightning")]  # fmt: skip
    shown = readme_block("## What a run prints")
    assert shown[0] == "$ make train"
    assert printed == [re.sub(r"outputs/runs/[\w.-]+", "<dir>", line) for line in shown[1:]]
    # The chapter's own loop (plain PyTorch, intro.py) reaches the same weights: 400
    # points, full batch, 401 Adam steps at lr 0.05, 8 tanh units.
    chapter = intro.train_xor()
    last = load(tmp_path / "checkpoints" / "last.ckpt")
    assert last["global_step"] == 401
    for name, value in chapter.state_dict().items():
        torch.testing.assert_close(last["state_dict"][f"net.{name}"], value, atol=1e-4, rtol=0)
    # the 7 test points the tested (best) model gets wrong lie near the axes
    net = build_net(load_checkpoint(tmp_path / "checkpoints" / "best-epoch389.ckpt"))
    X, y = make_xor(400, seed=0, split=2)
    with torch.no_grad():
        wrong = ((net(X) > 0).float() != y).squeeze(1)
    assert int(wrong.sum()) == 7 and (X[wrong].abs().min(dim=1).values < 0.11).all()
    # and xor-predict on its last.ckpt prints the example of docs/runs-and-checkpoints.md
    capsys.readouterr()
    example = doc_block("docs/runs-and-checkpoints.md", "**Predict**")
    points = re.search(r"'(points=.*)'", example[0])[1]
    predict(compose_app("predict", f"ckpt_path={tmp_path / 'checkpoints' / 'last.ckpt'}", points))
    assert capsys.readouterr().out.splitlines() == example[1:4]
    runs = curves(tmp_path)
    assert len(runs["train"]["loss"]) == 401
    assert len(runs["val"]["acc"]) >= 40  # validation at least every 10 epochs


def test_every_minibatch_is_one_optimizer_step(make_cfg, tmp_path):
    cfg = make_cfg(
        "debug=quick",
        "data.n_samples=100",
        "data.batch_size=10",
        "model.steps_per_call=4",
        "trainer.max_epochs=2",
    )
    train(cfg)
    assert load(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == 20  # 10 per epoch


def test_max_steps_stops_inside_a_chunk(make_cfg, tmp_path):
    cfg = make_cfg(
        "debug=quick", "data.n_samples=100", "data.batch_size=10", "+trainer.max_steps=7",
        "model.steps_per_call=4",
    )  # fmt: skip
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


def test_epoch_losses_are_means_over_points_not_over_batches(make_cfg, tmp_path):
    # 64 validation and test points in batches of 48 and 16: a mean of the two batch means
    # would weigh each of the last 16 points three times as much as the others
    metrics = train(make_cfg("debug=quick", *SIXTY_FOUR, "data.batch_size=48"))
    ckpt = load_checkpoint(next((tmp_path / "checkpoints").glob("best-*.ckpt")))
    net = build_net(ckpt)
    for split, key in ((1, "val/loss"), (2, "test/loss")):
        X, y = make_xor(64, seed=0, split=split)
        with torch.no_grad():
            expected = torch.nn.functional.binary_cross_entropy_with_logits(net(X), y)
        assert metrics[key] == pytest.approx(float(expected), abs=1e-6)
