"""A copier's data: a standard LightningDataModule (TensorDatasets, plain DataLoaders).

Points uniform in [-1, 1]^n_features; label 1 above the wave x2 = 0.5·sin(3·x1) (the
other features are noise the network must learn to ignore). Drawn from `seed`, so the
datamodule rebuilds the same sets from its arguments (what xor-eval does from a
checkpoint). The training batches come in a fixed order, so a resumed run sees the same
batches as an uninterrupted one; under DDP Lightning gives each rank its share.
"""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset


def waves(n: int, n_features: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, n_features, generator=g) * 2 - 1
    y = (X[:, 1] > 0.5 * torch.sin(3 * X[:, 0])).float().unsqueeze(1)
    return TensorDataset(X, y)


class WavesDataModule(L.LightningDataModule):
    def __init__(
        self,
        n_train: int = 512,
        n_val: int = 256,
        n_test: int = 256,
        n_features: int = 2,
        batch_size: int = 64,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.sets = {
            split: waves(n, n_features, 3 * seed + k)
            for k, (split, n) in enumerate((("train", n_train), ("val", n_val), ("test", n_test)))
        }

    def _loader(self, split: str) -> DataLoader:
        return DataLoader(self.sets[split], batch_size=self.hparams.batch_size)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
