"""The training entry point: `python -m xor_lightning.train [overrides]` or `xor-train`.

Hydra composes conf/train.yaml; this file builds the pieces it names, fits, tests the
best checkpoint and writes metrics.json. Lightning is imported inside `train`, after
Hydra has set up logging, so its messages go to the run's log file.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
from omegaconf import DictConfig, OmegaConf

from xor_lightning.checkpoint import load_checkpoint
from xor_lightning.config import CONF_DIR, check_accelerator, quiet_known_warnings, run_app

if TYPE_CHECKING:
    import lightning as L

    from xor_lightning.datamodule import XORDataModule
    from xor_lightning.module import XORModule

log = logging.getLogger(__name__)


def build(cfg: DictConfig) -> tuple[L.Trainer, XORModule, XORDataModule]:
    """Seed, then build the Trainer, the module and the datamodule the config names."""
    import lightning as L
    from hydra.utils import instantiate

    from xor_lightning.module import XORModule

    quiet_known_warnings()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = instantiate(cfg.data)
    module = XORModule(
        instantiate(cfg.model.net),
        instantiate(cfg.model.optimizer),
        gradient_clip_val=cfg.model.get("gradient_clip_val"),
        hparams=OmegaConf.to_container(cfg, resolve=True),
    )
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    return trainer, module, datamodule


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit, test the best checkpoint, write `metrics.json`; return the metrics."""
    check_accelerator(cfg.trainer.get("accelerator"))
    if cfg.get("ckpt_path"):
        load_checkpoint(cfg.ckpt_path)  # refuse a missing, corrupt or unsafe file up front

    import torch

    trainer, module, datamodule = build(cfg)
    out_dir = Path(cfg.paths.output_dir)
    n_params = sum(p.numel() for p in module.net.parameters() if p.requires_grad)
    log.info("model: %s, %d learnable parameters", type(module.net).__name__, n_params)
    log.info("run dir: %s", _shown(out_dir))

    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    train_loss = trainer.callback_metrics.get("train/loss")

    best = getattr(trainer.checkpoint_callback, "best_model_path", "") or None
    if best:
        val = torch.load(best, map_location="cpu", weights_only=True)["metrics"]
    else:  # no checkpoint (fast_dev_run, checkpointing off): score the current weights
        val = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    tested = trainer.test(module, datamodule=datamodule, ckpt_path=best, verbose=False)[0]

    metrics = {
        "train/loss": float(train_loss) if train_loss is not None else float("nan"),
        "val/loss": float(val.get("val/loss", float("nan"))),
        "val/acc": float(val.get("val/acc", float("nan"))),
        "test/loss": float(tested["test/loss"]),
        "test/acc": float(tested["test/acc"]),
    }
    if trainer.is_global_zero:
        (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        _summary(metrics, best, out_dir)
    return metrics


def _shown(path: Path) -> str:
    """The path relative to the working directory when it lies below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _summary(metrics: dict[str, float], best: str | None, out_dir: Path) -> None:
    where = f" ({Path(best).name})" if best else ""
    log.info(
        "best val/acc %.4f%s  test/acc %.4f  test/loss %.4f",
        metrics["val/acc"],
        where,
        metrics["test/acc"],
        metrics["test/loss"],
    )
    log.info("run dir: %s  (metrics.json, checkpoints/, train.log)", _shown(out_dir))
    log.info(
        "loss curves: make tensorboard  (or tensorboard --logdir %s --host 127.0.0.1)",
        _shown(out_dir),
    )


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> Any:
    """Train; return the optimized metric, which Hydra's sweepers maximise."""
    metrics = run_app(train, cfg)
    return metrics.get(cfg.get("optimized_metric", "val/acc"))


if __name__ == "__main__":
    main()
