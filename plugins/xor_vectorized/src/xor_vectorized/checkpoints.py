"""A job's checkpoints, written by the machinery that writes a run's.

Not assembled by hand: a Trainer and its callbacks built by `train.build` from the group's
config hold, for each job in turn, the job's own module (`checkpoint.make_module`; jobs
with the same arguments share one), its weights, optimizer state, loop state, metrics and
datamodule arguments, and save with `trainer.save_checkpoint` (and `LastCheckpoint.save`),
so `on_save_checkpoint` hooks and Lightning's format apply exactly as to a run's.
`xor-eval`, `xor-predict`, `xor-export` and `resume=` therefore work on them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import Tensor

from xor_vectorized import app

log = logging.getLogger(__name__)


class CheckpointWriter:
    """A run's Trainer, built once for a group, that saves checkpoints for its jobs."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        from lightning.pytorch.callbacks import ModelCheckpoint

        build, callbacks = app.read("train").build, app.read("callbacks")
        c = OmegaConf.create(cfg)
        c.logger = None
        # On the CPU: it may run in a forked process, where CUDA cannot start again.
        c.trainer.update(limit_val_batches=0, accelerator="cpu", devices=1)
        with quiet_lightning():
            self.trainer, module, datamodule = build(c)
        # Attaches the module and the datamodule as a run's fit does; runs no batch.
        with quiet_lightning():
            self.trainer.validate(module, datamodule=datamodule, verbose=False)
        self.modules: dict[str, Any] = {}
        cbs = self.trainer.callbacks
        self.best_cb = next((cb for cb in cbs if isinstance(cb, ModelCheckpoint)), None)
        self.last_cb = next((cb for cb in cbs if isinstance(cb, callbacks.LastCheckpoint)), None)
        self.run_info = next(cb for cb in cbs if isinstance(cb, callbacks.RunInfo))
        # What a ModelCheckpoint that has seen no validation holds (+inf when minimising)
        self.fresh_kth = self.best_cb.kth_value.clone() if self.best_cb is not None else None

    def load(
        self, cfg: dict[str, Any], weights: list[Tensor], adam: list[dict[str, Tensor]]
    ) -> None:
        """Make the job's own module (hyperparameters, run config, weights), optimizer and
        datamodule hyperparameters the trainer's, built by the classes' own constructors."""
        from xor_vectorized.anydata import make_datamodule

        make_module = app.read("checkpoint").make_module

        key = repr((cfg["model"], cfg.get("task"), cfg.get("scheduler")))  # a seed sweep's:
        if key not in self.modules:  # one module for all its jobs
            module = make_module(cfg)
            self.modules[key] = module, module.configure_optimizers()
        module, optimizer = self.modules[key]
        self.run_info.config = cfg  # the job's config in its checkpoints
        params = list(module.net.parameters())
        with torch.no_grad():
            for p, w in zip(params, weights, strict=True):
                p.copy_(w)
        trainer = self.trainer
        module.trainer = trainer
        trainer.strategy.connect(module)
        for p, state in zip(params, adam, strict=True):
            if state:  # plain SGD keeps no state, and its run's optimizer lists none
                optimizer.state[p] = {k: v.clone() for k, v in state.items()}
        trainer.strategy.optimizers = [optimizer]
        # The attached datamodule (set up: a CSV run's points) takes the job's own arguments,
        # and their name as its `save_hyperparameters()` recorded it (a private attribute;
        # tests/test_vectorized.py compares whole checkpoints with a run's).
        data = make_datamodule(cfg["data"])
        trainer.datamodule.save_hyperparameters(dict(data.hparams), logger=False)
        trainer.datamodule._hparams_name = data._hparams_name

    def save(
        self,
        path: Path,
        loops: dict[str, Any],
        metrics: dict[str, float],
        best: tuple[Path, float, float] | None,
    ) -> None:
        """Save what `load` made current, at the loop state `loops` with these metrics.

        `best` is the job's best checkpoint so far (path, score) and the latest score, as
        its `ModelCheckpoint` would hold them.
        """
        trainer = self.trainer
        trainer.fit_loop.load_state_dict(loops)
        trainer.callback_metrics.clear()
        trainer.callback_metrics.update({k: torch.tensor(v) for k, v in metrics.items()})
        cb = self.best_cb
        if cb is not None:
            cb.dirpath = str(path.parent)
            # Every field, each time: the job before this one used the same callback.
            cb.best_model_path, cb.best_model_score, cb.best_k_models = "", None, {}
            cb.kth_best_model_path, cb.kth_value = "", self.fresh_kth
            cb.current_score = None
            if best is not None:
                best_path, score, current = (
                    str(best[0]),
                    torch.tensor(best[1]),
                    torch.tensor(best[2]),
                )
                cb.best_model_path, cb.best_model_score = best_path, score
                cb.best_k_models = {best_path: score}
                cb.kth_best_model_path, cb.kth_value, cb.current_score = best_path, score, current
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.name == "last.ckpt" and self.last_cb is not None:
            self.last_cb.path = path
            self.last_cb.save(trainer)
        else:
            trainer.save_checkpoint(path, weights_only=bool(cb and cb.save_weights_only))


def best_filename(cfg: dict[str, Any], epoch: int, step: int) -> str:
    """The best checkpoint's file name as the job's `ModelCheckpoint` formats it."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    best = (cfg.get("callbacks") or {}).get("best_checkpoint") or {}
    fmt = ModelCheckpoint(
        filename=best.get("filename"),
        auto_insert_metric_name=best.get("auto_insert_metric_name", True),
    )
    return fmt.format_checkpoint_name({"epoch": epoch, "step": step})


def best_state(ckpt: dict[str, Any]) -> dict[str, Any] | None:
    """The ModelCheckpoint state stored in a run's checkpoint, if it has a best."""
    for key, value in ckpt.get("callbacks", {}).items():
        if key.startswith("ModelCheckpoint") and value.get("best_model_path"):
            return value
    return None


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Lightning's INFO lines (GPU available, ...), which a run sends to its train.log only."""
    loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
