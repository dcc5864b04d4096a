"""Job configs at sweep speed: compose once per set of group choices, then set values.

Hydra composes every job of a sweep from scratch (about 80 ms here: the defaults tree,
the YAML files, the merge), and Hydra's basic sweeper composes each job once more to check
it (xor-train's own sweeper checks one job per shape: `hydra_plugins.xor_sweeper`).
Most jobs of a sweep differ from each other only in values (`seed=3`,
`model.optimizer.lr=0.01`), which Hydra applies after composition anyway. So this loader
composes each distinct set of the other overrides (group choices, `hydra.*`, `+`/`~`)
once with Hydra, keeps it pickled (a copy then costs ~1 ms) and applies the job's value
overrides the way Hydra's `ConfigLoaderImpl` does. Anything it does not recognise as a
plain value override goes to Hydra's own composition. tests/test_stacked.py
checks that the result equals Hydra's composition of the same job.
"""

from __future__ import annotations

import pickle
import re
import sys
from typing import Any

from hydra.core.override_parser.types import Override
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from hydra_plugins.xor_sweeper.shapes import is_value, parse


class FastSweepConfigLoader:
    """Wraps Hydra's config loader; `load_sweep_config` takes the fast path when it can."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self._bases: dict[tuple[str, ...], bytes] = {}

    def __getattr__(self, name: str) -> Any:  # everything else is Hydra's loader
        if name == "inner":  # not set yet (unpickling): not Hydra's either
            raise AttributeError(name)
        return getattr(self.inner, name)

    def load_sweep_config(
        self, master_config: DictConfig, sweep_overrides: list[str]
    ) -> DictConfig:
        parsed = [parse(line) for line in sweep_overrides]  # Hydra's parse, cached
        choices = master_config.hydra.runtime.choices
        values = [o for o in parsed if is_value(o, choices)]
        structural = tuple(o.input_line for o in parsed if not is_value(o, choices))
        if structural not in self._bases:
            base = self.inner.load_sweep_config(master_config, list(structural))
            with open_dict(base.hydra):
                base.hydra.overrides.task = []
            self._bases[structural] = pickle.dumps(base)
        cfg: DictConfig = pickle.loads(self._bases[structural])
        OmegaConf.copy_cache(from_config=master_config, to_config=cfg)
        for o in values:
            _set_value(cfg, o)
        task = [o for o in parsed if not o.is_hydra_override()]
        job = cfg.hydra.job
        with open_dict(cfg.hydra):
            cfg.hydra.overrides.task = [o.input_line for o in task]
            job.override_dirname = overrides_dirname(task, job.config.override_dirname)
        return cfg


def _set_value(cfg: DictConfig, o: Override) -> None:
    """What Hydra's `ConfigLoaderImpl._apply_overrides_to_config` does for a CHANGE, its
    errors included."""
    try:
        try:
            OmegaConf.update(cfg, o.key_or_group, o.value(), merge=True)
        except (ConfigAttributeError, ConfigKeyError) as ex:
            raise ConfigCompositionException(
                f"Could not override '{o.key_or_group}'."
                f"\nTo append to your config use +{o.input_line}"
            ) from ex
    except OmegaConfBaseException as ex:
        merging = ConfigCompositionException(f"Error merging override {o.input_line}")
        raise merging.with_traceback(sys.exc_info()[2]) from ex


def overrides_dirname(overrides: list[Override], conf: Any) -> str:
    """`hydra.job.override_dirname`, as Hydra's `get_overrides_dirname` builds it."""
    lines = sorted(o.input_line for o in overrides if o.key_or_group not in conf.exclude_keys)
    return re.sub("[=]", conf.kv_sep, conf.item_sep.join(lines))


def task_containers(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """The job's config without `hydra`, unresolved and resolved, as plain containers.

    The same as `OmegaConf.to_container` with `resolve=False` and with `resolve=True`, at a
    third of the cost: only the values that hold an interpolation are resolved, one by one
    (the config's other values are the same either way).
    """
    raw = {k: OmegaConf.to_container(v) if OmegaConf.is_config(v) else v
           for k, v in cfg.items_ex(resolve=False) if k != "hydra"}  # fmt: skip
    resolved = pickle.loads(pickle.dumps(raw))

    def walk(node: Any, path: str) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in items:
            here = f"{path}.{key}" if isinstance(node, dict) else f"{path}[{key}]"
            if isinstance(value, (dict, list)):
                walk(value, here)
            elif isinstance(value, str) and "${" in value:
                found = OmegaConf.select(cfg, here.lstrip("."))
                if isinstance(found, (DictConfig, ListConfig)):
                    found = OmegaConf.to_container(found, resolve=True)
                node[key] = found

    walk(resolved, "")
    return raw, resolved  # type: ignore[return-value]


# The fields of the `hydra` node that differ between the jobs of one composition.
JOB_FIELDS = ("job.num", "job.id", "job.override_dirname", "overrides.task", "runtime.output_dir")


class HydraNodes:
    """The job's `hydra` node as a plain container (for `.hydra/hydra.yaml`), at sweep speed:
    converted once per composition, then each job's own fields (`JOB_FIELDS`) set."""

    def __init__(self) -> None:
        self._bases: dict[str, bytes] = {}

    def container(self, cfg: DictConfig) -> dict[str, Any]:
        hydra = cfg.hydra
        key = repr((list(hydra.overrides.hydra), dict(hydra.runtime.choices)))
        if key not in self._bases:
            base = OmegaConf.to_container(hydra, resolve=False, enum_to_str=True)
            self._bases[key] = pickle.dumps(base)
        node = pickle.loads(self._bases[key])
        for field in JOB_FIELDS:
            *parents, last = field.split(".")
            parent = node
            for p in parents:
                parent = parent[p]
            value = OmegaConf.select(hydra, field)
            parent[last] = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
        return node
