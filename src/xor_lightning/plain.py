"""Reading a config that is either a `DictConfig` or its resolved plain containers.

The checks a run makes before it starts (`validate.py`, `classes.py`) read a composed
`DictConfig`. The vectorised launcher checks every job of a sweep the same way, but it
holds each job's config already resolved as plain dicts (a `DictConfig`'s every read costs
tens of microseconds, which thousands of jobs multiply); these two readers give the same
answer on either form of the same config, so the checks run on both.
"""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf


def at(node: Any, key: str) -> Any:
    """`node.key` of a DictConfig (its errors included), `node[key]` of a plain dict."""
    return node[key] if isinstance(node, dict) else getattr(node, key)


def select(cfg: Any, key: str, default: Any) -> Any:
    """`OmegaConf.select(cfg, key, default=default)`; of plain containers, the value at the
    dotted `key`, or `default` where a part of it is not there."""
    if not isinstance(cfg, (dict, list)):
        return OmegaConf.select(cfg, key, default=default)
    for part in key.split("."):
        if isinstance(cfg, dict) and part in cfg:
            cfg = cfg[part]
        elif isinstance(cfg, list) and part.isdigit() and int(part) < len(cfg):
            cfg = cfg[int(part)]
        else:
            return default
    return cfg
