"""The chapter's data in plain PyTorch: XOR points, any split of a data config, a Dataset.

The points live in memory, so a batch is one indexing of two tensors, not `batch_size`
calls to `__getitem__` and a collate. Lightning is in `datamodule.py` (the chapter's
script, `intro.py`, imports only torch); the other toy problems are in `zoo.py`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch.utils.data import Dataset

from xor_lightning.sampler import Chunk, Index, Rows

SPLITS = ("train", "val", "test")
Batch = tuple[torch.Tensor, torch.Tensor]


def xor(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Uniform in [-1, 1]²; label 1 where exactly one coordinate is positive."""
    X = torch.rand(n, 2, generator=g) * 2 - 1
    return X, (X[:, 0] * X[:, 1] < 0).float()


def make_xor(n: int, noise: float = 0.0, seed: int = 0, split: int = 0, problem: str = "xor",
             aspect: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Draw `n` labelled points of a 2-D toy problem (XOR by default): X (n, 2), y (n, 1).

    Labels come from the clean points; Gaussian jitter (std `noise` on x1, `aspect`·`noise`
    on x2) is added afterwards, so points near the class boundary become ambiguous. Split `k`
    (0 train, 1 val, 2 test) of `seed` draws from a generator seeded with 3·seed + k: every
    (seed, split) pair is distinct.
    """
    from xor_lightning.zoo import PROBLEMS

    if problem != "xor" and problem not in PROBLEMS:
        raise ValueError(f"problem must be one of {sorted(['xor', *PROBLEMS])}, got {problem!r}")
    g = torch.Generator().manual_seed(3 * seed + split)
    X, y = (xor if problem == "xor" else PROBLEMS[problem])(n, g)
    if noise > 0:
        X = X + noise * torch.randn(n, 2, generator=g) * torch.tensor([1.0, aspect])
    return X, y.unsqueeze(1)


def load_split(data: Mapping[str, Any], split: str, points: Batch | None = None) -> Batch:
    """X (n, k) and y (n, 1), float32, of one split ("train", "val" or "test") of the data
    a `data` config describes (keys as in conf/data/*.yaml; a dict or a DictConfig): a toy
    problem's `n_samples`, `n_val` or `n_test` points drawn from `seed` (`make_xor`), or a
    CSV file's split (`problem: csv`: `csvdata.csv_split`)."""
    if data.get("problem", "xor") == "csv":
        from xor_lightning.csvdata import csv_split

        return csv_split(data, split, points)
    k = SPLITS.index(split)
    n = data.get(("n_samples", "n_val", "n_test")[k], 400)
    noise, aspect = data.get("noise", 0.0), data.get("aspect", 1.0)
    return make_xor(n, noise, data.get("seed", 0), k, data.get("problem", "xor"), aspect)


class XORDataset(Dataset):
    """Points as two tensors, X (n, k) and y (n, 1): `n` drawn points of a toy problem (XOR
    by default), or the given `points` (X, y). One indexing (an int, a slice, `Rows`)
    yields a whole batch; a `Chunk` a list of batches (`sampler.py`)."""

    def __init__(
        self,
        n: int = 400,
        noise: float = 0.0,
        seed: int = 0,
        split: int = 0,
        problem: str = "xor",
        points: Batch | None = None,
    ) -> None:
        self.X, self.y = points if points is not None else make_xor(n, noise, seed, split, problem)
        self._ordered: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.X)

    def to(self, device: torch.device | str) -> XORDataset:
        """Move the points to `device` once, so no batch is copied there per step."""
        self.X, self.y = self.X.to(device), self.y.to(device)
        return self

    def __getitem__(self, idx: Index | Chunk) -> Batch | list[Batch]:
        if isinstance(idx, Chunk):
            X, y = self[idx.index]
            return list(zip(X.split(idx.batch_size), y.split(idx.batch_size), strict=True))
        if isinstance(idx, Rows):  # the epoch's order, gathered once, then views of it
            if self._ordered is None or self._ordered[0] is not idx.order:
                order = idx.order.to(self.X.device)
                self._ordered = idx.order, self.X[order], self.y[order]
            _, X, y = self._ordered
            return X[idx.start : idx.stop], y[idx.start : idx.stop]
        return self.X[idx], self.y[idx]
