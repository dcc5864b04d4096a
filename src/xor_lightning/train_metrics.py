"""The training metrics of `XORModule`, updated a batch of steps at a time (a callback of
the module's own, `configure_callbacks`); a loss no longer finite stops the run.

Speed: a torchmetrics update is a dozen small tensor operations, a good part of a step of
the chapter's network, so each step's outputs are kept (detached, on the device) and go
to the metric objects in one update every `FLUSH_EVERY` steps and before anything reads
them (the epoch's last step, a validation). The numbers are the same as updating every
step: the epoch's accuracy over all its points, its loss the mean over all its points (a
smaller last batch weighs less).
Safety: the kept losses are checked on the host at each flush, so a diverged run stops
before any checkpoint could store its broken weights, naming the step.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor

from xor_lightning.errors import UserError

FLUSH_EVERY = 64


class NonFiniteLossError(UserError):
    """Training diverged: raised before any checkpoint could store the broken weights.
    The run dir stays (its log says what happened), whatever else it holds."""

    keep_run_dir = True


class TrainingOutputs(L.Callback):
    """The kept (logits, targets, loss) of the steps since the last flush."""

    def __init__(self) -> None:
        self.kept: list[tuple[Tensor, Tensor, Tensor]] = []
        self.epoch = -1  # the epoch whose metrics Lightning was handed

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.kept, self.epoch = [], -1  # a new fit hands Lightning the metrics again

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, i: int
    ) -> None:
        if self.due(trainer, i):
            self.flush(pl_module)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.flush(pl_module)  # a checkpoint saved after validation has the train metrics

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.flush(pl_module)

    def add(self, module: L.LightningModule, logits: Tensor, y: Tensor, loss: Tensor) -> None:
        if self.epoch != module.current_epoch:  # once an epoch: registering costs a step
            self.epoch = module.current_epoch
            module.log("train/loss", module.train_loss, on_step=False, on_epoch=True)
            module.log_dict(module.train_metrics, on_step=False, on_epoch=True)
            trainer = module.trainer
            lr = trainer.optimizers[0].param_groups[0]["lr"]
            module.log(
                "train/lr", lr, on_step=False, on_epoch=True, sync_dist=trainer.world_size > 1
            )
        self.kept.append((logits.detach(), y, loss.detach()))

    def due(self, trainer: L.Trainer, batch_idx: int) -> bool:
        """Whether the kept outputs must reach the metrics after this batch."""
        return (
            len(self.kept) >= FLUSH_EVERY
            or batch_idx + 1 >= trainer.num_training_batches  # the epoch's last batch
            or trainer.should_stop  # a callback (max_time, early stopping) ends the epoch
            or 0 <= trainer.max_steps <= trainer.global_step
        )

    def flush(self, module: Any) -> None:
        """The kept outputs into the module's training metrics, in one update."""
        if not self.kept:
            return
        logits, ys, losses = zip(*self.kept, strict=True)
        self.kept = []
        losses_t = torch.stack(losses)
        bad = ~torch.isfinite(losses_t)
        if module.trainer.strategy.reduce_boolean_decision(bool(bad.any()), all=False):
            stop(module, losses_t, bad)
        sizes = torch.tensor([len(y) for y in ys], dtype=losses_t.dtype, device=losses_t.device)
        mean_loss = (losses_t * sizes).sum() / sizes.sum()  # the points' mean
        module.update_metrics("train", torch.cat(logits), torch.cat(ys), mean_loss)


def stop(module: L.LightningModule, losses: Tensor, bad: Tensor) -> None:
    """Raise `NonFiniteLossError`, naming the epoch and step (under DDP, all ranks stop)."""
    epoch = module.current_epoch
    if bad.any():
        first = int(bad.nonzero()[0])
        step = module.global_step - len(losses) + first + 1
        where = f"{float(losses[first]):g} at epoch {epoch}, optimizer step {step}"
    else:
        where = f"non-finite on another DDP rank at epoch {epoch}"
    raise NonFiniteLossError(
        f"the loss became {where}: training stopped; {_kept(module)} (try a smaller "
        "model.optimizer.lr)"
    )


def _kept(module: L.LightningModule) -> str:
    """What the run's checkpoints hold now: only the files that exist are named."""
    import os

    paths = [  # LastCheckpoint's path; ModelCheckpoint's last and best
        str(getattr(cb, key, "") or "")
        for cb in module.trainer.checkpoint_callbacks
        for key in ("path", "last_model_path", "best_model_path")
    ]
    names = sorted({os.path.basename(p) for p in paths if p and os.path.isfile(p)})
    if not names:
        return "no checkpoint was saved before it"
    return (
        f"{', '.join(names)} {'hold' if len(names) > 1 else 'holds'} the last state saved before it"
    )
