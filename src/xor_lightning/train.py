"""The training entry point: `python -m xor_lightning.train [overrides]` or `xor-train`.

Hydra composes conf/train.yaml; this file builds the pieces it names, fits, tests the
best checkpoint and writes metrics.json. Lightning is imported inside `train`, after
Hydra has set up logging, so its messages go to the run's log file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
from omegaconf import DictConfig, OmegaConf

from xor_lightning.checkpoint import load_checkpoint, module_kwargs, relocate, run_config
from xor_lightning.config import CONF_DIR, check_accelerator, quiet_known_warnings, run_app
from xor_lightning.ddp import job_dir_for_ranks, release
from xor_lightning.errors import UserError
from xor_lightning.files import write_json
from xor_lightning.validate import validate_train

if TYPE_CHECKING:
    import lightning as L

    from xor_lightning.datamodule import XORDataModule
    from xor_lightning.module import XORModule

log = logging.getLogger(__name__)


def build(
    cfg: DictConfig, extra_callbacks: Sequence[L.Callback] = ()
) -> tuple[L.Trainer, XORModule, XORDataModule]:
    """Seed, then build the Trainer, the module and the datamodule the config names."""
    import lightning as L
    from hydra.utils import instantiate

    from xor_lightning.module import XORModule

    quiet_known_warnings()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = instantiate(cfg.data)
    config = OmegaConf.to_container(cfg, resolve=True)
    module = XORModule(**module_kwargs(config), run_config=config)
    # Entries without a _target_ are settings left for a group option not chosen (e.g.
    # debug=quick's callbacks.last_checkpoint.every_n_epochs with callbacks=none).
    callbacks = [
        instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c and "_target_" in c
    ]
    callbacks += extra_callbacks
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c and "_target_" in c]
    # Plain containers for Lightning, which checks e.g. `max_time={minutes: 10}` is a dict.
    trainer = instantiate(cfg.trainer, _partial_=True, _convert_="all")
    trainer = trainer(callbacks=callbacks, logger=loggers or False)
    return trainer, module, datamodule


def resume_config(cfg: DictConfig) -> DictConfig:
    """`resume=<run dir>`: that run's own config (from its last.ckpt), continued in place.

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


def train(cfg: DictConfig, callbacks: Sequence[L.Callback] = ()) -> dict[str, float]:
    """Fit, test the best checkpoint, write `metrics.json`; return the metrics."""
    if cfg.get("resume"):
        cfg = resume_config(cfg)
    validate_train(cfg)
    check_accelerator(cfg.trainer.get("accelerator"))
    if cfg.get("ckpt_path"):
        load_checkpoint(cfg.ckpt_path)  # refuse a missing, corrupt or unsafe file up front

    import torch
    from lightning.pytorch.strategies import DDPStrategy
    from lightning.pytorch.utilities import rank_zero_only

    if rank_zero_only.rank > 0:  # a DDP rank started by Lightning or SLURM: rank 0 reports
        logging.getLogger().setLevel(logging.WARNING)
    trainer, module, datamodule = build(cfg, callbacks)
    out_dir = Path(cfg.paths.output_dir)
    n_params = sum(p.numel() for p in module.net.parameters() if p.requires_grad)
    log.info("model: %s, %d learnable parameters", type(module.net).__name__, n_params)
    log.info("run dir: %s", _shown(out_dir))
    ddp = isinstance(trainer.strategy, DDPStrategy)
    if ddp and rank_zero_only.rank == 0:  # printed, not logged: shown whatever the log level
        print(f"world size: {trainer.num_devices * trainer.num_nodes}", flush=True)

    with job_dir_for_ranks() if ddp else contextlib.nullcontext():  # ranks start in `fit`
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    _exit_if_stopped(trainer, out_dir)
    train_loss = trainer.callback_metrics.get("train/loss")

    best = getattr(trainer.checkpoint_callback, "best_model_path", "") or None
    if best:
        best_ckpt = torch.load(best, map_location="cpu", weights_only=True)
        val, best_epoch = best_ckpt["metrics"], best_ckpt["epoch"]
    else:  # no checkpoint (fast_dev_run, checkpointing off): score the current weights
        val = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        best_epoch = trainer.current_epoch - 1
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
        log_summary(trainer, cfg, metrics, best_epoch)
        _summary(metrics, best, out_dir)
    return metrics


def _exit_if_stopped(trainer: L.Trainer, out_dir: Path) -> None:
    """After Ctrl-C or SIGTERM: say how to resume, and exit 128 + the signal number."""
    from xor_lightning.callbacks import GracefulStop

    for cb in trainer.callbacks:
        if isinstance(cb, GracefulStop) and cb.signal is not None:
            if not trainer.is_global_zero:
                raise SystemExit(0)  # rank 0 reports; a failing rank would make DDP kill it
            log.warning(
                "stopped after epoch %d (step %d); checkpoints/last.ckpt holds it. "
                "Resume with: xor-train resume=%s",
                trainer.current_epoch - 1,
                trainer.global_step,
                _shown(out_dir),
            )
            raise SystemExit(128 + cb.signal)


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


def log_summary(trainer: L.Trainer, cfg: DictConfig, metrics: dict[str, float], epoch: int) -> None:
    """The best checkpoint's scores as points on the loss/acc charts (at its `epoch`), and
    the run's hyperparameters with the summary's metrics for TensorBoard's HPARAMS tab."""
    from hydra.core.hydra_config import HydraConfig

    from xor_lightning.tb_logger import StageLogger, session_hparams

    overrides = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    params, swept = session_hparams(cfg, overrides)
    best = {"best/loss": metrics["val/loss"], "best/acc": metrics["val/acc"]}
    for lg in trainer.loggers:
        if isinstance(lg, StageLogger):  # hparams.yaml keeps the module's and data's
            lg.log_metrics(best, lg.epoch_step.get(epoch, trainer.global_step))
            lg.log_session(params, swept=swept)
            lg.finalize("success")


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


def sweep_job(cfg: DictConfig) -> float:
    """One job of a multirun: a failure is recorded in job.json, and the sweep goes on.

    A trial that the Optuna sweeper's pruner stops is recorded as pruned, and raises
    optuna.TrialPruned to tell the sweeper.
    """
    from hydra.core.hydra_config import HydraConfig

    from xor_lightning.pruning import trial_pruning

    hc = HydraConfig.get()
    record: dict[str, Any] = {"job": hc.job.num, "overrides": list(hc.overrides.task)}
    record.update(status="ok", error=None)
    start, value = time.perf_counter(), float("nan")
    try:
        limit_threads()
        pruning = trial_pruning(cfg)
        metrics = train(cfg, [pruning] if pruning else [])
        value = metrics.get(cfg.get("optimized_metric", "val/acc"), float("nan"))
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


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> Any:
    """Train; return the optimized metric, which Hydra's sweepers maximise."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if HydraConfig.get().mode == RunMode.MULTIRUN:
        return sweep_job(cfg)
    metrics = run_app(train, cfg)
    return metrics.get(cfg.get("optimized_metric", "val/acc"))


if __name__ == "__main__":
    main()
