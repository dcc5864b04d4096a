"""docs/template.md's tasks and own LightningModule, performed on a copy of the project:
three classes and a regression on data of the test's own (three spirals, a sin·cos
surface), and a LightningModule of the test's own named by `model._target_`; YAML files
only. What each tool prints is compared with the test's own computation from the
checkpoint's weights (a network built here, the test's own data drawn again)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import load
from tests.template_example.own_module import SineRegressor
from tests.template_example.spirals import spirals
from tests.template_example.surface import surface
from tests.template_example.two_layer import TwoLayerNet
from tests.test_template import (
    PACKAGE,
    assert_same_end,
    killed_then_resumed,
    new_project,
    ok,
    run,
)

SPIRALS = ("model=two_layer", "data=spirals", "task=multiclass", "task.num_classes=3")
SURFACE = ("model=two_layer", "data=surface", "task=regression")
OWN_MODULE = ("model=sine_regressor", "data=surface", "task=regression")
SHORT = ("trainer.max_epochs=40", "trainer.check_val_every_n_epoch=5",
         "callbacks.last_checkpoint.every_n_epochs=5")  # fmt: skip
POINTS = [[0.3, 0.1], [-0.2, 0.5], [0.7, -0.6]]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy, renamed, with the test's network, datamodules, module and their YAML files."""
    return new_project(tmp_path_factory)


def two_layer(ckpt: dict) -> TwoLayerNet:
    """The trained network, built here from the checkpoint's weights."""
    kwargs = {k: v for k, v in ckpt["hyper_parameters"]["net"].items() if k[0] != "_"}
    net = TwoLayerNet(**kwargs)
    net.load_state_dict({k[4:]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")})
    return net.eval()


def trained_run(project: Path, name: str, *overrides: str) -> tuple[Path, Path]:
    """Train; the run dir and its best checkpoint."""
    d = project / "runs" / name
    ok(run(project, "train", *overrides, *SHORT, f"hydra.run.dir={d}"))
    return d, next((d / "checkpoints").glob("best-*.ckpt"))


def scores(project: Path, ckpt: Path, name: str, *overrides: str) -> dict[str, float]:
    ok(
        run(
            project, "tools.evaluate", f"ckpt_path={ckpt}", *overrides, f"hydra.run.dir=runs/{name}"
        )
    )
    return json.loads((project / "runs" / name / "metrics.json").read_text())


def predicted(project: Path, ckpt: Path) -> list[list[str]]:
    out = ok(run(project, "tools.predict", f"ckpt_path={ckpt}", f"points={POINTS}",
                 "hydra.run.dir=runs/predict")).stdout  # fmt: skip
    return [line.split(",") for line in out.splitlines()]


def exported(project: Path, ckpt: Path, x: torch.Tensor) -> torch.Tensor:
    import onnxruntime as ort

    ok(run(project, "tools.export", f"ckpt_path={ckpt}", f"output={project}/model.onnx",
           "hydra.run.dir=runs/export"))  # fmt: skip
    session = ort.InferenceSession(str(project / "model.onnx"))
    return torch.from_numpy(session.run(None, {"x": x.numpy()})[0])


@pytest.mark.slow
def test_three_classes_train_evaluate_predict_and_export_as_computed_here(project):
    d, best = trained_run(project, "spirals", *SPIRALS)
    net = two_layer(load(best))
    X, y = spirals(300, 3, 0.02, 2).tensors  # the test split: seed 0, split 2
    with torch.no_grad():
        logits = net(X)
    acc, ce = (logits.argmax(1) == y).float().mean().item(), F.cross_entropy(logits, y).item()
    assert acc > 0.8  # it learned the arms (chance: 1/3)
    for got in (json.loads((d / "metrics.json").read_text()), scores(project, best, "eval3")):
        assert got["test/acc"] == pytest.approx(acc, abs=1e-6)
        assert got["test/loss"] == pytest.approx(ce, abs=1e-5)
    # any key of the checkpoint's own datamodule, as XOR's: blurred arms score lower; a key
    # XOR's data lack is taken without Hydra's `+`
    assert scores(project, best, "eval3n", "data.noise=0.3")["test/acc"] < acc - 0.1
    assert scores(project, best, "eval3k", "data.n_classes=3")["test/acc"] == pytest.approx(acc)

    rows = predicted(project, best)
    with torch.no_grad():
        probs = torch.softmax(net(torch.tensor(POINTS)), dim=1)
    assert rows[0] == ["x1", "x2", "prob_0", "prob_1", "prob_2", "label"]
    for row, p in zip(rows[1:], probs, strict=True):
        assert [float(v) for v in row[2:5]] == pytest.approx(p.tolist(), abs=1e-6)
        assert int(row[5]) == int(p.argmax())

    x = torch.rand(64, 2) * 2 - 1
    with torch.no_grad():
        expected = torch.softmax(net(x), dim=1)
    torch.testing.assert_close(exported(project, best, x), expected, atol=1e-5, rtol=0)
    assert (d / "boundary.png").is_file()


@pytest.mark.slow
def test_a_regression_keeps_its_lowest_val_loss_and_reads_out_values(project):
    d, best = trained_run(project, "surface", *SURFACE)
    ckpt = load(best)
    state = next(v for k, v in ckpt["callbacks"].items() if k.startswith("ModelCheckpoint"))
    assert "'monitor': 'val/loss'" in next(k for k in ckpt["callbacks"] if "ModelCheckpoint" in k)
    assert state["best_model_score"] == pytest.approx(ckpt["metrics"]["val/loss"])
    net = two_layer(ckpt)
    X, y = surface(200, 2).tensors
    with torch.no_grad():
        pred = net(X)
    mse, mae = F.mse_loss(pred, y).item(), F.l1_loss(pred, y).item()
    assert mse < 0.1  # learned the surface (its variance: 0.25)
    metrics = json.loads((d / "metrics.json").read_text())
    assert "test/acc" not in metrics and "val/acc" not in metrics
    for got in (metrics, scores(project, best, "evalr")):
        assert got["test/loss"] == pytest.approx(mse, abs=1e-6)
        assert got["test/mse"] == pytest.approx(mse, abs=1e-6)
        assert got["test/mae"] == pytest.approx(mae, abs=1e-6)
    log = (d / "train.log").read_text()
    assert f"best val/loss {metrics['val/loss']:.4f} ({best.name})" in log

    rows = predicted(project, best)
    with torch.no_grad():
        values = net(torch.tensor(POINTS)).flatten().tolist()
    assert rows[0] == ["x1", "x2", "prediction"]
    assert [float(r[2]) for r in rows[1:]] == pytest.approx(values, abs=1e-6)
    x = torch.rand(64, 2) * 2 - 1
    with torch.no_grad():
        expected = net(x)
    torch.testing.assert_close(exported(project, best, x), expected, atol=1e-5, rtol=0)


def sine_regressor(ckpt: dict) -> SineRegressor:
    module = SineRegressor(**ckpt["hyper_parameters"])
    module.load_state_dict(ckpt["state_dict"])
    return module.eval()


@pytest.mark.slow
def test_a_lightning_module_of_ones_own_trains_and_is_scored(project):
    d, best = trained_run(project, "own", *OWN_MODULE)
    ckpt = load(best)
    assert ckpt["hyper_parameters"] == {"hidden": 32, "lr": 0.01}
    assert ckpt["global_step"] == 40 * 8  # its own training_step: 8 batches an epoch
    module = sine_regressor(ckpt)
    X, y = surface(200, 2).tensors
    with torch.no_grad():
        mse = F.mse_loss(module(X), y).item()
    assert json.loads((d / "metrics.json").read_text())["test/loss"] == pytest.approx(mse, 1e-5)
    assert scores(project, best, "eval_own")["test/loss"] == pytest.approx(mse, 1e-5)
    rows = predicted(project, best)  # its forward, read out as the task says
    with torch.no_grad():
        values = module(torch.tensor(POINTS)).flatten().tolist()
    assert [float(r[2]) for r in rows[1:]] == pytest.approx(values, abs=1e-6)


@pytest.mark.slow
def test_a_lightning_module_of_ones_own_resumes_after_sigkill(project):
    whole, _ = trained_run(project, "own_whole", *OWN_MODULE)
    d = project / "runs" / "own_killed"
    resumed = killed_then_resumed(project, d, *OWN_MODULE, *SHORT, steps=40 * 8)
    assert_same_end(resumed, load(whole / "checkpoints/last.ckpt"))


@pytest.mark.slow
def test_a_lightning_module_of_ones_own_in_a_multirun_lowest_loss_first(project):
    d = project / "runs" / "own_sweep"
    ok(run(project, "train", "-m", *OWN_MODULE, *SHORT, "model.hidden=2,16",
           f"hydra.sweep.dir={d}"))  # fmt: skip
    with open(d / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["status"] for r in rows] == ["ok", "ok"]
    losses = [float(r["val/loss"]) for r in rows]
    assert losses == sorted(losses)  # a loss: the lowest first
    for row in rows:
        metrics = json.loads((d / row["job"] / "metrics.json").read_text())
        assert float(row["test/loss"]) == pytest.approx(metrics["test/loss"])


@pytest.mark.slow
def test_a_network_whose_outputs_do_not_fit_the_task_is_refused_in_one_line(project):
    proc = run(project, "train", "model=two_layer", "data=spirals", "task=binary",
               "model.net.n_out=3", "hydra.run.dir=runs/misfit")  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "error: model.net.n_out=3 does not fit task=binary, which needs 1 output per point: "
        "set model.net.n_out=1, or another task"
    ]
    assert not (project / "runs" / "misfit").exists()


def test_a_module_without_what_a_tool_needs_is_refused_in_one_line():
    import lightning as L

    from xor_lightning.errors import UserError
    from xor_lightning.regression import Regression
    from xor_lightning.tools.trained import model_of

    class StepsOnly(L.LightningModule):  # a training_step, no forward, no predict_step
        def training_step(self, batch, batch_idx):
            return None

    for tool, needs in (("export", "a forward"), ("predict", "a predict_step or a forward")):
        with pytest.raises(UserError, match=rf"^xor-{tool} needs {needs} in .*StepsOnly, "):
            model_of(StepsOnly(), Regression(), tool)
    x = torch.tensor([[0.2, -0.4]])
    module = SineRegressor().eval()
    with torch.no_grad():
        assert torch.equal(model_of(module, Regression(), "export")(x), module(x))


@pytest.mark.slow
def test_debug_quick_sets_trainer_limits_for_any_datamodule(project):
    d = project / "runs" / "quick"
    ok(run(project, "train", *SPIRALS, "debug=quick", f"hydra.run.dir={d}"))
    # 20 epochs of the spirals' 6 batches (600 points in batches of 100; the limit is 10)
    assert load(d / "checkpoints" / "last.ckpt")["global_step"] == 20 * 6


@pytest.mark.slow
def test_the_vectorised_launcher_stacks_a_regression_and_runs_ones_own_module_alone(project):
    d = project / "runs" / "vec"
    ok(run(project, "train", "-m", "hydra/launcher=vectorized", *SURFACE, "seed=1,2",
           "trainer.max_epochs=3", f"hydra.sweep.dir={d}"))  # fmt: skip
    for job in ("0", "1"):
        record = json.loads((d / job / "job.json").read_text())
        assert record["status"] == "ok" and "alone" not in record, record
        metrics = json.loads((d / job / "metrics.json").read_text())
        assert {"test/mse", "test/mae"} <= set(metrics) and "test/acc" not in metrics
    d = project / "runs" / "vec-own"
    proc = ok(run(project, "train", "-m", "hydra/launcher=vectorized", *OWN_MODULE, "seed=1,2",
                  "trainer.max_epochs=3", f"hydra.sweep.dir={d}"))  # fmt: skip
    own = f"{PACKAGE}.own_module.SineRegressor"
    for job in ("0", "1"):
        record = json.loads((d / job / "job.json").read_text())
        assert record["status"] == "ok"
        assert (
            record["alone"]
            == f"model._target_={own} (a LightningModule of your own, not an XORModule)"
        )
        assert "test/loss" in json.loads((d / job / "metrics.json").read_text())
    assert "runs as a fit of its own" in proc.stdout + proc.stderr
