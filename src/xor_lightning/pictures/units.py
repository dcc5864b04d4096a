"""What each hidden unit computes: the first layer's units as small maps of the plane.

Unit k of the first layer computes h_k = act(w_k·x + b_k): it is zero on the line
w_k·x + b_k = 0 (for tanh), positive on one side and negative on the other. Each panel
shows one unit's activation over the plane, that line, and the data points, so a reader
sees how the units cut the plane into the pieces the output layer combines (for XOR, two
lines that separate the quadrants). The same two renderers as `plot.py`: NumPy pixels
for TensorBoard every N epochs, a Matplotlib figure for `hidden_units.png`.

The chapter's MLP (`fc1` and its activation `act`), and any network whose first hidden
layer is an `nn.Sequential` (the network itself or one of its submodules) that starts
with `nn.Linear(2, k)` and a parameter-free activation, has this picture (`first_layer`);
for any other there is none to draw. The points are coloured by target, as the task says.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from xor_lightning.pictures.plot import (
    FAST_PNG,
    SQUARE,
    Extent,
    Task,
    edges,
    grid_points,
    label_colours,
    paint_dots,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PURPLE, ORANGE = np.array([94, 60, 153]), np.array([230, 97, 1])  # a unit's - and + side


def first_layer(net: nn.Module) -> tuple[nn.Linear, nn.Module] | None:
    """The network's first hidden layer on the plane and its activation: in the network or
    its first part that has one, the chapter's MLP's `fc1` and `act`, or an `nn.Sequential`
    starting with `nn.Linear(2, k)` followed by a module without parameters. None when it
    has no such layer."""
    pairs = []
    for m in net.modules():  # the network itself first, then its parts
        pairs.append((getattr(m, "fc1", None), getattr(m, "act", None)))
        if isinstance(m, nn.Sequential) and len(m) >= 2:
            pairs.append((m[0], m[1]))
    for linear, activation in pairs:
        if (
            isinstance(linear, nn.Linear)
            and isinstance(activation, nn.Module)
            and linear.in_features == 2
            and linear.bias is not None
            and not any(True for _ in activation.parameters())
        ):
            return linear, activation
    return None


def _layer(net: nn.Module) -> tuple[nn.Linear, nn.Module]:
    layer = first_layer(net)
    if layer is None:
        raise ValueError(f"{type(net).__name__} has no first layer Linear(2, k) + activation")
    return layer


@torch.no_grad()
def unit_grids(net: nn.Module, steps: int, extent: Extent) -> tuple[np.ndarray, np.ndarray]:
    """The first hidden layer over a steps-by-steps grid: each unit's pre-activation
    w·x + b and its activation, both (units, steps, steps), rows from bottom to top."""
    linear, activation = _layer(net)
    pre = linear(grid_points(extent, steps, linear.weight.device))
    shape = (-1, steps, steps)
    return pre.T.reshape(shape).cpu().numpy(), activation(pre).T.reshape(shape).cpu().numpy()


def _scale(activation: nn.Module, values: np.ndarray) -> tuple[float, float]:
    """The activation's value on the unit's line (0 for tanh), and the half-width of the
    colour scale: its range for tanh and sigmoid, the largest value reached otherwise."""
    centre = float(activation(torch.zeros(1)))
    bounded = {nn.Tanh: 1.0, nn.Sigmoid: 0.5}.get(type(activation))
    return centre, bounded or max(float(np.abs(values - centre).max()), 1e-6)


def _columns(units: int) -> int:
    return min(units, math.ceil(math.sqrt(2 * units)))  # 8 units: 4 x 2, 32: 8 x 4


@torch.no_grad()
def hidden_units_image(
    net: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    size: int = 96,
    max_points: int = 120,
    extent: Extent = SQUARE,
    task: Task | None = None,
) -> np.ndarray:
    """One size-by-size panel per first-layer unit, in rows of `_columns`: its activation
    from purple (below its value on the line) to orange (above), the line w·x + b = 0 in
    grey, the first `max_points` points as dots by target. An RGB uint8 array."""
    pre, act = unit_grids(net, size, extent)
    centre, half = _scale(_layer(net)[1], act)
    units, cols, gap = len(pre), _columns(len(pre)), 4
    rows = -(-units // cols)
    canvas = np.full((rows * (size + gap) - gap, cols * (size + gap) - gap, 3), 255.0)
    colours = label_colours(y[:max_points], task)
    for k in range(units):
        v = np.clip((act[k, ::-1] - centre) / half, -1, 1)[..., None]
        tile = 255 - 0.7 * np.abs(v) * (255 - np.where(v > 0, ORANGE, PURPLE))
        tile[edges(pre[k, ::-1] > 0)] = 60
        paint_dots(tile, X[:max_points], colours, extent)
        top, left = (i * (size + gap) for i in divmod(k, cols))
        canvas[top : top + size, left : left + size] = tile
    return canvas.astype(np.uint8)


@torch.no_grad()
def hidden_units_figure(
    net: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    title: str = "",
    max_points: int = 400,
    extent: Extent = SQUARE,
    task: Task | None = None,
) -> Figure:
    """A panel per first-layer unit: its activation over the plane, the line where its
    pre-activation w·x + b is zero, the points by label; its formula as the title."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    pre, act = unit_grids(net, 121, extent)
    linear, activation = _layer(net)
    centre, half = _scale(activation, act)
    cols = _columns(len(pre))
    rows = -(-len(pre) // cols)
    fig = Figure(figsize=(2.2 * cols, 2.3 * rows + 0.5), dpi=100)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(0.01, 0.01, 0.99, 1 - 0.8 / fig.get_figheight(), 0.05, 0.15)
    name = type(activation).__name__.lower()
    (w1, w2), b = linear.weight.T.tolist(), linear.bias.tolist()
    colours = label_colours(y[:max_points], task) / 255
    X = X[:max_points].cpu().numpy()
    for k in range(len(pre)):
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.imshow(act[k], origin="lower", extent=extent, cmap="PuOr_r", alpha=0.6,
                  vmin=centre - half, vmax=centre + half)  # fmt: skip
        if w1[k] or w2[k]:  # the line w1·x1 + w2·x2 + b = 0, through two of its points
            if abs(w2[k]) >= abs(w1[k]):
                ends = [(x, -(w1[k] * x + b[k]) / w2[k]) for x in (0.0, 1.0)]
            else:
                ends = [(-(w2[k] * v + b[k]) / w1[k], v) for v in (0.0, 1.0)]
            ax.axline(*ends, color="k", linewidth=1.2)
        ax.scatter(*X.T, s=6, c=colours, edgecolors="white", linewidths=0.2)
        ax.set(xlim=extent[:2], ylim=extent[2:], xticks=[], yticks=[])
        ax.set_title(
            f"unit {k + 1}: {name}({w1[k]:+.1f}·x1 {w2[k]:+.1f}·x2 {b[k]:+.1f})", fontsize=7
        )
    fig.suptitle(title, fontsize=9)
    return fig


def save_hidden_units(
    net: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    path: Path,
    title: str,
    extent: Extent,
    task: Task | None = None,
) -> None:
    figure = hidden_units_figure(net, X, y, title, extent=extent, task=task)
    figure.savefig(path, pil_kwargs=FAST_PNG)
