"""The training entry point: `python -m xor_lightning.train [overrides]` or `xor-train`.

Hydra composes conf/train.yaml; this file builds what it names (datamodule, LightningModule,
Trainer), fits, tests the best checkpoint and writes metrics.json. Lightning is imported
after Hydra has set up logging, so its messages go to the run's log file. Words: docs/glossary.md.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
from omegaconf import DictConfig, OmegaConf

from xor_lightning import report
from xor_lightning.checkpoint import make_module
from xor_lightning.config import CONF_DIR, quiet_known_warnings, run_app
from xor_lightning.plugins import checked
from xor_lightning.validate import validate_train

if TYPE_CHECKING:
    import lightning as L


def build(
    cfg: DictConfig, extra_callbacks: Sequence[L.Callback] = ()
) -> tuple[L.Trainer, L.LightningModule, L.LightningDataModule]:
    """Seed, then build the Trainer, the module and the datamodule the config names."""
    import lightning as L
    from hydra.utils import instantiate

    from xor_lightning.callbacks import RunInfo
    from xor_lightning.profiler import NoProfiler

    quiet_known_warnings()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = instantiate(cfg.data)
    config = OmegaConf.to_container(cfg, resolve=True)
    module = make_module(config)  # `model._target_`, or XORModule for a YAML naming none
    # Entries without _target_: settings for an option not chosen (debug=quick's, callbacks=none)
    callbacks = [
        instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c and "_target_" in c
    ]
    callbacks += [RunInfo(config), *extra_callbacks]  # the run's config in every checkpoint
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c and "_target_" in c]
    # Plain containers for Lightning, which checks e.g. `max_time={minutes: 10}` is a dict.
    trainer = instantiate(cfg.trainer, _partial_=True, _convert_="all")
    speed = {} if cfg.trainer.get("profiler") else {"profiler": NoProfiler()}  # profiler.py
    trainer = trainer(callbacks=callbacks, logger=loggers or False, **speed)
    return trainer, module, datamodule


def train(cfg: DictConfig, callbacks: Sequence[L.Callback] = ()) -> dict[str, float]:
    """Fit, test the best checkpoint, write `metrics.json`; return the metrics."""
    if cfg.get("resume"):
        from xor_lightning.resume import resume_config

        cfg = resume_config(cfg)
    validate_train(cfg)  # every key, class, value and the start checkpoint, in one pass

    from xor_lightning.ddp import job_dir_for_ranks, quiet_ranks

    quiet_ranks()  # a DDP rank started by Lightning or SLURM: rank 0 reports
    trainer, module, datamodule = build(cfg, callbacks)
    out_dir = Path(cfg.paths.output_dir)
    report.started(trainer, module, out_dir)
    with job_dir_for_ranks(trainer), report.monitored(trainer):  # DDP's ranks in the run dir
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    report.exit_if_stopped(trainer, out_dir)
    report.early_stop(trainer)
    train_loss = float(trainer.callback_metrics.get("train/loss", float("nan")))

    best, val, best_epoch = report.best_checkpoint(trainer)  # its path, val/ scores, epoch
    tested = trainer.test(module, datamodule=datamodule, ckpt_path=best, verbose=False)[0]
    metrics = report.ordered({"train/loss": train_loss, **val, **tested})
    if trainer.is_global_zero:
        (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        report.finished(trainer, cfg, metrics, best, best_epoch)
    return metrics


@checked  # a plugin the command line names but that is not installed: refused in one line
@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> Any:
    """Train; return the optimized metric, which Hydra's sweepers maximise or minimise."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if HydraConfig.get().mode == RunMode.MULTIRUN:
        from xor_lightning.sweep_job import sweep_job

        return sweep_job(cfg, train)
    metrics = run_app(train, cfg)
    return metrics.get(cfg.get("optimized_metric") or "val/acc")


if __name__ == "__main__":
    main()
