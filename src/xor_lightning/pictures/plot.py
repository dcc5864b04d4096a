"""Pictures of what the network learned: the decision boundary over the plane.

What it shows follows the task: P(label 1) and its 0.5 line (binary), the predicted class
and the lines between classes (multiclass), or the predicted value (a regression). Two
renderers. `boundary_image` paints pixels with NumPy in about a millisecond: it is
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

Task = Any  # a `xor_lightning.tasks.Task`; None: the binary task (its name and readout)

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
def readout_grid(
    net: nn.Module, steps: int = 121, extent: Extent = SQUARE, task: Task | None = None
) -> np.ndarray:
    """The task's readout on a steps-by-steps grid over the extent, (steps, steps, outputs),
    rows bottom to top: P(label 1) (binary), each class's probability, or the value."""
    points = grid_points(extent, steps, next(net.parameters()).device)
    was_training = net.training
    net.eval()
    logits = net(points)
    out = (task.readout(logits) if task else torch.sigmoid(logits)).reshape(steps, steps, -1)
    net.train(was_training)
    return out.cpu().numpy()


def probability_grid(net: nn.Module, steps: int = 121, extent: Extent = SQUARE) -> np.ndarray:
    """P(label 1) of a binary network on the grid, rows from bottom to top."""
    return readout_grid(net, steps, extent)[..., 0]


@torch.no_grad()
def misclassified(
    net: nn.Module, X: torch.Tensor, y: torch.Tensor, task: Task | None = None
) -> np.ndarray:
    """A boolean mask of the points the net labels wrongly (none for a regression)."""
    if _name(task) == "regression":
        return np.zeros(len(X), dtype=bool)
    logits = net(X)
    if _name(task) == "binary":
        return ((logits.flatten() > 0).float() != y.flatten()).cpu().numpy()
    return (logits.argmax(1) != y.flatten().long()).cpu().numpy()


def _name(task: Task | None) -> str:
    return task.name if task is not None else "binary"


BLUE, RED = np.array([33, 102, 172]), np.array([178, 24, 43])  # label 0, label 1
# Classes beyond two: matplotlib's tab10, cycled
PALETTE = np.array([[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40],
                    [148, 103, 189], [140, 86, 75], [227, 119, 194], [127, 127, 127],
                    [188, 189, 34], [23, 190, 207]])  # fmt: skip


def class_colours(labels: np.ndarray, task: Task | None = None) -> np.ndarray:
    """RGB (n, 3) of class labels: blue and red for two classes, tab10 for more."""
    if _name(task) == "binary":
        return np.where(labels[..., None] == 1, RED, BLUE)
    return PALETTE[labels.astype(int) % len(PALETTE)]


def value_colours(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """RGB (..., 3) of values on viridis, from `low` to `high`."""
    from matplotlib import colormaps

    scaled = np.clip((values - low) / ((high - low) or 1.0), 0, 1)
    return colormaps["viridis"](scaled)[..., :3] * 255


def label_colours(
    y: torch.Tensor, task: Task | None = None, scale: tuple | None = None
) -> np.ndarray:
    """RGB (n, 3) of the points' targets: their class, or (a regression) their value on
    the `scale` (low, high) of the picture."""
    y = y.flatten().cpu().numpy()
    if _name(task) == "regression":
        return value_colours(y, *(scale or (y.min(), y.max())))
    return class_colours(y, task)


def regions(grid: np.ndarray, task: Task | None = None) -> tuple[np.ndarray, np.ndarray, tuple]:
    """What a grid of readouts paints: RGB (steps, steps, 3) pale colours, the boolean map
    whose edges are the boundaries, and the value scale (a regression's) or None."""
    if _name(task) == "binary":
        p = grid[..., 0:1]
        return 255 - 0.45 * (255 - (BLUE * (1 - p) + RED * p)), grid[..., 0] > 0.5, None
    if _name(task) == "multiclass":
        labels, top = grid.argmax(-1), grid.max(-1, keepdims=True)
        return 255 - 0.5 * top * (255 - class_colours(labels, task)), labels, None
    low, high = float(grid.min()), float(grid.max())
    return 255 - 0.6 * (255 - value_colours(grid[..., 0], low, high)), None, (low, high)


@torch.no_grad()
def boundary_figure(
    net: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    title: str = "",
    max_points: int = 1000,
    extent: Extent = SQUARE,
    task: Task | None = None,
) -> Figure:
    """The plane as the network reads it: P(label 1) with its 0.5 contour (binary), the
    predicted class with the boundaries between classes, or the predicted value (a
    regression, with a colour bar); the points by target, errors marked with x."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    grid = readout_grid(net, extent=extent, task=task)
    if _name(task) == "binary":
        p = grid[..., 0]
        ax.imshow(p, origin="lower", extent=extent, cmap="RdBu_r", vmin=0, vmax=1, alpha=0.75)
        if p.min() < 0.5 < p.max():
            ax.contour(*axes_of(extent, len(p)), p, levels=[0.5], colors="k", linewidths=1)
    else:
        image, labels, scale = regions(grid, task)
        ax.imshow(image.astype(np.uint8), origin="lower", extent=extent)
        if labels is not None and labels.min() < labels.max():
            levels = np.arange(labels.max()) + 0.5
            ax.contour(*axes_of(extent, len(labels)), labels, levels=levels, colors="k",
                       linewidths=1)  # fmt: skip
        if scale is not None:
            mappable = ax.scatter([], [], c=[], cmap="viridis", norm=Normalize(*scale))
            fig.colorbar(mappable, ax=ax, fraction=0.046, pad=0.04, label="prediction")

    X, y = X[:max_points], y[:max_points]
    wrong = misclassified(net, X, y, task)
    colours = label_colours(y, task, regions(grid, task)[2]) / 255
    X = X.cpu().numpy()
    ax.scatter(X[~wrong, 0], X[~wrong, 1], s=9, c=colours[~wrong], edgecolors="white",
               linewidths=0.3)  # fmt: skip
    ax.scatter(X[wrong, 0], X[wrong, 1], s=28, c="black", marker="x", linewidths=1.2,
               label=f"misclassified ({int(wrong.sum())})")  # fmt: skip
    ax.set(xlim=extent[:2], ylim=extent[2:], xlabel="x1", ylabel="x2", title=title)
    ax.set_aspect("equal")
    if wrong.any():
        ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    return fig


def axes_of(extent: Extent, steps: int) -> tuple[np.ndarray, np.ndarray]:
    return np.linspace(*extent[:2], steps), np.linspace(*extent[2:], steps)


def edges(side: np.ndarray) -> np.ndarray:
    """The pixels where an image of labels changes value: a contour, one pixel wide."""
    edge = np.zeros(side.shape, dtype=bool)
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


@torch.no_grad()
def boundary_image(
    net: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    size: int = 240,
    max_points: int = 2000,
    extent: Extent = SQUARE,
    task: Task | None = None,
) -> np.ndarray:
    """The boundary as an RGB uint8 array (size, size, 3), painted directly: the pale
    regions of `regions` (binary: a blue-to-red heatmap of P(label 1)), the boundaries in
    grey, the first `max_points` points as dots by target, misclassified ones in black."""
    X, y = X[:max_points], y[:max_points]
    grid = readout_grid(net, size, extent, task)[::-1]  # image rows run top to bottom
    image, labels, scale = regions(grid, task)
    if labels is not None:
        image[edges(labels)] = 90
    wrong = misclassified(net, X, y, task)
    paint_dots(image, X, np.where(wrong[:, None], 0, label_colours(y, task, scale)), extent)
    return image.astype(np.uint8)


def save_boundary(
    net: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    path: Path,
    title: str,
    extent: Extent,
    task: Task | None = None,
) -> None:
    figure = boundary_figure(net, X, y, title, extent=extent, task=task)
    figure.savefig(path, pil_kwargs=FAST_PNG)


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


def split_points(
    dm: Any, split: str, limit: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to `limit` points (X, y) of a split, for the pictures: XORDataModule's tensors, or
    the first batches of any other datamodule's `<split>_dataloader()` ((x, y) batches)."""
    datasets = getattr(dm, "datasets", None)
    if isinstance(datasets, dict) and hasattr(datasets.get(split), "X"):
        return datasets[split].X[:limit], datasets[split].y[:limit]
    xs, ys, n = [], [], 0
    for batch in getattr(dm, f"{split}_dataloader")():
        xs.append(batch[0].reshape(len(batch[0]), -1))
        ys.append(batch[1].reshape(len(batch[1]), -1))
        n += len(batch[0])
        if limit is not None and n >= limit:
            break
    return torch.cat(xs)[:limit], torch.cat(ys)[:limit]
