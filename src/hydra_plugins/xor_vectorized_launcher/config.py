"""The launcher's config, registered as `hydra/launcher=vectorized`.

Kept apart from `launcher.py` because Hydra imports every plugin module on every start:
this one imports neither torch nor Lightning.
"""

from dataclasses import dataclass

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


ConfigStore.instance().store(
    group="hydra/launcher", name="vectorized", node=VectorizedLauncherConf, provider="xor_lightning"
)
