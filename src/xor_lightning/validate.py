"""Refuse a bad configuration before anything is built: one line naming key, value, rule.

`validate_train` is the whole check, in one pass down the config in the order a run uses
it: its keys, the data, the task, the model, the Trainer, the scheduler, the loggers and
callbacks, the checkpoint it starts from. Each section is a function below; the allowed
values are the tables of `rules.py`; the keys beside a `_target_` are its class's arguments
(`classes.py`, read from the signature: a copier's own network, datamodule or module needs
no list here). Hydra already refuses an override of a key that does not exist.

The check is not a structured config (a dataclass schema in Hydra's ConfigStore): a schema
types values but cannot say "an integer >= 1" or "a LightningModule class", Hydra reports
its failures in several lines, and a copier's classes would each need a schema to match.
"""

from __future__ import annotations

import math
from typing import Any

from omegaconf import DictConfig, OmegaConf

from xor_lightning.classes import MLP_TARGETS, arguments, check_data, check_module
from xor_lightning.errors import UserError
from xor_lightning.plain import at, select
from xor_lightning.plugins import installed
from xor_lightning.rules import (
    CALLBACK_RULES,
    MLP_RULES,
    MODEL_RULES,
    NOT_UNDER_MANUAL_OPTIMIZATION,
    SCHEDULER_RULES,
    SEED,
    TRAINER_RULES,
    XOR_DATA_RULES,
    check,
)

TRAIN_KEYS = {"seed", "ckpt_path", "resume", "optimized_metric", "data", "model", "task",
              "scheduler", "trainer", "logger", "callbacks", "paths", "hparams_search"}  # fmt: skip
XOR_DATA_TARGET = "xor_lightning.datamodule.XORDataModule"
# Loggers and callbacks whose package is an extra, not in the default install (by class name,
# so a YAML of your own that names one is checked too): the option, its package, its extra.
EXTRAS = {
    "MLFlowLogger": ("logger=mlflow", "mlflow", "mlflow"),
    "WandbLogger": ("logger=wandb", "wandb", "wandb"),
    "RichProgressBar": ("callbacks=rich", "rich", "rich"),
}


def validate_train(cfg: Any) -> None:
    """Refuse the run's config (a DictConfig, or the same config resolved as plain dicts:
    see `plain.py`) with a `UserError` naming the first key that breaks a rule."""
    check_top(cfg)
    task = check_data_and_task(cfg)
    check_model(cfg, task)
    check_trainer(cfg)
    check_scheduler(cfg)
    check_loggers_and_callbacks(cfg)
    check_start(cfg)


def check_top(cfg: Any) -> None:
    """No top-level key that nothing reads (a typo added with `+`); the seed."""
    for name in cfg:
        if name not in TRAIN_KEYS and name != "hydra":  # `hydra`: a launcher's whole config
            raise UserError(f"unknown key {name}: known keys are {', '.join(sorted(TRAIN_KEYS))}")
    check(cfg, {"seed": SEED})  # before data.seed, which follows it


def check_data_and_task(cfg: Any) -> Any:
    """The datamodule's class and keys; the task (it builds, `task._target_` trusted); the
    chapter's datamodule's values and a CSV file's every row. The task."""
    from xor_lightning.tasks import make_task

    check_data(cfg)
    task = select(cfg, "task", None)
    if task is None:
        raise UserError("task is required: task=binary, multiclass or regression")
    task = make_task(task if isinstance(task, dict) else OmegaConf.to_container(task))
    if at(at(cfg, "data"), "_target_") == XOR_DATA_TARGET:
        check(cfg, XOR_DATA_RULES)
        check_csv(at(cfg, "data"), task)
    return task


def check_csv(data: Any, task: Any) -> None:
    """`data=csv`: a path, fractions that leave points to train on, and a file that reads
    with targets the task takes (every row checked now, so a broken file stops the run
    before it starts)."""
    if data.get("problem") != "csv":
        return
    if not data.get("path"):
        raise UserError("data.path is required with data=csv: data.path=<file.csv>")
    val, test = at(data, "val_fraction"), at(data, "test_fraction")
    if val + test >= 1:
        raise UserError(
            f"data.val_fraction={val} and data.test_fraction={test} leave no training "
            "points: their sum must be below 1"
        )
    from xor_lightning.csvdata import line_of, read_points
    from xor_lightning.data import load_split

    path = at(data, "path")
    y = read_points(path).y  # the whole file (cached for the datamodule)
    bad = task.bad(y).reshape(-1)
    if bool(bad.any()):
        first = int(bad.nonzero()[0])
        task.check_targets(y[first : first + 1], f"{path} line {line_of(path, first)}")
    load_split(data, "train")  # enough points for the three splits


def check_model(cfg: Any, task: Any) -> None:
    """The module's or the network's class and keys; their values; a network whose config
    states its outputs (`n_out`) has as many as the task needs."""
    check_module(cfg)
    check(cfg, MODEL_RULES)
    if select(cfg, "model.net._target_", None) in MLP_TARGETS:
        check(cfg, MLP_RULES)
    n_out = select(cfg, "model.net.n_out", None)
    if isinstance(n_out, int) and n_out != task.outputs:
        raise UserError(
            f"model.net.n_out={n_out} does not fit task={task.name}, which needs "
            f"{task.outputs} output{'s' * (task.outputs > 1)} per point: set "
            f"model.net.n_out={task.outputs}, or another task"
        )


def check_trainer(cfg: Any) -> None:
    """Every `trainer.*` key an argument of `lightning.Trainer`, its values, the options
    manual optimization cannot honour, and a GPU that exists."""
    from lightning.pytorch import Trainer

    allowed = set(arguments(Trainer)[0]) - {"callbacks", "logger"}
    for name in at(cfg, "trainer"):
        if name != "_target_" and name not in allowed:
            raise UserError(f"unknown key trainer.{name}: not an argument of lightning.Trainer")
    check(cfg, TRAINER_RULES)
    steps = select(cfg, "model.steps_per_call", 1)
    for key, (default, instead) in NOT_UNDER_MANUAL_OPTIMIZATION.items():
        value = select(cfg, key, default)
        if steps != 1 and value != default:
            raise UserError(
                f"{key}={value!r} is not allowed with model.steps_per_call={steps} (manual "
                f"optimization): {instead}, or model.steps_per_call=1"
            )
    check_accelerator(select(cfg, "trainer.accelerator", None))


def check_accelerator(accelerator: Any) -> None:
    """Refuse `gpu`/`cuda` up front on a machine without one, instead of deep in Lightning."""
    import torch

    name = str(accelerator).lower()
    if name in ("gpu", "cuda") and not torch.cuda.is_available():
        raise UserError(
            f"trainer.accelerator={name} but no GPU was found (torch.cuda.is_available() is "
            "False); use accelerator=cpu or accelerator=auto"
        )


def check_scheduler(cfg: Any) -> None:
    """Every `scheduler.*` key an argument of its `_target_`; its values; a warm-up that
    ends."""
    import inspect

    from hydra.utils import get_method

    scheduler = cfg.get("scheduler") or {}
    if not scheduler:
        return
    try:
        target = get_method(scheduler.get("_target_"))
    except Exception:
        raise UserError(
            f"scheduler._target_={scheduler.get('_target_')!r}: cannot import it"
        ) from None
    allowed = set(inspect.signature(target).parameters) - {"optimizer"}
    for name in scheduler:
        if not name.startswith("_") and name not in allowed:
            raise UserError(
                f"unknown key scheduler.{name}: known keys are {', '.join(sorted(allowed))}"
            )
    check(cfg, SCHEDULER_RULES)
    if scheduler.get("warmup_epochs", 0) >= scheduler.get("max_epochs", math.inf):
        raise UserError(
            f"scheduler.warmup_epochs={at(scheduler, 'warmup_epochs')} is not allowed: use "
            f"fewer than scheduler.max_epochs={at(scheduler, 'max_epochs')}"
        )


def check_loggers_and_callbacks(cfg: Any) -> None:
    """Their values; a logger or callback whose package is not installed: one line naming
    the extra."""
    check(cfg, CALLBACK_RULES)
    for group in ("logger", "callbacks"):
        for node in (select(cfg, group, None) or {}).values():
            if not isinstance(node, (dict, DictConfig)):
                continue  # null: turned off (e.g. callbacks.boundary_plot=null)
            name = str(node.get("_target_")).rpartition(".")[2]
            option, module, extra = EXTRAS.get(name, ("", "", ""))
            if option and not installed(module):
                raise UserError(f"{option} needs the {module} package: pip install -e '.[{extra}]'")


def check_start(cfg: Any) -> None:
    """A checkpoint to start from (`ckpt_path`; `train` sets it to the run's last.ckpt for
    `resume`) that exists, reads and names only trusted classes: refused now, not after the
    Trainer is built."""
    path = select(cfg, "ckpt_path", None)
    if path:
        from xor_lightning.checkpoint import load_checkpoint

        load_checkpoint(path)
