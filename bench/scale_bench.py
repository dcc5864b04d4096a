"""A large vectorised seed sweep at the defaults: where its wall goes, and its files.

`python bench/scale_bench.py --jobs 4096` runs `xor-train -m 'seed=range(N)'
hydra/launcher=vectorized` (401 epochs, every default) and splits the wall by the log's
own time stamps: *before launcher* (Python, Hydra, the sweeper composing and checking
every job: up to the launcher's first line), *preparing* (the launcher composing each
job, up to the fit's first line), *fit* (the fits' own `fit_s`: setting up each job's
data and weights, 401 epochs, the test), *writing* (the rest: the fit's files, the
tables, the summary). Also the files the sweep left and their size. What a large sweep
should show: fewer files than jobs, and a wall within 1.5x of the fit (the `wall / fit`
column). The table goes to outputs/bench/scale-latest.md.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench import machine, save_table  # noqa: E402

STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]\[HYDRA\] (.*)$")


def stamps(log: str) -> list[tuple[float, str]]:
    out = []
    for line in log.splitlines():
        m = STAMP.match(line)
        if m:
            when = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            out.append((when, m.group(2)))
    return out


def run(n: int, extra: list[str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "sweep"
        cmd = [sys.executable, "-m", "xor_lightning.train", "-m", f"seed=range({n})",
               "hydra/launcher=vectorized", "hydra/sweeper=xor_basic", f"hydra.sweep.dir={d}",
               *extra]  # fmt: skip
        start = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=tmp)
        wall = time.time() - start
        lines = stamps(proc.stdout + proc.stderr)
        launched = next(t for t, text in lines if text.startswith("Launching"))
        fitting = next(t for t, text in lines if "in one fit" in text or "group(s)" in text)
        records = [json.loads(p.read_text()) for p in d.glob("fits/*/jobs.json")]
        fit_s = sum(r["jobs"][0]["vectorized"]["fit_s"] for r in records)
        if not records:  # job dirs: each group's fit_s once
            seen = {}
            for p in d.glob("*/job.json"):
                info = json.loads(p.read_text())["vectorized"]
                seen[info["group"]] = info["fit_s"]
            fit_s = sum(seen.values())
        files = [p for p in d.rglob("*") if p.is_file()]
        return {
            "wall": wall,
            "before launcher": launched - start,
            "preparing": fitting - launched,
            "fit": fit_s,
            "writing": wall - (fitting - start) - fit_s,
            "files": len(files),
            "MB": sum(p.stat().st_size for p in files) / 1e6,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("overrides", nargs="*", help="more Hydra overrides for the sweep")
    args = parser.parse_args()
    rows = []
    for _ in range(args.repeats):
        r = run(args.jobs, args.overrides)
        print(json.dumps({k: round(v, 2) for k, v in r.items()}), flush=True)
        rows.append(
            f"| {args.jobs:,} | {r['wall']:.1f} | {r['before launcher']:.1f} | "
            f"{r['preparing']:.1f} | {r['fit']:.1f} | {r['writing']:.1f} | "
            f"{r['wall'] / r['fit']:.2f} | {r['files']:,} | {r['MB']:.0f} |"
        )
    head = ("| jobs | wall (s) | before launcher | preparing | fit | writing | wall / fit | "
            "files | MB |\n|" + " ---: |" * 9)  # fmt: skip
    save_table([machine(), "", " ".join(args.overrides), "", head, *rows], "scale-latest.md")


if __name__ == "__main__":
    main()
