"""Toy data in plain PyTorch: the generators, the Dataset and a whole-batch sampler.

XOR is the chapter's problem: `xor` fills the square (the default), `clusters` puts it in
four blobs at the corners, fitted to the losses the chapter prints (docs/chapter-numbers.md).
circle, gaussians and spiral follow TensorFlow Playground, moons scikit-learn's `make_moons`.

The data are tiny and live in memory, so a batch is one indexing of two tensors rather
than `batch_size` calls to `__getitem__` followed by a collate. Lightning lives in
`datamodule.py`, so the chapter script (`intro.py`) imports only torch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import torch
from torch.utils.data import Dataset, Sampler

SPLITS = ("train", "val", "test")
Index = int | slice | torch.Tensor
Batch = tuple[torch.Tensor, torch.Tensor]


class Chunk(NamedTuple):
    """Consecutive mini-batches fetched with one indexing: `index` selects all their rows."""

    index: Index
    batch_size: int


def _xor(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Uniform in [-1, 1]²; label 1 where exactly one coordinate is positive."""
    X = torch.rand(n, 2, generator=g) * 2 - 1
    return X, (X[:, 0] * X[:, 1] < 0).float()


def _clusters(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The four corners (±1, ±1), n/4 points each in random order; label 1 where the corner's
    coordinates differ in sign. `noise` sigma then spreads each corner into a Gaussian blob."""
    corner = torch.randperm(n, generator=g) % 4
    signs = torch.stack([corner // 2, corner % 2], dim=1).float() * 2 - 1
    return signs, (signs[:, 0] != signs[:, 1]).float()


def _polar(r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return torch.stack([r * torch.cos(t), r * torch.sin(t)], dim=1)


def _circle(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Label 1: radius U(0, 0.5); label 0: a ring, radius U(0.7, 1); angle U(0, 2π)."""
    y = (torch.rand(n, generator=g) < 0.5).float()
    u = torch.rand(n, generator=g)
    r = torch.where(y == 1, 0.5 * u, 0.7 + 0.3 * u)
    return _polar(r, 2 * math.pi * torch.rand(n, generator=g)), y


def _gaussians(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Two blobs of std 0.25: label 1 around (0.4, 0.4), label 0 around (-0.4, -0.4)."""
    y = (torch.rand(n, generator=g) < 0.5).float()
    centre = (2 * y - 1).unsqueeze(1) * 0.4
    return centre + 0.25 * torch.randn(n, 2, generator=g), y


def _spiral(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Two interleaved arms: radius r ~ U(0, 1), angle 1.75·2π·r, plus π for label 0."""
    y = (torch.rand(n, generator=g) < 0.5).float()
    r = torch.rand(n, generator=g)
    return _polar(r, 1.75 * 2 * math.pi * r + math.pi * (1 - y)), y


def _moons(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's two moons, centred and scaled by 2/3 into [-1, 1] x [-0.5, 0.5].

    Label 0: (cos t, sin t); label 1: (1 - cos t, 0.5 - sin t); t ~ U(0, π).
    """
    y = (torch.rand(n, generator=g) < 0.5).float()
    t = math.pi * torch.rand(n, generator=g)
    outer = torch.stack([torch.cos(t), torch.sin(t)], dim=1)
    inner = torch.stack([1 - torch.cos(t), 0.5 - torch.sin(t)], dim=1)
    X = torch.where(y.unsqueeze(1) == 1, inner, outer)
    return (X - torch.tensor([0.5, 0.25])) * (2 / 3), y


PROBLEMS = {
    "xor": _xor,
    "clusters": _clusters,
    "circle": _circle,
    "gaussians": _gaussians,
    "spiral": _spiral,
    "moons": _moons,
}


def make_xor(
    n: int, noise: float = 0.0, seed: int = 0, split: int = 0, problem: str = "xor"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw `n` labelled points of a 2-D toy problem (XOR by default): X (n, 2), y (n, 1).

    Labels come from the clean points; Gaussian jitter of std `noise` is added afterwards,
    so points near the class boundary become ambiguous. Split `k` (0 train, 1 val, 2 test)
    of `seed` draws from a generator seeded with 3·seed + k: every (seed, split) pair is
    distinct.
    """
    if problem not in PROBLEMS:
        raise ValueError(f"problem must be one of {sorted(PROBLEMS)}, got {problem!r}")
    g = torch.Generator().manual_seed(3 * seed + split)
    X, y = PROBLEMS[problem](n, g)
    if noise > 0:
        X = X + noise * torch.randn(n, 2, generator=g)
    return X, y.unsqueeze(1)


def load_split(data: Mapping[str, Any], split: str, points: Batch | None = None) -> Batch:
    """X (n, 2) and y (n, 1), float32, of one split ("train", "val" or "test") of the data
    a `data` config describes (keys as in conf/data/*.yaml; a dict or a DictConfig).

    A toy problem draws `n_samples`, `n_val` or `n_test` points from `seed` (`make_xor`).
    `problem: csv` reads the file at `path` (or takes `points`, X and y of the whole file,
    as a checkpoint keeps them) and splits it at random by `seed`: `val_fraction` and
    `test_fraction` of the points to validation and test, the rest to training; `noise`
    then jitters the split's points.
    """
    k, seed, noise = SPLITS.index(split), data.get("seed", 0), data.get("noise", 0.0)
    if data.get("problem", "xor") != "csv":
        n = data.get(("n_samples", "n_val", "n_test")[k], 400)
        return make_xor(n, noise, seed, k, data.get("problem", "xor"))
    from xor_lightning.csvdata import read_points, split_index

    X, y = points if points is not None else read_points(data["path"])
    fractions = data.get("val_fraction", 0.2), data.get("test_fraction", 0.2)
    rows = split_index(len(X), seed, *fractions, path=str(data.get("path")))[k]
    X, y = X[rows], y[rows]
    if noise > 0:
        X = X + noise * torch.randn(X.shape, generator=torch.Generator().manual_seed(3 * seed + k))
    return X, y


class XORDataset(Dataset):
    """Points of a toy problem (XOR by default) as two float32 tensors, X (n, 2), y (n, 1),
    or the given `points` (X, y), e.g. a split from `load_split`.

    Indexing takes an int, a slice or a tensor of indices, so one call yields a whole batch;
    a `Chunk` yields a list of batches.
    """

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

    Under DDP, rank r of `world_size` takes the r-th of `world_size` equal blocks of the
    epoch's order (the same permutation on every rank), and `batch_size` is per rank.
    With `pad=True` (training) the last blocks wrap around to the start so that every rank
    runs the same number of steps, as DDP requires; without it (evaluation) every point is
    scored exactly once and the last rank may get fewer.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        chunk: int | None = None,
        rank: int = 0,
        world_size: int = 1,
        pad: bool = False,
    ) -> None:
        self.n, self.batch_size, self.shuffle, self.seed = n, batch_size, shuffle, seed
        self.chunk, self.epoch = chunk, 0
        self.block = -(-n // world_size)  # the same on every rank
        self.start = rank * self.block
        self.stop = self.start + self.block if pad else min(self.start + self.block, n)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-max(0, self.stop - self.start) // self._step)

    @property
    def _step(self) -> int:
        return self.batch_size * (self.chunk or 1)

    @property
    def permutes(self) -> bool:
        """Whether the order is a seeded permutation (else it is the same for every seed)."""
        return self.shuffle and self.batch_size < self.block  # every rank decides alike

    def _pieces(self) -> list[Index]:
        start, stop, step = self.start, self.stop, self._step
        permute = self.permutes
        if not permute and stop <= self.n:  # in order: slices, i.e. views without a copy
            return [slice(i, min(i + step, stop)) for i in range(start, stop, step)]
        if permute:
            g = torch.Generator().manual_seed(self.seed + 1_000_003 * self.epoch)
            order = torch.randperm(self.n, generator=g)
        else:
            order = torch.arange(self.n)
        mine = order[start:stop] if stop <= self.n else order[torch.arange(start, stop) % self.n]
        return list(mine.split(step))

    def __iter__(self) -> Iterator[Index | Chunk]:
        # A generator: the permutation is drawn at the first batch, not when the iterator is
        # made. Lightning may make it before calling `set_epoch` when it resumes a run.
        for piece in self._pieces():
            yield Chunk(piece, self.batch_size) if self.chunk else piece
