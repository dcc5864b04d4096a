"""The launcher's config, registered as `hydra/launcher=vectorized`.

Kept apart from `launcher.py` because Hydra imports every plugin module on every start:
this one imports neither torch nor Lightning.
"""

from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore


@dataclass
class VectorizedLauncherConf:
    _target_: str = "hydra_plugins.xor_vectorized_launcher.launcher.VectorizedLauncher"
    # At most this many models in one fit; a larger group is split into several fits.
    max_models_per_fit: int = 16384
    # Per-job pictures (boundary.png, TensorBoard images) cost ~0.1 s a job: by default
    # only for groups of up to this many jobs.
    pictures_up_to: int = 16
    # TensorBoard curves: one point every this many epochs (validation points always).
    curve_every_n_epochs: int = 10
    # Each job's last.ckpt: written when the fit ends or stops on Ctrl-C/SIGTERM, and also
    # every this many epochs when > 0 (crash safety, at the cost of K files each time).
    last_every_n_epochs: int = 0
    # A fit of more than this many models writes no job dirs: its rows go to the sweep's
    # tables, its weights to one file (`fits/`); `xor-unpack` writes any job's dir later.
    job_dirs_up_to: int = 1000
    # Processes that write job dirs in parallel; null: one per CPU core.
    workers: int | None = None


# Each setting's least value: a fit holds at least one model; the others may be 0 (none,
# or: when the fit ends); `workers` may also be null (one per core).
LEAST = {"max_models_per_fit": 1, "pictures_up_to": 0, "curve_every_n_epochs": 1,
         "last_every_n_epochs": 0, "job_dirs_up_to": 0, "workers": 1}  # fmt: skip


def refused(settings: dict[str, Any]) -> str | None:
    """Why the launcher's settings cannot run, in one line naming the first that is out of
    its range and what it may be; None when they can. Checked before anything is written:
    `max_models_per_fit=0` would divide by zero after the job dirs were written,
    `job_dirs_up_to=-1` drop every job's dir, `curve_every_n_epochs=0` every curve."""
    for name, least in LEAST.items():
        value = settings.get(name)
        if name == "workers" and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            allowed = f"an integer >= {least}" + (" or null (one per core)" * (name == "workers"))
            return f"hydra.launcher.{name}={value} is not allowed: use {allowed}"
    return None


ConfigStore.instance().store(
    group="hydra/launcher",
    name="vectorized",
    node=VectorizedLauncherConf,
    provider="hydra-xor-vectorized-launcher",
)
