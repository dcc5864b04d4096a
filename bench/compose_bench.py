"""What a vectorised sweep costs per job before its fit: Hydra's sweeper checking each job,
then the launcher preparing each one (composing it, its plain configs, checking it, its
group). Measured in this process, on the sweep `xor-train -m <sweep> hydra/launcher=vectorized`
would run, without training or writing anything.

    python bench/compose_bench.py --jobs 1024 4096          # a seed sweep
    python bench/compose_bench.py --jobs 4096 --map         # a 64 x 64 trainability map
    python bench/compose_bench.py --jobs 1024 --profile     # where the time goes, by function
    python bench/compose_bench.py --jobs 4096 --cli         # the whole sweep, by phase

In this process, per job: `validate` is the sweeper's `validate_batch_is_legal` over the
batch; `prepare` the launcher's `_prepare` of every job in this one process; `prepare
(workers)` the same as a sweep runs it (forked workers for a big batch). Runs on whichever
code is first on `sys.path`, so the same script times another checkout (`PYTHONPATH=<its
src>`).
`--cli`: the sweep itself (`python -m xor_lightning.train`, outputs written), its phases
from its log as `make map` reports them (`sweeps/trainmap.py`'s `timing.json`).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import math
import pstats
import statistics
import sys
import time
from typing import Any


def sweep_args(n: int, grid: bool) -> list[str]:
    """The sweep's overrides: N seeds, or a square map of two rates (as `make map` has)."""
    if not grid:
        return [f"seed=range({n})"]
    side = math.isqrt(n)
    rates = ",".join(repr(round(10 ** (-4 + 6 * i / max(side - 1, 1)), 8)) for i in range(side))
    return [f"model.lr_hidden={rates}", f"model.lr_out={rates}", "logger=none",
            "hydra.launcher.pictures_up_to=0"]  # fmt: skip


def context(args: list[str]) -> tuple[Any, list[list[str]]]:
    """The sweeper Hydra would instantiate for `xor-train -m <args>`, set up with its
    launcher (vectorized), and the batch of jobs it would validate and launch."""
    from hydra import initialize_config_dir
    from hydra._internal.callbacks import Callbacks
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.plugins import Plugins
    from hydra.core.utils import setup_globals
    from hydra.types import HydraContext, RunMode
    from omegaconf import OmegaConf

    from xor_lightning import train
    from xor_lightning.config import CONF_DIR

    setup_globals()
    GlobalHydra.instance().clear()
    initialize_config_dir(config_dir=CONF_DIR, version_base="1.3", job_name="train")
    hydra = GlobalHydra.instance().hydra
    overrides = ["hydra/launcher=vectorized", "hydra/sweeper=xor_basic", "hydra.launcher.workers=2",
                 *args]  # fmt: skip
    cfg = hydra.compose_config("train", overrides, run_mode=RunMode.MULTIRUN)
    HydraConfig.instance().set_config(cfg)
    str(cfg.hydra.sweep.dir)  # resolved (its time cached) as BasicSweeper.sweep does
    context = HydraContext(config_loader=hydra.config_loader, callbacks=Callbacks(cfg))
    sweeper = Plugins.instance().instantiate_sweeper(
        config=cfg, hydra_context=context, task_function=train.main.__wrapped__
    )
    task = OmegaConf.to_container(cfg.hydra.overrides.task)
    parsed = OverridesParser.create().parse_overrides(task)  # type: ignore[arg-type]
    return sweeper, sweeper.split_arguments(parsed, None)[0]


def measure(n: int, grid: bool, profile: bool) -> dict[str, float]:
    """Seconds per job of each part, for an N-job sweep (fresh Hydra each time)."""
    sweeper, batch = context(sweep_args(n, grid))
    assert len(batch) == n, (len(batch), n)
    launcher = sweeper.launcher
    import xor_lightning.validate  # noqa: F401

    prof = cProfile.Profile() if profile else None
    out = {}
    tic = time.perf_counter()
    sweeper.validate_batch_is_legal(batch)
    out["validate"] = time.perf_counter() - tic
    workers = launcher.settings["workers"]
    launcher.settings["workers"] = 1
    if prof:
        prof.enable()
    tic = time.perf_counter()
    jobs = launcher._prepare_all(0, batch)
    out["prepare"] = time.perf_counter() - tic
    if prof:
        prof.disable()
        pstats.Stats(prof).sort_stats("cumulative").print_stats(40)
    assert all(j.error is None and j.key for j in jobs), [j.error for j in jobs][:3]
    del jobs  # tens of thousands of live jobs would slow the next run's garbage collection
    gc.collect()
    launcher.settings["workers"] = workers
    tic = time.perf_counter()
    launcher._prepare_all(0, batch)
    out["prepare (workers)"] = time.perf_counter() - tic
    return {k: v / n for k, v in out.items()}


def cli(n: int, grid: bool, extra: list[str]) -> dict[str, float]:
    """The whole sweep, run as a user runs it: its phases in seconds."""
    import tempfile
    from pathlib import Path

    from xor_lightning.sweeps.trainmap import phases, run_sweep

    repo = Path(__file__).resolve().parents[1]
    (repo / "outputs").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=repo / "outputs") as tmp:
        command = [sys.executable, "-m", "xor_lightning.train", "-m", "hydra/launcher=vectorized",
                   "hydra/sweeper=xor_basic", f"hydra.sweep.dir={tmp}", *sweep_args(n, grid),
                   *extra]  # fmt: skip
        code, marks = run_sweep(command)
        assert code == 0, code
        return phases(Path(tmp) / "results.parquet", math.isqrt(n), marks, marks["end"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--map", action="store_true", help="a square map of two rates")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="cProfile of the launcher's part")
    parser.add_argument("--cli", action="store_true", help="the whole sweep, by phase")
    parser.add_argument("overrides", nargs="*", help="more overrides for --cli")
    args = parser.parse_args()
    if args.cli:
        for n in args.jobs:
            timing = cli(n, args.map, args.overrides)
            timing["cells"] = n
            print(", ".join(f"{k} {v}" for k, v in timing.items()), flush=True)
        return
    print("| jobs | part | ms a job | s in all |\n| ---: | --- | ---: | ---: |")
    for n in args.jobs:
        runs = [measure(n, args.map, args.profile) for _ in range(args.repeats)]
        for part in runs[0]:
            per_job = statistics.median(r[part] for r in runs)
            print(f"| {n} | {part} | {1000 * per_job:.2f} | {n * per_job:.1f} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
