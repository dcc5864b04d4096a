"""A 40-trial Optuna search (`hparams_search=xor_optuna`, the default 401-epoch run each) without
a pruner, with `hydra/sweeper/pruner=median` and with `hyperband`: wall time, epochs trained and
the best val/acc each search finds. Alternated when repeated; the table goes to
outputs/bench/prune-latest.md.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import torch
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from bench import machine, save_table  # noqa: E402

PRUNERS = {"none": "none", "median": "median", "hyperband": "hyperband"}


def search(pruner: str, trials: int, sweep_dir: Path) -> dict[str, float]:
    cmd = [sys.executable, "-m", "xor_lightning.train", "hparams_search=xor_optuna",
           f"hydra/sweeper/pruner={pruner}", f"hydra.sweeper.n_trials={trials}",
           f"hydra.sweep.dir={sweep_dir}"]  # fmt: skip
    start, cpu = time.perf_counter(), _children_cpu()
    subprocess.run(cmd, cwd=REPO, check=True, capture_output=True)
    wall, cpu = time.perf_counter() - start, _children_cpu() - cpu
    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    epochs = sum(
        torch.load(ckpt, map_location="cpu", weights_only=True)["epoch"]
        for ckpt in sweep_dir.glob("*/checkpoints/last.ckpt")
    )
    study = optuna.load_study(study_name="xor", storage=f"sqlite:///{sweep_dir}/optuna.db")
    top5 = sorted((t.value for t in study.trials if t.state.name == "COMPLETE"), reverse=True)[:5]
    return {"wall": wall, "cpu": cpu, "best": results["best_value"], "epochs": epochs,
            "pruned": results["n_pruned"], "top5": statistics.mean(top5)}  # fmt: skip


def _children_cpu() -> float:
    """CPU seconds used by finished child processes: what other load on the machine moves least."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in PRUNERS}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            order = list(PRUNERS) if r % 2 == 0 else list(reversed(PRUNERS))
            for name in order:
                runs[name].append(search(PRUNERS[name], args.trials, Path(tmp) / f"{name}-{r}"))
                print(f"{name}: {runs[name][-1]}", flush=True)

    def med(name: str, key: str) -> float:
        return statistics.median(run[key] for run in runs[name])

    base = med("none", "cpu")
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    lines = [f"{args.trials}-trial Optuna search (`hparams_search=xor_optuna`, seeded TPE, 401 "
             f"epochs a trial), {stamp}, medians of {args.repeats} alternated runs", "",
             f"Machine: {machine()}", "",
             "| pruner | wall time (s, range) | CPU time (s) | speedup (CPU) | trials pruned "
             "| epochs trained | best val/acc | mean of the top 5 |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for name in PRUNERS:
        walls = [run["wall"] for run in runs[name]]
        lines.append(f"| `{name}` | {med(name, 'wall'):.1f} ({min(walls):.0f}-{max(walls):.0f}) | "
                     f"{med(name, 'cpu'):.1f} | "
                     f"{base / med(name, 'cpu'):.2f}x | "
                     f"{med(name, 'pruned'):.0f} | {med(name, 'epochs'):.0f} | "
                     f"{med(name, 'best'):.4f} | {med(name, 'top5'):.4f} |")  # fmt: skip
    save_table(lines, "prune-latest.md")


if __name__ == "__main__":
    main()
