"""A checkpoint's trained model as xor-predict and xor-export use it: points in, the
task's readout out (P(label 1), each class's probability, or the value).

The shipped `XORModule`: its network, then the task's readout. A LightningModule of your
own: its `predict_step` (taken as the readout) for xor-predict when it has one, else its
`forward` (taken as the network's raw outputs) followed by the task's readout; xor-export
needs the `forward`, which `torch.export` traces.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from torch import nn

from xor_lightning.checkpoint import load_module, run_config
from xor_lightning.csvdata import feature_names
from xor_lightning.errors import UserError
from xor_lightning.tasks import Task, make_task


def _overrides(module: L.LightningModule, name: str) -> bool:
    return getattr(type(module), name) is not getattr(L.LightningModule, name)


class Readout(nn.Module):
    """`task.readout(net(x))`: what a user of the model wants, as one module."""

    def __init__(self, net: nn.Module, task: Task) -> None:
        super().__init__()
        self.net, self.task = net, task

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.task.readout(self.net(x))


class PredictStep(nn.Module):
    """A module's own `predict_step` on a batch of points."""

    def __init__(self, module: L.LightningModule) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module.predict_step(x, 0)


def load_trained(ckpt: Mapping[str, Any], tool: str) -> tuple[nn.Module, Task]:
    """The model of `tool` ("predict" or "export") from a checkpoint, in eval mode, and
    its task; a one-line `UserError` for a module without what the tool needs."""
    task = make_task(run_config(ckpt).get("task"))
    return model_of(load_module(ckpt), task, tool), task


def model_of(module: L.LightningModule, task: Task, tool: str) -> nn.Module:
    """What `tool` runs: points in, the task's readout out (see the module docstring)."""
    net = getattr(module, "net", None)
    if isinstance(net, nn.Module):  # the shipped module (its predict_step is this)
        return Readout(net, task).eval()
    if tool == "predict" and _overrides(module, "predict_step"):
        return PredictStep(module).eval()
    if _overrides(module, "forward"):
        return Readout(module, task).eval()
    needs = "a forward" if tool == "export" else "a predict_step or a forward"
    raise UserError(f"xor-{tool} needs {needs} in {type(module).__qualname__}, which has none")


def input_names(ckpt: Mapping[str, Any], model: nn.Module) -> tuple[str, ...]:
    """The model's input columns: a CSV run's feature names, else x1..xk (k from the
    network's `n_in`, else the first `nn.Linear`'s inputs, else 2)."""
    for state in ckpt.values():
        if isinstance(state, dict) and isinstance(state.get("points"), dict):
            names = state["points"].get("names")
            if names:
                return tuple(names[:-1])
    n_in = (run_config(ckpt)["model"].get("net") or {}).get("n_in")
    if not isinstance(n_in, int):
        linear = next((m for m in model.modules() if isinstance(m, nn.Linear)), None)
        n_in = linear.in_features if linear is not None else 2
    return feature_names(n_in)
