"""How near the floor a vectorised seed sweep is: the sweep against the same models trained
by a hand-written batched loop in plain PyTorch.

- *sweep*: `xor-train -m 'seed=range(N)' hydra/launcher=vectorized`, every default (401
  full-batch epochs, validation every 10, the test, each job's results and the tables),
  timed as a whole process.
- *floor*: `python bench/floor_bench.py --floor N`, a process of its own that imports only
  torch: N chapter MLPs (2 -> 8 tanh -> 1) as stacked weights (N, 8, 2), ..., each on its
  own 400 XOR points, trained for 401 full-batch steps by one `torch.optim.Adam` over the
  stacked tensors (Adam is elementwise: N independent Adams). Training only: no
  validation, no test, nothing written.

Alternated, `--repeats` times each, in one run; the table (medians, and the ratio) goes to
outputs/bench/floor-latest.md.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def floor(n: int, epochs: int = 401, points: int = 400) -> None:
    """The batched plain-PyTorch loop (run in a process of its own by `--floor`)."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    x = torch.rand(n, points, 2) * 2 - 1
    y = (x[..., 0] * x[..., 1] < 0).float()
    bound1, bound2 = 1 / 2**0.5, 1 / 8**0.5  # nn.Linear's default initial ranges
    w1 = ((torch.rand(n, 8, 2) * 2 - 1) * bound1).requires_grad_()
    b1 = ((torch.rand(n, 1, 8) * 2 - 1) * bound1).requires_grad_()
    w2 = ((torch.rand(n, 1, 8) * 2 - 1) * bound2).requires_grad_()
    b2 = ((torch.rand(n, 1, 1) * 2 - 1) * bound2).requires_grad_()
    opt = torch.optim.Adam([w1, b1, w2, b2], lr=0.05, foreach=True)
    for _ in range(epochs):
        h = torch.tanh(torch.baddbmm(b1, x, w1.transpose(1, 2)))  # (n, points, 8)
        logits = torch.baddbmm(b2, h, w2.transpose(1, 2)).squeeze(-1)  # (n, points)
        # each model's mean loss; their sum, so each model's gradient is its own
        loss = F.binary_cross_entropy_with_logits(logits, y, reduction="none").mean(1).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def timed(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--floor", type=int, help=argparse.SUPPRESS)  # the floor's process
    args = parser.parse_args()
    if args.floor:
        return floor(args.floor)
    sys.path.insert(0, str(HERE))
    from bench import machine, save_table

    times: dict[str, list[float]] = {"sweep": [], "floor": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            d = Path(tmp) / f"sweep{r}"
            sweep = [sys.executable, "-m", "xor_lightning.train", "-m",
                     f"seed=range({args.jobs})", "hydra/launcher=vectorized",
                     "hydra/sweeper=xor_basic",
                     f"hydra.sweep.dir={d}"]  # fmt: skip
            times["sweep"].append(timed(sweep, Path(tmp)))
            times["floor"].append(timed([sys.executable, __file__, "--floor", str(args.jobs)],
                                        REPO))  # fmt: skip
            print({k: round(v[-1], 1) for k, v in times.items()}, flush=True)
    sweep_s, floor_s = statistics.median(times["sweep"]), statistics.median(times["floor"])
    lines = [
        f"{args.jobs}-job seed sweep of the default run against a hand-written batched loop "
        f"of the same {args.jobs} models (`python bench/floor_bench.py --jobs {args.jobs}`), "
        f"{time.strftime('%Y-%m-%d')}, medians of {args.repeats} alternated runs",
        "",
        f"Machine: {machine()}",
        "",
        "| what | wall (s) |",
        "| --- | ---: |",
        f"| vectorised sweep (every default, outputs included) | {sweep_s:.1f} |",
        f"| batched plain-PyTorch loop (training only) | {floor_s:.1f} |",
        f"| sweep / loop | {sweep_s / floor_s:.2f} |",
    ]
    save_table(lines, "floor-latest.md")


if __name__ == "__main__":
    main()
