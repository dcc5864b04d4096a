"""An 8-job sweep with Hydra's basic launcher (one job after another, in one process) vs
`hydra/launcher=joblib` (jobs in parallel worker processes, each with its share of the
CPU threads). Alternated, medians of the wall times; the table goes to
outputs/bench/sweep-latest.md.
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
sys.path.insert(0, str(HERE))
from bench import machine  # noqa: E402

GRID = "model.hidden=1,2,3,4,5,6,7,8"


def sweep(launcher: list[str], sweep_dir: str) -> float:
    cmd = [sys.executable, "-m", "xor_lightning.train", "-m", GRID, *launcher,
           f"hydra.sweep.dir={sweep_dir}"]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    sides = {
        "basic launcher (sequential)": [],
        "joblib launcher (parallel)": ["hydra/launcher=joblib"],
    }
    times: dict[str, list[float]] = {name: [] for name in sides}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for name, launcher in sides.items():
                times[name].append(sweep(launcher, f"{tmp}/{len(times[name])}-{name[:5]}"))
                print(f"{name}: {times[name][-1]:.1f} s", flush=True)
    base = statistics.median(times["basic launcher (sequential)"])
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    lines = [f"8-job sweep (`{GRID}`, the default 401-epoch run each), {stamp}, "
             f"medians of {args.repeats} alternated runs", "", f"Machine: {machine()}", "",
             "| launcher | wall time (s) | speedup |", "| --- | ---: | ---: |"]  # fmt: skip
    for name, ts in times.items():
        lines.append(
            f"| {name} | {statistics.median(ts):.1f} | {base / statistics.median(ts):.2f}x |"
        )
    table = "\n".join(lines) + "\n"
    out = REPO / "outputs" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep-latest.md").write_text(table)
    print("\n" + table)


if __name__ == "__main__":
    main()
