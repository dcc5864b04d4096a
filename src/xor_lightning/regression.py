"""`task=regression`: a value per point."""

from __future__ import annotations

from torch import nn
from torchmetrics import MeanAbsoluteError, MeanSquaredError, Metric

from xor_lightning.tasks import Task


class Regression(Task):
    """A value per point: `MSELoss`; MSE and MAE (no accuracy). The best checkpoint has the
    lowest val/loss."""

    name, metric_names = "regression", ("mse", "mae")

    def loss(self) -> nn.Module:
        return nn.MSELoss()

    def metrics(self) -> dict[str, Metric]:
        return {"mse": MeanSquaredError(), "mae": MeanAbsoluteError()}
