"""The search space: Optuna distributions from Hydra sweep expressions, as the release builds them.

choice and shuffle(...) are categorical; range is discrete (int, or float when any bound or the
step is a float) over exactly the values Hydra's own range gives (stop excluded); interval is
uniform, an int when both ends are ints (`int(interval(1, 5))`), log-uniform when tagged `log`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import (
    ChoiceSweep,
    IntervalSweep,
    Override,
    RangeSweep,
    Transformer,
)


def distribution(override: Override) -> Any:
    """The Optuna distribution of one sweep override (`key=choice(...)`, range, interval)."""
    import optuna.distributions as d

    value = override.value()
    if isinstance(value, ChoiceSweep) or (isinstance(value, RangeSweep) and value.shuffle):
        return d.CategoricalDistribution(list(override.sweep_iterator(Transformer.encode)))
    if isinstance(value, RangeSweep):
        return _range(override.input_line, value)
    if isinstance(value, IntervalSweep):
        log = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return d.IntDistribution(value.start, value.end, log=log)
        return d.FloatDistribution(value.start, value.end, log=log)
    raise ValueError(f"{override.input_line}: not supported (use choice, range or interval)")


def _range(line: str, r: RangeSweep) -> Any:
    import optuna.distributions as d

    ints = all(isinstance(v, int) for v in (r.start, r.stop, r.step))
    start, stop, step = (v if ints else Decimal(str(v)) for v in (r.start, r.stop, r.step))
    if step == 0:
        raise ValueError(f"{line}: the step must not be 0")
    n = math.ceil((stop - start) / step) if not ints else -((start - stop) // step)
    if n <= 0:
        raise ValueError(f"{line}: the range is empty")
    low, high = sorted((start, start + (n - 1) * step))  # Hydra's last value, not stop
    if ints:
        return d.IntDistribution(low, high, step=abs(step))
    return d.FloatDistribution(float(low), float(high), step=float(abs(step)))


def from_config(name: str, spec: Mapping[str, Any]) -> Any:
    """A distribution from an entry of the deprecated `search_space` (type, choices, low, ...)."""
    import optuna.distributions as d

    kind = getattr(spec.get("type"), "name", spec.get("type"))
    unknown = set(spec) - {"type", "choices", "low", "high", "log", "step"}
    if unknown or kind not in ("int", "float", "categorical"):
        raise ValueError(
            f"hydra.sweeper.search_space.{name}: type is one of int, float, categorical, with "
            f"choices, low, high, log, step (got type={kind}{', ' if unknown else ''}"
            f"{', '.join(sorted(unknown))})"
        )
    if kind == "categorical":
        return d.CategoricalDistribution(list(spec["choices"]))
    low, high, log, step = spec["low"], spec["high"], bool(spec.get("log")), spec.get("step")
    if kind == "int":
        step = 1 if log or step is None else int(step)
        return d.IntDistribution(int(low), int(high), log=log, step=step)
    return d.FloatDistribution(low, high, log=log, step=None if log else step)


def split(lines: list[str]) -> tuple[dict[str, Any], list[Override]]:
    """The sweeps of these overrides as distributions, and the fixed overrides.

    A later sweep of a key replaces an earlier sweep or fixed value, so a sweep on the
    command line wins over `params`; the caller takes fixed keys out of the space.
    """
    space: dict[str, Any] = {}
    fixed: dict[str, Override] = {}
    for o in OverridesParser.create().parse_overrides(lines):
        if o.is_sweep_override():
            space[o.get_key_element()] = distribution(o)
            fixed.pop(o.key_or_group, None)
        else:
            fixed[o.key_or_group] = o
    return space, list(fixed.values())


def key_of(name: str) -> str:
    """`+db@pkg` -> `db`: the config key or group a parameter name sets."""
    return name.lstrip("+~").split("@", 1)[0]


def grid(space: Mapping[str, Any]) -> dict[str, list[Any]]:
    """Every value of each parameter, for Optuna's GridSampler (discrete spaces only)."""
    import optuna.distributions as d

    values: dict[str, list[Any]] = {}
    for name, dist in space.items():
        if isinstance(dist, d.CategoricalDistribution):
            values[name] = list(dist.choices)
        elif isinstance(dist, d.IntDistribution):
            values[name] = list(range(dist.low, dist.high + 1, dist.step))
        elif isinstance(dist, d.FloatDistribution) and dist.step is not None:
            low, step = Decimal(str(dist.low)), Decimal(str(dist.step))
            n = int((Decimal(str(dist.high)) - low) / step) + 1
            values[name] = [float(low + i * step) for i in range(n)]
        else:
            raise ValueError(
                f"hydra.sweeper.params.{name}: the grid sampler needs a discrete space "
                "(choice or range), not an interval"
            )
    return values


def as_override(name: str, value: Any) -> str:
    """`name=value`, written so that Hydra parses it back to the same value."""
    return f"{name}={Transformer.str(value)}"
