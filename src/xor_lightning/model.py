"""The chapter's network: 2 inputs -> `hidden` units -> one raw logit."""

from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
}


class MLP(nn.Module):
    """A one-hidden-layer perceptron that returns logits, not probabilities.

    The loss (`BCEWithLogitsLoss`) applies the sigmoid itself, which is numerically
    stable; call `torch.sigmoid` only when you need to read a probability.
    With the defaults it has 2·8 + 8 + 8·1 + 1 = 33 parameters.
    """

    def __init__(self, n_in: int = 2, hidden: int = 8, activation: str = "tanh") -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.fc1 = nn.Linear(n_in, hidden)
        self.act = ACTIVATIONS[activation]()
        self.fc2 = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))
