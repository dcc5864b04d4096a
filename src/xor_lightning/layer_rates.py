"""`model.lr_hidden`, `model.lr_out`: the hidden layers' and the output layer's own
learning rates, as torch's parameter groups (`make map` sweeps both)."""

from __future__ import annotations

from typing import Any

from torch import nn

from xor_lightning.errors import UserError


def param_groups(net: nn.Module, lr_hidden: float | None, lr_out: float | None) -> Any:
    """The network's parameters: one group, or with a rate set two, in the network's order:
    every Linear layer but the last, then the last; a rate left None is the optimizer's."""
    if (lr_hidden, lr_out) == (None, None):
        return net.parameters()
    layers = [m for m in net.modules() if isinstance(m, nn.Linear)]
    parts = zip((layers[:-1], layers[-1:]), (lr_hidden, lr_out), strict=True)
    groups = [{"params": [p for m in part for p in m.parameters()]}
              | ({} if lr is None else {"lr": lr}) for part, lr in parts]  # fmt: skip
    if sum(len(g["params"]) for g in groups) != len(list(net.parameters())):
        raise UserError("model.lr_hidden/model.lr_out need a network of Linear layers only")
    return groups
