"""What every Hydra entry point shares: where the configs are, resolvers, clean errors."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf

from xor_lightning.errors import UserError, refuse

T = TypeVar("T")

# A source checkout (editable install) reads the repo's conf/; a wheel carries a copy
# inside the package. Either way the configs are found whatever the working directory.
_HERE = Path(__file__).resolve().parent
CONF_DIR = str(
    _HERE.parents[1] / "conf"
    if (_HERE.parents[1] / "conf" / "train.yaml").is_file()
    else _HERE / "conf"
)

# The process id makes run dirs unique: two runs started in the same second differ. It is
# cached in the config, which Hydra copies to every job of a sweep: jobs that run in other
# processes (joblib, submitit) then name the sweep's own dir, not one of their own.
OmegaConf.register_new_resolver("pid", os.getpid, replace=True, use_cache=True)
# The first argument that is not null: `resume=<dir>` takes the place of a new run dir.
OmegaConf.register_new_resolver(
    "coalesce", lambda *args: next((a for a in args if a is not None), None), replace=True
)
# `${direction:${task.mode}}`: an Optuna search's direction from the task's mode (max, min).
OmegaConf.register_new_resolver(
    "direction", lambda mode: {"max": "maximize", "min": "minimize"}[mode], replace=True
)


# The keys of `data` that `n_features` reads: the vectorised launcher resolves `n_in` once
# for jobs that differ only elsewhere (`data.seed`, say); tests/test_sweeper_check.py checks it.
N_FEATURES_READS = ("problem", "path", "n_features")


def n_features(data: Any) -> int:
    """`${n_features:${data}}`: how many inputs the data's points have, for a network's
    `n_in`: a CSV file's feature columns (every column but the last, the label), the data
    config's own `n_features` (a datamodule of your own may take one), else 2 (the toy
    problems). It reads only `N_FEATURES_READS`."""
    if data.get("problem") == "csv" and data.get("path"):
        from xor_lightning.csvdata import read_points

        return int(read_points(data["path"])[0].shape[1])
    return int(data.get("n_features", 2))


OmegaConf.register_new_resolver("n_features", n_features, replace=True)


def run_app(fn: Callable[[DictConfig], T], cfg: DictConfig) -> T:
    """Run an entry point's body; a `UserError` becomes `error: ...` and exit status 2.

    Set HYDRA_FULL_ERROR=1 to get the traceback instead.
    """
    try:
        return fn(cfg)
    except UserError as e:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        if getattr(e, "keep_run_dir", False):  # it stopped after it started: its log says so
            _to_log_file(f"error: {e}")
        else:  # refused before it started
            _remove_empty_run_dir()
        refuse(e)


def _to_log_file(message: str) -> None:
    """Write `message` to the run's log file (train.log) only: the console prints it once."""
    import logging

    record = logging.LogRecord("xor_lightning", logging.ERROR, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def _remove_empty_run_dir() -> None:
    """Undo the run dir Hydra made for a run refused before it started.

    Only a dir holding nothing but Hydra's own files (.hydra/ and the log) and the run-dir
    lock is removed, so an existing run dir given with hydra.run.dir is left as it was.
    """
    from hydra.core.hydra_config import HydraConfig

    from xor_lightning.lock import LOCK_FILE

    if not HydraConfig.initialized():
        return
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    hydra_files = {hc.output_subdir, f"{hc.job.name}.log", LOCK_FILE}
    if run_dir.is_dir() and {p.name for p in run_dir.iterdir()} <= hydra_files:
        shutil.rmtree(run_dir)


def quiet_known_warnings() -> None:
    """Silence warnings every run would print and that no user can act on."""
    import warnings

    # In-memory tensors: DataLoader worker processes would only add start-up time.
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    # Lightning 2.6 and torch.export on torch >= 2.10 use a torch API that now warns.
    warnings.filterwarnings("ignore", ".*isinstance\\(treespec, LeafSpec\\)", FutureWarning)
    # Lightning's hint to use `srun` on any machine with SLURM installed: jobs go to SLURM
    # through Hydra's submitit launcher here, never by running xor-train under srun.
    warnings.filterwarnings("ignore", ".*The `srun` command is available.*")
    # DDP on a GPU: Lightning wraps the model in DDP on a side CUDA stream, and torch >= 2.11
    # then warns at every backward that the gradient accumulators' streams differ.
    warnings.filterwarnings("ignore", ".*AccumulateGrad node's stream does not match.*")
