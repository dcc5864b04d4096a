"""Loading checkpoints safely, and rebuilding the model and data from one.

Every load uses `torch.load(weights_only=True)`: a file whose unpickling would import or
call anything beyond tensors and plain containers is refused before any of it runs. The
`_target_`s stored in the hyperparameters are checked too, since instantiating an
arbitrary one would run code as surely as a pickle.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import torch

from xor_lightning.config import UserError
from xor_lightning.model import MLP

NET_TARGETS = {"xor_lightning.model.MLP"}
DATA_TARGETS = {"xor_lightning.datamodule.XORDataModule"}


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
    hp = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not (isinstance(hp, dict) and "model" in hp and "data" in hp and "state_dict" in ckpt):
        raise UserError(f"{path} is not an xor-lightning checkpoint (no model/data config in it)")
    return ckpt


def _kwargs(cfg: dict[str, Any], allowed: set[str], what: str) -> dict[str, Any]:
    target = cfg.get("_target_")
    if target not in allowed:
        raise UserError(f"refusing checkpoint: its {what} names _target_ {target!r}, not {allowed}")
    return {k: v for k, v in cfg.items() if not k.startswith("_")}


def build_net(ckpt: dict[str, Any]) -> MLP:
    """The trained network, in eval mode."""
    net = MLP(**_kwargs(ckpt["hyper_parameters"]["model"]["net"], NET_TARGETS, "model.net"))
    state = {
        k.removeprefix("net."): v for k, v in ckpt["state_dict"].items() if k.startswith("net.")
    }
    net.load_state_dict(state)
    return net.eval()


def data_kwargs(ckpt: dict[str, Any], overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The checkpoint's data settings, with the non-null `overrides` on top."""
    kwargs = _kwargs(ckpt["hyper_parameters"]["data"], DATA_TARGETS, "data")
    kwargs.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return kwargs
