"""`task=regression`: a value per point."""

from __future__ import annotations

from torch import Tensor, nn

from xor_lightning.tasks import Task


class Regression(Task):
    """A value per point: `MSELoss`; MSE and MAE (no accuracy). The best checkpoint has the
    lowest val/loss."""

    name, metric_names = "regression", ("mse", "mae")

    def loss(self) -> nn.Module:
        return nn.MSELoss()

    def scores(self, logits: Tensor, target: Tensor) -> dict[str, Tensor]:
        error = logits - target
        return {"mse": (error**2).mean(-1), "mae": error.abs().mean(-1)}
