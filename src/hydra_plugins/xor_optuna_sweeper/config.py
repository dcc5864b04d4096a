"""The sweeper's config, registered as `hydra/sweeper=xor_optuna`.

Kept apart from `sweeper.py` because Hydra imports every plugin module on every start:
this one imports neither Optuna nor SQLAlchemy.
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore


@dataclass
class XorOptunaSweeperConf:
    _target_: str = "hydra_plugins.xor_optuna_sweeper.sweeper.XorOptunaSweeper"
    direction: str = "maximize"  # or minimize
    n_trials: int = 20  # the budget: trials in total, counting those of an earlier, resumed search
    n_jobs: int = 1  # trials asked for at once and handed to the launcher together
    study_name: str = "xor"
    storage: str | None = None  # default: sqlite:///<sweep dir>/optuna.db
    sampler: Any = field(
        default_factory=lambda: {"_target_": "optuna.samplers.TPESampler", "seed": None}
    )
    # key: a Hydra sweep expression, e.g. "tag(log, interval(1e-3, 0.3))",
    # "range(2, 33)" (as Python's range: 33 excluded), "choice(tanh, relu)"
    params: dict[str, str] = field(default_factory=dict)


ConfigStore.instance().store(
    group="hydra/sweeper", name="xor_optuna", node=XorOptunaSweeperConf, provider="xor_lightning"
)
