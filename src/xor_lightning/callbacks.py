"""Small callbacks: the run's config in every checkpoint, a crash-safe `last.ckpt`, a clean
stop on Ctrl-C, a progress line, the pictures (decision boundary, hidden units) and the
weight histograms."""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Checkpoint
from torch import Tensor

from xor_lightning.pictures.plot import split_points

log = logging.getLogger(__name__)


class RunInfo(L.Callback):
    """The run's whole config and its current scores in every checkpoint, whatever the
    LightningModule (`checkpoint.add_run_info`): xor-eval, xor-predict, xor-export and
    `resume=` rebuild the run from it. Resuming a run dir that was moved, the checkpoint
    callbacks' saved paths follow it (`checkpoint.relocate_callbacks`)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        from xor_lightning.checkpoint import add_run_info

        add_run_info(checkpoint, self.config, trainer.callback_metrics)

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        from xor_lightning.checkpoint import relocate_callbacks

        relocate_callbacks(checkpoint, self.config, trainer.ckpt_path)


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


def printed(keys: Any) -> list[str]:
    """Metric names in the order the epoch lines print them: train's, then val's, each
    stage's loss first."""
    return sorted(keys, key=lambda k: (not k.startswith("train/"), not k.endswith("/loss"), k))


def metric_text(key: str, value: float) -> str:
    """`key value` as an epoch line prints it: an accuracy to 3 decimals, as the chapter
    prints its train-acc; a loss, or anything else, to 4."""
    return f"{key} {value:.3f}" if key.endswith("/acc") else f"{key} {value:.4f}"


def test_score(metrics: Any) -> str:
    """The score a picture's title names: the test accuracy, or a regression's MSE."""
    for key, shown in (("test/acc", "accuracy"), ("test/mse", "MSE")):
        if key in metrics:
            return f", {shown} {float(metrics[key]):.3f}"
    return ""


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
        keys = printed(k for k in metrics if k.startswith(("train/", "val/")) and k != "train/lr")
        parts = [metric_text(k, float(metrics[k])) for k in keys]
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


def network(pl_module: L.LightningModule) -> torch.nn.Module | None:
    """What maps points to the task's outputs: the module's `net`, else the module itself
    when it has a `forward` of its own (a LightningModule of yours); None otherwise."""
    net = getattr(pl_module, "net", None)
    if isinstance(net, torch.nn.Module):
        return net
    return pl_module if type(pl_module).forward is not L.LightningModule.forward else None


def run_task(trainer: L.Trainer, pl_module: L.LightningModule) -> Any:
    """The run's task: the module's own, else the one the run's config names."""
    from xor_lightning.tasks import make_task

    task = getattr(pl_module, "task", None)
    if task is None:
        config = next((cb.config for cb in trainer.callbacks if isinstance(cb, RunInfo)), {})
        task = make_task(config.get("task"))
    return task


def tensorboard_writers(trainer: L.Trainer) -> list[Any]:
    """The SummaryWriters of the run's TensorBoard loggers (none on DDP ranks > 0)."""
    if not trainer.is_global_zero:
        return []
    from torch.utils.tensorboard import SummaryWriter

    # (fast_dev_run's loggers are dummies whose experiment answers to any name: none here)
    return [lg.experiment for lg in trainer.loggers if isinstance(lg.experiment, SummaryWriter)]


class BoundaryPlot(L.Callback):
    """The decision boundary: to TensorBoard every `every_n_epochs`, to a PNG at the end.

    TensorBoard's image slider then shows the boundary forming over the training points
    (a quick NumPy rendering); `boundary.png` in the run dir shows the tested model on the
    test points (a Matplotlib figure, drawn once). Both cover the square `plane_extent`
    gives for all the run's points. What it shows follows the task (`pictures/plot.py`).
    Any network of 2 inputs has it; for any other the run log says once that it is
    skipped, and why.
    """

    tag = "pictures/decision_boundary"

    def __init__(self, every_n_epochs: int = 50, filename: str = "boundary.png") -> None:
        self.every_n_epochs, self.filename = every_n_epochs, filename
        self.extent: tuple[float, float, float, float] | None = None
        self.skipped: str | None = None  # why the picture cannot be drawn, once known
        self.task: Any = None  # the run's task (None: binary)
        self._points: dict[str, tuple[Tensor, Tensor]] = {}

    def image(self, net: torch.nn.Module, X: Tensor, y: Tensor) -> np.ndarray:
        from xor_lightning.pictures.plot import boundary_image

        return boundary_image(net, X, y, extent=self.extent, task=self.task)

    def save(self, net: torch.nn.Module, X: Tensor, y: Tensor, path: Path, score: str) -> None:
        from xor_lightning.pictures.plot import save_boundary

        save_boundary(net, X, y, path, f"test set{score}", self.extent, self.task)

    def why_not(self, net: torch.nn.Module, X: Tensor) -> str | None:
        """Why this network has no such picture (None: it has)."""
        if X.shape[1] != 2:
            return f"the points have {X.shape[1]} inputs; the picture is of the plane (2)"
        return None

    def _ready(self, trainer: L.Trainer, pl_module: L.LightningModule, split: str) -> bool:
        """The split's points and the extent, once; False (logged once) when skipped."""
        if self.skipped is None and split not in self._points:
            self._points[split] = split_points(trainer.datamodule, split, 2000)
            self.task = run_task(trainer, pl_module)
            net = network(pl_module)
            reason = "the module has no forward" if net is None else None
            reason = reason or self.why_not(net, self._points[split][0])
            if reason:
                self.skipped = reason
                log.info("%s skipped: %s", type(self).__name__, reason)
        if self.skipped:
            return False
        if self.extent is None:
            from xor_lightning.pictures.plot import plane_extent

            dm = trainer.datamodule
            sets = [split_points(dm, s)[0].cpu() for s in ("train", "val", "test")]
            self.extent = plane_extent(torch.cat(sets))
        return True

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not every_n_or_last(trainer, self.every_n_epochs):
            return
        writers = tensorboard_writers(trainer)
        if not writers or not self._ready(trainer, pl_module, "train"):
            return
        from xor_lightning.pictures.plot import png_summary

        # `add_image`, with fast PNG compression (the default's was a third of the cost)
        X, y = (t.to(pl_module.device) for t in self._points["train"])
        summary = png_summary(self.tag, self.image(network(pl_module), X, y))
        for writer in writers:
            writer.file_writer.add_summary(summary, trainer.global_step)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or not self._ready(trainer, pl_module, "test"):
            return
        shown = test_score(trainer.callback_metrics)
        path = Path(trainer.default_root_dir) / self.filename
        X, y = (t.to(pl_module.device) for t in self._points["test"])
        self.save(network(pl_module), X, y, path, shown)


class HiddenUnitsPlot(BoundaryPlot):
    """What each unit of the first hidden layer computes (see `units.py`): to TensorBoard
    every `every_n_epochs`, so the slider shows the units forming, and to a PNG at the end.
    Networks without a first layer `Linear(2, k)` + activation (`units.first_layer`) have
    none: the run log says so once."""

    tag = "pictures/hidden_units"

    def __init__(self, every_n_epochs: int = 50, filename: str = "hidden_units.png") -> None:
        super().__init__(every_n_epochs, filename)

    def why_not(self, net: torch.nn.Module, X: Tensor) -> str | None:
        from xor_lightning.pictures.units import first_layer

        if first_layer(net) is None:
            return (
                f"{type(net).__name__} has no first layer nn.Linear(2, k) and an activation "
                "(fc1 and act, or an nn.Sequential: see units.first_layer)"
            )
        return super().why_not(net, X)

    def image(self, net: torch.nn.Module, X: Tensor, y: Tensor) -> np.ndarray:
        from xor_lightning.pictures.units import hidden_units_image

        return hidden_units_image(net, X, y, extent=self.extent, task=self.task)

    def save(self, net: torch.nn.Module, X: Tensor, y: Tensor, path: Path, score: str) -> None:
        from xor_lightning.pictures.units import save_hidden_units

        title = (
            "The first hidden layer, unit by unit, over the test points\n"
            "orange: output above its value on the black line w·x + b = 0 (tanh: > 0), "
            "purple: below"
        )
        save_hidden_units(net, X, y, path, title, self.extent, self.task)


class ParameterHistograms(L.Callback):
    """Every weight and bias of the net, and its gradient from the epoch's last step, as
    TensorBoard histograms (`weights/<name>`, `weights/<name>.grad`) every `every_n_epochs`.

    Written after the epoch's last training batch: Lightning clears the gradients before
    it validates.
    """

    def __init__(self, every_n_epochs: int = 50) -> None:
        self.every_n_epochs = every_n_epochs

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, i: int
    ) -> None:
        last = i == trainer.num_training_batches - 1
        if not (last and every_n_or_last(trainer, self.every_n_epochs)):
            return
        net = network(pl_module) or pl_module
        for writer in tensorboard_writers(trainer):
            for name, p in net.named_parameters():
                for tag, values in (
                    (f"weights/{name}", p.detach()),
                    (f"weights/{name}.grad", p.grad),
                ):
                    if values is None:
                        continue
                    kept = values[values.abs() < 1e20]  # TensorBoard's bins end at 1e20
                    if len(kept):  # (a diverging run's weights may fit none)
                        writer.add_histogram(tag, kept, trainer.global_step)
