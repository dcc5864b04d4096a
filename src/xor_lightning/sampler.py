"""Batches of in-memory points as indices: a whole batch is one indexing, not a collate.

Used with `DataLoader(batch_size=None)`: each item the sampler yields is a whole batch's
index (a slice, or `Rows` of a fresh permutation), which `XORDataset` turns into a batch
with one indexing of its two tensors. With `chunk=k` it yields a `Chunk` of up to k batches
for `model.steps_per_call` (`chunked.py`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch.utils.data import DistributedSampler, Sampler


class Rows(NamedTuple):
    """Rows `start:stop` of an epoch's order of the points (a permutation). The dataset
    gathers the whole order once an epoch, as a plain loop does with `X[perm]`, and hands
    out views of it: a quarter of the cost of gathering each batch on its own."""

    order: torch.Tensor
    start: int
    stop: int


Index = int | slice | torch.Tensor | Rows


def as_index(index: Index) -> int | slice | torch.Tensor:
    """An index tensors take: `Rows` as the indices they stand for."""
    return index.order[index.start : index.stop] if isinstance(index, Rows) else index


class Chunk(NamedTuple):
    """Consecutive mini-batches fetched with one indexing: `index` selects all their rows."""

    index: Index
    batch_size: int


class BatchIndexSampler(Sampler):
    """Yields one index per batch: a slice in order, or a piece of a fresh permutation.

    With `chunk=k` it yields a `Chunk` of up to k batches instead, which the training step
    runs one optimizer step each (`chunked.py`). The permutation of epoch e comes
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
        return [Rows(mine, i, min(i + step, len(mine))) for i in range(0, len(mine), step)]

    def __iter__(self) -> Iterator[Index | Chunk]:
        # A generator: the permutation is drawn at the first batch, not when the iterator is
        # made. Lightning may make it before calling `set_epoch` when it resumes a run.
        for piece in self._pieces():
            yield Chunk(piece, self.batch_size) if self.chunk else piece


class RankSampler(BatchIndexSampler, DistributedSampler):
    """`BatchIndexSampler`, which gives each DDP rank its block itself, marked as distributed.

    Lightning's `use_distributed_sampler=True` (its default) puts a `DistributedSampler` in
    every loader of a standard datamodule, so each rank sees its share; a loader whose
    sampler already is one is left as it is (Lightning's documented rule). Being one, this
    sampler keeps its batches, chunks and seeded order under DDP; no DistributedSampler code
    runs (its constructor would need the process group to exist).
    """

    def __init__(self, n: int, batch_size: int, shuffle: bool = False, seed: int = 0,
                 chunk: int | None = None, rank: int = 0, world_size: int = 1,
                 pad: bool = False) -> None:  # fmt: skip
        BatchIndexSampler.__init__(self, n, batch_size, shuffle, seed, chunk, rank, world_size, pad)
        self.num_replicas, self.rank, self.drop_last = world_size, rank, False
