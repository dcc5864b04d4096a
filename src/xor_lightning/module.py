"""The LightningModule: the chapter's loss, optimizer and training loop around a network.

Training uses Lightning's manual optimization: `training_step` receives a chunk of
mini-batches and runs the chapter's four lines on each (zero_grad, forward, backward,
step). Lightning's per-call machinery (hooks, logging, progress) then runs once per chunk
rather than once per mini-batch, which is most of a step's cost for a model this small;
every mini-batch still gets its own optimizer step, and `global_step` counts them.
What Lightning counts in training batches (`limit_train_batches`, `val_check_interval`,
`ModelCheckpoint(every_n_train_steps=...)`) sees one mini-batch per batch: the datamodule
stops chunking when one of those is set. Under manual optimization Lightning steps no
learning-rate scheduler: the epoch hooks here do (see `schedule.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor, nn
from torch.optim.lr_scheduler import ReduceLROnPlateau
from torchmetrics import MeanMetric
from torchmetrics.classification import BinaryAccuracy

from xor_lightning.checkpoint import add_run_info, make_net, relocate_callbacks
from xor_lightning.config import UserError
from xor_lightning.data import Batch

STAGES = ("train", "val", "test")


class NonFiniteLossError(UserError):
    """Training diverged: raised before any checkpoint could store the broken weights."""


class XORModule(L.LightningModule):
    """Binary classification with `BCEWithLogitsLoss` on the network's logits.

    Every argument is a plain value, saved with `save_hyperparameters()`, so
    `XORModule.load_from_checkpoint(path)` rebuilds it: `net` is the network's config (its
    `_target_` and arguments), `optimizer` and `scheduler` are Hydra partials completed in
    `configure_optimizers` (evaluation needs neither). `gradient_clip_val` clips the gradient
    norm before each step (Lightning's Trainer option does not apply under manual
    optimization). `run_config`, the run's whole resolved config, is not a hyperparameter: it
    goes into every checkpoint under its own key (see `checkpoint.py`).
    """

    def __init__(
        self,
        net: dict[str, Any],
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        gradient_clip_val: float | None = None,
        run_config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["run_config"])
        self.automatic_optimization = False
        self.net = make_net(net)
        self.gradient_clip_val = gradient_clip_val
        self.run_config = run_config
        self.loss_fn = nn.BCEWithLogitsLoss()
        # One metric object per stage, aggregated over the epoch: nothing is synced to the
        # host per step, and validate_args/nan checks (which would sync) are off.
        for stage in STAGES:
            setattr(self, f"{stage}_acc", BinaryAccuracy(validate_args=False))
            setattr(self, f"{stage}_loss", MeanMetric(nan_strategy="disable"))
        self._logged_epoch = -1

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def _update_metrics(self, stage: str, logits: Tensor, y: Tensor, loss: Tensor) -> None:
        """Accumulate the epoch's accuracy and mean loss (on the device)."""
        getattr(self, f"{stage}_acc").update((logits > 0).long(), y.long())
        # Weighted by the batch's points, as a view (`weight=` is ignored by torchmetrics 1.9
        # with nan_strategy="disable": a small last batch would count as much as a full one).
        getattr(self, f"{stage}_loss").update(loss.expand(len(y)))

    def _log_metrics(self, stage: str) -> None:
        """Hand the stage's metric objects to Lightning, which computes, logs and resets them
        when the epoch ends, however it ends. Registering costs more than a step here, so
        training does it once per epoch; the updates accumulate either way."""
        self.log(f"{stage}/loss", getattr(self, f"{stage}_loss"), on_step=False, on_epoch=True)
        self.log(f"{stage}/acc", getattr(self, f"{stage}_acc"), on_step=False, on_epoch=True)

    def _shared_step(self, batch: Batch, stage: str) -> Tensor:
        x, y = batch
        logits = self(x)
        loss = self.loss_fn(logits, y)
        self._update_metrics(stage, logits.detach(), y, loss.detach())
        self._log_metrics(stage)
        return loss

    def training_step(self, chunk: Sequence[Batch] | Batch, chunk_idx: int) -> None:
        if isinstance(chunk[0], Tensor):  # a plain (x, y) batch is a chunk of one
            chunk = [chunk]  # type: ignore[list-item]
        if self._logged_epoch != self.current_epoch:  # the epoch's first step (even on resume)
            self._logged_epoch = self.current_epoch
            self._log_metrics("train")
            world = self.trainer.world_size
            self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"],
                     on_step=False, on_epoch=True, sync_dist=world > 1)  # fmt: skip
        opt = self.optimizers()
        max_steps = self.trainer.max_steps
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
                break
        losses_t = torch.stack(losses)
        bad = ~torch.isfinite(losses_t)
        # One host sync per chunk, not per step; under DDP all ranks stop if any diverged.
        if self.trainer.strategy.reduce_boolean_decision(bool(bad.any()), all=False):
            if bad.any():
                first = int(bad.nonzero()[0])
                step = self.global_step - len(losses) + first + 1
                epoch = self.current_epoch
                where = f"{float(losses_t[first]):g} at epoch {epoch}, optimizer step {step}"
            else:
                where = f"non-finite on another DDP rank at epoch {self.current_epoch}"
            raise NonFiniteLossError(
                f"the loss became {where}: training stopped; last.ckpt and the best checkpoint "
                "still hold the last good state (try a smaller model.optimizer.lr)"
            )
        y_all = torch.cat(ys)
        sizes = torch.tensor([len(y) for y in ys], dtype=losses_t.dtype, device=losses_t.device)
        mean_loss = (losses_t * sizes).sum() / len(y_all)
        self._update_metrics("train", torch.cat(logits_seen), y_all, mean_loss)

    def on_train_start(self) -> None:
        self._logged_epoch = -1

    def on_train_epoch_end(self) -> None:
        # Before the checkpoint callbacks save: last.ckpt then holds the next epoch's rate.
        scheduler = self.lr_schedulers()
        if scheduler is not None and not isinstance(scheduler, ReduceLROnPlateau):
            scheduler.step()

    def on_validation_epoch_end(self) -> None:
        fitting = self.trainer.state.fn == TrainerFn.FITTING and not self.trainer.sanity_checking
        scheduler = self.lr_schedulers() if fitting else None
        if isinstance(scheduler, ReduceLROnPlateau):  # at each validation, on its loss
            scheduler.step(self.val_loss.compute())

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._shared_step(batch, "test")

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        """Probabilities of class 1: the sigmoid of the net's logits."""
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return torch.sigmoid(self(x))

    def configure_optimizers(self) -> Any:
        from hydra.utils import instantiate

        if not self.hparams.optimizer:
            raise ValueError("XORModule needs an optimizer config to train")
        optimizer = instantiate(self.hparams.optimizer)(self.parameters())
        if not self.hparams.scheduler:
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": instantiate(self.hparams.scheduler)(optimizer),
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        add_run_info(checkpoint, self.run_config, self.trainer.callback_metrics)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.run_config is not None:  # a training run (not `load_from_checkpoint`)
            relocate_callbacks(checkpoint, self.run_config, self.trainer.ckpt_path)
