"""The chapter's network: 2 inputs -> `hidden` units (x `depth` layers) -> one raw logit."""

from __future__ import annotations

from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
}


class MLP(nn.Sequential):
    """A perceptron with `depth` hidden layers that returns logits, not probabilities.

    The loss (`BCEWithLogitsLoss`) applies the sigmoid itself, which is numerically
    stable; call `torch.sigmoid` only when you need to read a probability.
    With the defaults (one hidden layer of 8) it has 2·8 + 8 + 8·1 + 1 = 33 parameters.
    """

    def __init__(
        self, n_in: int = 2, hidden: int = 8, activation: str = "tanh", depth: int = 1
    ) -> None:
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        layers: list[nn.Module] = []
        width = n_in
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), ACTIVATIONS[activation]()]
            width = hidden
        super().__init__(*layers, nn.Linear(width, 1))
