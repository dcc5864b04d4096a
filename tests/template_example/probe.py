"""A test's callback: the training points each DDP rank sees in the first epoch, written
to `<run dir>/points_rank<r>.json` (batches as XORDataModule's chunks or plain (x, y))."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
from torch import Tensor


class PointsSeen(L.Callback):
    def __init__(self) -> None:
        self.rows: list[list[float]] = []

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if trainer.current_epoch == 0:
            chunk = [batch] if isinstance(batch[0], Tensor) else batch
            self.rows += [row for x, _ in chunk for row in x.tolist()]

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == 0:
            path = Path(trainer.default_root_dir) / f"points_rank{trainer.global_rank}.json"
            path.write_text(json.dumps(self.rows))


class Pause(L.Callback):
    """Sleeps after every training epoch: a run slow enough to be killed mid-way."""

    def __init__(self, seconds: float = 0.2) -> None:
        self.seconds = seconds

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        import time

        time.sleep(self.seconds)
