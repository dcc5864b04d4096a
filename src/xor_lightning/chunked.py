"""`model.steps_per_call=N`: N mini-batches in one `training_step`, each its own optimizer step.

For speed on large data. Lightning's work around every `training_step` call (hooks for
the module and each callback, progress counters, logging) costs about as much as a step
of a 33-parameter network (docs/performance.md); here it is paid once per N steps. The
datamodule hands the step a chunk of N mini-batches fetched with one indexing
(`XORDataModule.train_dataloader`; any other datamodule's single batches run as chunks of
one). The module switches to
Lightning's manual optimization and runs the chapter's four lines on each mini-batch:
`global_step` still counts every optimizer step, and so does `trainer.max_steps`.

What changes with it, as under any manual optimization: `trainer.gradient_clip_val` and
`trainer.accumulate_grad_batches` do not apply (refused before the run: use
`model.gradient_clip_val`); Lightning steps no scheduler (`ChunkSchedulers` does, once an
epoch, `ReduceLROnPlateau` at each validation); the options that count training batches
(`limit_train_batches`, `val_check_interval`, `log_every_n_steps`) count calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
from torch import Tensor
from torch.optim.lr_scheduler import ReduceLROnPlateau


def train_chunk(module: L.LightningModule, chunk: Sequence[tuple[Tensor, Tensor]] | Any) -> None:
    """The chapter's loop body, once per mini-batch of the chunk."""
    opt = module.optimizers()
    batches = [chunk] if isinstance(chunk[0], Tensor) else chunk  # a plain batch: a chunk of one
    for x, y in batches:
        opt.zero_grad()  # 1. clear last step's gradients
        logits = module(x)  # 2. forward pass
        loss = module.loss_fn(logits, module.task.target(y))
        module.manual_backward(loss)  # 3. autograd computes every .grad
        if module.hparams.gradient_clip_val:
            module.clip_gradients(opt, gradient_clip_val=module.hparams.gradient_clip_val)
        opt.step()  # 4. optimizer updates every parameter
        module.train_outputs.add(module, logits, y, loss)
        if 0 <= module.trainer.max_steps <= module.global_step:
            break  # `trainer.max_steps` exactly: Lightning checks it only between calls


class ChunkSchedulers(L.Callback):
    """Steps the scheduler as Lightning does under automatic optimization: at the end of
    each epoch (before that epoch's checkpoints are saved), or `ReduceLROnPlateau` after
    each validation, on its val/loss. A callback of the module's own (`configure_callbacks`)."""

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        scheduler = pl_module.lr_schedulers()
        if scheduler is not None and not isinstance(scheduler, ReduceLROnPlateau):
            scheduler.step()

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        scheduler = pl_module.lr_schedulers() if not trainer.sanity_checking else None
        if isinstance(scheduler, ReduceLROnPlateau):
            scheduler.step(pl_module.val_loss.compute())
