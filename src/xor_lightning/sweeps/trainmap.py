"""Where does the chapter's network train? `make map`
(`python -m xor_lightning.sweeps.trainmap --res N [overrides]`).

Trains the chapter's network and data over an N x N grid of learning rates, the hidden
layer's (`model.lr_hidden`, x) against the output layer's (`model.lr_out`, y), both on a
log scale, as one vectorised sweep, then draws `map.png` beside the sweep's
`results.parquet`: each cell's final training loss (or another column of the table, such as
`test/acc`), diverged cells (a non-finite loss) in a colour of their own. The picture is
Sohl-Dickstein's (2024, "The boundary of neural network trainability is fractal") for
this network: his grids are per-layer learning rates of one-hidden-layer networks too.
`timing.json` says where the wall went: Hydra composing the jobs before the launcher
sees them, the launcher preparing them, the fit, writing the outputs, the map.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from xor_lightning.errors import refuse
from xor_lightning.plugins import missing
from xor_lightning.sweeps.tables import METRICS

RANGE = (1e-4, 1e2)  # the default range of both rates: six decades around the chapter's 0.05
DIVERGED = "#d62728"  # the colour of the cells whose loss became non-finite
# What makes a large sweep cheap (docs/vectorized.md): no per-job pictures, no TensorBoard.
LARGE = ("logger=none", "hydra.launcher.pictures_up_to=0")
SGD = ("model.optimizer._target_=torch.optim.SGD",)  # plain gradient descent, no momentum


def grid(low: float, high: float, n: int) -> list[float]:
    """n rates from `low` to `high`, evenly spaced in log10, each to 8 significant digits
    (the text that goes on Hydra's command line is the value the job gets)."""
    if n == 1:
        return [float(f"{low:.8g}")]
    step = (math.log10(high) - math.log10(low)) / (n - 1)
    return [float(f"{10 ** (math.log10(low) + i * step):.8g}") for i in range(n)]


def sweep_command(
    res: int, hidden: tuple[float, float], out: tuple[float, float], sweep_dir: Path,
    overrides: list[str], sgd: bool = False, epochs: int | None = None,
) -> list[str]:  # fmt: skip
    """The one vectorised sweep: the two rates' lists and the large-sweep settings; the
    user's overrides last, so they win."""
    rates = [",".join(repr(v) for v in grid(*r, res)) for r in (hidden, out)]
    return [sys.executable, "-m", "xor_lightning.train", "-m", "hydra/launcher=vectorized",
            "hydra/sweeper=xor_basic",
            f"model.lr_hidden={rates[0]}", f"model.lr_out={rates[1]}",
            f"hydra.sweep.dir={sweep_dir}", *LARGE, *(SGD if sgd else ()),
            *([f"trainer.max_epochs={epochs}"] if epochs is not None else []),
            *overrides]  # fmt: skip


def cells(results: Path, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """From `results.parquet`: the grid's hidden rates (x), output rates (y), `metric` per
    cell (y, x) and which cells diverged (status `failed`: a non-finite loss). A cell the
    table lacks (a job that never ran) is NaN and not diverged."""
    import pyarrow.parquet as pq

    table = pq.read_table(results).to_pydict()
    if metric not in table:
        numeric = [k for k, v in table.items() if v and isinstance(v[0], float)]
        raise ValueError(f"--metric {metric!r}: results.parquet has {', '.join(numeric)}")
    xs = sorted(set(table["model.lr_hidden"]))
    ys = sorted(set(table["model.lr_out"]))
    value = np.full((len(ys), len(xs)), np.nan)
    diverged = np.zeros_like(value, dtype=bool)
    col = {v: i for i, v in enumerate(xs)}
    row = {v: i for i, v in enumerate(ys)}
    for x, y, v, status in zip(table["model.lr_hidden"], table["model.lr_out"], table[metric],
                               table["status"], strict=True):  # fmt: skip
        i, j = row[y], col[x]
        diverged[i, j] = status == "failed" or (v is not None and not math.isfinite(v))
        value[i, j] = np.nan if v is None or diverged[i, j] else v
    return np.array(xs), np.array(ys), value, diverged


def plot(results: Path, path: Path, metric: str = "train/loss", title: str = "") -> None:
    """`map.png`: `metric` per cell on a log colour scale (a loss) or a linear one (an
    accuracy), diverged cells in `DIVERGED`, the edge of the diverged region outlined."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap, LogNorm, Normalize
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    xs, ys, value, diverged = cells(results, metric)
    fig = Figure(figsize=(6.4, 5.4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    lx, ly = np.log10(xs), np.log10(ys)
    half = lambda v: (v[1] - v[0]) / 2 if len(v) > 1 else 0.5  # noqa: E731
    extent = (lx[0] - half(lx), lx[-1] + half(lx), ly[0] - half(ly), ly[-1] + half(ly))
    finite = value[np.isfinite(value)]
    if "acc" in metric:
        norm, cmap = Normalize(0, 1), "viridis"
    else:
        low = max(float(finite.min()), 1e-8) if finite.size else 1e-8
        high = max(float(finite.max()), low * 10) if finite.size else 1.0
        norm, cmap = LogNorm(low, high), "viridis"
    image = ax.imshow(np.ma.masked_invalid(value), origin="lower", extent=extent, norm=norm,
                      cmap=cmap, aspect="auto", interpolation="nearest")  # fmt: skip
    ax.imshow(np.ma.masked_where(~diverged, diverged), origin="lower", extent=extent,
              cmap=ListedColormap([DIVERGED]), aspect="auto", interpolation="nearest")  # fmt: skip
    if diverged.any() and not diverged.all() and min(diverged.shape) > 1:
        ax.contour(lx, ly, diverged.astype(float), levels=[0.5], colors="white", linewidths=0.6)
    fig.colorbar(image, ax=ax, label=f"{metric} (final)" if metric == "train/loss" else metric)
    ax.legend(handles=[Patch(color=DIVERGED, label=f"diverged ({int(diverged.sum())} cells)")],
              loc="upper right", fontsize=8)  # fmt: skip
    ax.set(xlabel="hidden layer's learning rate (log10)",
           ylabel="output layer's learning rate (log10)")  # fmt: skip
    ax.set_title(title or f"Trainability of the chapter's network, {len(xs)}x{len(ys)} cells",
                 fontsize=9)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path)


# The sweep's log lines that mark its phases: the launcher has the jobs, has grouped them
# (composed and checked each), has written the sweep's tables.
MARKS = {"launched": "jobs, vectorised", "grouped": " group(s): ", "written": "results.parquet"}


def run_sweep(command: list[str]) -> tuple[int, dict[str, float]]:
    """Run the sweep, echoing its output: its exit code, and when (seconds from the start)
    each of `MARKS` was first seen, and the end (`wall`)."""
    tic, seen = time.perf_counter(), {}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:  # type: ignore[union-attr]
        for mark, text in MARKS.items():
            if mark not in seen and text in line:
                seen[mark] = time.perf_counter() - tic
        print(line, end="", flush=True)
    code = proc.wait()
    end = time.perf_counter()
    return code, {**seen, "wall": end - tic, "end": end}


def _range(text: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: use LOW,HIGH (e.g. 1e-4,1e2)") from None
    if not 0 < low < high or not math.isfinite(high):
        raise argparse.ArgumentTypeError(f"{text!r}: use 0 < LOW < HIGH")
    return low, high


def dir_override(overrides: list[str]) -> tuple[str | None, list[str]]:
    """The map's dir given the Hydra way, `hydra.sweep.dir=DIR` (also `+`/`++`), and the
    other overrides. A value that is not one plain path (an interpolation, a sweep of
    several, a deletion) is refused: the map must know its dir to read the sweep back."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser, found, rest = OverridesParser.create(), [], []
    for text in overrides:
        try:
            [override] = parser.parse_overrides([text])
        except Exception:  # not an override Hydra can read: Hydra says so for the sweep
            rest.append(text)
            continue
        if override.key_or_group != "hydra.sweep.dir":
            rest.append(text)
            continue
        value = None if override.is_delete() else override.value()
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value or "${" in value:
            refuse(f"{text}: the map reads the sweep back from its dir, so it must be one "
                   "plain path: give it as --sweep-dir DIR")  # fmt: skip
        found.append((text, value))
    if len(found) > 1:
        refuse(f"{found[0][0]} and {found[1][0]}: give the map's dir once (--sweep-dir DIR)")
    return (found[0][1] if found else None), rest


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """A bad argument in one line, as every other refusal (not argparse's usage block)."""
        refuse(message)


def main(argv: list[str] | None = None) -> None:
    parser = _Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--res", type=int, default=64, help="cells per side (default 64)")
    default = f"{RANGE[0]:g},{RANGE[1]:g}"
    parser.add_argument("--hidden", type=_range, default=RANGE, metavar="LOW,HIGH",
                        help=f"the hidden layer's rates (default {default})")  # fmt: skip
    parser.add_argument("--out", type=_range, default=RANGE, metavar="LOW,HIGH",
                        help=f"the output layer's rates (default {default})")  # fmt: skip
    parser.add_argument("--metric", default="train/loss",
                        help="a results.parquet column: train/loss, test/acc")  # fmt: skip
    parser.add_argument("--sgd", action="store_true", help="plain gradient descent, not Adam")
    parser.add_argument("--epochs", type=int, default=None,
                        help="trainer.max_epochs (default: the config's, 401)")  # fmt: skip
    parser.add_argument("--sweep-dir", default=None,
                        help="or hydra.sweep.dir=DIR; default: outputs/map/<time>")  # fmt: skip
    parser.add_argument("overrides", nargs="*", help="more Hydra overrides for every job")
    args = parser.parse_intermixed_args(argv)
    if why := missing(["hydra/launcher=vectorized"]):
        refuse(f"the map is one vectorised sweep: {why}")
    for name, value, low in (("--res", args.res, 2), ("--epochs", args.epochs, 1)):
        if value is not None and value < low:  # --epochs left out: the config's
            refuse(f"{name}={value} is not allowed: use an integer >= {low}")
    if args.metric not in (*METRICS, "best_epoch", "wall_s"):
        refuse(f"--metric {args.metric!r} is not allowed: use one of "
               f"{', '.join(METRICS)}, best_epoch, wall_s")  # fmt: skip
    given, overrides = dir_override(args.overrides)  # hydra.sweep.dir=DIR: the map's dir
    if given is not None and args.sweep_dir is not None and Path(given) != Path(args.sweep_dir):
        refuse(f"--sweep-dir={args.sweep_dir} and hydra.sweep.dir={given}: give the map's dir "
               "once (--sweep-dir DIR)")  # fmt: skip
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    sweep_dir = Path(args.sweep_dir or given or f"outputs/map/{stamp}")
    try:  # made here, so that a dir that cannot be is said in one line before the sweep
        sweep_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        from xor_lightning.lock import unwritable

        named = "--sweep-dir" if args.sweep_dir else "hydra.sweep.dir"
        refuse(f"{named}={sweep_dir} cannot be written: {unwritable(sweep_dir, e)}; "
               "give a dir this user can make and write")  # fmt: skip
    command = sweep_command(args.res, args.hidden, args.out, sweep_dir, overrides,
                            sgd=args.sgd, epochs=args.epochs)  # fmt: skip
    code, marks = run_sweep(command)
    results = sweep_dir / "results.parquet"
    if code != 0:
        sys.exit(code)  # the sweep has said why
    if not results.is_file():
        print(f"error: the sweep ended without writing {results}, so there is no map to draw",
              file=sys.stderr)  # fmt: skip
        sys.exit(1)
    try:
        plot(results, sweep_dir / "map.png", args.metric)
    except ValueError as e:
        refuse(e)
    timing = phases(results, args.res, marks, time.perf_counter())
    (sweep_dir / "timing.json").write_text(json.dumps(timing, indent=1) + "\n")
    print(", ".join(f"{k} {v}" for k, v in timing.items()))
    print(f"written: {sweep_dir / 'map.png'}, {sweep_dir / 'timing.json'}")


def phases(results: Path, res: int, marks: dict[str, float], drawn: float) -> dict[str, Any]:
    """Where the wall went, in seconds: Hydra's start and composition before the launcher
    had the jobs, the launcher preparing them, the fit(s) (each job's `wall_s` is its
    fit's: the distinct values summed), writing job dirs and tables, drawing the map."""
    import pyarrow.parquet as pq

    walls = pq.read_table(results, columns=["wall_s"])["wall_s"].to_pylist()
    fit = sum({v for v in walls if v is not None and math.isfinite(v)})
    at = lambda k: marks.get(k, math.nan)  # noqa: E731
    out = {"cells": res * res, "wall_s": marks["wall"] + (drawn - marks["end"]),
           "before_launcher_s": at("launched"), "preparing_s": at("grouped") - at("launched"),
           "fit_s": fit, "writing_s": at("written") - at("grouped") - fit,
           "map_s": drawn - marks["end"]}  # fmt: skip
    return {k: v if isinstance(v, int) else round(v, 2) for k, v in out.items()}


if __name__ == "__main__":
    main()
