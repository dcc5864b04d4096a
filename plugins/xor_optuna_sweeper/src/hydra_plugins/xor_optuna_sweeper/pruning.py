"""Optuna pruning for a run that is a trial of an Optuna search with a pruner.

`hydra/sweeper/pruner=median` (or `hyperband`) makes each trial report its validation metric
to the study after every validation and stop when the pruner says the trial cannot catch
up. The job side of that is `TrialReporter` (`trials.py`); this is the Lightning end of
it, for any Lightning app: add `trial_pruning(monitor)` to the Trainer's callbacks when it
is not None (a job of this sweeper's search with a pruner).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

log = logging.getLogger(__name__)


@functools.cache
def callback_class() -> type:
    """`OptunaPruning`, a Lightning callback: made on first use, since Hydra imports every
    module of a plugin on every start, and importing Lightning there costs seconds."""
    import lightning as L

    class OptunaPruning(L.Callback):
        """After each validation: report `monitor` at this epoch; stop training when pruned."""

        def __init__(self, reporter: Any, monitor: str) -> None:
            self.reporter, self.monitor = reporter, monitor
            self.pruned = False

        def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            if trainer.world_size > 1:  # the other ranks have no reporter to stop with
                log.warning(
                    "pruning is off for this trial: it runs on %d processes (DDP)",
                    trainer.world_size,
                )
                self.reporter = None

        def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            value = trainer.callback_metrics.get(self.monitor)
            if trainer.sanity_checking or self.reporter is None or value is None:
                return
            if self.reporter.report(float(value), trainer.current_epoch):
                self.pruned, trainer.should_stop = True, True
                log.info(
                    "pruned by Optuna at epoch %d (%s %.4f): stopping",
                    trainer.current_epoch,
                    self.monitor,
                    float(value),
                )

    return OptunaPruning


def trial_pruning(monitor: str) -> Any:
    """The pruning callback when this Hydra job is a trial of a search with a pruner, the
    trial reported `monitor` (a metric the LightningModule logs) after each validation."""
    from hydra.core.hydra_config import HydraConfig

    from hydra_plugins.xor_optuna_sweeper.trials import TrialReporter

    reporter = TrialReporter.from_hydra(HydraConfig.get())
    return callback_class()(reporter, monitor) if reporter else None
