"""The training loop seen through Lightning's own options and hooks: the default
(automatic optimization, one mini-batch a `training_step`) and `model.steps_per_call`
(chunks of mini-batches under manual optimization).

The expected values come from a callback that scores every mini-batch by hand with the
weights its optimizer step starts from, or from counting optimizer steps directly.
"""

import time
from collections import defaultdict

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import ModelCheckpoint

from tests.conftest import fit
from xor_lightning.errors import UserError
from xor_lightning.module import XORModule
from xor_lightning.validate import validate_train

# 100 points in mini-batches of 10: 10 optimizer steps per epoch.
SMALL = ("debug=quick", "logger=none", "callbacks.boundary_plot=null", "data.n_samples=100",
         "data.batch_size=10")  # fmt: skip


class HandMetrics(L.Callback):
    """Per epoch: mini-batches and points seen, summed loss and correct predictions."""

    def __init__(self) -> None:
        self.epochs: dict[int, list[float]] = defaultdict(lambda: [0, 0, 0.0, 0])
        self.queue: list = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.queue = [batch] if isinstance(batch[0], torch.Tensor) else list(batch)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        x, y = self.queue.pop(0)  # the weights are still those the step started from
        with torch.no_grad():
            logits = pl_module.net(x)
        seen = self.epochs[trainer.current_epoch]
        seen[0] += 1
        seen[1] += len(y)
        seen[2] += F.binary_cross_entropy_with_logits(logits, y, reduction="sum").item()
        seen[3] += int(((logits > 0).float() == y).sum())

    def expected(self) -> tuple[list[float], list[float]]:
        epochs = [self.epochs[e] for e in sorted(self.epochs)]
        return [e[2] / e[1] for e in epochs], [e[3] / e[1] for e in epochs]


class At(L.Callback):
    """Calls `action(trainer)` after mini-batch `batch` of `epoch` (start or end)."""

    def __init__(self, epoch, batch, action, hook="on_train_batch_end"):
        self.epoch, self.batch, self.action = epoch, batch, action
        setattr(self, hook, self._maybe)

    def _maybe(self, trainer, pl_module, *args):
        if (trainer.current_epoch, args[-1]) == (self.epoch, self.batch):
            self.action(trainer)


def stop(trainer):
    trainer.should_stop = True


def sleep(trainer):
    time.sleep(1.2)


EARLY_ENDS = {
    "callback sets should_stop": ([], lambda: [At(2, 3, stop)]),
    "callback sets should_stop, chunks": (["model.steps_per_call=2"], lambda: [At(2, 1, stop)]),
    "max_time": (["+trainer.max_time={seconds:1}"],
                 lambda: [At(2, 0, sleep, hook="on_train_batch_start")]),
    "max_time, chunks": (["model.steps_per_call=2", "+trainer.max_time={seconds:1}"],
                         lambda: [At(2, 0, sleep, hook="on_train_batch_start")]),
    "limit_train_batches=3": (["trainer.limit_train_batches=3"], list),
    "limit_train_batches=0.5": (["trainer.limit_train_batches=0.5"], list),
}  # fmt: skip


@pytest.mark.parametrize(
    "case",
    [pytest.param(c, marks=[pytest.mark.slow] * c.startswith("max_time")) for c in EARLY_ENDS],
)
def test_train_metrics_of_every_epoch_are_logged_and_reset_however_it_ends(make_cfg, case):
    overrides, callbacks = EARLY_ENDS[case]
    hand = HandMetrics()
    trainer, _, logged = fit(
        make_cfg(*SMALL, "trainer.max_epochs=4", *overrides), hand, *callbacks()
    )
    losses, accs = hand.expected()
    # one value per epoch that ran, each over exactly that epoch's mini-batches
    assert logged.series("train/loss") == pytest.approx(losses, abs=1e-6)
    assert logged.series("train/acc") == pytest.approx(accs, abs=1e-6)
    steps = [hand.epochs[e][0] for e in sorted(hand.epochs)]
    if case.startswith("limit"):  # optimizer steps, not chunks of them
        per_epoch = 3 if case.endswith("=3") else 5
        assert steps == [per_epoch] * 4 and trainer.global_step == 4 * per_epoch
    else:  # the last epoch was cut short, and still logged
        assert len(steps) <= 3 and steps[-1] < 10 and trainer.global_step == sum(steps)


def test_val_check_interval_counts_optimizer_steps(make_cfg):
    seen = []
    at_validation = L.Callback()
    at_validation.on_validation_start = lambda trainer, pl_module: seen.append(trainer.global_step)
    overrides = ("+trainer.val_check_interval=4", "trainer.check_val_every_n_epoch=1",
                 "trainer.max_epochs=2", "+trainer.num_sanity_val_steps=0")  # fmt: skip
    fit(make_cfg(*SMALL, *overrides), at_validation)
    assert seen == [4, 8, 14, 18]  # after steps 4 and 8 of each 10-step epoch


def test_step_based_checkpoints_land_on_their_steps(make_cfg, tmp_path):
    steps = ModelCheckpoint(tmp_path / "steps", "{step}", every_n_train_steps=3, save_top_k=-1)
    fit(make_cfg(*SMALL, "trainer.max_epochs=2"), steps)
    saved = sorted(int(p.stem.removeprefix("step=")) for p in (tmp_path / "steps").iterdir())
    assert saved == [3, 6, 9, 12, 15, 18]


class StepLogging(XORModule):
    """A user's addition: a step-level metric inside `training_step`."""

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        # after the step: the steps done so far (in a chunk's call, all of the chunk's)
        done = self.global_step + (1 if self.automatic_optimization else 0)
        self.log("train/steps_done", float(done), on_step=True, on_epoch=False)
        return loss


@pytest.mark.parametrize(
    ("steps_per_call", "expected"),
    [(1, [*range(1, 11), *range(11, 21)]), (4, [4, 8, 10, 14, 18, 20])],
)
def test_a_step_level_log_is_one_value_per_call_as_documented(make_cfg, steps_per_call, expected):
    from xor_lightning.checkpoint import module_kwargs

    cfg = make_cfg(*SMALL, f"model.steps_per_call={steps_per_call}", "trainer.max_epochs=2")
    module = StepLogging(**module_kwargs(cfg))
    _, _, logged = fit(cfg, module=module)
    # one value per optimizer step; with chunks of 4, 4 and 2 after steps 4, 8, 10, ...
    assert logged.series("train/steps_done") == expected


@pytest.mark.parametrize(
    ("override", "instead"),
    [
        ("+trainer.gradient_clip_val=1.0", "use model.gradient_clip_val"),
        ("+trainer.accumulate_grad_batches=4", "use a larger data.batch_size"),
    ],
)
def test_lightning_options_chunks_cannot_honour_are_refused(make_cfg, override, instead):
    key, value = override.lstrip("+").split("=")
    refused = rf"^{key}={value} is not allowed with model.steps_per_call=4 \(manual "
    with pytest.raises(UserError, match=refused + rf"optimization\): {instead}"):
        validate_train(make_cfg(override, "model.steps_per_call=4"))
    validate_train(make_cfg(override))  # Lightning's own loop takes it


class Steps(L.Callback):
    """Counts optimizer steps as Lightning's hooks see them."""

    def __init__(self) -> None:
        self.n = 0

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.n += 1


def test_accumulate_grad_batches_makes_one_step_for_two_batches(make_cfg):
    steps = Steps()
    trainer, _, _ = fit(
        make_cfg("logger=none", "callbacks=none", "data.batch_size=100", "trainer.max_epochs=3",
                 "+trainer.accumulate_grad_batches=2"),
        steps,
    )  # fmt: skip
    assert steps.n == trainer.global_step == 6  # 400 points, 4 batches an epoch, 3 epochs


@pytest.mark.parametrize("where", ["trainer", "model"])
def test_gradient_clipping_bounds_the_step(make_cfg, where):
    """Plain SGD at lr 1 moves the weights by the (clipped) gradient: its norm is the clip."""
    sgd = ("model.optimizer._target_=torch.optim.SGD", "model.optimizer.lr=1.0",
           "trainer.max_epochs=1", "logger=none", "callbacks=none")  # fmt: skip
    moved = []
    for clip in (None, 0.01):
        extra = (
            []
            if clip is None
            else [f"+{where}.gradient_clip_val={clip}".replace("+model", "model")]
        )
        cfg = make_cfg(*sgd, *extra)
        from xor_lightning.train import build

        _, module, _ = build(cfg)
        before = torch.cat([p.detach().flatten().clone() for p in module.parameters()])
        fit(cfg, module=module)
        after = torch.cat([p.detach().flatten() for p in module.parameters()])
        moved.append(float((after - before).norm()))
    assert moved[0] > 0.05 and moved[1] == pytest.approx(0.01, rel=1e-3)


def test_chunks_train_the_weights_the_default_loop_trains(make_cfg):
    weights = []
    for steps in (1, 4):
        _, module, _ = fit(
            make_cfg(*SMALL, f"model.steps_per_call={steps}", "trainer.max_epochs=3")
        )
        weights.append(torch.cat([p.detach().flatten() for p in module.parameters()]))
    torch.testing.assert_close(weights[0], weights[1], atol=1e-6, rtol=0)


@pytest.mark.parametrize("steps_per_call", [1, 2])
def test_training_hands_its_metrics_to_lightning_once_per_epoch(make_cfg, steps_per_call):
    from xor_lightning.checkpoint import module_kwargs

    cfg = make_cfg(*SMALL, f"model.steps_per_call={steps_per_call}", "trainer.max_epochs=2")
    module = XORModule(**module_kwargs(cfg))
    calls, log = [], module.log
    module.log = lambda name, *args, **kwargs: calls.append(name) or log(name, *args, **kwargs)
    fit(cfg, module=module)
    assert [c for c in calls if c.startswith("train/")] == [
        "train/loss",
        "train/acc",
        "train/lr",
    ] * 2
