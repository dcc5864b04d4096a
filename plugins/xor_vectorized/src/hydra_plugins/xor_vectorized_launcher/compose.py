"""Job configs at sweep speed: compose once per set of group choices, then set values.

Hydra composes every job of a sweep from scratch (about 80 ms here: the defaults tree,
the YAML files, the merge), and Hydra's basic sweeper composes each job once more to check
it (xor-train's own sweeper checks one job per shape: `hydra_plugins.xor_sweeper`).
Most jobs of a sweep differ from each other only in values (`seed=3`,
`model.optimizer.lr=0.01`), which Hydra applies after composition anyway. So this loader
composes each distinct set of the other overrides (group choices, `hydra.*`, `+`/`~`,
lists and dicts) once with Hydra, keeps it pickled (a copy then costs ~1 ms) and sets the
job's values with Hydra's own `OmegaConf.update`. A job whose order of overrides matters
(another override touching a value's key: `shapes.split`) and a job that fails anywhere on
the way are composed by Hydra's own loader, whole: the config, or the error, is then
Hydra's by construction. tests/test_stacked.py and tests/test_composition.py check that
the result equals Hydra's composition of the same job.
"""

from __future__ import annotations

import logging
import pickle
import re
from typing import Any

from hydra.core.override_parser.types import Override
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from hydra_plugins.xor_sweeper.shapes import parse, split

log = logging.getLogger(__name__)


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
        """The job's config: the fast path's where it is Hydra's, else Hydra's own (whose
        error an illegal job gets, the first in the command line's order, as Hydra says it)."""
        try:
            parsed = [parse(line) for line in sweep_overrides]  # Hydra's parse, cached
            found = split(parsed, master_config.hydra.runtime.choices)
            if found is not None:
                return self._fast(master_config, parsed, *found)
        except Exception as e:  # Hydra composes it again, and raises its own error
            log.debug("composing %s as Hydra does: %s", sweep_overrides, e)
        return self.inner.load_sweep_config(master_config, list(sweep_overrides))

    def _fast(self, master_config: DictConfig, parsed: list[Override],
              others: list[Override], values: list[Override]) -> DictConfig:  # fmt: skip
        """The composition of the job's other overrides, copied, with its values set."""
        structural = tuple(o.input_line for o in others)
        if structural not in self._bases:
            base = self.inner.load_sweep_config(master_config, list(structural))
            with open_dict(base.hydra):
                base.hydra.overrides.task = []
            self._bases[structural] = pickle.dumps(base)
        cfg: DictConfig = pickle.loads(self._bases[structural])
        OmegaConf.copy_cache(from_config=master_config, to_config=cfg)
        for o in values:  # as Hydra's `_apply_overrides_to_config` sets a plain value
            OmegaConf.update(cfg, o.key_or_group, o.value(), merge=True)
        task = [o for o in parsed if not o.is_hydra_override()]
        job = cfg.hydra.job
        with open_dict(cfg.hydra):
            cfg.hydra.overrides.task = [o.input_line for o in task]
            job.override_dirname = overrides_dirname(task, job.config.override_dirname)
        return cfg


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
