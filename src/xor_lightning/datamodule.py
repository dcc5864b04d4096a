"""The LightningDataModule: train, validation and test sets from one seed."""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, DistributedSampler

from xor_lightning.data import SPLITS, Batch, BatchIndexSampler, XORDataset, load_split
from xor_lightning.errors import UserError

log = logging.getLogger(__name__)


class XORDataModule(L.LightningDataModule):
    """Train, validation and test XOR sets drawn from one `seed`.

    `batch_size=None` means the full batch (the chapter's setting); a smaller one
    reshuffles the training set every epoch. The training loader hands the module chunks
    of up to `batches_per_chunk` mini-batches, one optimizer step each. The validation and
    test sets have fixed sizes of their own, so changing `n_samples` does not change what
    the model is scored on. Under DDP each rank gets its own block of every set (see
    `RankSampler`), which Lightning leaves in place: its `use_distributed_sampler` stays on
    (its default), so a standard datamodule gets Lightning's DistributedSampler.
    Its arguments are saved with `save_hyperparameters()`, so
    `XORDataModule.load_from_checkpoint(path)` gives the run's data.

    `problem="csv"` reads the points of the file at `path` instead and splits them by
    `seed` (`val_fraction`, `test_fraction`; see `load_split`). They are kept in every
    checkpoint (`state_dict`), so evaluating one needs no file.
    """

    def __init__(
        self,
        n_samples: int = 400,
        n_val: int = 400,
        n_test: int = 400,
        noise: float = 0.0,
        batch_size: int | None = None,
        seed: int = 0,
        batches_per_chunk: int = 64,
        problem: str = "xor",
        path: str | None = None,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.sizes = {"train": n_samples, "val": n_val, "test": n_test}
        self.noise, self.batch_size, self.seed = noise, batch_size, seed
        self.batches_per_chunk, self.problem = batches_per_chunk, problem
        self.config = dict(n_samples=n_samples, n_val=n_val, n_test=n_test, noise=noise,
                           seed=seed, problem=problem, path=path, val_fraction=val_fraction,
                           test_fraction=test_fraction)  # fmt: skip
        self.points: Batch | None = None  # a CSV file's points, once read
        self.datasets: dict[str, XORDataset] = {}

    def setup(self, stage: str | None = None) -> None:
        # The data live on the training device (e.g. the GPU) from the start.
        device = self.trainer.strategy.root_device if self.trainer is not None else "cpu"
        world = self.trainer.world_size if self.trainer is not None else 1
        if self.problem == "csv" and self.points is None:
            from xor_lightning.csvdata import read_points

            self.points = read_points(self.config["path"])
        for split in SPLITS:
            if split not in self.datasets:
                ds = XORDataset(points=load_split(self.config, split, self.points))
                if len(ds) < world:
                    raise UserError(
                        f"{split} set: {len(ds)} points cannot be split across {world} ranks"
                    )
                self.datasets[split] = ds.to(device)

    def state_dict(self) -> dict[str, Any]:
        """A CSV run's points (the whole file), so its checkpoints need no file."""
        if self.points is None:
            return {}
        return {"points": {"X": self.points[0].cpu(), "y": self.points[1].cpu()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Use a checkpoint's points (evaluation). A resumed run reads its file again: it
        goes on with the file's points, with a warning if they changed since."""
        if "points" not in state:
            return
        X, y = state["points"]["X"], state["points"]["y"]
        if self.points is None:
            self.points = (X, y)
        elif not (torch.equal(self.points[0], X) and torch.equal(self.points[1], y)):
            log.warning("%s has changed since the checkpoint: training goes on with the file's "
                        "points", self.config["path"])  # fmt: skip

    def _loader(self, split: str, shuffle: bool = False, chunk: int | None = None) -> DataLoader:
        n = len(self.datasets[split])
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        batch_size = self.batch_size or -(-n // world)  # full batch: the rank's whole block
        sampler = RankSampler(
            n, batch_size, shuffle, self.seed, chunk, rank, world, pad=split == "train"
        )
        return DataLoader(self.datasets[split], batch_size=None, sampler=sampler)

    def train_dataloader(self) -> DataLoader:
        chunk = 1 if self.trainer is not None and counts_batches(self.trainer) else None
        return self._loader("train", shuffle=True, chunk=chunk or self.batches_per_chunk)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test")


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


def counts_batches(trainer: L.Trainer) -> bool:
    """Whether a Trainer option counts training batches: then each batch must be one
    optimizer step (a chunk of one), so that it counts what it does in any Lightning project.
    """
    from lightning.pytorch.callbacks import ModelCheckpoint

    every_n_steps = [
        getattr(cb, "_every_n_train_steps", 0)  # private; tests/test_loop.py fails if it moves
        for cb in trainer.checkpoint_callbacks
        if isinstance(cb, ModelCheckpoint)
    ]
    return (
        trainer.limit_train_batches != 1.0
        or trainer.val_check_interval != 1.0
        or any(every_n_steps)
    )


def split_points(
    dm: L.LightningDataModule, split: str, limit: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to `limit` points (X, y) of a split, for the pictures: XORDataModule's tensors, or
    the first batches of any other datamodule's `<split>_dataloader()` ((x, y) batches)."""
    datasets = getattr(dm, "datasets", None)
    if isinstance(datasets, dict) and hasattr(datasets.get(split), "X"):
        return datasets[split].X[:limit], datasets[split].y[:limit]
    xs, ys, n = [], [], 0
    for batch in getattr(dm, f"{split}_dataloader")():
        xs.append(batch[0].reshape(len(batch[0]), -1))
        ys.append(batch[1].reshape(len(batch[1]), -1))
        n += len(batch[0])
        if limit is not None and n >= limit:
            break
    return torch.cat(xs)[:limit], torch.cat(ys)[:limit]
