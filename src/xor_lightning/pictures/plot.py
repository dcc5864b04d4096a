"""Pictures of what the network learned: the decision boundary over the plane.

Two renderers. `boundary_image` paints pixels with NumPy in about a millisecond: it is
what training logs to TensorBoard every N epochs. `boundary_figure` is a full Matplotlib
figure (axes, contour, legend), drawn once per run for `boundary.png`, with the object API
and the Agg canvas: no display, no global pyplot state, so it works headless. Every
picture of a run covers the same square, `plane_extent` of its points; `units.py` draws
the hidden units with the helpers here.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Extent = tuple[float, float, float, float]  # x1 from, x1 to, x2 from, x2 to
SQUARE: Extent = (-1.5, 1.5, -1.5, 1.5)  # XOR's [-1, 1]² with a margin


# zlib level 1: a third of the default's encoding time, for files a few KB larger
FAST_PNG = {"compress_level": 1}


def plane_extent(X: torch.Tensor) -> Extent:
    """A square around the points, half as wide again, in round numbers: [-1.5, 1.5]² for
    points that fill [-1, 1]²."""
    lo, hi = X.min(0).values.tolist(), X.max(0).values.tolist()
    half = 0.75 * max(hi[0] - lo[0], hi[1] - lo[1]) or 1.0
    unit = 10 ** math.floor(math.log10(half)) / 10
    half = math.ceil(half / unit - 1e-6)
    x, y = (round((a + b) / 2 / unit) for a, b in zip(lo, hi, strict=True))
    return tuple(round(v * unit, 12) for v in (x - half, x + half, y - half, y + half))


def grid_points(extent: Extent, steps: int, device: torch.device) -> torch.Tensor:
    """A steps-by-steps grid over the extent as (steps², 2) points, rows bottom to top."""
    gy, gx = torch.meshgrid(
        torch.linspace(*extent[2:], steps, device=device),
        torch.linspace(*extent[:2], steps, device=device),
        indexing="ij",
    )
    return torch.stack([gx.flatten(), gy.flatten()], dim=1)


@torch.no_grad()
def probability_grid(net: nn.Module, steps: int = 121, extent: Extent = SQUARE) -> np.ndarray:
    """P(label 1) on a steps-by-steps grid over the extent, rows from bottom to top."""
    points = grid_points(extent, steps, next(net.parameters()).device)
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
    net: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    title: str = "",
    max_points: int = 1000,
    extent: Extent = SQUARE,
) -> Figure:
    """Heatmap of P(label 1), the 0.5 contour, the points by label, errors marked with x."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    grid = probability_grid(net, extent=extent)
    ax.imshow(grid, origin="lower", extent=extent, cmap="RdBu_r", vmin=0, vmax=1, alpha=0.75)
    if grid.min() < 0.5 < grid.max():
        ax.contour(*axes_of(extent, len(grid)), grid, levels=[0.5], colors="k", linewidths=1)

    X, y = X[:max_points], y[:max_points].flatten()
    wrong = misclassified(net, X, y)
    X, y = X.cpu().numpy(), y.cpu().numpy()
    for label, colour in ((0, "#2166ac"), (1, "#b2182b")):
        ok = (y == label) & ~wrong
        ax.scatter(X[ok, 0], X[ok, 1], s=9, c=colour, edgecolors="white", linewidths=0.3)
    ax.scatter(X[wrong, 0], X[wrong, 1], s=28, c="black", marker="x", linewidths=1.2,
               label=f"misclassified ({int(wrong.sum())})")  # fmt: skip
    ax.set(xlim=extent[:2], ylim=extent[2:], xlabel="x1", ylabel="x2", title=title)
    ax.set_aspect("equal")
    if wrong.any():
        ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    return fig


BLUE, RED = np.array([33, 102, 172]), np.array([178, 24, 43])  # label 0, label 1


def axes_of(extent: Extent, steps: int) -> tuple[np.ndarray, np.ndarray]:
    return np.linspace(*extent[:2], steps), np.linspace(*extent[2:], steps)


def edges(side: np.ndarray) -> np.ndarray:
    """The pixels where a boolean image changes value: a contour, one pixel wide."""
    edge = np.zeros_like(side)
    edge[:-1] |= side[:-1] != side[1:]
    edge[:, :-1] |= side[:, :-1] != side[:, 1:]
    return edge


def paint_dots(image: np.ndarray, X: torch.Tensor, colours: np.ndarray, extent: Extent) -> None:
    """Paint each point as a 3x3 dot of its colour (image rows run top to bottom)."""
    h, w = image.shape[:2]
    X = X.cpu().numpy()
    cols = np.round((X[:, 0] - extent[0]) / (extent[1] - extent[0]) * (w - 1)).astype(int)
    rows = np.round((extent[3] - X[:, 1]) / (extent[3] - extent[2]) * (h - 1)).astype(int)
    inside = (cols >= 1) & (cols < w - 1) & (rows >= 1) & (rows < h - 1)
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            image[rows[inside] + dr, cols[inside] + dc] = colours[inside]


def label_colours(y: torch.Tensor) -> np.ndarray:
    return np.where(y.flatten().cpu().numpy()[:, None] == 1, RED, BLUE)


@torch.no_grad()
def boundary_image(
    net: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    size: int = 240,
    max_points: int = 2000,
    extent: Extent = SQUARE,
) -> np.ndarray:
    """The boundary as an RGB uint8 array (size, size, 3), painted directly: a pale
    blue-to-red heatmap of P(label 1), the 0.5 boundary in grey, the first `max_points`
    points as dots by label, misclassified ones in black."""
    X, y = X[:max_points], y[:max_points]
    p = probability_grid(net, size, extent)[::-1]  # image rows run top to bottom
    image = 255 - 0.45 * (255 - (BLUE * (1 - p[..., None]) + RED * p[..., None]))
    image[edges(p > 0.5)] = 90
    wrong = misclassified(net, X, y)
    paint_dots(image, X, np.where(wrong[:, None], 0, label_colours(y)), extent)
    return image.astype(np.uint8)


def save_boundary(
    net: nn.Module, X: torch.Tensor, y: torch.Tensor, path: Path, title: str, extent: Extent
) -> None:
    boundary_figure(net, X, y, title, extent=extent).savefig(path, pil_kwargs=FAST_PNG)


def png_summary(tag: str, image: np.ndarray) -> Any:
    """An RGB uint8 (H, W, 3) image as a TensorBoard image summary, what `add_image` writes,
    with fast PNG compression (a third of the default's encoding time)."""
    import io

    from PIL import Image
    from tensorboard.compat.proto.summary_pb2 import Summary

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", **FAST_PNG)
    png = Summary.Image(height=image.shape[0], width=image.shape[1], colorspace=3,
                        encoded_image_string=buffer.getvalue())  # fmt: skip
    return Summary(value=[Summary.Value(tag=tag, image=png)])
