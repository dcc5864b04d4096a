"""A copier's regression data: y = sin(πx1)·cos(πx2) on [-1, 1]², as a standard
LightningDataModule whose targets are floats of shape (B, 1)."""

from __future__ import annotations

import math

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset


def surface(n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, 2, generator=g) * 2 - 1
    y = torch.sin(math.pi * X[:, 0]) * torch.cos(math.pi * X[:, 1])
    return TensorDataset(X, y.unsqueeze(1))


class SurfaceDataModule(L.LightningDataModule):
    def __init__(
        self, n_train: int = 800, n_val: int = 200, n_test: int = 200, batch_size: int = 100,
        seed: int = 0,
    ) -> None:  # fmt: skip
        super().__init__()
        self.save_hyperparameters()
        sizes = (("train", n_train), ("val", n_val), ("test", n_test))
        self.sets = {split: surface(n, 3 * seed + k) for k, (split, n) in enumerate(sizes)}

    def _loader(self, split: str) -> DataLoader:
        return DataLoader(self.sets[split], batch_size=self.hparams.batch_size)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
