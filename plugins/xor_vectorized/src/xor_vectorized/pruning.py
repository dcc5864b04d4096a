"""Optuna pruning for stacked models: each job of a search's batch reports to its own trial.

A job's trial is its job number (the sweeper launches trial n as job n), reached through
the study's storage with the sweeper plugin's `TrialReporter`, as a run alone reaches it.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from omegaconf import open_dict, read_write

from xor_vectorized.module import StackedModule


class StackedPruning(L.Callback):
    """Optuna pruning for the models that are trials of a search with a pruner: after each
    validation each reports its own metric (`reporters`: model index -> `TrialReporter`),
    and a model its pruner stops is frozen from there on, as its run alone would stop."""

    def __init__(self, reporters: dict[int, Any], monitor: str) -> None:
        self.reporters, self.monitor = reporters, monitor

    def on_validation_end(self, trainer: L.Trainer, module: StackedModule) -> None:
        if trainer.sanity_checking or not module.history.get(self.monitor):
            return
        epoch, _, values = module.history[self.monitor][-1]
        if epoch != trainer.current_epoch:
            return
        values, live = values.cpu(), module.alive.cpu()
        for k, reporter in self.reporters.items():
            if live[k] and reporter.report(float(values[k]), epoch):
                module.alive[k] = False
                module.stopped_at[k] = epoch

    def on_train_epoch_end(self, trainer: L.Trainer, module: StackedModule) -> None:
        if bool((module.stopped_at == trainer.current_epoch).any()):
            module.stopped_loops[trainer.current_epoch] = trainer.fit_loop.state_dict()


def trial_pruning(jobs: list[Any], hydra_cfg: Any, metric: str) -> list[Any]:
    """`StackedPruning` when the jobs are trials of an Optuna search with a pruner: each
    model reports to its own trial (job number = trial number, as the sweeper launches)."""
    from hydra_plugins.xor_optuna_sweeper.trials import TrialReporter

    if "Optuna" not in str(hydra_cfg.sweeper.get("_target_")):
        return []
    first = hydra_cfg.copy()  # the sweep's hydra node, as job `jobs[0]` sees it: its study
    with read_write(first), open_dict(first):  # is its own config's (a name the sweeper made
        first.job.num = jobs[0].num  # up for study_name=null is one of the job's overrides)
        first.sweeper.study_name = jobs[0].study_name
    if TrialReporter.from_hydra(first) is None:
        return []
    sweeper = first.sweeper
    reporters = {
        k: TrialReporter(sweeper.storage, job.study_name, job.num, sweeper.pruner, first)
        for k, job in enumerate(jobs)
    }
    return [StackedPruning(reporters, metric)]
