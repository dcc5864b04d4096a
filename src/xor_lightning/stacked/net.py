"""K copies of the chapter's MLP computed as one: stacked weights and a stacked Adam.

Model k's layer l is the k-th slice of a (K, out, in) weight and a (K, out) bias, and a
forward pass is one batched matmul per layer for all K models. Narrower models are
padded to the widest with zero weights; their extra units are multiplied by a 0/1 mask
after the activation, so they output exactly 0, receive exactly zero gradients and
stay 0 under Adam: each model computes what its own, narrower, MLP computes. Plain
torch: the LightningModule around it is `module.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from xor_lightning.model import ACTIVATIONS, MLP


def _layers(net: MLP) -> list[nn.Linear]:
    return [m for m in net if isinstance(m, nn.Linear)]


class StackedMLP(nn.Module):
    """`nets` (MLPs of one depth, any widths and activations) as one stacked network.

    It copies their current weights: build it from freshly initialised nets and each
    model starts from exactly the weights its own run would start from.
    """

    def __init__(self, nets: Sequence[MLP], activations: Sequence[str]) -> None:
        super().__init__()
        shapes = [[(lin.out_features, lin.in_features) for lin in _layers(n)] for n in nets]
        if len({len(s) for s in shapes}) != 1:
            raise ValueError("stacked nets must have the same depth")
        self.shapes = shapes  # per model, per layer: (out, in)
        widest = [
            tuple(max(s[i][j] for s in shapes) for j in (0, 1)) for i in range(len(shapes[0]))
        ]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for i, (out, inp) in enumerate(widest):
            w = torch.zeros(len(nets), out, inp)
            b = torch.zeros(len(nets), out)
            for k, net in enumerate(nets):
                lin = _layers(net)[i]
                w[k, : lin.out_features, : lin.in_features] = lin.weight.detach()
                b[k, : lin.out_features] = lin.bias.detach()
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(b))
        # Hidden layer i's mask: 1 for the units model k really has.
        for i, (out, _) in enumerate(widest[:-1]):
            widths = torch.tensor([s[i][0] for s in shapes])
            self.register_buffer(f"mask{i}", (torch.arange(out) < widths[:, None]).float()[:, None])
        # Models sorted by nothing: each activation applies to the models that use it.
        self.activations = list(activations)
        groups: dict[str, list[int]] = {}
        for k, name in enumerate(activations):
            groups.setdefault(name, []).append(k)
        self.act_groups = [(ACTIVATIONS[name](), torch.tensor(ks)) for name, ks in groups.items()]
        self.padded = any(s != list(widest) for s in shapes)

    def __len__(self) -> int:
        return len(self.shapes)

    def _activate(self, pre: Tensor) -> Tensor:
        if len(self.act_groups) == 1:
            return self.act_groups[0][0](pre)
        out = torch.empty_like(pre)
        for act, ks in self.act_groups:
            idx = ks.to(pre.device)
            out[idx] = act(pre[idx])
        return out

    def forward(self, x: Tensor) -> Tensor:
        """x: (K, B, n_in) -> logits (K, B, 1)."""
        n = len(self.weights)
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))
            if i < n - 1:
                x = self._activate(x)
                if self.padded:
                    x = x * getattr(self, f"mask{i}")
        return x

    def net_state(self, k: int, params: Sequence[Tensor] | None = None) -> dict[str, Tensor]:
        """Model k's weights as its own `MLP.state_dict()` (keys `0.weight`, `0.bias`, ...)."""
        params = list(params) if params is not None else self.flat_params()
        state = {}
        for i, (out, inp) in enumerate(self.shapes[k]):
            w, b = params[2 * i], params[2 * i + 1]
            state[f"{2 * i}.weight"] = w[k, :out, :inp].detach().clone()
            state[f"{2 * i}.bias"] = b[k, :out].detach().clone()
        return state

    def load_net_state(self, k: int, state: dict[str, Tensor]) -> None:
        """Put model k's own weights (an `MLP.state_dict()`) into its slice."""
        with torch.no_grad():
            for i, (out, inp) in enumerate(self.shapes[k]):
                self.weights[i][k, :out, :inp] = state[f"{2 * i}.weight"]
                self.biases[i][k, :out] = state[f"{2 * i}.bias"]

    def flat_params(self) -> list[Tensor]:
        """Weights and biases in `MLP.parameters()` order: w0, b0, w1, b1, ..."""
        return [p for pair in zip(self.weights, self.biases, strict=True) for p in pair]


class StackedAdam(torch.optim.Optimizer):
    """Adam (or AdamW, `decoupled=True`) with its own hyperparameters for every model.

    `lr`, `beta1`, `beta2`, `eps`, `weight_decay` are length-K tensors. The update is
    torch's Adam, written for stacked tensors. `alive` (a K-long bool tensor, settable)
    freezes the models it marks False: their weights and state no longer change.
    """

    def __init__(
        self,
        params: list[Tensor],
        lr: Tensor,
        beta1: Tensor,
        beta2: Tensor,
        eps: Tensor,
        weight_decay: Tensor,
        decoupled: bool = False,
    ) -> None:
        super().__init__(params, {})
        self.hyper = {
            "lr": lr,
            "beta1": beta1,
            "beta2": beta2,
            "eps": eps,
            "weight_decay": weight_decay,
        }
        self.decoupled = decoupled
        self.alive: Tensor | None = None

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        params = [p for p in self.param_groups[0]["params"] if p.grad is not None]
        if not params:
            return
        live = self.alive
        for p in params:
            state = self.state[p]
            if not state:
                state["step"] = torch.zeros(len(p), device=p.device)
                state["exp_avg"] = torch.zeros_like(p)
                state["exp_avg_sq"] = torch.zeros_like(p)
            state["step"] += 1 if live is None else live.float()
        coef = self._coefficients(self.state[params[0]]["step"], params[0])
        for p in params:
            self._update(p, coef, live)

    def _coefficients(self, step: Tensor, like: Tensor) -> dict[str, Tensor]:
        """Adam's scalars per model, computed in double as torch's Adam computes them."""
        h = self.hyper = {k: v.to(like.device) for k, v in self.hyper.items()}
        steps = step.double().clamp(min=1)
        coef = {
            "w1": 1 - h["beta1"],
            "b2": h["beta2"],
            "w2": 1 - h["beta2"],
            "step_size": h["lr"] / (1 - h["beta1"] ** steps),
            "bc2_sqrt": (1 - h["beta2"] ** steps).sqrt(),
            "eps": h["eps"],
            "wd": h["weight_decay"],
            "decay": 1 - h["lr"] * h["weight_decay"],
        }
        return {k: v.to(like.dtype) for k, v in coef.items()}

    def _update(self, p: Tensor, coef: dict[str, Tensor], live: Tensor | None) -> None:
        """torch's Adam update of one stacked parameter, in the same order of operations."""
        state, g = self.state[p], p.grad
        shape = (-1, *([1] * (p.dim() - 1)))
        c = {k: v.view(shape) for k, v in coef.items()}
        new_p = p * c["decay"] if self.decoupled else p
        if not self.decoupled:
            g = g + c["wd"] * p
        m = state["exp_avg"].lerp(g, c["w1"])
        v = state["exp_avg_sq"] * c["b2"] + c["w2"] * g * g
        denom = v.sqrt() / c["bc2_sqrt"] + c["eps"]
        new_p = new_p - c["step_size"] * (m / denom)
        if live is not None:
            keep = live.view(shape)
            m = torch.where(keep, m, state["exp_avg"])
            v = torch.where(keep, v, state["exp_avg_sq"])
            new_p = torch.where(keep, new_p, p)
        state["exp_avg"], state["exp_avg_sq"] = m, v
        p.copy_(new_p)

    def model_state(self, k: int, net: StackedMLP) -> list[dict[str, Tensor]]:
        """Model k's Adam state per parameter, shaped like its own MLP's."""
        out = []
        for p, shape in zip(self.param_groups[0]["params"], _param_shapes(net, k), strict=True):
            s = self.state[p]
            idx = (k, *(slice(0, n) for n in shape))
            out.append(
                {
                    "step": s["step"][k].clone(),
                    "exp_avg": s["exp_avg"][idx].clone(),
                    "exp_avg_sq": s["exp_avg_sq"][idx].clone(),
                }
            )
        return out

    def load_model_state(self, k: int, net: StackedMLP, states: list[dict[str, Tensor]]) -> None:
        """Put model k's own Adam state (as from `model_state`) into its slice."""
        for p, shape, st in zip(
            self.param_groups[0]["params"], _param_shapes(net, k), states, strict=True
        ):
            s = self.state[p]
            if not s:
                s["step"] = torch.zeros(len(p), device=p.device)
                s["exp_avg"], s["exp_avg_sq"] = torch.zeros_like(p), torch.zeros_like(p)
            idx = (k, *(slice(0, n) for n in shape))
            s["step"][k] = st["step"]
            s["exp_avg"][idx] = st["exp_avg"]
            s["exp_avg_sq"][idx] = st["exp_avg_sq"]


def _param_shapes(net: StackedMLP, k: int) -> list[tuple[int, ...]]:
    return [shape for out, inp in net.shapes[k] for shape in ((out, inp), (out,))]
