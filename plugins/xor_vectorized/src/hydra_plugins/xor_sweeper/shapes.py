"""A job's shape: what of its config Hydra composes, and which keys it only sets values of.

Most jobs of a big sweep differ from each other only in plain values (`seed=3`,
`model.lr_hidden=0.01`), which Hydra sets after composing the defaults list (its
`ConfigLoaderImpl._apply_overrides_to_config`: `OmegaConf.update(cfg, key, value)`, in the
command line's order, between the `+`, `++`, `~`, list and dict overrides). Composing a
job's other overrides first and setting its values after (`split`) gives Hydra's config
when no other override touches a value's key, its parent or its child: Hydra's composed
config is in struct mode, so a value only ever sets a key that is there, and a `+` that
adds a missing parent of a value's key leaves that key missing too. Where one does
(`seed=1 ++seed=7` is 7; `foo=1 +foo=7` an error), the order matters and the job has no
shape: it is composed as Hydra composes it. Two jobs have the same shape when they have
the same other overrides (group choices, `hydra.*`, `+`/`~`, lists and dicts: the input
lines) and set values of the same keys in the same order. On an untyped node (a YAML
config's) every such value is taken as it is, so where one job of a shape composes, every
job of the shape composes, and to the same config but for those values: `plain_keys`
checks the node by setting values of every kind on it and reading them back. The sweeper
(`sweeper.py`) and the vectorised launcher both build on this.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType
from omegaconf import DictConfig, OmegaConf

_PARSER = OverridesParser.create()
# Values of every kind a command line gives, each read back as set by an untyped node only:
# a typed one refuses or converts one of them (int, float, bool: "probe"; str: None).
PROBES = ("xor-shape-probe", 7, 0.5, True, None)


@functools.lru_cache(maxsize=1 << 17)
def parse(line: str) -> Override:
    """Hydra's parse of one override (a sweep's jobs repeat the same few lines)."""
    return _PARSER.parse_override(line)


def is_value(o: Override, choices: Any) -> bool:
    """A plain `key=value` of a config key: no group choice, no `+`/`~`, no `hydra.` key,
    no list or dict (which Hydra merges into the node)."""
    return (
        o.type == OverrideType.CHANGE
        and o.package is None
        and not o.is_hydra_override()
        and not o.is_sweep_override()
        and o.key_or_group not in choices
        and not isinstance(o.value(), (dict, list))
    )


def touched(o: Override, choices: Any) -> str | None:
    """The config key an override other than a plain value changes where Hydra applies the
    command line's config overrides (`+`, `++`, `~`, a list or dict value, a `hydra.` key);
    None for a group choice, which Hydra takes into the defaults list before all of those
    (a dict given to a group is merged as a config override, as Hydra's defaults list says)."""
    if o.key_or_group in choices and not isinstance(o.value(), dict):
        return None
    return o.key_or_group


def related(a: str, b: str) -> bool:
    """Whether setting one of the two keys can change the other: the same key, or one
    inside the other (`a` and `a.b`; not `a.b` and `a.c`, nor `a` and `ab`)."""
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def split(parsed: Sequence[Override], choices: Any) -> tuple[list[Override], list[Override]] | None:
    """The job's overrides to compose with Hydra and its plain values to set after them, in
    the command line's order each; None where that order is not Hydra's in effect: another
    override touches a value's key, its parent or its child (compose the job as Hydra does)."""
    values = [o for o in parsed if is_value(o, choices)]
    others = [o for o in parsed if not is_value(o, choices)]
    keys = [o.key_or_group for o in values]
    for o in others:
        key = touched(o, choices)
        if key is not None and any(related(key, k) for k in keys):
            return None
    return others, values


class Shape(NamedTuple):
    structural: tuple[str, ...]  # the lines Hydra composes
    keys: tuple[str, ...]  # the keys whose values are set after, in order


def shape_of(overrides: Sequence[str], choices: Any) -> tuple[Shape, list[Any]] | None:
    """The job's shape and its values (for `Shape.keys`); None when it has none: an
    override that does not parse (Hydra says why), another override touching a value's key
    (`split`), or a value key that another one contains or repeats (`a=1 a.b=2`: what the
    second sets depends on the first's value)."""
    try:
        found = split([parse(line) for line in overrides], choices)
    except Exception:
        return None
    if found is None:
        return None
    others, values = found
    keys = tuple(o.key_or_group for o in values)
    if any(related(a, b) for i, a in enumerate(keys) for b in keys[i + 1 :]):
        return None
    return Shape(tuple(o.input_line for o in others), keys), [o.value() for o in values]


def plain_keys(cfg: DictConfig, keys: Sequence[str]) -> bool:
    """Whether every key of `keys` takes any value a command line gives as it is, in this
    composed config (which the probes overwrite: pass a throwaway)."""
    for key in keys:
        for probe in PROBES:
            try:
                OmegaConf.update(cfg, key, probe, merge=True)
                back = OmegaConf.select(cfg, key)
            except Exception:
                return False
            if type(back) is not type(probe) or back != probe:
                return False
    return True
