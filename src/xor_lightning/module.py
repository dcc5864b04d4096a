"""The LightningModule: the chapter's loss and optimizer around an injected network.

Lightning runs the chapter's loop for us: `zero_grad`, `backward` and `step` happen in
the Trainer's optimization loop; we write only the forward pass and the loss.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import lightning as L
import torch
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import BinaryAccuracy

STAGES = ("train", "val", "test")


class XORModule(L.LightningModule):
    """Binary classification with `BCEWithLogitsLoss` on the network's logits.

    `net` and `optimizer` (a partial taking the parameters) come from the Hydra config;
    evaluation needs no optimizer.
    `hparams` is the run's plain, resolved config: it is stored in every checkpoint, so a
    checkpoint alone is enough to rebuild the model and the data.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer] | None = None,
        hparams: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.make_optimizer = optimizer
        self.loss_fn = nn.BCEWithLogitsLoss()
        # One metric object per stage, aggregated over the epoch: nothing is synced to the
        # host per step, and validate_args/nan checks (which would sync) are off.
        for stage in STAGES:
            setattr(self, f"{stage}_acc", BinaryAccuracy(validate_args=False))
            setattr(self, f"{stage}_loss", MeanMetric(nan_strategy="disable"))
        if hparams:
            self.save_hyperparameters(hparams, logger=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _shared_step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = self.loss_fn(logits, y)
        acc, mean_loss = getattr(self, f"{stage}_acc"), getattr(self, f"{stage}_loss")
        acc.update((logits > 0).long(), y.long())
        mean_loss.update(loss.detach(), weight=len(y))
        self.log(f"{stage}/loss", mean_loss, on_step=False, on_epoch=True, prog_bar=stage == "val")
        self.log(f"{stage}/acc", acc, on_step=False, on_epoch=True, prog_bar=stage == "val")
        return loss

    def training_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> torch.Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._shared_step(batch, "test")

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        """Probabilities of class 1: the one place a sigmoid is applied."""
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return torch.sigmoid(self(x))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.make_optimizer(self.parameters())

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The metrics at save time, as plain floats: the best checkpoint then carries its
        # own val/loss and val/acc, which metrics.json reports.
        checkpoint["metrics"] = {
            k: float(v) for k, v in self.trainer.callback_metrics.items() if "/" in k
        }
