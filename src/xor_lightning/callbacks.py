"""Two small callbacks: a crash-safe `last.ckpt`, and a progress line every N epochs."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import lightning as L

log = logging.getLogger(__name__)


class LastCheckpoint(L.Callback):
    """Keeps `<dirpath>/last.ckpt` current: every `every_n_epochs` and when training ends.

    Lightning's `ModelCheckpoint(save_last=True)` refreshes `last.ckpt` only when it saves
    a top-k checkpoint, and not after the final step. Here the file always holds the state
    after the newest saved step. It is written to a temporary name and renamed, so a kill
    mid-write leaves the previous `last.ckpt` whole.
    """

    def __init__(self, dirpath: str, every_n_epochs: int = 10, filename: str = "last") -> None:
        self.path = Path(dirpath) / f"{filename}.ckpt"
        self.every_n_epochs = every_n_epochs

    def save(self, trainer: L.Trainer) -> None:
        if trainer.fast_dev_run or trainer.sanity_checking:
            return
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        trainer.save_checkpoint(tmp, weights_only=False)
        if trainer.is_global_zero:
            os.replace(tmp, self.path)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.every_n_epochs > 0 and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self.save(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.save(trainer)


class EpochPrinter(L.Callback):
    """Prints the epoch's metrics every `every_n_epochs` epochs and at the last one.

    It stands in for the progress bar, which on a 1-batch epoch mostly prints noise. The
    metrics are read from the host only on the epochs printed.
    """

    def __init__(self, every_n_epochs: int = 100) -> None:
        self.every_n_epochs = every_n_epochs

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch
        last = trainer.max_epochs is not None and epoch == trainer.max_epochs - 1
        if self.every_n_epochs <= 0 or not (epoch % self.every_n_epochs == 0 or last):
            return
        metrics = trainer.callback_metrics
        keys = ("train/loss", "train/acc", "val/loss", "val/acc")
        parts = [f"{k} {float(metrics[k]):.4f}" for k in keys if k in metrics]
        log.info("epoch %4d  %s", epoch, "  ".join(parts))
