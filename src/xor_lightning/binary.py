"""`task=binary`, the chapter's: two classes, one logit per point."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from xor_lightning.tasks import Task


class Binary(Task):
    """Two classes: one logit per point, `BCEWithLogitsLoss`, accuracy at logit 0."""

    name, metric_names = "binary", ("acc",)
    monitor, mode = "val/acc", "max"

    def loss(self) -> nn.Module:
        return nn.BCEWithLogitsLoss()

    def scores(self, logits: Tensor, target: Tensor) -> dict[str, Tensor]:
        return {"acc": ((logits > 0).float() == target).float().reshape(-1)}  # logit 0: p 0.5

    def readout(self, logits: Tensor) -> Tensor:
        return torch.sigmoid(logits)

    def columns(self) -> list[str]:
        return ["prob", "label"]

    def rows(self, readout: Tensor) -> list[tuple[Any, ...]]:
        return [(p, int(p >= 0.5)) for p in readout[:, 0].tolist()]

    def bad(self, y: Tensor) -> Tensor:
        return (y != 0) & (y != 1)

    def why(self, value: float) -> str:
        return f"label {value:g} is not 0 or 1 (task=binary)"
