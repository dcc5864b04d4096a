"""The sweeper's config: `hydra/sweeper=xor_optuna` (and `optuna`), its sampler and pruner groups.

The surface is hydra-optuna-sweeper 1.3's (same keys, same group names), on Optuna 5. Kept
apart from `sweeper.py` because Hydra imports every plugin module on every start: this one
imports neither Optuna nor SQLAlchemy.
"""

from dataclasses import dataclass, field
from importlib.util import find_spec
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from hydra_plugins.xor_optuna_sweeper.trials import (
    SWEEPER,  # the name a job knows its sweeper by (stdlib only)
)


# Samplers: the release's fields. Where Optuna 5 deprecates an argument (it warns when one
# is passed), the field is null, which is Optuna's default: the same value the release set.
@dataclass
class TPESamplerConfig:
    _target_: str = "optuna.samplers.TPESampler"
    seed: int | None = None
    consider_prior: bool | None = None  # deprecated by Optuna: null is its default (true)
    prior_weight: float | None = None  # 1.0
    consider_magic_clip: bool | None = None  # true
    consider_endpoints: bool | None = None  # false
    n_startup_trials: int = 10
    n_ei_candidates: int = 24
    multivariate: bool | None = False  # null: Optuna 5's default (multivariate, one objective)
    warn_independent_sampling: bool | None = None  # false
    group: bool = False
    constant_liar: bool = True


@dataclass
class MOTPESamplerConfig:
    # Optuna 5 has no MOTPESampler: the sweeper builds a TPESampler (n_ehvi -> n_ei_candidates)
    _target_: str = "optuna.samplers.MOTPESampler"
    seed: int | None = None
    consider_prior: bool | None = None
    prior_weight: float | None = None
    consider_magic_clip: bool | None = None
    consider_endpoints: bool | None = None
    n_startup_trials: int = 10
    n_ehvi_candidates: int = 24


@dataclass
class RandomSamplerConfig:
    _target_: str = "optuna.samplers.RandomSampler"
    seed: int | None = None


@dataclass
class CmaEsSamplerConfig:
    _target_: str = "optuna.samplers.CmaEsSampler"
    seed: int | None = None
    x0: dict[str, Any] | None = None
    sigma0: float | None = None
    n_startup_trials: int = 1
    independent_sampler: Any = None
    warn_independent_sampling: bool = True
    consider_pruned_trials: bool = False
    restart_strategy: str | None = None
    popsize: int | None = None
    inc_popsize: int = -1  # the release's 2 is deprecated by Optuna 5 (-1: unset)
    use_separable_cma: bool = False
    with_margin: bool = False
    lr_adapt: bool = False
    source_trials: Any = None


@dataclass
class NSGAIISamplerConfig:
    _target_: str = "optuna.samplers.NSGAIISampler"
    seed: int | None = None
    population_size: int = 50
    mutation_prob: float | None = None
    crossover_prob: float = 0.9
    swapping_prob: float = 0.5
    constraints_func: Any = None


@dataclass
class GridSamplerConfig:
    # search_space is filled in at run time from hydra.sweeper.params
    _target_: str = "optuna.samplers.GridSampler"
    _partial_: bool = True
    seed: int | None = None


@dataclass
class XorOptunaSweeperConf:
    _target_: str = SWEEPER
    # The sweeper builds sampler, pruner and storage itself (to reseed a resumed search and
    # give jobs the same storage), so Hydra must hand them over as configs.
    _recursive_: bool = False
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}, {"pruner": "none"}])
    sampler: Any = (
        MISSING  # the hydra/sweeper/sampler group: tpe, random, cmaes, nsgaii, motpe, grid
    )
    direction: Any = "minimize"  # or maximize, or a list of them (multi-objective)
    # an SQLAlchemy URL (sqlite:///study.db), journal:<file> (Optuna's JournalStorage on a
    # file, for shared file systems), or a _target_ config; null: sqlite:///<sweep dir>/optuna.db
    storage: Any = None
    study_name: str | None = "xor"  # fixed, so rerunning the command resumes the search
    # trials in the study in all: those of an earlier, resumed run and of every other process
    # on the same storage included (each process stops when the study holds n_trials)
    n_trials: int = 20
    n_jobs: int = 2  # trials asked for at once and handed to the launcher together
    # A batch whose share of failed trials is above this stops the search (1.0: never)
    max_failure_rate: float = 1.0
    search_space: dict[str, Any] | None = None  # deprecated by the release: use params
    # key: a Hydra sweep expression, e.g. "tag(log, interval(1e-3, 0.3))",
    # "range(2, 33)" (Hydra's range: 33 excluded), "choice(tanh, relu)"
    params: dict[str, str] | None = None
    # dotpath of a function (cfg: DictConfig, trial: optuna.trial.Trial) -> None
    custom_search_space: str | None = None
    # the hydra/sweeper/pruner group: none, median, hyperband; or any _target_ config
    pruner: Any = MISSING
    # Many processes on one study (docs/optuna-processes.md). The index seeds this process's
    # sampler (seed + 1,000,003 x index + the trials that index asked for before); null: the lowest
    # index that no live process of the study holds (0 for a search run alone).
    process_index: int | None = None
    # A process's trials are taken over by another once it has ended, its pid is dead (same
    # host name, boot id and pid namespace), or (elsewhere) its heartbeat, written every
    # heartbeat_interval seconds, is older than grace_period seconds.
    heartbeat_interval: float = 60.0
    grace_period: float = 180.0


PRUNERS = {
    "none": {"_target_": "optuna.pruners.NopPruner"},
    "median": {
        "_target_": "optuna.pruners.MedianPruner",
        "n_startup_trials": 5,
        "n_warmup_steps": 0,
        "interval_steps": 1,
        "n_min_trials": 1,
    },
    "hyperband": {
        "_target_": "optuna.pruners.HyperbandPruner",
        "min_resource": 1,
        "max_resource": "auto",
        "reduction_factor": 3,
        "bootstrap_count": 0,
    },
}
SAMPLERS = {
    "tpe": TPESamplerConfig,
    "random": RandomSamplerConfig,
    "cmaes": CmaEsSamplerConfig,
    "nsgaii": NSGAIISamplerConfig,
    "motpe": MOTPESamplerConfig,
    "grid": GridSamplerConfig,
}

PROVIDER = "hydra-xor-optuna-sweeper"
cs = ConfigStore.instance()
cs.store(
    group="hydra/sweeper",
    name="xor_optuna",
    node=XorOptunaSweeperConf,
    provider=PROVIDER,
)
# The released plugin's name too, so its configs (`override hydra/sweeper: optuna`) run as they
# are; unless that plugin is installed, whose name it is (it pins optuna < 3 anyway).
if find_spec("hydra_plugins.hydra_optuna_sweeper") is None:
    cs.store(
        group="hydra/sweeper",
        name="optuna",
        node=XorOptunaSweeperConf,
        provider=PROVIDER,
    )
for name, node in SAMPLERS.items():
    cs.store(group="hydra/sweeper/sampler", name=name, node=node, provider=PROVIDER)
for name, node in PRUNERS.items():
    cs.store(group="hydra/sweeper/pruner", name=name, node=node, provider=PROVIDER)
