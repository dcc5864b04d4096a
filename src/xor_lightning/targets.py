"""The classes a config names: trusted only where the project's own config files name them
there, then built (`make_net`: the network of `model.net`).

A checkpoint from elsewhere could name any function as a `_target_`, and instantiating it
would run code as surely as unpickling would. So a `_target_` at a place (`model.net`,
`data`, `task`, `model` for a LightningModule of your own, and any place below them) is
accepted only when one of the project's config files (conf/**/*.yaml) names it at that
same place: your YAML that introduces a class is what lets its checkpoints load. There is
no list in the code to keep.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from xor_lightning.config import CONF_DIR
from xor_lightning.errors import UserError

if TYPE_CHECKING:
    from torch import nn


NET, DATA = "model.net", "data"  # where a config names the network's and the data's class
SHIPPED = "xor_lightning.module.XORModule"  # the LightningModule of a model YAML naming none


def own_module(config: Mapping[str, Any]) -> bool:
    """Whether `model._target_` names a LightningModule other than the shipped one."""
    return config["model"].get("_target_", SHIPPED) != SHIPPED


def _package(text: str, group: str) -> str:
    """Where a config file's keys land: its `# @package` line, else its group's dir."""
    found = re.search(r"^#\s*@package\s+(\S+)", text, re.MULTILINE)
    package = found[1] if found else group
    return "" if package == "_global_" else package.replace("_group_", group)


def _targets(node: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}.{key}" if path else str(key)
            if key == "_target_" and isinstance(value, str):
                yield path, value
            else:
                yield from _targets(value, where)
    elif isinstance(node, list):
        for value in node:
            yield from _targets(value, path)


@functools.lru_cache(maxsize=8)
def _named(conf_dir: str) -> dict[str, frozenset[str]]:
    found: dict[str, set[str]] = {}
    for path in sorted(Path(conf_dir).rglob("*.yaml")):
        text = path.read_text()
        group = ".".join(path.relative_to(conf_dir).parent.parts)
        try:
            content = yaml.safe_load(text)
        except yaml.YAMLError:
            continue  # Hydra refuses it when it is used; it names nothing here
        for where, target in _targets(content, _package(text, group)):
            found.setdefault(where, set()).add(target)
    return {where: frozenset(targets) for where, targets in found.items()}


def trusted(where: str, conf_dir: str = CONF_DIR) -> frozenset[str]:
    """The classes the project's config files name at `where` (`model.net`, `data`, ...):
    the only ones a checkpoint's config may name there."""
    return _named(conf_dir).get(where, frozenset())


def target_class(cfg: Mapping[str, Any], where: str) -> tuple[type, dict[str, Any]]:
    """The class `cfg._target_` names and its arguments (plain values); a `UserError` for a
    class no config file of the project names at `where`, before any of its code runs."""
    target, allowed = cfg.get("_target_"), trusted(where)
    if target not in allowed:
        raise UserError(
            f"refusing {where}._target_={target!r}: use one of {', '.join(sorted(allowed))} "
            f"(the classes the project's config files name at {where}._target_; a checkpoint's "
            "config may name only these)"
        )
    from hydra.utils import get_class

    try:
        cls = get_class(target)
    except Exception as e:
        cause = e.__cause__ or e
        raise UserError(
            f"{where}._target_={target}: cannot import it ({type(cause).__name__}: {cause})"
        ) from None
    return cls, {k: v for k, v in cfg.items() if not k.startswith("_")}


def check_all(cfg: Mapping[str, Any], where: str) -> None:
    """Every `_target_` in `cfg` (at `where` and below it) is one the config files name at
    its place: a `UserError` before any of them is imported."""
    for path, target in _targets(dict(cfg), where):
        if target not in trusted(path):
            allowed = ", ".join(sorted(trusted(path))) or "none"
            raise UserError(
                f"refusing {path}._target_={target!r}: the project's config files name "
                f"{allowed} there (a checkpoint's config may name only these)"
            )


def make_net(cfg: Mapping[str, Any]) -> nn.Module:
    """The network a config describes (`_target_` and its keyword arguments), untrained."""
    from xor_lightning.legacy import upgrade_net

    cls, kwargs = target_class(upgrade_net(dict(cfg)), "model.net")
    return cls(**kwargs)
