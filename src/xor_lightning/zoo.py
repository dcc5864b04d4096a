"""The other toy problems of the plane, beside the chapter's XOR (`data.py`).

`clusters` puts XOR in four blobs at the corners, fitted to the losses the chapter prints
(docs/chapter-numbers.md); circle, gaussians and spiral follow TensorFlow Playground, moons
scikit-learn's `make_moons`. Each draws `n` points from a generator: X (n, 2), y (n,).
"""

from __future__ import annotations

import math

import torch


def clusters(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The four corners (±1, ±1), n/4 points each in random order; label 1 where the corner's
    coordinates differ in sign. The jitter (std `noise` on x1, `aspect`·`noise` on x2) then
    spreads each corner into a Gaussian blob."""
    corner = torch.randperm(n, generator=g) % 4
    signs = torch.stack([corner // 2, corner % 2], dim=1).float() * 2 - 1
    return signs, (signs[:, 0] != signs[:, 1]).float()


def _polar(r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return torch.stack([r * torch.cos(t), r * torch.sin(t)], dim=1)


def circle(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Label 1: radius U(0, 0.5); label 0: a ring, radius U(0.7, 1); angle U(0, 2π)."""
    y = (torch.rand(n, generator=g) < 0.5).float()
    u = torch.rand(n, generator=g)
    r = torch.where(y == 1, 0.5 * u, 0.7 + 0.3 * u)
    return _polar(r, 2 * math.pi * torch.rand(n, generator=g)), y


def gaussians(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Two blobs of std 0.25: label 1 around (0.4, 0.4), label 0 around (-0.4, -0.4)."""
    y = (torch.rand(n, generator=g) < 0.5).float()
    centre = (2 * y - 1).unsqueeze(1) * 0.4
    return centre + 0.25 * torch.randn(n, 2, generator=g), y


def spiral(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Two interleaved arms: radius r ~ U(0, 1), angle 1.75·2π·r, plus π for label 0."""
    y = (torch.rand(n, generator=g) < 0.5).float()
    r = torch.rand(n, generator=g)
    return _polar(r, 1.75 * 2 * math.pi * r + math.pi * (1 - y)), y


def moons(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's two moons, centred and scaled by 2/3 into [-1, 1] x [-0.5, 0.5].

    Label 0: (cos t, sin t); label 1: (1 - cos t, 0.5 - sin t); t ~ U(0, π).
    """
    y = (torch.rand(n, generator=g) < 0.5).float()
    t = math.pi * torch.rand(n, generator=g)
    outer = torch.stack([torch.cos(t), torch.sin(t)], dim=1)
    inner = torch.stack([1 - torch.cos(t), 0.5 - torch.sin(t)], dim=1)
    X = torch.where(y.unsqueeze(1) == 1, inner, outer)
    return (X - torch.tensor([0.5, 0.25])) * (2 / 3), y


PROBLEMS = {  # data.problem=<name> (`xor`, the chapter's, is in data.py)
    "clusters": clusters,
    "circle": circle,
    "gaussians": gaussians,
    "spiral": spiral,
    "moons": moons,
}
