"""K copies of the chapter's MLP computed as one: stacked weights, a stacked Adam and a
stacked plain SGD.

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

from xor_vectorized import app
from xor_vectorized.anynet import Slices


def _layers(net: nn.Module) -> list[nn.Linear]:
    return [m for m in net.modules() if isinstance(m, nn.Linear)]


class StackedMLP(Slices, nn.Module):
    """`nets` (`MLP`s, or `DeepMLP`s of one depth; any widths and activations) as one
    stacked network.

    It copies their current weights: build it from freshly initialised nets and each
    model starts from exactly the weights its own run would start from.
    """

    def __init__(self, nets: Sequence[nn.Module], activations: Sequence[str]) -> None:
        super().__init__()
        shapes = [[(lin.out_features, lin.in_features) for lin in _layers(n)] for n in nets]
        if len({len(s) for s in shapes}) != 1:
            raise ValueError("stacked nets must have the same depth")
        self.shapes = shapes  # per model, per layer: (out, in)
        self.names = [name for name, _ in nets[0].named_parameters()]  # fc1.weight, ...
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
        acts = app.read("model").ACTIVATIONS  # the app's activations by name
        self.act_groups = [(acts[name](), torch.tensor(ks)) for name, ks in groups.items()]
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

    def param_shapes(self, k: int) -> list[tuple[int, ...]]:
        """Model k's own shapes, in `flat_params()` order: (out, in) and (out,) per layer."""
        return [shape for out, inp in self.shapes[k] for shape in ((out, inp), (out,))]

    def flat_params(self) -> list[Tensor]:
        """Weights and biases in `MLP.parameters()` order: w0, b0, w1, b1, ..."""
        return [p for pair in zip(self.weights, self.biases, strict=True) for p in pair]


def _per_param(lr: Tensor, lr_layers: Tensor | None, n: int) -> Tensor:
    """The learning rate of every model for each of `n` parameters: (n, K). `lr_layers`
    (n, K) holds one rate per model per parameter (torch's parameter groups, per model);
    without it every parameter takes `lr`."""
    return lr.expand(n, -1) if lr_layers is None else lr_layers


class StackedAdam(torch.optim.Optimizer):
    """Adam (or AdamW, `decoupled=True`) with its own hyperparameters for every model.

    `lr`, `beta1`, `beta2`, `eps`, `weight_decay` are length-K tensors; `lr_layers`, if
    given, a (number of parameters, K) tensor: model k's rate for each parameter, as its
    run's optimizer holds it in parameter groups (`model.lr_hidden`, `model.lr_out`). The
    update is torch's Adam, written for stacked tensors. `alive` (a K-long bool tensor,
    settable) freezes the models it marks False: their weights and state no longer change.
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
        lr_layers: Tensor | None = None,
    ) -> None:
        super().__init__(params, {})
        self.hyper = {
            "lr": lr,
            "beta1": beta1,
            "beta2": beta2,
            "eps": eps,
            "weight_decay": weight_decay,
        }
        self.lr_layers = _per_param(lr, lr_layers, len(self.param_groups[0]["params"]))
        self.decoupled = decoupled
        self.alive: Tensor | None = None

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        if closure is not None:  # Lightning's automatic optimization: forward and backward
            with torch.enable_grad():
                closure()
        everything = self.param_groups[0]["params"]
        params = [(i, p) for i, p in enumerate(everything) if p.grad is not None]
        if not params:
            return
        live = self.alive
        for _, p in params:
            state = self.state[p]
            if not state:
                state["step"] = torch.zeros(len(p), device=p.device)
                state["exp_avg"] = torch.zeros_like(p)
                state["exp_avg_sq"] = torch.zeros_like(p)
            state["step"] += 1 if live is None else live.float()
        first = params[0][1]
        coef = self._coefficients(self.state[first]["step"], first)
        for i, p in params:
            self._update(p, {**coef, **self._lr_coefficients(i, coef, first)}, live)

    def _coefficients(self, step: Tensor, like: Tensor) -> dict[str, Tensor]:
        """Adam's scalars per model, computed in double as torch's Adam computes them."""
        h = self.hyper = {k: v.to(like.device) for k, v in self.hyper.items()}
        steps = step.double().clamp(min=1)
        coef = {
            "w1": 1 - h["beta1"],
            "b2": h["beta2"],
            "w2": 1 - h["beta2"],
            "bc1": 1 - h["beta1"] ** steps,
            "bc2_sqrt": (1 - h["beta2"] ** steps).sqrt(),
            "eps": h["eps"],
            "wd": h["weight_decay"],
        }
        return {k: v if k == "bc1" else v.to(like.dtype) for k, v in coef.items()}

    def _lr_coefficients(self, i: int, coef: dict[str, Tensor], like: Tensor) -> dict[str, Tensor]:
        """Parameter i's rate-dependent scalars (its group's lr), in double, then its dtype."""
        self.lr_layers = self.lr_layers.to(like.device)
        lr = self.lr_layers[i]
        wd = self.hyper["weight_decay"]
        step_size, decay = lr / coef["bc1"], 1 - lr * wd
        return {"step_size": step_size.to(like.dtype), "decay": decay.to(like.dtype)}

    def _update(self, p: Tensor, coef: dict[str, Tensor], live: Tensor | None) -> None:
        """torch's Adam update of one stacked parameter, in the same order of operations."""
        state, g = self.state[p], p.grad
        shape = (-1, *([1] * (p.dim() - 1)))
        c = {k: v.view(shape) for k, v in coef.items() if k != "bc1"}
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


class StackedSGD(torch.optim.Optimizer):
    """Plain gradient descent (torch's SGD without momentum) for every model at once:
    `p -= lr * (g + weight_decay * p)` with model k's own rate for each parameter
    (`lr_layers`, as `StackedAdam`'s). No state, as torch's SGD keeps none without
    momentum. `alive` freezes the models it marks False."""

    def __init__(
        self,
        params: list[Tensor],
        lr: Tensor,
        weight_decay: Tensor,
        lr_layers: Tensor | None = None,
    ) -> None:
        super().__init__(params, {})
        self.hyper = {"lr": lr, "weight_decay": weight_decay}
        self.lr_layers = _per_param(lr, lr_layers, len(self.param_groups[0]["params"]))
        self.alive: Tensor | None = None

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        if closure is not None:  # Lightning's automatic optimization: forward and backward
            with torch.enable_grad():
                closure()
        live = self.alive
        for i, p in enumerate(self.param_groups[0]["params"]):
            if p.grad is None:
                continue
            shape = (-1, *([1] * (p.dim() - 1)))
            lr = self.lr_layers[i].to(p.device, p.dtype).view(shape)
            wd = self.hyper["weight_decay"].to(p.device, p.dtype).view(shape)
            g = p.grad + wd * p
            new_p = p - lr * g
            if live is not None:
                new_p = torch.where(live.view(shape), new_p, p)
            p.copy_(new_p)


def stacked_optimizer(
    kind: str, params: list[Tensor], hyper: dict[str, Tensor], decoupled: bool = False
) -> torch.optim.Optimizer:
    """The stacked form of a job's optimizer: `kind` "adam" (Adam, or AdamW when
    `decoupled`) or "sgd" (plain SGD), on the per-model values `hyper` (`fit._hyper`)."""
    if kind == "sgd":
        return StackedSGD(params, **hyper)
    return StackedAdam(params, decoupled=decoupled, **hyper)
