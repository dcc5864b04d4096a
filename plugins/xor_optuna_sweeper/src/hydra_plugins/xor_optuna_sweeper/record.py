"""What a job's outcome means for its trial, and the results file of a search."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from hydra_plugins.xor_optuna_sweeper.refusal import SweeperError

log = logging.getLogger(__name__)


def tell(study: Any, trial: Any, ret: Any, n_values: int) -> str | None:
    """Record a job's outcome: complete, pruned (it raised optuna.TrialPruned) or failed (it
    raised, or returned other than `n_values` finite numbers). A failure's description."""
    import optuna

    state = optuna.trial.TrialState
    # The exception a job raised is the JobReturn's `_return_value` (its constructor argument);
    # `return_value` would re-raise it after printing "Error executing job".
    if isinstance(ret._return_value, optuna.TrialPruned):
        frozen = finish(study, trial, state=state.PRUNED)
        log.info(f"trial {trial.number} pruned after step {getattr(frozen, 'last_step', '?')}")
        return None
    try:
        value = ret.return_value  # re-raises the job's exception, if it failed
    except Exception as e:
        error = f"trial {trial.number}: {type(e).__name__}: {e}"
    else:
        try:
            values = [float(value)] if n_values == 1 else [float(v) for v in value]
        except (TypeError, ValueError):
            values = []
        if len(values) == n_values and all(math.isfinite(v) for v in values):
            finish(study, trial, values=values)
            log.info(f"trial {trial.number}: {trial.params} -> {value}")
            return None
        error = f"trial {trial.number} returned {value!r}, not {n_values} finite number(s)"
    log.warning(f"{error}: recorded as failed")
    finish(study, trial, state=state.FAIL)
    return error


def tell_batch(
    study: Any, trials: list[Any], returns: list[Any], n: int, max_failure_rate: float
) -> None:
    """Record a batch; stop if more of it failed than max_failure_rate allows."""
    failed = [(r, e) for t, r in zip(trials, returns, strict=True) if (e := tell(study, t, r, n))]
    if len(failed) / len(returns) > max_failure_rate:
        for ret, _ in failed:
            _ = ret.return_value  # re-raises a job's own exception, as the release does
        raise SweeperError(
            f"{len(failed)} of {len(returns)} trials of a batch failed "
            f"({failed[0][1]}): more than hydra.sweeper.max_failure_rate="
            f"{max_failure_rate}"
        )


def fail(study: Any, trial: Any) -> None:
    """Record a trial that did not run to its end (its batch stopped, or the sweep was killed)."""
    import optuna

    finish(study, trial, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)


def finish(study: Any, trial: Any, **kwargs: Any) -> Any:
    """study.tell. Once the grid is done, Optuna's GridSampler calls study.stop, which only
    works inside study.optimize (the trial is recorded all the same): the sweeper stops itself."""
    try:
        return study.tell(trial, **kwargs)
    except RuntimeError as e:
        if "Study.stop" not in str(e):
            raise
        return None


def write_results(study: Any, sweep_dir: Path, n_values: int) -> None:
    """optimization_results.yaml as the release writes it, plus the trial counts."""
    import optuna

    s = optuna.trial.TrialState
    counts = {
        "n_trials": len(study.trials),
        "n_failed": len(study.get_trials(states=(s.FAIL,))),
        "n_pruned": len(study.get_trials(states=(s.PRUNED,))),
    }
    if not study.get_trials(states=(s.COMPLETE,)):
        log.warning(f"no trial completed ({counts}); nothing to report")
        return
    results: dict[str, Any] = {"name": "optuna"}
    if n_values == 1:
        best = study.best_trial
        results.update(best_params=best.params, best_value=best.value, best_trial=best.number)
        log.info(f"Best parameters: {best.params}")
        log.info(f"Best value: {best.value}")
    else:
        results["solutions"] = [{"params": t.params, "values": t.values} for t in study.best_trials]
        log.info(f"Number of Pareto solutions: {len(study.best_trials)}")
        for t in study.best_trials:
            log.info(f"    Values: {t.values}, Params: {t.params}")
    OmegaConf.save(OmegaConf.create({**results, **counts}), sweep_dir / "optimization_results.yaml")
    log.info("%(n_trials)d trials, %(n_failed)d failed, %(n_pruned)d pruned", counts)
