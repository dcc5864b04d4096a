"""K copies of any network as one: its parameters stacked, its forward pass vmapped.

A copier's network (any `nn.Module` whose parameter shapes its config fixes) is stacked
with `torch.func`: `stack_module_state` gives each parameter a leading model dimension,
and `vmap(functional_call(...))` runs the network's own `forward` on model k's slice for
every k at once, so each model computes exactly what its own network computes. The
chapter's MLP has a faster stacked form of its own (`net.py`: widths padded, so models of
different widths share a fit); both offer the slicing below, which the rest of the engine
uses to read and write one model's weights and optimizer state.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn


class Slices:
    """Model k's own tensors in stacked ones. `names` (a model's `state_dict` keys, in
    `parameters()` order) and `param_shapes(k)` (model k's own shape of each) say how."""

    names: list[str]

    def flat_params(self) -> list[Tensor]:
        raise NotImplementedError

    def param_shapes(self, k: int) -> list[tuple[int, ...]]:
        raise NotImplementedError

    def n_params(self, k: int) -> int:
        return sum(math.prod(shape) for shape in self.param_shapes(k))

    def take(self, stacked: Sequence[Tensor], k: int) -> list[Tensor]:
        """Model k's own tensors (copies) out of stacked ones, in `flat_params()` order."""
        return [
            t[(k, *(slice(0, n) for n in shape))].clone()
            for t, shape in zip(stacked, self.param_shapes(k), strict=True)
        ]

    def put(self, stacked: Sequence[Tensor], k: int, values: Sequence[Tensor]) -> None:
        """Write model k's own tensors into its slice of stacked ones."""
        with torch.no_grad():
            for t, shape, v in zip(stacked, self.param_shapes(k), values, strict=True):
                t[(k, *(slice(0, n) for n in shape))] = v

    def net_state(self, k: int, params: Sequence[Tensor] | None = None) -> dict[str, Tensor]:
        """Model k's weights as its own network's `state_dict()`."""
        tensors = self.take([p.detach() for p in (params or self.flat_params())], k)
        return dict(zip(self.names, tensors, strict=True))

    def load_net_state(self, k: int, state: dict[str, Tensor]) -> None:
        """Put model k's own weights (its network's `state_dict()`) into its slice."""
        self.put(self.flat_params(), k, [state[name] for name in self.names])


class StackedNet(Slices, nn.Module):
    """`nets` (one class, the same parameter shapes, no buffers) as one stacked network.

    It copies their current weights: built from freshly initialised nets, each model
    starts from exactly the weights its own run would start from.
    """

    def __init__(self, nets: Sequence[nn.Module]) -> None:
        super().__init__()
        first = nets[0]
        self.names = [name for name, _ in first.named_parameters()]
        shapes = {tuple((n, tuple(p.shape)) for n, p in net.named_parameters()) for net in nets}
        if len(shapes) != 1:
            raise ValueError("stacked nets must have the same parameters and shapes")
        self._shapes = [tuple(p.shape) for p in first.parameters()]
        params, _ = torch.func.stack_module_state(list(nets))
        self.stacked = nn.ParameterList([nn.Parameter(params[n].detach()) for n in self.names])
        self._base = [copy.deepcopy(first).to("meta")]  # a list: not a submodule of this one
        self._k = len(nets)

    def __len__(self) -> int:
        return self._k

    def flat_params(self) -> list[Tensor]:
        return list(self.stacked)

    def param_shapes(self, k: int) -> list[tuple[int, ...]]:
        return self._shapes

    def forward(self, x: Tensor) -> Tensor:
        """x: (K, B, n_in) -> outputs (K, B, n_out): model k's own forward on x[k]. In
        training mode each model draws its own randomness (Dropout's masks, say)."""
        base = self._base[0].train(self.training)  # Dropout: on in training, off otherwise

        def one(params: tuple[Tensor, ...], xk: Tensor) -> Tensor:
            return torch.func.functional_call(
                base, dict(zip(self.names, params, strict=True)), (xk,)
            )

        randomness = "different" if self.training else "error"
        return torch.vmap(one, randomness=randomness)(tuple(self.stacked), x)


def stack_problem_of(net: nn.Module, n_in: int, outputs: int = 1) -> str | None:
    """Why a built network cannot be stacked (None: it can): buffers, or outputs that do not
    fit the task, or a forward pass that fails stacked, in training or in eval mode."""
    name = type(net).__name__
    if any(True for _ in net.buffers()):
        return f"{name} has buffers (running statistics?): stacked nets have none"
    if not any(True for _ in net.parameters()):
        return f"{name} has no parameters"
    x = torch.zeros(2, 3, n_in)
    for training in (True, False):
        stacked = StackedNet([copy.deepcopy(net), copy.deepcopy(net)]).train(training)
        try:
            with torch.no_grad():
                out = stacked(x)
        except Exception as e:
            mode = "training" if training else "eval"
            return f"{name} fails stacked in {mode} mode: {type(e).__name__}: {e}"
        if tuple(out.shape) != (2, 3, outputs):
            return f"{name} maps (N, {n_in}) to {tuple(out.shape[1:])}, not (N, {outputs})"
    return None
