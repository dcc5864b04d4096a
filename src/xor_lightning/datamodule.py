"""The LightningDataModule: train, validation and test sets from one seed."""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from xor_lightning.data import SPLITS, Batch, XORDataset, load_split
from xor_lightning.errors import UserError
from xor_lightning.sampler import RankSampler

log = logging.getLogger(__name__)


class XORDataModule(L.LightningDataModule):
    """Train, validation and test sets of a toy problem (XOR by default) drawn from `seed`.

    `batch_size=None` means the full batch (the chapter's setting); a smaller one
    reshuffles the training set every epoch. The validation and test sets have sizes of
    their own. Under DDP each rank gets its own block of every set (`sampler.py`).
    `problem="csv"`: the points of the file at `path`, split by `seed` (`csvdata.py`), kept
    with the file's column names in every checkpoint, so using one needs no file.
    """

    def __init__(
        self,
        n_samples: int = 400,
        n_val: int = 400,
        n_test: int = 400,
        noise: float = 0.0,
        batch_size: int | None = None,
        seed: int = 0,
        problem: str = "xor",
        path: str | None = None,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        aspect: float = 1.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.batch_size, self.seed, self.problem = batch_size, seed, problem
        self.config = dict(self.hparams)  # what `load_split` reads
        self.points: Batch | None = None  # a CSV file's points, once read
        self.names: tuple[str, ...] = ("x1", "x2", "label")  # the columns, a CSV's own
        self.datasets: dict[str, XORDataset] = {}

    def setup(self, stage: str | None = None) -> None:
        """Every split, on the training device (the GPU, say) from the start."""
        device = self.trainer.strategy.root_device if self.trainer is not None else "cpu"
        world = self.trainer.world_size if self.trainer is not None else 1
        if self.problem == "csv" and self.points is None:
            from xor_lightning.csvdata import read_points

            X, y, self.names = read_points(self.config["path"])
            self.points = X, y
        for split in SPLITS:
            if split not in self.datasets:
                ds = XORDataset(points=load_split(self.config, split, self.points))
                if len(ds) < world:
                    raise UserError(
                        f"{split} set: {len(ds)} points cannot be split across {world} ranks"
                    )
                self.datasets[split] = ds.to(device)

    def state_dict(self) -> dict[str, Any]:
        """A CSV run's points (the whole file) and column names: its checkpoints need no file."""
        if self.points is None:
            return {}
        X, y = self.points
        return {"points": {"X": X.cpu(), "y": y.cpu(), "names": list(self.names)}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Use a checkpoint's points (evaluation). A resumed run reads its file again: it
        goes on with the file's points, with a warning if they changed since."""
        if "points" not in state:
            return
        X, y = state["points"]["X"], state["points"]["y"]
        if self.points is None:
            self.points = (X, y)
            self.names = tuple(state["points"].get("names", self.names))
        elif not (torch.equal(self.points[0], X) and torch.equal(self.points[1], y)):
            log.warning("%s has changed since the checkpoint: training goes on with the file's "
                        "points", self.config["path"])  # fmt: skip

    def sampler(self, split: str, chunk: int | None = None) -> RankSampler:
        """The split's batches as indices: whole batches, shuffled each epoch for training,
        this DDP rank's block of them; in training, `chunk` batches a step (docs/glossary.md)."""
        n, trainer = len(self.datasets[split]), self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        batch_size = self.batch_size or -(-n // world)  # full batch: the rank's whole block
        train = split == "train"
        return RankSampler(n, batch_size, train, self.seed, chunk, rank, world, pad=train)

    def _loader(self, split: str, chunk: int | None = None) -> DataLoader:
        sampler = self.sampler(split, chunk)
        return DataLoader(self.datasets[split], batch_size=None, sampler=sampler)

    def train_dataloader(self) -> DataLoader:
        # `model.steps_per_call=N` (chunked.py): N mini-batches per item, one indexing each
        steps = getattr(self.trainer.lightning_module, "steps_per_call", 1) if self.trainer else 1
        return self._loader("train", chunk=steps if steps > 1 else None)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test")
