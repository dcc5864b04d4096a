"""What a checkpoint holds beyond Lightning's own keys, and loading one safely.

A checkpoint of a run holds, besides Lightning's keys (`state_dict`, `epoch`, `global_step`,
`loops`, `callbacks`, `optimizer_states`, `lr_schedulers`, ...):

- `hyper_parameters`: `XORModule`'s own arguments (`module_kwargs`), plain values, so
  `XORModule.load_from_checkpoint(path)` works; `datamodule_hyper_parameters`: the
  datamodule's, for `XORDataModule.load_from_checkpoint(path)`;
- `run_config`: the run's whole resolved config, read by `run_config` (xor-eval,
  xor-predict, xor-export and resume), and `metrics`: the scores when it was saved. Both
  are written by `add_run_info`, from `XORModule.on_save_checkpoint`.

Every load uses `torch.load(weights_only=True)`: a file whose unpickling would import or
call anything beyond tensors and plain containers is refused before any of it runs. The
network's and the data's `_target_` are checked too, since instantiating an arbitrary one
would run code as surely as a pickle: a checkpoint may name only a class that the project's
own config files (conf/**/*.yaml) name at that place (`model.net._target_`,
`data._target_`). A copier's network is trusted by the YAML that introduces it; there is no
list in the code to keep.
"""

from __future__ import annotations

import functools
import os
import re
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from xor_lightning.config import CONF_DIR
from xor_lightning.errors import UserError

RUN_CONFIG = "run_config"
NET, DATA = "model.net", "data"  # where a config names the network's and the data's class


def load_checkpoint(path: str | Path | None) -> dict[str, Any]:
    """Load an xor-lightning checkpoint, or raise a one-line `UserError` saying why not."""
    if path is None or str(path) in ("", "???"):
        raise UserError("ckpt_path is required: ckpt_path=<file.ckpt>")
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path} (no such file)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the unpickler's protocol notes
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad file
        found = re.search(
            r"unsupported GLOBAL ([\w.]+)|Unsupported global: GLOBAL ([\w.]+)", str(e)
        )
        if found:
            raise UserError(
                f"refusing {path}: loading it would run code ({found[1] or found[2]}); "
                "only weights-only checkpoints are accepted"
            ) from None
        raise UserError(
            f"{path} is not a readable checkpoint (truncated, or not a PyTorch file: "
            f"{type(e).__name__})"
        ) from None
    cfg = ckpt.get(RUN_CONFIG) if isinstance(ckpt, dict) else None
    if not (isinstance(cfg, dict) and "model" in cfg and "data" in cfg and "state_dict" in ckpt):
        raise UserError(f"{path} is not an xor-lightning checkpoint (no run config in it)")
    return ckpt


def run_config(ckpt: Mapping[str, Any]) -> dict[str, Any]:
    """The run's whole resolved config, as saved in its checkpoints (plain values)."""
    return ckpt[RUN_CONFIG]


def add_run_info(
    checkpoint: dict[str, Any], config: dict[str, Any] | None, metrics: Mapping[str, Any]
) -> None:
    """Add the run config and the current `stage/name` scores (as floats) to `checkpoint`."""
    if config is not None:
        checkpoint[RUN_CONFIG] = config
    checkpoint["metrics"] = {k: float(v) for k, v in metrics.items() if "/" in k}


def module_kwargs(config: Mapping[str, Any]) -> dict[str, Any]:
    """`XORModule`'s arguments from a run config: what its `hyper_parameters` hold."""
    model = config["model"]
    return {
        "net": model["net"],
        "optimizer": model.get("optimizer"),
        "scheduler": config.get("scheduler") or None,
        "gradient_clip_val": model.get("gradient_clip_val"),
        "lr_hidden": model.get("lr_hidden"),
        "lr_out": model.get("lr_out"),
    }


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
    """The classes the project's config files name at `where` (`model.net` or `data`): the
    only ones a checkpoint's config may name there."""
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


def make_net(cfg: Mapping[str, Any]) -> nn.Module:
    """The network a config describes (`_target_` and its keyword arguments), untrained."""
    cls, kwargs = target_class(cfg, NET)
    return cls(**kwargs)


def build_net(ckpt: Mapping[str, Any]) -> nn.Module:
    """The trained network, in eval mode."""
    net = make_net(run_config(ckpt)["model"]["net"])
    state = {
        k.removeprefix("net."): v for k, v in ckpt["state_dict"].items() if k.startswith("net.")
    }
    net.load_state_dict(state)
    return net.eval()


def n_inputs(ckpt: Mapping[str, Any], net: nn.Module) -> int | None:
    """How many inputs the network takes: its config's `n_in`, else the `in_features` of
    its first `nn.Linear`; None when neither says."""
    n_in = run_config(ckpt)["model"]["net"].get("n_in")
    if isinstance(n_in, int):
        return n_in
    return next((m.in_features for m in net.modules() if isinstance(m, nn.Linear)), None)


def data_kwargs(
    ckpt: Mapping[str, Any], overrides: dict[str, Any] | None = None
) -> tuple[type, dict[str, Any]]:
    """The checkpoint's datamodule class and settings, with the non-null `overrides` on top
    (each must be an argument of the class)."""
    import inspect

    cls, kwargs = target_class(run_config(ckpt)["data"], DATA)
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    takes = inspect.signature(cls).parameters
    for key in given:
        if key not in takes:
            raise UserError(
                f"data.{key} does not apply to this checkpoint's data ({cls.__qualname__} "
                f"takes {', '.join(takes) or 'nothing'})"
            )
    return cls, kwargs | given


def relocate(obj: Any, old: str, new: str) -> Any:
    """`obj` with every path under the dir `old` (strings and dict keys) moved under `new`."""
    if isinstance(obj, str):
        return new + obj[len(old) :] if obj == old or obj.startswith(old + os.sep) else obj
    if isinstance(obj, dict):
        return {relocate(k, old, new): relocate(v, old, new) for k, v in obj.items()}
    if isinstance(obj, list):
        return [relocate(v, old, new) for v in obj]
    return obj


def relocate_callbacks(
    checkpoint: dict[str, Any], config: Mapping[str, Any], ckpt_path: Any
) -> None:
    """Resuming from a run dir that was moved or copied: its checkpoint callbacks' state
    (best and last paths) names files where the run first ran; point it at the new dir.

    Only when the checkpoint lies in this run's dir: `ckpt_path=` from another run's dir
    into a new one keeps Lightning's behaviour (the old dir's best path, with a warning).
    """
    old = checkpoint.get(RUN_CONFIG, {}).get("paths", {}).get("output_dir")
    new = config["paths"]["output_dir"]
    if (
        old
        and ckpt_path
        and old != new
        and Path(ckpt_path).resolve().is_relative_to(Path(new).resolve())
    ):
        checkpoint["callbacks"] = relocate(checkpoint.get("callbacks", {}), old, new)
