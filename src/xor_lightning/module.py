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
from xor_lightning.data import Batch
from xor_lightning.errors import UserError

STAGES = ("train", "val", "test")


def _as_chunk(chunk: Sequence[Batch] | Batch) -> Sequence[Batch]:
    """A plain (x, y) batch (the datamodule does not always chunk) is a chunk of one."""
    return [chunk] if isinstance(chunk[0], Tensor) else chunk  # type: ignore[list-item]


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
    goes into every checkpoint under its own key (see `checkpoint.py`). `lr_hidden` and
    `lr_out` (the chapter's MLP: `model.lr_hidden`, `model.lr_out`) give the hidden layers'
    and the output layer's parameters learning rates of their own (None: the optimizer's).
    """

    def __init__(
        self,
        net: dict[str, Any],
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        gradient_clip_val: float | None = None,
        run_config: dict[str, Any] | None = None,
        lr_hidden: float | None = None,
        lr_out: float | None = None,
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
        """The chapter's loop body, once per mini-batch of the chunk (see the module docstring)."""
        self._log_train_metrics_once_per_epoch()
        opt = self.optimizers()
        seen: list[tuple[Tensor, Tensor, Tensor]] = []
        for x, y in _as_chunk(chunk):
            opt.zero_grad()  # 1. clear last step's gradients
            logits = self.net(x)  # 2. forward pass
            loss = self.loss_fn(logits, y)
            self.manual_backward(loss)  # 3. autograd computes every .grad
            self._clip_gradients(opt)
            opt.step()  # 4. optimizer updates every parameter
            seen.append((logits.detach(), y, loss.detach()))
            if self._reached_max_steps():
                break
        self._stop_if_diverged(seen)
        self._update_train_metrics(seen)

    def _log_train_metrics_once_per_epoch(self) -> None:
        """Speed: registering the logs costs more than a step here, so it is done at the
        epoch's first step (even on resume), not per chunk; the metrics accumulate anyway."""
        if self._logged_epoch != self.current_epoch:
            self._logged_epoch = self.current_epoch
            self._log_metrics("train")
            world = self.trainer.world_size
            self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"],
                     on_step=False, on_epoch=True, sync_dist=world > 1)  # fmt: skip

    def _clip_gradients(self, opt: Any) -> None:
        """`model.gradient_clip_val`: the Trainer's own clipping does not run under manual
        optimization, so it is done here, between backward and step."""
        if self.gradient_clip_val:
            self.clip_gradients(opt, gradient_clip_val=self.gradient_clip_val)

    def _reached_max_steps(self) -> bool:
        """`trainer.max_steps` exactly: Lightning checks it only between chunks."""
        return 0 <= self.trainer.max_steps <= self.global_step

    def _stop_if_diverged(self, seen: list[tuple[Tensor, Tensor, Tensor]]) -> None:
        """Safety: raise on a non-finite loss before any checkpoint stores the broken weights.
        One host sync per chunk, not per step; under DDP all ranks stop if any diverged."""
        losses = torch.stack([loss for *_, loss in seen])
        bad = ~torch.isfinite(losses)
        if not self.trainer.strategy.reduce_boolean_decision(bool(bad.any()), all=False):
            return
        if bad.any():
            first = int(bad.nonzero()[0])
            step = self.global_step - len(losses) + first + 1
            epoch = self.current_epoch
            where = f"{float(losses[first]):g} at epoch {epoch}, optimizer step {step}"
        else:
            where = f"non-finite on another DDP rank at epoch {self.current_epoch}"
        raise NonFiniteLossError(
            f"the loss became {where}: training stopped; last.ckpt and the best checkpoint "
            "still hold the last good state (try a smaller model.optimizer.lr)"
        )

    def _update_train_metrics(self, seen: list[tuple[Tensor, Tensor, Tensor]]) -> None:
        """Speed: the chunk's (logits, y, loss) in one metric update; its loss is the mean over
        the chunk's points (a smaller last batch weighs less)."""
        logits, ys, losses = zip(*seen, strict=True)
        losses_t = torch.stack(losses)
        y_all = torch.cat(ys)
        sizes = torch.tensor([len(y) for y in ys], dtype=losses_t.dtype, device=losses_t.device)
        mean_loss = (losses_t * sizes).sum() / len(y_all)
        self._update_metrics("train", torch.cat(logits), y_all, mean_loss)

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
        optimizer = instantiate(self.hparams.optimizer)(self._param_groups())
        if not self.hparams.scheduler:
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": instantiate(self.hparams.scheduler)(optimizer),
        }

    def _param_groups(self) -> Any:
        """One group, or with `lr_hidden`/`lr_out` two, in the network's order: every Linear
        layer but the last, then the last (the MLP's); a rate left None is the optimizer's."""
        rates = self.hparams.get("lr_hidden"), self.hparams.get("lr_out")
        if rates == (None, None):
            return self.parameters()
        layers = [m for m in self.net.modules() if isinstance(m, nn.Linear)]
        groups = [{"params": [p for m in part for p in m.parameters()]}
                  | ({} if lr is None else {"lr": lr})
                  for part, lr in zip((layers[:-1], layers[-1:]), rates, strict=True)]  # fmt: skip
        if sum(len(g["params"]) for g in groups) != len(list(self.parameters())):
            raise UserError("model.lr_hidden/model.lr_out need a network of Linear layers only")
        return groups

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        add_run_info(checkpoint, self.run_config, self.trainer.callback_metrics)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.run_config is not None:  # a training run (not `load_from_checkpoint`)
            relocate_callbacks(checkpoint, self.run_config, self.trainer.ckpt_path)
