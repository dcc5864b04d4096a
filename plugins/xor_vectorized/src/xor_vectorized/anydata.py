"""Any datamodule's jobs in one fit: each job's own datamodule, their batches stacked.

Each job builds its own datamodule from its own config (its seed, its data) and serves its
own loaders, exactly as its run alone would; every step takes the next batch of each
job's loader and stacks them, (K, B, ...). So the jobs' batches must have one shape, and
each job's order of batches must not depend on anything but its own loader: a loader
that shuffles from the global random state (a `DataLoader(shuffle=True)` without a
`generator`) would draw another order here than in its run alone, and one with worker
processes would start K times as many. Such jobs run alone (`data_problem` says why);
the project's own `XORDataModule` has a faster stacked form (`data.py`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, RandomSampler, TensorDataset, default_collate

SPLITS = ("train", "val", "test")


def make_datamodule(data: dict[str, Any]) -> L.LightningDataModule:
    """A job's datamodule from its resolved data config (a trusted class, its arguments)."""
    from xor_vectorized import app

    cls, kwargs = app.read("targets").target_class(data, "data")
    return cls(**kwargs)


def order_problem(loader: Any, split: str) -> str | None:
    """Why a job's loader of `split` cannot be stepped beside others (None: it can)."""
    if not isinstance(loader, DataLoader):
        return None  # an iterable of its own: taken as it comes
    if loader.num_workers > 0:
        return f"its {split} loader uses worker processes (num_workers={loader.num_workers})"
    sampler = loader.sampler
    if isinstance(sampler, RandomSampler) and sampler.generator is None:
        return (
            f"its {split} loader shuffles from the global random state (give the DataLoader "
            "a generator seeded from the job's seed)"
        )
    return None


def data_problem(data: dict[str, Any]) -> str | None:
    """Why jobs with this data config cannot share a fit, found on one job's datamodule."""
    dm = make_datamodule(data)
    dm.setup("fit")
    for split in SPLITS:
        loader = getattr(dm, f"{split}_dataloader")()
        problem = order_problem(loader, split)
        if problem:
            return f"data._target_={data.get('_target_')}: {problem}"
    return None


def batched(loader: Any) -> Any:
    """A `DataLoader` over a `TensorDataset` (default collate, no workers) as one that
    indexes the tensors with each batch's indices at once: the same batches, bit for bit,
    in the same order (its batch sampler, and its generator drawn from as the loader's
    iterator draws from it), without fetching and collating point by point, which costs
    more than a small network's step. Any other loader as it is."""
    if not (
        type(loader) is DataLoader
        and isinstance(loader.dataset, TensorDataset)
        and loader.collate_fn is default_collate
        and loader.batch_sampler is not None
        and loader.num_workers == 0
    ):
        return loader
    return DataLoader(loader.dataset, batch_size=None, sampler=loader.batch_sampler,
                      generator=loader.generator)  # fmt: skip


class _Epochs:
    """`set_epoch` for every job's sampler that has one (Lightning calls it each epoch)."""

    def __init__(self, loaders: Sequence[Any]) -> None:
        self.samplers = [getattr(dl, "sampler", None) for dl in loaders]

    def set_epoch(self, epoch: int) -> None:
        for sampler in self.samplers:
            if callable(getattr(sampler, "set_epoch", None)):
                sampler.set_epoch(epoch)


class StackedLoader:
    """The jobs' loaders of one split stepped together: each item every job's next batch,
    stacked (K, B, ...)."""

    def __init__(self, loaders: Sequence[Any], split: str) -> None:
        lengths = {len(dl) for dl in loaders}
        if len(lengths) != 1:
            raise ValueError(f"the jobs' {split} loaders have {sorted(lengths)} batches")
        self.loaders, self.split = [batched(dl) for dl in loaders], split
        # What Lightning looks for on a loader: `set_epoch` on its sampler, each epoch
        self.sampler, self.batch_sampler = _Epochs(loaders), None

    def __len__(self) -> int:
        return len(self.loaders[0])

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        for batches in zip(*self.loaders, strict=True):
            shapes = {tuple(t.shape for t in b[:2]) for b in batches}
            if len(shapes) != 1:
                raise ValueError(f"the jobs' {self.split} batches differ in shape: {shapes}")
            yield tuple(torch.stack([b[i] for b in batches]) for i in range(2))


class JobsDataModule(L.LightningDataModule):
    """The train, validation and test loaders of K jobs' own datamodules, stacked."""

    def __init__(self, datamodules: Sequence[L.LightningDataModule]) -> None:
        super().__init__()
        self.jobs = list(datamodules)
        self.loaders: dict[str, StackedLoader] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.loaders:
            return
        for dm in self.jobs:
            dm.setup("fit")
        for split in SPLITS:
            loaders = [getattr(dm, f"{split}_dataloader")() for dm in self.jobs]
            self.loaders[split] = StackedLoader(loaders, split)

    @property
    def sets(self) -> dict[str, Any]:
        """Each split's first points of every job, for the pictures of a small group."""
        from types import SimpleNamespace

        from xor_vectorized import app

        split_points = app.read("pictures.plot").split_points
        sets = {}
        for split in SPLITS:
            points = [split_points(dm, split, 2000) for dm in self.jobs]
            X, y = (torch.stack([p[i] for p in points]) for i in range(2))
            sets[split] = SimpleNamespace(X=X, y=y)
        return sets

    def train_dataloader(self) -> StackedLoader:
        return self.loaders["train"]

    def val_dataloader(self) -> StackedLoader:
        return self.loaders["val"]

    def test_dataloader(self) -> StackedLoader:
        return self.loaders["test"]
