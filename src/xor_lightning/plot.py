"""Pictures of what the network learned: the decision boundary over the input square.

Two renderers. `boundary_image` paints pixels with NumPy in about a millisecond: it is
what training logs to TensorBoard every N epochs. `boundary_figure` is a full Matplotlib
figure (axes, contour, legend), drawn once per run for `boundary.png`, with the object API
and the Agg canvas: no display, no global pyplot state, so it works headless.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from matplotlib.figure import Figure

LIM = 1.5  # the plotted square, [-LIM, LIM]², a little beyond the data


@torch.no_grad()
def probability_grid(net: nn.Module, steps: int = 121) -> np.ndarray:
    """P(label 1) on a steps-by-steps grid over the square, rows from bottom to top."""
    device = next(net.parameters()).device
    axis = torch.linspace(-LIM, LIM, steps, device=device)
    gy, gx = torch.meshgrid(axis, axis, indexing="ij")
    points = torch.stack([gx.flatten(), gy.flatten()], dim=1)
    was_training = net.training
    net.eval()
    probs = torch.sigmoid(net(points)).reshape(steps, steps)
    net.train(was_training)
    return probs.cpu().numpy()


@torch.no_grad()
def misclassified(net: nn.Module, X: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """A boolean mask of the points the net labels wrongly (logit > 0 means label 1)."""
    return ((net(X).flatten() > 0).float() != y.flatten()).cpu().numpy()


@torch.no_grad()
def boundary_figure(
    net: nn.Module, X: torch.Tensor, y: torch.Tensor, title: str = "", max_points: int = 1000
) -> Figure:
    """Heatmap of P(label 1), the 0.5 contour, the points by label, errors marked with x."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    grid = probability_grid(net)
    extent = (-LIM, LIM, -LIM, LIM)
    ax.imshow(grid, origin="lower", extent=extent, cmap="RdBu_r", vmin=0, vmax=1, alpha=0.75)
    axis = np.linspace(-LIM, LIM, grid.shape[0])
    ax.contour(axis, axis, grid, levels=[0.5], colors="k", linewidths=1)

    X, y = X[:max_points], y[:max_points].flatten()
    wrong = misclassified(net, X, y)
    X, y = X.cpu().numpy(), y.cpu().numpy()
    for label, colour in ((0, "#2166ac"), (1, "#b2182b")):
        ok = (y == label) & ~wrong
        ax.scatter(X[ok, 0], X[ok, 1], s=9, c=colour, edgecolors="white", linewidths=0.3)
    ax.scatter(X[wrong, 0], X[wrong, 1], s=28, c="black", marker="x", linewidths=1.2,
               label=f"misclassified ({int(wrong.sum())})")  # fmt: skip
    ax.set(xlim=(-LIM, LIM), ylim=(-LIM, LIM), xlabel="x1", ylabel="x2", title=title)
    ax.set_aspect("equal")
    if wrong.any():
        ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    return fig


BLUE, RED = np.array([33, 102, 172]), np.array([178, 24, 43])  # label 0, label 1


@torch.no_grad()
def boundary_image(
    net: nn.Module, X: torch.Tensor, y: torch.Tensor, size: int = 240, max_points: int = 2000
) -> np.ndarray:
    """The boundary as an RGB uint8 array (size, size, 3), painted directly: a pale
    blue-to-red heatmap of P(label 1), the 0.5 boundary in grey, the first `max_points`
    points as dots by label, misclassified ones in black."""
    X, y = X[:max_points], y[:max_points]
    p = probability_grid(net, size)[::-1]  # image rows run top to bottom
    image = 255 - 0.45 * (255 - (BLUE * (1 - p[..., None]) + RED * p[..., None]))
    side = p > 0.5
    edge = np.zeros_like(side)
    edge[:-1] |= side[:-1] != side[1:]
    edge[:, :-1] |= side[:, :-1] != side[:, 1:]
    image[edge] = 90
    wrong = misclassified(net, X, y)
    labels = y.flatten().cpu().numpy()
    cols = np.round((X[:, 0].cpu().numpy() + LIM) / (2 * LIM) * (size - 1)).astype(int)
    rows = np.round((LIM - X[:, 1].cpu().numpy()) / (2 * LIM) * (size - 1)).astype(int)
    inside = (cols >= 1) & (cols < size - 1) & (rows >= 1) & (rows < size - 1)
    colours = np.where(wrong[:, None], 0, np.where(labels[:, None] == 1, RED, BLUE))
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            image[rows[inside] + dr, cols[inside] + dc] = colours[inside]
    return image.astype(np.uint8)


def save_boundary(net: nn.Module, X: torch.Tensor, y: torch.Tensor, path: Path, title: str) -> None:
    boundary_figure(net, X, y, title).savefig(path)
