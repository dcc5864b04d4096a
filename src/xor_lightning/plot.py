"""Pictures of what the network learned: the decision boundary over the input square.

Matplotlib's object API with the Agg canvas: no display, no global pyplot state, so it
works headless and inside training. Imported only when a picture is drawn.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import nn

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
def boundary_figure(
    net: nn.Module, X: torch.Tensor, y: torch.Tensor, title: str = "", max_points: int = 1000
) -> Figure:
    """Heatmap of P(label 1), the 0.5 contour, the points by label, errors marked with x."""
    fig = Figure(figsize=(4.2, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    grid = probability_grid(net)
    extent = (-LIM, LIM, -LIM, LIM)
    ax.imshow(grid, origin="lower", extent=extent, cmap="RdBu_r", vmin=0, vmax=1, alpha=0.75)
    axis = np.linspace(-LIM, LIM, grid.shape[0])
    ax.contour(axis, axis, grid, levels=[0.5], colors="k", linewidths=1)

    X, y = X[:max_points], y[:max_points].flatten()
    wrong = ((net(X).flatten() > 0).float() != y).cpu().numpy()
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


def to_array(fig: Figure) -> np.ndarray:
    """The rendered figure as an RGB uint8 array (H, W, 3), e.g. for TensorBoard."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def save_boundary(net: nn.Module, X: torch.Tensor, y: torch.Tensor, path: Path, title: str) -> None:
    boundary_figure(net, X, y, title).savefig(path)
