"""`resume=<run dir>`: a run goes on, in place, with the config saved in its last.ckpt."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from xor_lightning.checkpoint import load_checkpoint, relocate, run_config
from xor_lightning.errors import UserError


def resume_config(cfg: DictConfig) -> DictConfig:
    """That run's own config (from its last.ckpt), continued in place.

    Value overrides given with it apply on top, e.g. `trainer.max_epochs=600` to go on.
    """
    from hydra.core.hydra_config import HydraConfig
    from lightning.pytorch.utilities import rank_zero_only

    run_dir = Path(cfg.resume).resolve()
    last = run_dir / "checkpoints" / "last.ckpt"
    if not last.is_file():
        raise UserError(f"resume={cfg.resume}: no checkpoints/last.ckpt there (not a run dir?)")
    saved = run_config(load_checkpoint(last))
    # A moved or copied run dir: its config names the dir where it first ran.
    saved = OmegaConf.create(relocate(saved, saved["paths"]["output_dir"], str(run_dir)))
    overrides = []
    for o in HydraConfig.get().overrides.task if HydraConfig.initialized() else []:
        key = o.split("=", 1)[0].lstrip("+~")
        if key == "resume" or key.startswith("hydra."):
            continue
        if "." not in key and key not in ("seed", "ckpt_path"):
            raise UserError(f"resume takes value overrides (like trainer.max_epochs=600), not {o}")
        overrides.append(o.lstrip("+"))
    merged = OmegaConf.merge(saved, OmegaConf.from_dotlist(overrides))
    merged.ckpt_path, merged.resume, merged.paths.output_dir = str(last), None, str(run_dir)
    if (run_dir / ".hydra").is_dir() and rank_zero_only.rank == 0:
        # Hydra just wrote the resume command's config there: the run's own replaces it
        OmegaConf.save(merged, run_dir / ".hydra" / "config.yaml")
    return merged
