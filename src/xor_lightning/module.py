"""The LightningModule: the chapter's loss, optimizer and training step around a network.

`training_step` is the chapter's loop body as Lightning writes it: forward, loss,
`return loss`; Lightning runs zero_grad, backward and the optimizer step around it
("automatic optimization"), so its options work as its docs say. The task (`binary.py`,
the chapter's; `tasks.py`) gives the loss and the metrics. `model.steps_per_call=N`
(chunks, manual optimization): `chunked.py`. The words: docs/glossary.md.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from torch import Tensor
from torch.optim.lr_scheduler import ReduceLROnPlateau
from torchmetrics import MeanMetric, MetricCollection

from xor_lightning.layer_rates import param_groups
from xor_lightning.targets import make_net
from xor_lightning.tasks import make_task
from xor_lightning.train_metrics import TrainingOutputs


class XORModule(L.LightningModule):
    """A network trained on a task. Its arguments are plain values (`net`, `task`: a
    `_target_` and its arguments; `optimizer`, `scheduler`: Hydra partials), saved with
    `save_hyperparameters()`, so `XORModule.load_from_checkpoint(path)` rebuilds it.
    `gradient_clip_val` clips where the Trainer's is not set; `lr_hidden`, `lr_out`:
    `layer_rates.py`."""

    def __init__(
        self,
        net: dict[str, Any],
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        task: dict[str, Any] | None = None,
        steps_per_call: int = 1,
        gradient_clip_val: float | None = None,
        lr_hidden: float | None = None,
        lr_out: float | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = make_net(net)
        self.task = make_task(task)
        self.loss_fn = self.task.loss()
        self.steps_per_call = steps_per_call
        self.automatic_optimization = steps_per_call == 1  # else chunked.py steps
        # A set of torchmetrics objects per stage (train/acc, ...) and the mean loss: they
        # accumulate on the device; Lightning computes, logs and resets them each epoch.
        for stage in ("train", "val", "test"):
            metrics = MetricCollection(
                self.task.metrics(), prefix=f"{stage}/", compute_groups=False
            )
            setattr(self, f"{stage}_metrics", metrics)
            setattr(self, f"{stage}_loss", MeanMetric(nan_strategy="disable"))
        self.train_outputs = TrainingOutputs()  # speed: the training metrics' updates, batched
        self.checked: set[str] = set()

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor | None:
        if not self.automatic_optimization:  # model.steps_per_call > 1
            from xor_lightning.chunked import train_chunk

            return train_chunk(self, batch)
        x, y = batch
        logits = self(x)  # 2. forward pass
        loss = self.loss_fn(logits, self.task.target(y))
        self.train_outputs.add(self, logits, y, loss)  # for the epoch's train/ metrics
        return loss  # Lightning runs 1. zero_grad before, 3. backward and 4. step after

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        """What the task reads out: probabilities (binary, multiclass) or values."""
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self.task.readout(self(x))

    def _evaluate(self, batch: Any, stage: str) -> None:
        x, y = batch
        logits = self(x)
        self.update_metrics(stage, logits, y, self.loss_fn(logits, self.task.target(y)))
        self.log(f"{stage}/loss", getattr(self, f"{stage}_loss"), on_step=False, on_epoch=True)
        self.log_dict(getattr(self, f"{stage}_metrics"), on_step=False, on_epoch=True)

    def update_metrics(self, stage: str, logits: Tensor, y: Tensor, loss: Tensor) -> None:
        if stage not in self.checked:  # a network or targets that do not fit the task
            self.task.check(logits, y, f"the {stage} data")  # one host sync, once a stage
            self.checked.add(stage)
        metrics = getattr(self, f"{stage}_metrics")
        for name, scores in self.task.scores(logits, self.task.target(y)).items():
            metrics[name].update(scores)  # each a mean over the epoch's points
        getattr(self, f"{stage}_loss").update(loss.expand(len(y)))

    def configure_callbacks(self) -> list[L.Callback]:
        """The module's own callbacks, once a trainer: its training metrics' batched updates,
        and with chunks the scheduler steps Lightning leaves out under manual optimization."""
        from xor_lightning.chunked import ChunkSchedulers

        ours = [self.train_outputs] + ([] if self.automatic_optimization else [ChunkSchedulers()])
        return [] if self.train_outputs in self.trainer.callbacks else ours

    def configure_optimizers(self) -> Any:
        from hydra.utils import instantiate

        if not self.hparams.optimizer:
            raise ValueError("XORModule needs an optimizer config to train")
        groups = param_groups(self.net, self.hparams.lr_hidden, self.hparams.lr_out)
        optimizer = instantiate(self.hparams.optimizer)(groups)
        if not self.hparams.scheduler:
            return optimizer
        scheduler = instantiate(self.hparams.scheduler)(optimizer)
        config: dict[str, Any] = {"scheduler": scheduler}  # stepped once an epoch
        if isinstance(scheduler, ReduceLROnPlateau):  # on val/loss, at each validation
            every = self.trainer.check_val_every_n_epoch or 1
            config |= {"monitor": "val/loss", "frequency": every}
        return {"optimizer": optimizer, "lr_scheduler": config}

    def configure_gradient_clipping(
        self, optimizer: Any, gradient_clip_val: Any = None, gradient_clip_algorithm: Any = None
    ) -> None:
        clip = gradient_clip_val or self.hparams.gradient_clip_val  # the Trainer's, else ours
        self.clip_gradients(optimizer, clip, gradient_clip_algorithm)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        from xor_lightning.legacy import upgrade_checkpoint

        upgrade_checkpoint(checkpoint)  # a checkpoint from before tasks and the chapter's class
