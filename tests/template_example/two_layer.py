"""A copier's network: two ReLU hidden layers and a linear head, with its own `forward`.

Not an `nn.Sequential`: the project's hidden-units picture does not apply to it (and says
so once in the run log); everything else does.
"""

from __future__ import annotations

import torch
from torch import nn


class TwoLayerNet(nn.Module):
    """(N, n_in) float32 -> (N, n_out) raw outputs (logits, or a regression's values),
    through `width1` then `width2` ReLU units."""

    def __init__(self, n_in: int = 2, width1: int = 16, width2: int = 16, n_out: int = 1) -> None:
        super().__init__()
        self.fc1 = nn.Linear(n_in, width1)
        self.fc2 = nn.Linear(width1, width2)
        self.head = nn.Linear(width2, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.fc2(torch.relu(self.fc1(x)))))
