"""A copier's 3-class data: three interleaved spiral arms (class k: arm k), as a standard
LightningDataModule whose targets are int64 class indices of shape (B,).

Drawn from `seed` with `noise` jitter, so the datamodule rebuilds the same sets from its
arguments (what xor-eval does from a checkpoint).
"""

from __future__ import annotations

import math

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset


def spirals(n: int, n_classes: int, noise: float, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, n_classes, (n,), generator=g)
    r = torch.rand(n, generator=g)
    t = 1.5 * math.pi * r + 2 * math.pi * y / n_classes
    X = torch.stack([r * torch.cos(t), r * torch.sin(t)], dim=1)
    return TensorDataset(X + noise * torch.randn(n, 2, generator=g), y)


class SpiralsDataModule(L.LightningDataModule):
    def __init__(
        self,
        n_train: int = 600,
        n_val: int = 300,
        n_test: int = 300,
        n_classes: int = 3,
        noise: float = 0.02,
        batch_size: int = 100,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        sizes = (("train", n_train), ("val", n_val), ("test", n_test))
        self.sets = {
            split: spirals(n, n_classes, noise, 3 * seed + k) for k, (split, n) in enumerate(sizes)
        }

    def _loader(self, split: str) -> DataLoader:
        return DataLoader(self.sets[split], batch_size=self.hparams.batch_size)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
