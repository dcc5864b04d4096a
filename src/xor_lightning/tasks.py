"""What kind of problem a run solves: its loss, its metrics, and what its outputs mean.

An option of the `task` config group (`conf/task/`; docs/glossary.md) picks it:
`task=binary`, the chapter's (`binary.py`: one logit per point, `BCEWithLogitsLoss`,
accuracy); `task=multiclass task.num_classes=K` (`multiclass.py`); `task=regression`
(`regression.py`). Everything downstream asks the task: the module its loss and metrics,
the best checkpoint its `monitor` and `mode`, xor-predict its columns, xor-export its
`readout`. `Task` below is what they have in common.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric, Metric

from xor_lightning.errors import UserError


class Task:
    """A kind of problem. `monitor` (a `val/` metric) and `mode` ("max" or "min") say which
    checkpoint is the best; each subclass says the rest (the defaults: a regression's)."""

    name = ""
    metric_names: tuple[str, ...] = ()
    monitor, mode = "val/loss", "min"  # the defaults of each task's own
    outputs = 1  # how many numbers the network returns per point

    def __init__(self, monitor: str | None = None, mode: str | None = None) -> None:
        allowed = [f"val/{m}" for m in ("loss", *self.metric_names)]
        if (monitor or self.monitor) not in allowed:
            raise UserError(f"task.monitor={monitor!r} is not allowed: use one of {allowed}")
        if (mode or self.mode) not in ("max", "min"):
            raise UserError(f"task.mode={mode!r} is not allowed: use max or min")
        self.monitor, self.mode = monitor or self.monitor, mode or self.mode

    # Training: the loss, and the metrics: each the mean over points of a per-point score
    # (accuracy: of 1 for a right answer, 0 for a wrong one), so that one function serves a
    # run's torchmetrics objects and the vectorised engine (every model's points at once).
    def loss(self) -> nn.Module:
        raise NotImplementedError

    def scores(self, logits: Tensor, target: Tensor) -> dict[str, Tensor]:
        """Each metric's score of each point of the batch, (B,), with no host sync."""
        raise NotImplementedError

    def metrics(self) -> dict[str, Metric]:
        """A fresh torchmetrics object for each metric (a set per stage)."""
        return {name: MeanMetric(nan_strategy="disable") for name in self.metric_names}

    def target(self, y: Tensor) -> Tensor:
        """The batch's targets in the form the loss takes."""
        return y.float().reshape(len(y), -1)

    # Using the model: what its outputs mean (xor-predict's columns, xor-export's output).
    def readout(self, logits: Tensor) -> Tensor:
        return logits

    def columns(self) -> list[str]:
        return ["prediction"]

    def rows(self, readout: Tensor) -> list[tuple[Any, ...]]:
        return [(v,) for v in readout[:, 0].tolist()]

    # Checks: a network or targets that do not fit, refused in one line.
    def check(self, logits: Tensor, y: Tensor, where: str = "the data") -> None:
        """On a run's first batch (one host sync)."""
        if logits.dim() != 2 or logits.shape[1] != self.outputs:
            raise UserError(
                f"the network returns {tuple(logits.shape)} for a batch of {len(logits)}, "
                f"task={self.name} needs ({len(logits)}, {self.outputs}): give the network "
                f"{self.outputs} output(s) (e.g. model.net.n_out={self.outputs})"
            )
        self.check_targets(y, where)

    def check_targets(self, y: Tensor, where: str = "the data") -> None:
        bad = self.bad(y).reshape(-1)
        if bool(bad.any()):
            raise UserError(f"{where}: {self.why(y.reshape(-1)[bad][0].item())}")

    def bad(self, y: Tensor) -> Tensor:
        """Which targets the task does not take (a boolean mask)."""
        return ~torch.isfinite(y.float())

    def why(self, value: float) -> str:
        return f"target {value:g} is not a finite number (task={self.name})"


def make_task(cfg: dict[str, Any] | None) -> Task:
    """The task a config describes (`_target_` and its arguments); binary when there is
    none (checkpoints from before tasks)."""
    from xor_lightning.targets import target_class

    cls, kwargs = target_class(cfg or {"_target_": "xor_lightning.binary.Binary"}, "task")
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise UserError(f"task._target_={cfg.get('_target_')} is not a xor_lightning.tasks.Task")
    return cls(**kwargs)
