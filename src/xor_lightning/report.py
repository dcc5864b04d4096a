"""What a run says about itself: at its start, when a signal stops it, and at its end; a
best checkpoint that monitors a metric nobody logs, in one line.

The run log's first and last lines (the model, the run dir, the best checkpoint and its
test scores, where the curves are), the best checkpoint's scores as points on the
TensorBoard charts with the run's HPARAMS record, and the exit after Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

from xor_lightning.errors import UserError

if TYPE_CHECKING:
    import lightning as L

log = logging.getLogger("xor_lightning.train")


def shown(path: Path) -> str:
    """The path relative to the working directory when it lies below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def started(trainer: L.Trainer, module: L.LightningModule, out_dir: Path) -> None:
    """The network, its size, the run dir (and under DDP the world size)."""
    from lightning.pytorch.strategies import DDPStrategy
    from lightning.pytorch.utilities import rank_zero_only

    net = getattr(module, "net", module)
    n_params = sum(p.numel() for p in net.parameters() if p.requires_grad)
    log.info("model: %s, %d learnable parameters", type(net).__name__, n_params)
    log.info("run dir: %s", shown(out_dir))
    if isinstance(trainer.strategy, DDPStrategy) and rank_zero_only.rank == 0:
        # printed, not logged: shown whatever the log level
        print(f"world size: {trainer.num_devices * trainer.num_nodes}", flush=True)


def exit_if_stopped(trainer: L.Trainer, out_dir: Path) -> None:
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
                shown(out_dir),
            )
            raise SystemExit(128 + cb.signal)


def early_stop(trainer: L.Trainer) -> None:
    """When `callbacks=early_stopping` ended the fit: after which epoch, and why (said before
    the test, which restores the best checkpoint's callback states)."""
    early = trainer.early_stopping_callback
    if early is not None and early.stopping_reason_message and trainer.is_global_zero:
        reason = early.stopping_reason_message.removesuffix(" Signaling Trainer to stop.")
        log.info("early stop after epoch %d: %s", early.stopped_epoch, reason)


def best_checkpoint(trainer: L.Trainer) -> tuple[str | None, dict[str, float], int]:
    """The best checkpoint's path, its validation scores and its epoch; without one
    (fast_dev_run, checkpointing off): None, the current scores, the last epoch."""
    import torch

    best = getattr(trainer.checkpoint_callback, "best_model_path", "") or None
    if best:
        ckpt = torch.load(best, map_location="cpu", weights_only=True)
        scores, epoch = ckpt["metrics"], ckpt["epoch"]
    else:
        scores, epoch = dict(trainer.callback_metrics), trainer.current_epoch - 1
    return best, {k: float(v) for k, v in scores.items() if k.startswith("val/")}, epoch


def finished(
    trainer: L.Trainer, cfg: DictConfig, metrics: Mapping[str, float], best: str | None, epoch: int
) -> None:
    """The run's last lines, and its summary in TensorBoard."""
    monitor = getattr(trainer.checkpoint_callback, "monitor", None) or "val/loss"
    tested = sorted((k for k in metrics if k.startswith("test/")), key=lambda k: k == "test/loss")
    tests = "  ".join(f"{k} {metrics[k]:.4f}" for k in tested)
    where = f" ({Path(best).name})" if best else ""
    value = metrics.get(monitor, float("nan"))
    log.info("best %s %.4f%s  %s", monitor, value, where, tests)
    out_dir = Path(cfg.paths.output_dir)
    log.info("run dir: %s  (metrics.json, checkpoints/, train.log)", shown(out_dir))
    log.info(
        "loss curves: make tensorboard  (or tensorboard --logdir %s --host 127.0.0.1)",
        shown(out_dir),
    )
    _tensorboard(trainer, cfg, metrics, epoch, monitor)


def _tensorboard(
    trainer: L.Trainer, cfg: DictConfig, metrics: Mapping[str, float], epoch: int, monitor: str
) -> None:
    """The best checkpoint's scores as points on the charts (at its `epoch`), and the run's
    hyperparameters with the summary's metrics for TensorBoard's HPARAMS tab."""
    from hydra.core.hydra_config import HydraConfig

    from xor_lightning.tb_logger import StageLogger, session_hparams, summary_metrics

    overrides = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    params, swept = session_hparams(cfg, overrides)
    best = {f"best/{k[4:]}": v for k, v in metrics.items() if k.startswith("val/")}
    for lg in trainer.loggers:
        if isinstance(lg, StageLogger):  # hparams.yaml keeps the module's and data's
            lg.log_metrics(best, lg.epoch_step.get(epoch, trainer.global_step))
            lg.log_session(params, summary_metrics(metrics, monitor), swept=swept)
            lg.finalize("success")


def ordered(metrics: Mapping[str, Any]) -> dict[str, float]:
    """train/, val/, test/ in that order, each stage's loss first, as floats."""
    stages = ("train", "val", "test")

    def key(k: str) -> tuple[int, bool, str]:
        stage, _, name = k.partition("/")
        return (stages.index(stage) if stage in stages else 3, name != "loss", name)

    return {k: float(metrics[k]) for k in sorted(metrics, key=key)}


@contextlib.contextmanager
def monitored(trainer: L.Trainer) -> Iterator[None]:
    """A best checkpoint that monitors a metric the module never logs: one line, not
    Lightning's traceback."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    try:
        yield
    except MisconfigurationException as e:
        monitor = getattr(trainer.checkpoint_callback, "monitor", None)
        if monitor and "could not find the monitored key" in str(e):
            logged = sorted(k for k in trainer.callback_metrics if "/" in k)
            raise UserError(
                f"the best checkpoint monitors {monitor}, which the module does not log (it "
                f"logs {', '.join(logged) or 'nothing'}): log it in validation_step, or set "
                "task.monitor to one it logs"
            ) from None
        raise
