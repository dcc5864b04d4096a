"""The chapter's network, `MLP`: 2 inputs -> 8 tanh units -> one raw logit.

You write only `__init__` (the layers, whose parameters register themselves) and
`forward` (what happens to a batch); autograd derives the backward pass. More hidden
layers: `deep_mlp.py` (`model=deep_mlp`).
"""

from __future__ import annotations

from torch import Tensor, nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
}


def make_activation(name: str) -> nn.Module:
    """A new activation module by name (`ACTIVATIONS`)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]()


class MLP(nn.Module):
    """The chapter's class: it returns logits, not probabilities (the loss applies the
    sigmoid, which is numerically stable; `torch.sigmoid` reads a probability). The
    defaults: 2·8 + 8 + 8·1 + 1 = 33 parameters. `n_out` > 1: a logit per class
    (`task=multiclass`); `activation`: the chapter's tanh, or another."""

    def __init__(
        self, n_in: int = 2, hidden: int = 8, activation: str = "tanh", n_out: int = 1
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(n_in, hidden)  # a (w·x + b) layer; params auto-registered
        self.fc2 = nn.Linear(hidden, n_out)
        self.act = make_activation(activation)  # the chapter: torch.tanh

    def forward(self, x: Tensor) -> Tensor:
        x = self.act(self.fc1(x))
        return self.fc2(x)  # raw logit; the loss applies sigmoid
