"""DDP under Hydra: every rank of a job runs in that job's dir, with that job's config.

Lightning's `ddp` strategy starts ranks 1..N-1 by running the command line again with
`hydra.run.dir` added. Under `-m` that command is the whole sweep, so each rank would
start a new multirun in a new dir. `child_command` replaces the command with this job's
own overrides, run as a single run in this job's output dir; `release` undoes what the
launcher left in the environment, so the next job of the same sweep process (basic or
joblib launcher) starts its own ranks again.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

from xor_lightning.errors import UserError

# Set by Lightning's launcher in the process that starts the ranks.
_LAUNCHER_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


def quiet_ranks() -> None:
    """On DDP ranks > 0 (started by Lightning or SLURM) only warnings: rank 0 reports."""
    import logging

    from lightning.pytorch.utilities import rank_zero_only

    if rank_zero_only.rank > 0:
        logging.getLogger().setLevel(logging.WARNING)


def child_command(local_rank: int) -> tuple[list[str], str]:
    """The command and working directory of rank `local_rank` of the current Hydra job."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_original_cwd

    hc = HydraConfig.get()
    command = [sys.executable, "-m", "xor_lightning.train", *hc.overrides.task]
    command += [
        f'hydra.run.dir="{hc.runtime.output_dir}"',
        "hydra.output_subdir=null",  # rank 0 already wrote .hydra/
        f"hydra.job.name=rank{local_rank}",  # its log: <job dir>/rank<k>.log
        "hydra.mode=RUN",  # one run, even for a trial of a search (which sets MULTIRUN)
    ]
    return command, get_original_cwd()


def _launcher_module() -> ModuleType:
    """Lightning's launcher module, checked to start ranks through `_hydra_subprocess_cmd`.

    That function is private (lightning is pinned below 2.7); tests/test_ddp.py fails fast
    if it moves, and a version where it did is refused here in one line.
    """
    import lightning
    from lightning.pytorch.strategies.launchers import subprocess_script as module

    launcher = getattr(module, "_SubprocessScriptLauncher", None)
    calls = getattr(getattr(launcher, "_call_children_scripts", None), "__code__", None)
    if not callable(getattr(module, "_hydra_subprocess_cmd", None)) or (
        calls is None or "_hydra_subprocess_cmd" not in calls.co_names
    ):
        raise UserError(
            f"trainer.strategy=ddp under Hydra needs Lightning's private "
            f"{module.__name__}._hydra_subprocess_cmd, which lightning {lightning.__version__} "
            "no longer has or calls: use lightning>=2.5,<2.7 (see ddp.py)"
        )
    return module


@contextmanager
def job_dir_for_ranks(trainer: Any = None) -> Iterator[None]:
    """While inside: Lightning starts the other ranks with `child_command` (given a trainer:
    only when it runs DDP)."""
    from lightning.pytorch.strategies import DDPStrategy

    if trainer is not None and not isinstance(trainer.strategy, DDPStrategy):
        yield
        return
    module = _launcher_module()
    original = module._hydra_subprocess_cmd
    module._hydra_subprocess_cmd = child_command
    try:
        yield
    finally:
        module._hydra_subprocess_cmd = original


def release() -> None:
    """After a DDP job: close the process group and forget the launcher's settings."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    if os.environ.get("LOCAL_RANK") == "0":
        for key in _LAUNCHER_ENV:
            os.environ.pop(key, None)
