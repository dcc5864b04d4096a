"""The launcher's config, registered as `hydra/launcher=vectorized_slurm`.

Kept apart from `launcher.py` because Hydra imports every plugin module on every start:
this one imports neither torch, Lightning nor submitit. Its SLURM settings are those of
hydra-submitit-launcher's `submitit_slurm` (the same names, passed to submitit the same
way), with the defaults of the project's `hydra/launcher=slurm`; then how many jobs an
array task trains, and the vectorised launcher's own settings, which every task uses.
"""

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore
from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf


@dataclass
class VectorizedSlurmLauncherConf(SlurmQueueConf):
    _target_: str = "hydra_plugins.xor_vectorized_slurm_launcher.launcher.VectorizedSlurmLauncher"
    # As conf/hydra/launcher/slurm.yaml: a small CPU job per array task.
    timeout_min: int = 30
    cpus_per_task: int | None = 2
    gpus_per_node: int | None = 0
    mem_gb: int | None = 4
    array_parallelism: int = 16  # array tasks running at once
    # How many of the sweep's jobs one array task trains (as one vectorised launch: one
    # fit per group of up to max_models_per_fit). Raised when the tasks would exceed the
    # cluster's MaxArraySize.
    models_per_task: int = 4096
    # The vectorised launcher's settings (hydra/launcher=vectorized), for each task.
    max_models_per_fit: int = 16384
    pictures_up_to: int = 16
    curve_every_n_epochs: int = 10
    last_every_n_epochs: int = 0
    job_dirs_up_to: int = 1000  # a larger fit writes fits/fit<N>/ instead of job dirs
    workers: int | None = None  # null: the task's cpus_per_task


ConfigStore.instance().store(
    group="hydra/launcher",
    name="vectorized_slurm",
    node=VectorizedSlurmLauncherConf,
    provider="hydra-xor-vectorized-launcher",
)
