"""`DeepMLP` (`model=deep_mlp`): the chapter's MLP with `depth` hidden layers."""

from __future__ import annotations

from torch import nn

from xor_lightning.model import make_activation


class DeepMLP(nn.Sequential):
    """`depth` hidden layers of `hidden` units each, then `n_out` logits, as an
    `nn.Sequential` (no `forward` to write: it applies its layers in order).

    With `depth=1` it computes what `MLP` computes, with the same initial weights for the
    same seed (its layers are made in the same order).
    """

    def __init__(
        self,
        n_in: int = 2,
        hidden: int = 8,
        activation: str = "tanh",
        depth: int = 1,
        n_out: int = 1,
    ) -> None:
        layers: list[nn.Module] = []
        width = n_in
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), make_activation(activation)]
            width = hidden
        super().__init__(*layers, nn.Linear(width, n_out))
