"""The vectorised launcher's LightningDataModule: every job's own data, stacked.

Each job keeps its own `XORDataModule` (from its own config), so its points, its
splits and its batches are exactly those of its run alone: this module stacks the sets
into (K, n, 2) tensors and asks each job's own training sampler for its batch order,
so a shuffled epoch gathers a different permutation for every data seed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from xor_vectorized import app
from xor_vectorized.anydata import SPLITS

Batch = tuple[Tensor, Tensor]  # (X, y) of one model, or of K stacked
as_index = app.function("sampler", "as_index")  # a batch's rows: a slice, or indices


class StackedDataset(Dataset):
    """X (K, n, 2) and y (K, n, 1). Indexed by one index per distinct sampler."""

    def __init__(self, X: Tensor, y: Tensor, owner: Tensor) -> None:
        self.X, self.y = X, y
        self.owner = owner  # job k -> the distinct sampler whose order it follows

    def __len__(self) -> int:
        return self.X.shape[1]

    def _rows(self, pieces: Sequence[Any]) -> tuple[Tensor, Tensor]:
        first = pieces[0]
        if isinstance(first, slice) and all(p == first for p in pieces):
            return self.X[:, first], self.y[:, first]
        index = torch.stack([torch.as_tensor(as_index(p)) for p in pieces]).to(self.X.device)
        index = index[self.owner.to(index.device)]  # (K, m): each job's own rows
        rows = torch.arange(len(index), device=index.device)[:, None]
        return self.X[rows, index], self.y[rows, index]

    def __getitem__(self, pieces: tuple) -> Batch | list[Batch]:
        if isinstance(pieces[0], app.read("sampler").Chunk):
            X, y = self._rows([p.index for p in pieces])
            size = pieces[0].batch_size
            return list(zip(X.split(size, dim=1), y.split(size, dim=1), strict=True))
        return self._rows(pieces)


class StackedSampler(Sampler):
    """One step of every distinct sampler at a time; `set_epoch` reaches them all."""

    def __init__(self, samplers: Sequence[Sampler]) -> None:
        self.samplers = list(samplers)

    def set_epoch(self, epoch: int) -> None:
        for s in self.samplers:
            s.set_epoch(epoch)  # type: ignore[attr-defined]

    def __len__(self) -> int:
        return len(self.samplers[0])  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[tuple]:
        return zip(*self.samplers, strict=True)


class StackedDataModule(L.LightningDataModule):
    """The train, validation and test sets of K jobs, which must share their sizes."""

    def __init__(self, datamodules: Sequence[Any], chunk: int | None = None) -> None:
        super().__init__()
        self.jobs, self.chunk = list(datamodules), chunk  # chunk: `model.steps_per_call` > 1
        self.sets: dict[str, StackedDataset] = {}
        self.loaders: dict[str, DataLoader] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.sets:
            return
        device = self.trainer.strategy.root_device if self.trainer is not None else "cpu"
        for dm in self.jobs:
            dm.setup(stage)  # each job's own points, drawn as its run draws them
        for split in SPLITS:
            samplers, owner, seen = [], [], {}
            for dm in self.jobs:
                sampler = dm.sampler(split, self.chunk if split == "train" else None)
                # Jobs share an order where it is the same: in order, or from one data seed.
                key = dm.seed if sampler.permutes else None
                if key not in seen:
                    seen[key] = len(samplers)
                    samplers.append(sampler)
                owner.append(seen[key])
            X = torch.stack([dm.datasets[split].X for dm in self.jobs]).to(device)
            y = torch.stack([dm.datasets[split].y for dm in self.jobs]).to(device)
            self.sets[split] = StackedDataset(X, y, torch.tensor(owner))
            sampler = StackedSampler(samplers)
            self.loaders[split] = DataLoader(self.sets[split], batch_size=None, sampler=sampler)

    def train_dataloader(self) -> DataLoader:
        return self.loaders["train"]

    def val_dataloader(self) -> DataLoader:
        return self.loaders["val"]

    def test_dataloader(self) -> DataLoader:
        return self.loaders["test"]
