"""The vectorised launcher's LightningModule: K jobs' training loops as one.

The same loop as `XORModule`'s (automatic optimization, one mini-batch a `training_step`;
with `steps_per_call` > 1 the chunks of `chunked.py`, under manual optimization), with a
`StackedMLP` and a `StackedAdam` (or `StackedSGD`), so the Trainer counts the same epochs,
steps and validations as a run alone and its loop state is every job's loop state. Each
model's loss is its task's loss on its own batch (the task's own loss, `torch.vmap`ped over
the models); the sum over models is what is differentiated, so each gets its own gradient.
Metrics are the task's per-point scores, summed per model: (K,) tensors kept on the device,
read at the end.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from xor_vectorized import app
from xor_vectorized.data import Batch
from xor_vectorized.net import StackedMLP, stacked_optimizer

log = logging.getLogger(__name__)
every_n_or_last = app.function("callbacks", "every_n_or_last")  # as the app's callbacks say

# Losses that are the mean of a per-element loss over an input and a target of one shape.
# The same loss object with reduction="none" gives every model's elements in one call, and
# each model's mean is its loss: forward and backward of 4,096 chapter MLPs on 400 points
# each took 118 ms against 134 ms with `torch.vmap` over the models (2-core CPU).
ELEMENTWISE = (nn.BCEWithLogitsLoss, nn.BCELoss, nn.MSELoss, nn.L1Loss, nn.SmoothL1Loss,
               nn.HuberLoss)  # fmt: skip


def per_element(loss: nn.Module) -> nn.Module | None:
    """`loss` with reduction="none" when its mean is a mean over elements, else None."""
    if type(loss) not in ELEMENTWISE or getattr(loss, "reduction", None) != "mean":
        return None
    each = copy.copy(loss)
    each.reduction = "none"
    return each


class StackedModule(L.LightningModule):
    """`hyper` holds the optimizer's per-model values (lr, beta1, beta2, eps, weight_decay).

    A model whose loss becomes non-finite is frozen from that step on (`alive` False,
    `failed_at` its epoch and step); the others go on. `monitor`/`mode` say which
    validation metric makes a model's best weights, as the best checkpoint of a run does.
    """

    def __init__(
        self,
        net: StackedMLP,
        hyper: dict[str, Tensor],
        decoupled: bool = False,
        gradient_clip_val: float | None = None,
        monitor: str = "val/acc",
        mode: str = "max",
        optimizer: str = "adam",
        steps_per_call: int = 1,
        task: Any = None,
    ) -> None:
        super().__init__()
        self.task = task or app.read("tasks").make_task(None)  # the jobs' task (binary by default)
        self.loss_fn = self.task.loss()
        self.loss_each = per_element(self.loss_fn)
        self.automatic_optimization = steps_per_call == 1  # as each job's own run
        self.net, self.hyper, self.decoupled = net, hyper, decoupled
        self.optimizer_kind = optimizer  # "adam" (Adam/AdamW) or "sgd": `stacked_optimizer`
        self.gradient_clip_val = gradient_clip_val
        self.monitor, self.mode = monitor, mode
        K = len(net)
        self.register_buffer("alive", torch.ones(K, dtype=torch.bool))
        self.register_buffer("failed_at", torch.full((K, 2), -1, dtype=torch.long))
        self.register_buffer("failed_loss", torch.zeros(K))
        # Models an Optuna pruner stopped (`StackedPruning`): frozen from the epoch after.
        self.register_buffer("stopped_at", torch.full((K,), -1, dtype=torch.long))
        self.stopped_loops: dict[int, dict[str, Any]] = {}  # epoch -> the loop state then
        self.history: dict[str, list[tuple[int, int, Tensor]]] = {}  # key -> [(epoch, step, (K,))]
        self.best: dict[str, Any] = {}
        self.tested: dict[str, Tensor] = {}
        self._sums: dict[str, Tensor] = {}
        self.print_every_n_epochs = 100
        self.batches_per_epoch = 1  # training batches (chunks) per epoch, for logging steps
        self.best_at_epoch_end = False  # set in on_train_start
        # (epoch, global step, weights, gradients) every `snapshot_every` epochs: a small
        # group's pictures and histograms, drawn after the fit.
        self.snapshot_every = 0
        self.snapshots: list[tuple[int, int, list[Tensor], list[Tensor]]] = []

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def _targets(self, y: Tensor) -> Tensor:
        """The K models' targets (K, B, ...) in the form the loss takes: `Task.target` is
        per point, so all K batches go through it as one."""
        flat = self.task.target(y.reshape(-1, *y.shape[2:]))
        return flat.reshape(*y.shape[:2], *flat.shape[1:])

    def _losses(self, logits: Tensor, target: Tensor) -> Tensor:
        """Each model's loss on its batch, as its run computes it: (K,)."""
        if self.loss_each is not None:
            return self.loss_each(logits, target).flatten(1).mean(1)
        return torch.vmap(self.loss_fn)(logits, target)

    def _accumulate(self, stage: str, logits: Tensor, target: Tensor, losses: Tensor) -> None:
        """Sum each model's batch loss (times its points) and per-point scores."""
        K, n = target.shape[:2]
        # A score is per point (`Task.scores`): the K models' points scored as one batch
        scores = self.task.scores(logits.flatten(0, 1), target.flatten(0, 1))
        scores = {m: s.reshape(K, n) for m, s in scores.items()}
        sums = {"loss": losses.detach() * n, **{m: s.sum(1) for m, s in scores.items()}}
        for name, value in sums.items():
            key = f"{stage}/{name}"
            self._sums[key] = self._sums.get(key, 0) + value
        self._sums[f"{stage}/n"] = self._sums.get(f"{stage}/n", 0) + n

    def _epoch_metrics(self, stage: str) -> dict[str, Tensor]:
        n = self._sums.pop(f"{stage}/n", 0)
        names = ("loss", *self.task.metric_names)
        sums = {name: self._sums.pop(f"{stage}/{name}", None) for name in names}
        if sums["loss"] is None:
            return {}
        return {f"{stage}/{name}": total / n for name, total in sums.items()}

    def training_step(self, batch: Sequence[Batch] | Batch, batch_idx: int) -> Tensor | None:
        if self.automatic_optimization:
            return self._step(*batch)
        opt = self.optimizers()
        for x, y in [batch] if isinstance(batch[0], Tensor) else batch:  # a chunk
            opt.zero_grad()
            self.manual_backward(self._step(x, y))
            if self.gradient_clip_val:
                self._clip(self.gradient_clip_val)
            opt.step()
            if 0 <= self.trainer.max_steps <= self.global_step:
                break
        return None

    def _step(self, x: Tensor, y: Tensor) -> Tensor:
        """The K models' summed loss on their batches (what is differentiated)."""
        logits, target = self.net(x), self._targets(y)
        losses = self._losses(logits, target)
        finite = torch.isfinite(losses)
        # A model whose loss is no longer finite stops here: this step is not applied.
        dying = self.alive & ~finite
        # (epoch, optimizer step) on the device: no copy from the host, so no sync per step
        self._when[1] += 1
        self.failed_at = torch.where(dying[:, None], self._when, self.failed_at)
        self.failed_loss = torch.where(dying, losses.detach(), self.failed_loss)
        self.alive &= finite
        self.optimizers().optimizer.alive = self.alive
        kept = torch.where(self.alive, losses, 0)
        self._accumulate("train", logits.detach(), target, kept.detach())
        return kept.sum()

    def configure_gradient_clipping(
        self, optimizer: Any, gradient_clip_val: Any = None, gradient_clip_algorithm: Any = None
    ) -> None:
        if self.gradient_clip_val:  # each model on its own parameters
            self._clip(self.gradient_clip_val)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        last = batch_idx == self.trainer.num_training_batches - 1
        if self.snapshot_every and last and every_n_or_last(self.trainer, self.snapshot_every):
            params = self.net.flat_params()  # weights and the epoch's last gradients
            self.snapshots.append((self.current_epoch, self.global_step,
                                   [p.detach().cpu().clone() for p in params],
                                   [p.grad.detach().cpu().clone() for p in params]))  # fmt: skip

    @torch.no_grad()
    def _clip(self, max_norm: float) -> None:
        """`clip_grad_norm_` for every model on its own parameters."""
        grads = [p.grad for p in self.net.parameters() if p.grad is not None]
        norms = torch.stack([g.flatten(1).pow(2).sum(1) for g in grads]).sum(0).sqrt()
        coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(coef.view(-1, *([1] * (g.dim() - 1))))

    def _record(self, metrics: dict[str, Tensor]) -> None:
        for key, value in metrics.items():
            self.history.setdefault(key, []).append((self.current_epoch, self.global_step, value))

    def on_train_start(self) -> None:
        self.batches_per_epoch = self.trainer.num_training_batches
        # When validating every epoch, a run's ModelCheckpoint saves at the epoch's end (its
        # `_should_save_on_train_epoch_end`), after the loop has counted the epoch's batches.
        self.best_at_epoch_end = self.trainer.check_val_every_n_epoch == 1

    def on_train_epoch_start(self) -> None:
        self._when = torch.tensor([self.current_epoch, self.global_step], device=self.device)

    def on_train_epoch_end(self) -> None:
        self._record({**self._epoch_metrics("train"), "train/lr": self.hyper["lr"].float()})
        if self.best_at_epoch_end and self.current_epoch in (self.best or {}).get("loops", {}):
            self.best["loops"][self.current_epoch] = self.trainer.fit_loop.state_dict()
        if every_n_or_last(self.trainer, self.print_every_n_epochs):
            self._print()

    def _print(self) -> None:
        """A run's progress line, for K models: median [min, max] of each metric."""
        alive, parts = self.alive, []
        keys = (
            "train/loss",
            *(f"{s}/{m}" for s in ("train", "val") for m in self.task.metric_names),
        )
        for key in keys:
            if self.history.get(key):
                v = self.history[key][-1][2][alive].float()
                if len(v):
                    lo, mid, hi = torch.quantile(v, torch.tensor([0.0, 0.5, 1.0], device=v.device))
                    parts.append(f"{key} {mid:.4f} [{lo:.4f}, {hi:.4f}]")
        failed = int((self.failed_at[:, 0] >= 0).sum())
        stopped = int((self.stopped_at >= 0).sum())
        log.info(
            "epoch %4d  %d models  %s%s",
            self.current_epoch,
            len(alive),
            "  ".join(parts),
            (f"  failed {failed}" if failed else "") + (f"  pruned {stopped}" if stopped else ""),
        )

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        x, y = batch
        logits, target = self.net(x), self._targets(y)
        self._accumulate("val", logits, target, self._losses(logits, target))

    def on_validation_epoch_end(self) -> None:
        metrics = self._epoch_metrics("val")
        if self.trainer.sanity_checking or not metrics:
            return
        self._record(metrics)
        self._update_best(metrics[self.monitor])

    def _update_best(self, current: Tensor) -> None:
        """Keep each model's best weights and optimizer state, as its best checkpoint would.

        Like `ModelCheckpoint(save_top_k=1)`: the first validation is the best so far, then
        only a strictly better value replaces it.
        """
        params = self.net.flat_params()
        opt = self.optimizers().optimizer
        if not self.best:
            self.best = {
                "score": torch.full_like(current, float("nan")),
                "epoch": torch.full(current.shape, -1, dtype=torch.long, device=current.device),
                "step": torch.full(current.shape, -1, dtype=torch.long, device=current.device),
                "params": [p.detach().clone() for p in params],
                "state": [{k: v.clone() for k, v in opt.state[p].items()} for p in params],
                "loops": {},
                "metrics": {},  # job -> its best checkpoint's metrics, when resumed
            }
        best = self.best
        better = current > best["score"] if self.mode == "max" else current < best["score"]
        better = (better | (best["epoch"] < 0)) & self.alive & ~torch.isnan(current)
        best["score"] = torch.where(better, current, best["score"])
        best["epoch"] = torch.where(better, self.current_epoch, best["epoch"])
        best["step"] = torch.where(better, self.global_step, best["step"])
        for i, p in enumerate(params):
            view = better.view(-1, *([1] * (p.dim() - 1)))
            best["params"][i] = torch.where(view, p.detach(), best["params"][i])
            for k, v in opt.state[p].items():
                shaped = better if v.dim() == 1 else view
                best["state"][i][k] = torch.where(shaped, v, best["state"][i][k])
        best["loops"][self.current_epoch] = self.trainer.fit_loop.state_dict()
        if best["metrics"]:  # a resumed model's new best replaces the one it came with
            for k in better.nonzero().flatten().tolist():
                best["metrics"].pop(k, None)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # A fit without job dirs resumes from this checkpoint alone: its curves so far too
        checkpoint["stacked_best"] = self.best
        checkpoint["stacked_history"] = self.history
        checkpoint["stacked_stopped_loops"] = self.stopped_loops

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        def to(obj: Any) -> Any:
            if isinstance(obj, Tensor):
                return obj.to(self.device)
            if isinstance(obj, dict):
                return {k: to(v) for k, v in obj.items()}
            if isinstance(obj, (list, tuple)):
                return type(obj)(to(v) for v in obj)
            return obj

        self.best = to(checkpoint.get("stacked_best") or {})
        self.history = to(checkpoint.get("stacked_history") or {})
        self.stopped_loops = checkpoint.get("stacked_stopped_loops") or {}

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        x, y = batch
        logits, target = self.net(x), self._targets(y)
        self._accumulate("test", logits, target, self._losses(logits, target))

    def on_test_epoch_end(self) -> None:
        self.tested = self._epoch_metrics("test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        params = self.net.flat_params()
        return stacked_optimizer(self.optimizer_kind, params, self.hyper, self.decoupled)
