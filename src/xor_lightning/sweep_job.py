"""One job of a multirun (`xor-train -m ...`): trained as a run, recorded in its `job.json`.

A failure is recorded and the sweep goes on; a trial that the Optuna sweeper's pruner
stops is recorded as pruned. Under the joblib launcher each job gets its share of the cores.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from xor_lightning.ddp import release
from xor_lightning.files import write_json

log = logging.getLogger("xor_lightning.train")


def limit_threads() -> None:
    """Under the joblib launcher, give each parallel job its share of the cores."""
    from hydra.core.hydra_config import HydraConfig

    launcher = HydraConfig.get().launcher if HydraConfig.initialized() else {}
    if "Joblib" not in str(launcher.get("_target_", "")):
        return
    import torch

    cores = os.cpu_count() or 1
    n_jobs = launcher.get("n_jobs") or -1
    parallel = min(cores, n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs))
    torch.set_num_threads(max(1, cores // parallel))


# The Optuna sweeper plugin (plugins/xor_optuna_sweeper/), by name: imported only for a job
# of its search, so that the template runs without it.
OPTUNA_SWEEPER = "hydra_plugins.xor_optuna_sweeper.sweeper.XorOptunaSweeper"


def trial_pruning(cfg: DictConfig, sweeper: Any) -> Any:
    """The Optuna plugin's pruning callback (a Lightning callback) when this job is a trial
    of its search with a pruner; else None."""
    if sweeper.get("_target_") != OPTUNA_SWEEPER:
        return None
    from hydra_plugins.xor_optuna_sweeper.pruning import trial_pruning as pruning

    return pruning(cfg.get("optimized_metric") or "val/acc")


def sweep_job(cfg: DictConfig, train: Callable[..., dict[str, float]]) -> float:
    """One job of a multirun: a failure is recorded in job.json, and the sweep goes on.

    A trial that the Optuna sweeper's pruner stops is recorded as pruned, and raises
    optuna.TrialPruned to tell the sweeper.
    """
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    record: dict[str, Any] = {"job": hc.job.num, "overrides": list(hc.overrides.task)}
    record.update(status="ok", error=None)
    start, value = time.perf_counter(), float("nan")
    try:
        limit_threads()
        pruning = trial_pruning(cfg, hc.sweeper)
        metrics = train(cfg, [pruning] if pruning else [])
        value = metrics.get(cfg.get("optimized_metric") or "val/acc", float("nan"))
        if pruning and pruning.pruned:
            record["status"] = "pruned"
    except Exception as e:
        record.update(status="failed", error=f"{type(e).__name__}: {e}")
        log.error("job %d failed: %s", hc.job.num, record["error"])
    except BaseException:
        record["status"] = "interrupted"
        raise
    finally:
        import torch
        from lightning.pytorch.utilities import rank_zero_only

        release()  # a DDP job's process group and launcher settings
        record["wall_s"] = round(time.perf_counter() - start, 3)
        record["threads"] = torch.get_num_threads()
        record["slurm_job_id"] = os.environ.get("SLURM_JOB_ID")
        if rank_zero_only.rank == 0:  # under SLURM every DDP rank runs this function
            write_json(Path(hc.runtime.output_dir) / "job.json", record)  # whole or not at all
    if record["status"] == "pruned":
        import optuna

        raise optuna.TrialPruned(f"pruned by the study's pruner (best {value:.4f})")
    return value
