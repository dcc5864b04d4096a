"""A small Hydra Sweeper over Optuna's ask/tell API.

Why not hydra-optuna-sweeper 1.3.0: it pins optuna < 3 (2.10, from 2021), which pulls in
scipy (seconds of start-up for every run, as torchmetrics then imports scipy.signal), its
RDB storage breaks under SQLAlchemy 2, and a trial that raises aborts the whole search.
This one keeps the same config surface and adds: the study lives in SQLite at the sweep
root, so rerunning with the same `hydra.sweep.dir` resumes an interrupted search; a trial
that fails or returns NaN is recorded as failed and the search goes on.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def distribution(override: Override) -> Any:
    """An Optuna distribution from a Hydra sweep expression."""
    import optuna.distributions as d

    value = override.value()
    if isinstance(value, ChoiceSweep):
        return d.CategoricalDistribution(list(value.list))
    if isinstance(value, RangeSweep):
        start, stop, step = value.start, value.stop, value.step
        if all(float(v).is_integer() for v in (start, stop, step)):
            return d.IntDistribution(int(start), int(stop) - int(step), step=int(step))
        return d.FloatDistribution(start, stop - step, step=step)
    if isinstance(value, IntervalSweep):
        log_scale = "log" in value.tags
        if not log_scale and all(isinstance(v, int) for v in (value.start, value.end)):
            return d.IntDistribution(value.start, value.end)
        return d.FloatDistribution(value.start, value.end, log=log_scale)
    raise ValueError(f"{override.input_line}: not a sweep (use choice, range or interval)")


class XorOptunaSweeper(Sweeper):
    def __init__(
        self,
        direction: str,
        n_trials: int,
        n_jobs: int,
        study_name: str,
        storage: str | None,
        sampler: Any,
        params: dict[str, str],
    ) -> None:
        self.direction, self.n_trials, self.n_jobs = direction, n_trials, n_jobs
        self.study_name, self.storage, self.sampler_cfg = study_name, storage, sampler
        self.params = dict(params or {})

    def setup(self, *, hydra_context: Any, task_function: Any, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def _space(self, arguments: list[str]) -> tuple[dict[str, Any], list[str]]:
        """The search space (config params, plus sweeps on the command line) and fixed overrides."""
        parser = OverridesParser.create()
        space: dict[str, Any] = {}
        for o in parser.parse_overrides([f"{k}={v}" for k, v in self.params.items()]):
            space[o.get_key_element()] = distribution(o)
        fixed = []
        for o in parser.parse_overrides(arguments):
            if o.is_sweep_override():
                space[o.get_key_element()] = distribution(o)
            else:
                fixed.append(o.input_line)
        return space, fixed

    def sweep(self, arguments: list[str]) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        space, fixed = self._space(arguments)
        sampler = self.sampler_cfg  # Hydra has usually instantiated it already
        if isinstance(sampler, (dict, DictConfig)):
            sampler = instantiate(sampler)
        study = optuna.create_study(
            study_name=self.study_name,
            storage=self.storage or f"sqlite:///{(sweep_dir / 'optuna.db').resolve()}",
            sampler=sampler,
            direction=self.direction,
            load_if_exists=True,
        )
        for stale in study.get_trials(states=(optuna.trial.TrialState.RUNNING,)):
            study.tell(stale.number, state=optuna.trial.TrialState.FAIL)  # from an interrupted run
        done = len(study.trials)
        if done:
            log.info(
                "resuming study %r: %d of %d trials done", self.study_name, done, self.n_trials
            )
        while len(study.trials) < self.n_trials:
            batch = min(self.n_jobs, self.n_trials - len(study.trials))
            trials = [study.ask(space) for _ in range(batch)]
            jobs = [tuple(f"{k}={v}" for k, v in t.params.items()) + tuple(fixed) for t in trials]
            self.validate_batch_is_legal(jobs)
            returns = self.launcher.launch(jobs, initial_job_idx=trials[0].number)
            for trial, ret in zip(trials, returns, strict=True):
                self._tell(study, trial, ret)
        self._report(study, sweep_dir)

    @staticmethod
    def _tell(study: Any, trial: Any, ret: Any) -> None:
        import optuna

        try:
            value = ret.return_value  # re-raises the job's exception, if it failed
        except Exception as e:
            log.warning("trial %d failed: %s", trial.number, e)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return
        if value is None or not math.isfinite(float(value)):
            log.warning("trial %d returned %s: recorded as failed", trial.number, value)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return
        study.tell(trial, float(value))
        log.info("trial %d: %s -> %.4f", trial.number, trial.params, float(value))

    def _report(self, study: Any, sweep_dir: Path) -> None:
        import optuna

        complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
        if not complete:
            log.warning("no trial completed; nothing to report")
            return
        best = study.best_trial
        results = {"name": "optuna", "best_params": best.params, "best_value": best.value,
                   "best_trial": best.number, "n_trials": len(study.trials),
                   "n_failed": len(study.trials) - len(complete)}  # fmt: skip
        OmegaConf.save(OmegaConf.create(results), sweep_dir / "optimization_results.yaml")
        log.info(
            "best trial %d: %s = %.4f with %s", best.number, self.direction, best.value, best.params
        )
