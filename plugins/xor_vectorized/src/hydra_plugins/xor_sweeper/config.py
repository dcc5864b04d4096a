"""The sweeper's config, registered as `hydra/sweeper=xor_basic` (xor-train's default,
`conf/hydra/default.yaml`). Kept apart from `sweeper.py`, which Hydra also imports on every
start, so that the config reads at a glance: Hydra's basic sweeper's own fields."""

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore


@dataclass
class XorBasicSweeperConf:
    _target_: str = "hydra_plugins.xor_sweeper.sweeper.XorBasicSweeper"
    max_batch_size: int | None = None  # as hydra/sweeper=basic: jobs per launcher batch
    params: dict[str, str] | None = None  # as hydra/sweeper=basic: sweeps set in the config


ConfigStore.instance().store(
    group="hydra/sweeper",
    name="xor_basic",
    node=XorBasicSweeperConf,
    provider="hydra-xor-vectorized-launcher",
)
