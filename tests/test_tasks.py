"""The tasks (`task=binary|multiclass|regression`): their losses, metrics and readouts
against formulas written out here, their refusals, and what a composed config does with
each (the best checkpoint's monitor, the network's outputs, Optuna's direction)."""

from __future__ import annotations

import math

import pytest
import torch
from hydra import compose, initialize_config_dir

from tests.conftest import compose_train
from xor_lightning.binary import Binary
from xor_lightning.config import CONF_DIR
from xor_lightning.errors import UserError
from xor_lightning.multiclass import Multiclass
from xor_lightning.regression import Regression
from xor_lightning.tasks import make_task
from xor_lightning.validate import validate_train

LOGITS3 = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0], [1.0, 1.5, 0.0], [0.0, -1.0, -2.0]])
LABELS3 = torch.tensor([0, 2, 0, 0])


def updated(task, logits, y):
    """The task's metric values after one update, as the module updates them."""
    metrics, values = task.metrics(), {}
    for name, scores in task.scores(logits, task.target(y)).items():
        metrics[name].update(scores)
        values[name] = float(metrics[name].compute())
    return values


def test_binary_is_the_chapters_loss_and_accuracy_at_logit_zero():
    task, logits = Binary(), torch.tensor([[2.0], [-1.0], [0.5], [-3.0]])
    y = torch.tensor([[1.0], [1.0], [0.0], [0.0]])
    by_hand = (
        sum(
            -(t * math.log(1 / (1 + math.exp(-z))) + (1 - t) * math.log(1 - 1 / (1 + math.exp(-z))))
            for z, t in zip(logits.flatten().tolist(), y.flatten().tolist(), strict=True)
        )
        / 4
    )
    assert task.loss()(logits, task.target(y)).item() == pytest.approx(by_hand, rel=1e-6)
    assert updated(task, logits, y) == {"acc": 0.5}  # right: 2.0 -> 1 and -3.0 -> 0
    assert task.readout(logits).flatten().tolist() == pytest.approx(
        [1 / (1 + math.exp(-z)) for z in logits.flatten().tolist()]
    )
    assert task.rows(task.readout(torch.tensor([[0.0], [3.0]]))) == [
        (0.5, 1),
        (pytest.approx(1 / (1 + math.exp(-3))), 1),
    ]
    assert (task.monitor, task.mode, task.outputs) == ("val/acc", "max", 1)


def test_multiclass_is_cross_entropy_on_class_indices_and_argmax_accuracy():
    task = Multiclass(num_classes=3)
    log_softmax = [[z - math.log(sum(math.exp(v) for v in row)) for z in row]
                   for row in LOGITS3.tolist()]  # fmt: skip
    by_hand = -sum(row[k] for row, k in zip(log_softmax, LABELS3.tolist(), strict=True)) / 4
    labels_as_floats = LABELS3.float().unsqueeze(1)  # as a CSV's labels arrive
    for y in (LABELS3, labels_as_floats):
        assert task.loss()(LOGITS3, task.target(y)).item() == pytest.approx(by_hand, rel=1e-6)
        assert updated(task, LOGITS3, y) == {"acc": 0.75}  # argmax 0, 2, 1, 0
    probs = task.readout(LOGITS3)
    assert probs.sum(1).tolist() == pytest.approx([1.0] * 4)
    assert [row[-1] for row in task.rows(probs)] == [0, 2, 1, 0]
    assert task.columns() == ["prob_0", "prob_1", "prob_2", "label"] and task.outputs == 3


def test_regression_is_mse_with_mse_and_mae_metrics_and_the_lowest_loss_best():
    task = Regression()
    pred, y = torch.tensor([[1.0], [2.0], [0.5]]), torch.tensor([[0.0], [2.5], [0.5]])
    assert task.loss()(pred, task.target(y)).item() == pytest.approx((1 + 0.25) / 3)
    assert updated(task, pred, y) == pytest.approx({"mse": 1.25 / 3, "mae": 1.5 / 3})
    assert task.target(torch.tensor([1.0, 2.0])).shape == (2, 1)  # (B,) targets
    assert (task.monitor, task.mode, task.columns()) == ("val/loss", "min", ["prediction"])


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Multiclass(), r"^task.num_classes=None is not allowed: task=multiclass needs"),
        (lambda: Multiclass(num_classes=1), r"^task.num_classes=1 is not allowed"),
        (lambda: Binary(monitor="val/mse"), r"^task.monitor='val/mse' is not allowed: use one "
                                            r"of \['val/loss', 'val/acc'\]"),
        (lambda: Regression(mode="best"), r"^task.mode='best' is not allowed: use max or min"),
    ],
)  # fmt: skip
def test_bad_task_settings_are_refused_in_one_line(make, message):
    with pytest.raises(UserError, match=message):
        make()


def test_outputs_and_targets_that_do_not_fit_are_refused_naming_both():
    with pytest.raises(UserError, match=r"returns \(4, 3\) .* task=binary needs \(4, 1\)"):
        Binary().check(LOGITS3, LABELS3)
    with pytest.raises(UserError, match=r"^the data: label 2 is not 0 or 1 \(task=binary\)$"):
        Binary().check(torch.zeros(4, 1), LABELS3)
    with pytest.raises(UserError, match=r"^x: label 3 is not a class of task.num_classes=3"):
        Multiclass(3).check(LOGITS3, torch.tensor([0, 1, 3, 0]), "x")
    with pytest.raises(UserError, match=r"^x: label 0.5 is not a class"):
        Multiclass(3).check(LOGITS3, torch.tensor([0.0, 0.5, 1.0, 2.0]), "x")
    with pytest.raises(UserError, match=r"^x: target nan is not a finite number"):
        Regression().check(torch.zeros(2, 1), torch.tensor([[1.0], [math.nan]]), "x")


def test_a_config_follows_its_task_monitor_outputs_and_direction():
    binary = compose_train()
    assert binary.task == {"_target_": "xor_lightning.binary.Binary", "monitor": "val/acc",
                           "mode": "max"}  # fmt: skip
    assert (binary.optimized_metric, binary.callbacks.best_checkpoint.mode) == ("val/acc", "max")
    multi = compose_train("task=multiclass", "task.num_classes=4")
    assert multi.model.net.n_out == 4
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        regression = compose("train", ["task=regression", "hparams_search=xor_optuna"],
                             return_hydra_config=True)  # fmt: skip
    assert regression.callbacks.best_checkpoint.monitor == regression.optimized_metric
    assert regression.optimized_metric == "val/loss"
    assert (regression.callbacks.best_checkpoint.mode, regression.model.net.n_out) == ("min", 1)
    assert regression.hydra.sweeper.direction == "minimize"


def test_a_task_is_named_by_a_config_file_or_refused_before_it_is_imported():
    with pytest.raises(UserError, match=r"^refusing task._target_='os.system'"):
        make_task({"_target_": "os.system", "command": "echo hi"})
    with pytest.raises(UserError, match=r"^task.num_classes=None is not allowed"):
        validate_train(compose_train("task=multiclass"))
