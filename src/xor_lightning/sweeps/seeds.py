"""How often does the chapter's network learn XOR? `make seeds`
(`python -m xor_lightning.sweeps.seeds`).

Trains the chapter's run for N seeds at each hidden width (1, 2, 3, 4, 8) in one
vectorised sweep, then counts, per width, the seeds that learned XOR: test accuracy at
least 0.95 (a failed job counts as not learned). Writes `success_rate.csv` (with a 95%
Wilson interval) and `success_rate.png` at the sweep root.
"""

from __future__ import annotations

import argparse
import csv
import math
import re
import subprocess
import sys
import time
from pathlib import Path

from xor_lightning.errors import refuse
from xor_lightning.plugins import missing

WIDTHS = (1, 2, 3, 4, 8)
LEARNED = 0.95  # test accuracy that counts as having learned XOR
Z95 = 1.959963984540054  # the standard normal's 97.5% quantile


def wilson(learned: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion learned/n, clamped to [0, 1]."""
    if n == 0:
        return 0.0, 1.0
    p = learned / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low = 0.0 if learned == 0 else max(0.0, centre - half)  # exact at the ends
    return low, 1.0 if learned == n else min(1.0, centre + half)


def success_rates(summary: Path, seeds: int) -> list[dict[str, float]]:
    """Per width: seeds asked for, seeds that learned, the rate and its interval."""
    learned = {w: 0 for w in WIDTHS}
    with summary.open(newline="") as f:
        for row in csv.DictReader(f):
            width = re.search(r"model\.hidden=(\d+)", row["overrides"])
            if not width or int(width[1]) not in learned:
                continue
            acc = float(row["test/acc"]) if row["test/acc"] else math.nan
            if row["status"] == "ok" and acc >= LEARNED:
                learned[int(width[1])] += 1
    rows = []
    for w in WIDTHS:  # `seeds` is what was asked for: a job that left no row did not learn
        low, high = wilson(learned[w], seeds)
        rows.append({"hidden": w, "seeds": seeds, "learned": learned[w],
                     "rate": learned[w] / seeds, "ci_low": low, "ci_high": high})  # fmt: skip
    return rows


def plot(rows: list[dict[str, float]], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.2, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    x = list(range(len(rows)))
    rate = [r["rate"] for r in rows]
    err = [[max(0.0, r["rate"] - r["ci_low"]) for r in rows],
           [max(0.0, r["ci_high"] - r["rate"]) for r in rows]]  # fmt: skip
    ax.bar(x, rate, color="#4c72b0", width=0.6)
    ax.errorbar(x, rate, yerr=err, fmt="none", ecolor="black", capsize=4, linewidth=1)
    for i, r in enumerate(rows):
        ax.text(i, min(r["ci_high"] + 0.03, 1.04), f"{r['rate']:.0%}", ha="center", fontsize=8)
    ax.set(xticks=x, xticklabels=[str(r["hidden"]) for r in rows], ylim=(0, 1.1),
           xlabel="hidden units (tanh)", ylabel="seeds that learned XOR")  # fmt: skip
    ax.set_title(
        f"How often the chapter's network learns XOR\n{rows[0]['seeds']} seeds per width, "
        f"test accuracy ≥ {LEARNED}, 95% Wilson intervals",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1000, help="seeds per width")
    parser.add_argument("--sweep-dir", default=None, help="default: outputs/seeds/<time>")
    parser.add_argument("overrides", nargs="*", help="more Hydra overrides for every run")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        refuse(f"--seeds={args.seeds} is not allowed: use an integer >= 1")
    if why := missing(["hydra/launcher=vectorized"]):
        refuse(f"the seed study is one vectorised sweep: {why}")
    sweep_dir = Path(args.sweep_dir or f"outputs/seeds/{time.strftime('%Y-%m-%d_%H-%M-%S')}")
    command = [sys.executable, "-m", "xor_lightning.train", "-m", f"seed=range({args.seeds})",
               f"model.hidden={','.join(map(str, WIDTHS))}", "hydra/launcher=vectorized",
               "hydra/sweeper=xor_basic",
               f"hydra.sweep.dir={sweep_dir}", *args.overrides]  # fmt: skip
    proc = subprocess.run(command)
    if proc.returncode != 0 or not (sweep_dir / "summary.csv").is_file():
        sys.exit(proc.returncode or 1)
    rows = success_rates(sweep_dir / "summary.csv", args.seeds)
    with (sweep_dir / "success_rate.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, ["hidden", "seeds", "learned", "rate", "ci_low", "ci_high"])
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, sweep_dir / "success_rate.png")
    for r in rows:
        print(f"hidden {r['hidden']}: {r['learned']:5d} of {r['seeds']} seeds learned XOR "
              f"({r['rate']:.1%}, 95% CI {r['ci_low']:.1%}-{r['ci_high']:.1%})")  # fmt: skip
    print(f"written: {sweep_dir / 'success_rate.csv'}, {sweep_dir / 'success_rate.png'}")


if __name__ == "__main__":
    main()
