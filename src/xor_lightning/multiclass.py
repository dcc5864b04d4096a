"""`task=multiclass task.num_classes=K`: K classes, one logit per class."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from xor_lightning.errors import UserError
from xor_lightning.tasks import Task


class Multiclass(Task):
    """`num_classes` classes: one logit per class, `CrossEntropyLoss` on class indices
    (int64, shape (B,)), accuracy of the largest logit."""

    name, metric_names = "multiclass", ("acc",)
    monitor, mode = "val/acc", "max"

    def __init__(
        self, num_classes: int | None = None, monitor: str | None = None, mode: str | None = None
    ) -> None:
        if not (isinstance(num_classes, int) and not isinstance(num_classes, bool)) or (
            num_classes < 2
        ):
            raise UserError(
                f"task.num_classes={num_classes!r} is not allowed: task=multiclass needs "
                "task.num_classes=<an integer >= 2>"
            )
        super().__init__(monitor, mode)
        self.num_classes = self.outputs = num_classes

    def loss(self) -> nn.Module:
        return nn.CrossEntropyLoss()

    def target(self, y: Tensor) -> Tensor:
        return y.reshape(len(y)).long()  # a CSV's labels arrive as floats

    def scores(self, logits: Tensor, target: Tensor) -> dict[str, Tensor]:
        return {"acc": (logits.argmax(-1) == target).float()}

    def readout(self, logits: Tensor) -> Tensor:
        return torch.softmax(logits, dim=1)

    def columns(self) -> list[str]:
        return [*(f"prob_{k}" for k in range(self.num_classes)), "label"]

    def rows(self, readout: Tensor) -> list[tuple[Any, ...]]:
        labels = readout.argmax(1).tolist()
        return [(*ps, k) for ps, k in zip(readout.tolist(), labels, strict=True)]

    def bad(self, y: Tensor) -> Tensor:
        return (y != y.round()) | (y < 0) | (y >= self.num_classes)

    def why(self, value: float) -> str:
        k = self.num_classes
        return f"label {value:g} is not a class of task.num_classes={k} (0 to {k - 1})"
