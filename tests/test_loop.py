"""Manual optimization over chunks, seen through Lightning's own options and hooks.

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


EARLY_ENDS = {
    "callback sets should_stop": (["data.batches_per_chunk=2"], lambda: [At(2, 1, stop)]),
    "max_time": (
        ["data.batches_per_chunk=2", "+trainer.max_time={seconds:1}"],
        lambda: [At(2, 0, lambda t: time.sleep(1.2), hook="on_train_batch_start")],
    ),
    "limit_train_batches=3": (["+trainer.limit_train_batches=3"], list),
    "limit_train_batches=0.5": (["+trainer.limit_train_batches=0.5"], list),
}


@pytest.mark.parametrize("case", list(EARLY_ENDS))
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


def test_modelcheckpoints_private_step_count_is_where_the_datamodule_reads_it():
    # datamodule.counts_batches reads this private attribute: fail here if Lightning moves it
    assert ModelCheckpoint(every_n_train_steps=7)._every_n_train_steps == 7


class StepLogging(XORModule):
    """A user's addition: a step-level metric inside `training_step`."""

    def training_step(self, chunk, chunk_idx):
        super().training_step(chunk, chunk_idx)
        self.log("train/steps_done", float(self.global_step), on_step=True, on_epoch=False)


def test_a_step_level_log_is_one_value_per_chunk_as_documented(make_cfg):
    cfg = make_cfg(*SMALL, "data.batches_per_chunk=4", "trainer.max_epochs=2")
    from xor_lightning.checkpoint import module_kwargs

    module = StepLogging(**module_kwargs(cfg))
    _, _, logged = fit(cfg, module=module)
    # chunks of 4, 4 and 2 mini-batches: logged after steps 4, 8, 10, 14, 18, 20
    assert logged.series("train/steps_done") == [4, 8, 10, 14, 18, 20]


@pytest.mark.parametrize(
    ("override", "instead"),
    [
        ("+trainer.gradient_clip_val=1.0", "use model.gradient_clip_val"),
        ("+trainer.accumulate_grad_batches=4", "use a larger data.batch_size"),
    ],
)
def test_lightning_options_manual_optimization_cannot_honour_are_refused(
    make_cfg, override, instead
):
    key, value = override.lstrip("+").split("=")
    with pytest.raises(UserError, match=rf"^{key}={value} is not allowed: .*; {instead}"):
        validate_train(make_cfg(override))


def test_training_hands_its_metrics_to_lightning_once_per_epoch(make_cfg):
    from xor_lightning.checkpoint import module_kwargs

    cfg = make_cfg(*SMALL, "data.batches_per_chunk=2", "trainer.max_epochs=2")  # 5 chunks
    module = XORModule(**module_kwargs(cfg))
    calls, log = [], module.log
    module.log = lambda name, *args, **kwargs: calls.append(name) or log(name, *args, **kwargs)
    fit(cfg, module=module)
    assert [c for c in calls if c.startswith("train/")] == [
        "train/loss",
        "train/acc",
        "train/lr",
    ] * 2
