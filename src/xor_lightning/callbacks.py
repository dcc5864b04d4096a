"""Small callbacks: a crash-safe `last.ckpt`, a clean stop on Ctrl-C, a progress line."""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Checkpoint

log = logging.getLogger(__name__)


def every_n_or_last(trainer: L.Trainer, every_n_epochs: int) -> bool:
    """True on epochs 0, n, 2n, ... and on the last epoch; never when n <= 0."""
    epoch = trainer.current_epoch
    last = trainer.max_epochs is not None and epoch == trainer.max_epochs - 1
    return every_n_epochs > 0 and (epoch % every_n_epochs == 0 or last)


class LastCheckpoint(Checkpoint):
    """Keeps `<dirpath>/last.ckpt` current: every `every_n_epochs` and when training ends.

    Lightning's `ModelCheckpoint(save_last=True)` refreshes `last.ckpt` only when it saves
    a top-k checkpoint, and not after the final step. Here the file always holds the state
    after the newest saved step. It is written to a temporary name and renamed, so a kill
    mid-write leaves the previous `last.ckpt` whole. As a `Checkpoint`, Lightning runs its
    epoch-end hook after the module's, so the saved state includes the scheduler's step.
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
        if not every_n_or_last(trainer, self.every_n_epochs):
            return
        metrics = trainer.callback_metrics
        keys = ("train/loss", "train/acc", "val/loss", "val/acc")
        parts = [f"{k} {float(metrics[k]):.4f}" for k in keys if k in metrics]
        log.info("epoch %4d  %s", trainer.current_epoch, "  ".join(parts))


class GracefulStop(L.Callback):
    """Ctrl-C or SIGTERM: finish the current epoch, save `last.ckpt`, then stop.

    Stopping at an epoch boundary means the saved state resumes exactly. A second Ctrl-C
    aborts at once. `signal` holds the signal that stopped the run, if any.
    """

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # After Lightning's own SIGTERM handler is set (it would stop mid-epoch); Lightning
        # puts the handlers from before `fit` back at teardown.
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signum
        log.warning(
            "%s received: stopping after this epoch and saving last.ckpt "
            "(Ctrl-C again aborts without saving)",
            signal.Signals(signum).name,
        )

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Under DDP every rank stops at the same epoch, whichever rank got the signal.
        if trainer.strategy.reduce_boolean_decision(self.signal is not None, all=False):
            self.signal = self.signal or signal.SIGTERM  # told through another rank
            trainer.should_stop = True

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore()

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, err: BaseException
    ) -> None:
        self._restore()

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


class BoundaryPlot(L.Callback):
    """The decision boundary: to TensorBoard every `every_n_epochs`, to a PNG at the end.

    TensorBoard's image slider then shows the boundary forming over the training points
    (a quick NumPy rendering); `boundary.png` in the run dir shows the tested model on the
    test points (a Matplotlib figure, drawn once).
    """

    def __init__(self, every_n_epochs: int = 50, filename: str = "boundary.png") -> None:
        self.every_n_epochs, self.filename = every_n_epochs, filename

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not every_n_or_last(trainer, self.every_n_epochs):
            return
        writers = [lg.experiment for lg in trainer.loggers if hasattr(lg.experiment, "add_image")]
        if not writers or not trainer.is_global_zero:
            return
        from xor_lightning.plot import boundary_image

        data = trainer.datamodule.datasets["train"]
        image = boundary_image(pl_module.net, data.X, data.y)
        for writer in writers:
            writer.add_image("decision_boundary", image, trainer.global_step, dataformats="HWC")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        from xor_lightning.plot import save_boundary

        data = trainer.datamodule.datasets["test"]
        acc = trainer.callback_metrics.get("test/acc")
        title = f"test set, accuracy {float(acc):.3f}" if acc is not None else "test set"
        save_boundary(
            pl_module.net, data.X, data.y, Path(trainer.default_root_dir) / self.filename, title
        )
