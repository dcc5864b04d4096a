"""A seed sweep of the default run (401 epochs, outputs included), by launcher.

- `hydra/launcher=vectorized`: the whole N-job sweep, timed.
- the basic launcher (one job after another, one process) and joblib (worker processes):
  N jobs would take too long, so each is timed on a small and a larger sweep, alternated,
  and projected to N as (time of the small sweep) + (N - small) x (cost of one more job).
`--copier`: the same for a copier's own network (docs/template.md's two-layer ReLU net,
`model=two_layer`, in a copy of the project made as tests/test_template.py makes it);
`--copier --classes 3`: that net with 3 logits on the copier's own three-spirals datamodule
(`data=spirals task=multiclass`, 600 training points in mini-batches of 100).
The table goes to outputs/bench/sweep-latest.md (sweep-copier-latest.md with --copier,
sweep-copier-3-latest.md with --classes 3).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from bench import machine, save_table  # noqa: E402

WHERE = {"package": "xor_lightning", "cwd": REPO, "env": None}  # --copier: the copy's


# The vectorised launcher with its fast check of a large sweep's jobs.
VECTORIZED = ["hydra/launcher=vectorized", "hydra/sweeper=xor_basic"]


def sweep(n: int, launcher: list[str], sweep_dir: Path, extra: list[str]) -> float:
    cmd = [sys.executable, "-m", f"{WHERE['package']}.train", "-m", f"seed=range({n})",
           *launcher, f"hydra.sweep.dir={sweep_dir}", *extra]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(cmd, cwd=WHERE["cwd"], check=True, capture_output=True, env=WHERE["env"])
    return time.perf_counter() - start


def copier_project(dest: Path) -> None:
    """A copier's project with their own network, made as tests/test_template.py makes it."""
    sys.path.insert(0, str(REPO))
    from tests.test_template import PACKAGE, add_own, copy_and_rename

    copy_and_rename(dest)
    add_own(dest)
    WHERE.update(package=PACKAGE, cwd=dest, env=os.environ | {"PYTHONPATH": str(dest / "src")})


def disk(path: Path) -> tuple[int, float]:
    files = [p for p in path.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=1024, help="the sweep's size")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--small", type=int, default=2, help="the small sweep of the projection")
    parser.add_argument("--large", type=int, default=6, help="the larger sweep of the projection")
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--copier", action="store_true", help="a copier's own network")
    three = "with --copier: 3 = three classes on the copier's own data"
    parser.add_argument("--classes", type=int, choices=(2, 3), default=2, help=three)
    args = parser.parse_args()
    extra = [f"trainer.accelerator={args.accelerator}"]
    if args.copier:
        extra.append("model=two_layer")
    if args.copier and args.classes == 3:
        extra += ["data=spirals", "task=multiclass", "task.num_classes=3"]
    launchers = {"basic": [], "joblib": ["hydra/launcher=joblib"]}
    times: dict[tuple[str, int], list[float]] = {}
    vec: list[float] = []
    with tempfile.TemporaryDirectory(dir=REPO / "outputs") as tmp:
        if args.copier:
            copier_project(Path(tmp) / "copy")
        for r in range(args.repeats):
            for name, launcher in launchers.items():
                for n in (args.small, args.large):
                    t = sweep(n, launcher, Path(tmp) / f"{name}-{n}-{r}", extra)
                    times.setdefault((name, n), []).append(t)
                    print(f"{name}, {n} jobs: {t:.1f} s", flush=True)
            d = Path(tmp) / f"vectorized-{r}"
            vec.append(sweep(args.jobs, VECTORIZED, d, extra))
            files, mb = disk(d)
            print(f"vectorized, {args.jobs} jobs: {vec[-1]:.1f} s ({files} files, {mb:.0f} MB)",
                  flush=True)  # fmt: skip
            if r < args.repeats - 1:
                shutil.rmtree(d)
    n, small, large = args.jobs, args.small, args.large
    vec_s = statistics.median(vec)
    rows = []
    for name in launchers:
        t_small = statistics.median(times[(name, small)])
        per_job = (statistics.median(times[(name, large)]) - t_small) / (large - small)
        projected = t_small + (n - small) * per_job
        rows.append((name, f"{per_job:.2f} (each one more)", f"{projected:.0f} (projected)",
                     projected / vec_s))  # fmt: skip
    rows.append(("vectorized", f"{vec_s / n:.3f} (the sweep / N)", f"{vec_s:.1f} (measured)", 1.0))
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    what = "a copier's two-layer ReLU net (`model=two_layer`)" if args.copier else "the default"
    if args.copier and args.classes == 3:
        what = ("a copier's two-layer ReLU net with 3 logits on their own three-spirals "
                "datamodule (`model=two_layer data=spirals task=multiclass`)")  # fmt: skip
    name = "sweep-copier-3-latest.md" if args.classes == 3 else "sweep-copier-latest.md"
    lines = [f"{n}-job seed sweep (`seed=range({n})`, {what} 401-epoch run each, outputs "
             f"included, `trainer.accelerator={args.accelerator}`), {stamp}, medians of "
             f"{args.repeats} alternated runs", "", f"Machine: {machine()}", "",
             f"Vectorised sweep's output: {files} files, {mb:.0f} MB.", "",
             "| launcher | cost per job (s) | N jobs (s) | vectorised is |",
             "| --- | ---: | ---: | ---: |"]  # fmt: skip
    for name, per_job, total, ratio in rows:
        faster = f"{ratio:.0f}x faster" if name != "vectorized" else ""
        lines.append(f"| {name} | {per_job} | {total} | {faster} |")
    save_table(lines, name if args.copier else "sweep-latest.md")


if __name__ == "__main__":
    main()
