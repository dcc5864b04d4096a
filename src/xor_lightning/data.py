"""XOR data in plain PyTorch: the generator, the Dataset and a whole-batch sampler.

The data are tiny and live in memory, so a batch is one indexing of two tensors rather
than `batch_size` calls to `__getitem__` followed by a collate. Lightning lives in
`datamodule.py`, so the chapter script (`intro.py`) imports only torch.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch.utils.data import Dataset, Sampler

SPLITS = ("train", "val", "test")
Index = int | slice | torch.Tensor
Batch = tuple[torch.Tensor, torch.Tensor]


class Chunk(NamedTuple):
    """Consecutive mini-batches fetched with one indexing: `index` selects all their rows."""

    index: Index
    batch_size: int


def make_xor(
    n: int, noise: float = 0.0, seed: int = 0, split: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw `n` XOR points: X uniform in [-1, 1]², y = 1 where x1·x2 < 0.

    Labels come from the clean points; Gaussian jitter of std `noise` is added afterwards,
    so points near the axes become ambiguous. Split `k` (0 train, 1 val, 2 test) of `seed`
    draws from a generator seeded with 3·seed + k: every (seed, split) pair is distinct.
    """
    g = torch.Generator().manual_seed(3 * seed + split)
    X = torch.rand(n, 2, generator=g) * 2 - 1
    y = (X[:, 0] * X[:, 1] < 0).float().unsqueeze(1)
    if noise > 0:
        X = X + noise * torch.randn(n, 2, generator=g)
    return X, y


class XORDataset(Dataset):
    """XOR points as two tensors, X (n, 2) and y (n, 1), both float32.

    Indexing takes an int, a slice or a tensor of indices, so one call yields a whole batch;
    a `Chunk` yields a list of batches.
    """

    def __init__(self, n: int = 400, noise: float = 0.0, seed: int = 0, split: int = 0) -> None:
        self.X, self.y = make_xor(n, noise, seed, split)

    def __len__(self) -> int:
        return len(self.X)

    def to(self, device: torch.device | str) -> XORDataset:
        """Move the points to `device` once, so no batch is copied there per step."""
        self.X, self.y = self.X.to(device), self.y.to(device)
        return self

    def __getitem__(self, idx: Index | Chunk) -> Batch | list[Batch]:
        if isinstance(idx, Chunk):
            X, y = self.X[idx.index], self.y[idx.index]
            return list(zip(X.split(idx.batch_size), y.split(idx.batch_size), strict=True))
        return self.X[idx], self.y[idx]


class BatchIndexSampler(Sampler):
    """Yields one index per batch: a slice in order, or a piece of a fresh permutation.

    Used with `DataLoader(batch_size=None)`, so each batch is a single tensor indexing.
    With `chunk=k` it yields a `Chunk` of up to k batches instead, which the training step
    runs one optimizer step each (see `module.py`). The permutation of epoch e comes
    from `seed` and e (Lightning calls `set_epoch`), so a resumed run sees the same batches
    as an uninterrupted one.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        chunk: int | None = None,
    ) -> None:
        self.n, self.batch_size, self.shuffle, self.seed = n, batch_size, shuffle, seed
        self.chunk = chunk
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.n // self._step)

    @property
    def _step(self) -> int:
        return self.batch_size * (self.chunk or 1)

    def __iter__(self) -> Iterator[Index | Chunk]:
        # A generator: the permutation is drawn at the first batch, not when the iterator is
        # made. Lightning may make it before calling `set_epoch` when it resumes a run.
        if not self.shuffle or self.batch_size >= self.n:
            pieces: list[Index] = [slice(i, i + self._step) for i in range(0, self.n, self._step)]
        else:
            g = torch.Generator().manual_seed(self.seed + 1_000_003 * self.epoch)
            pieces = list(torch.randperm(self.n, generator=g).split(self._step))
        for piece in pieces:
            yield Chunk(piece, self.batch_size) if self.chunk else piece
