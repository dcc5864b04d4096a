"""What a checkpoint holds beyond Lightning's own keys; loading one safely; the module a
config names, untrained or from a checkpoint.

A checkpoint of a run holds, besides Lightning's keys (`state_dict`, `epoch`, `global_step`,
`loops`, `callbacks`, `optimizer_states`, `lr_schedulers`, ...):

- `hyper_parameters`: the LightningModule's own arguments (`module_kwargs` for the
  shipped `XORModule`), plain values, so `XORModule.load_from_checkpoint(path)` works;
  `datamodule_hyper_parameters`: the datamodule's;
- `run_config`: the run's whole resolved config, read by `run_config` (xor-eval,
  xor-predict, xor-export and resume), and `metrics`: the scores when it was saved. Both
  are written by `add_run_info`, from the run's `RunInfo` callback, whatever the module.

Every load uses `torch.load(weights_only=True)`: a file whose unpickling would import or
call anything beyond tensors and plain containers is refused before any of it runs, and
the classes its config names are checked (`targets.py`) before any is imported.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from xor_lightning.errors import UserError
from xor_lightning.targets import DATA, check_all, make_net, own_module, target_class

if TYPE_CHECKING:
    import lightning as L

RUN_CONFIG = "run_config"


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
    from xor_lightning.legacy import upgrade_checkpoint

    upgrade_checkpoint(ckpt)  # one from before tasks and the chapter's MLP class
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
        "task": config.get("task"),
        "steps_per_call": model.get("steps_per_call", 1),
        "gradient_clip_val": model.get("gradient_clip_val"),
        "lr_hidden": model.get("lr_hidden"),
        "lr_out": model.get("lr_out"),
    }


def make_module(config: Mapping[str, Any]) -> L.LightningModule:
    """The untrained LightningModule a run config (plain values) names: `XORModule` for a
    model YAML that names none, else the class `model._target_` names, instantiated by
    Hydra with the arguments beside it (nested `_target_`s too, as Hydra does)."""
    if not own_module(config):
        from xor_lightning.module import XORModule

        return XORModule(**module_kwargs(config))
    from hydra.utils import instantiate

    check_all(config["model"], "model")
    return instantiate(config["model"])


def load_module(ckpt: Mapping[str, Any]) -> L.LightningModule:
    """The trained LightningModule of a checkpoint, in eval mode."""
    module = make_module(run_config(ckpt))
    module.load_state_dict(ckpt["state_dict"])
    return module.eval()


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
