"""The LightningModule: the chapter's loss, optimizer and training loop around a network.

Training uses Lightning's manual optimization: `training_step` receives a chunk of
mini-batches and runs the chapter's four lines on each (zero_grad, forward, backward,
step). Lightning's per-call machinery (hooks, logging, progress) then runs once per chunk
rather than once per mini-batch, which is most of a step's cost for a model this small;
every mini-batch still gets its own optimizer step, and `global_step` counts them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric
from torchmetrics.classification import BinaryAccuracy

from xor_lightning.config import UserError
from xor_lightning.data import Batch

STAGES = ("train", "val", "test")


class NonFiniteLossError(UserError):
    """Training diverged: raised before any checkpoint could store the broken weights."""


class XORModule(L.LightningModule):
    """Binary classification with `BCEWithLogitsLoss` on the network's logits.

    `net` and `optimizer` (a partial taking the parameters) come from the Hydra config;
    evaluation needs no optimizer. `gradient_clip_val` clips the gradient norm before each
    step (Lightning's Trainer option does not apply under manual optimization).
    `hparams` is the run's plain, resolved config: it is stored in every checkpoint, so a
    checkpoint alone is enough to rebuild the model and the data.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer] | None = None,
        gradient_clip_val: float | None = None,
        hparams: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.net = net
        self.make_optimizer = optimizer
        self.gradient_clip_val = gradient_clip_val
        self.loss_fn = nn.BCEWithLogitsLoss()
        # One metric object per stage, aggregated over the epoch: nothing is synced to the
        # host per step, and validate_args/nan checks (which would sync) are off.
        for stage in STAGES:
            setattr(self, f"{stage}_acc", BinaryAccuracy(validate_args=False))
            setattr(self, f"{stage}_loss", MeanMetric(nan_strategy="disable"))
        if hparams:
            self.save_hyperparameters(hparams, logger=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def _update_metrics(
        self, stage: str, logits: Tensor, y: Tensor, loss: Tensor, log: bool = True
    ) -> None:
        """Accumulate the epoch's accuracy and mean loss; Lightning logs them at epoch end.

        Registering a metric with `self.log` costs more than the step itself here, and
        once per epoch is enough: the updates accumulate either way.
        """
        acc, mean_loss = getattr(self, f"{stage}_acc"), getattr(self, f"{stage}_loss")
        acc.update((logits > 0).long(), y.long())
        mean_loss.update(loss, weight=len(y))
        if log:
            self.log(f"{stage}/loss", mean_loss, on_step=False, on_epoch=True)
            self.log(f"{stage}/acc", acc, on_step=False, on_epoch=True)

    def _shared_step(self, batch: Batch, stage: str) -> Tensor:
        x, y = batch
        logits = self(x)
        loss = self.loss_fn(logits, y)
        self._update_metrics(stage, logits.detach(), y, loss.detach())
        return loss

    def training_step(self, chunk: Sequence[Batch] | Batch, chunk_idx: int) -> None:
        if isinstance(chunk[0], Tensor):  # a plain (x, y) batch is a chunk of one
            chunk = [chunk]  # type: ignore[list-item]
        opt = self.optimizers()
        max_steps, stopping = self.trainer.max_steps, False
        logits_seen, losses, ys = [], [], []
        for x, y in chunk:
            opt.zero_grad()  # 1. clear last step's gradients
            logits = self.net(x)  # 2. forward pass
            loss = self.loss_fn(logits, y)
            self.manual_backward(loss)  # 3. autograd computes every .grad
            if self.gradient_clip_val:
                self.clip_gradients(opt, gradient_clip_val=self.gradient_clip_val)
            opt.step()  # 4. the optimizer updates every parameter
            logits_seen.append(logits.detach())
            losses.append(loss.detach())
            ys.append(y)
            if 0 <= max_steps <= self.global_step:
                stopping = True
                break
        losses_t = torch.stack(losses)
        bad = ~torch.isfinite(losses_t)
        # One host sync per chunk, not per step; under DDP all ranks stop if any diverged.
        if self.trainer.strategy.reduce_boolean_decision(bool(bad.any()), all=False):
            first = int(bad.nonzero()[0]) if bad.any() else len(losses) - 1
            step = self.global_step - len(losses) + first + 1
            raise NonFiniteLossError(
                f"the loss became {float(losses_t[first]):g} at epoch {self.current_epoch}, "
                f"optimizer step {step}: training stopped; last.ckpt and the best checkpoint "
                "still hold the last good state (try a smaller model.optimizer.lr)"
            )
        y_all = torch.cat(ys)
        sizes = torch.tensor([len(y) for y in ys], dtype=losses_t.dtype, device=losses_t.device)
        mean_loss = (losses_t * sizes).sum() / len(y_all)
        last = stopping or chunk_idx == self.trainer.num_training_batches - 1
        self._update_metrics("train", torch.cat(logits_seen), y_all, mean_loss, log=last)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._shared_step(batch, "test")

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        """Probabilities of class 1: the sigmoid of the net's logits."""
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return torch.sigmoid(self(x))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        if self.make_optimizer is None:
            raise ValueError("XORModule needs an optimizer to train")
        return self.make_optimizer(self.parameters())

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The metrics at save time, as plain floats: the best checkpoint then carries its
        # own val/loss and val/acc, which metrics.json reports.
        checkpoint["metrics"] = {
            k: float(v) for k, v in self.trainer.callback_metrics.items() if "/" in k
        }
