"""Refuse a bad configuration before anything is built: one line naming key, value, rule.

Hydra already refuses an override of a key that does not exist; this catches wrong types,
values out of range, and keys that nothing reads. Which `model.*` and `data.*` keys are
read follows from the classes the config names (their signatures): the chapter's MLP and
XORDataModule, or a copier's own network and datamodule, with no list here to edit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

from omegaconf import DictConfig, ListConfig

from xor_lightning.classes import MLP_TARGETS, arguments, check_data, check_module
from xor_lightning.errors import UserError
from xor_lightning.model import ACTIVATIONS
from xor_lightning.plain import at, select
from xor_lightning.plugins import installed
from xor_lightning.zoo import PROBLEMS

ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v: Any) -> bool:
    return (_int(v) or isinstance(v, float)) and math.isfinite(v)


def at_least(low: int) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: _int(v) and v >= low), f"an integer >= {low}"


def optional(rule: tuple[Callable[[Any], bool], str], null_means: str) -> tuple[Callable, str]:
    check, text = rule
    return (lambda v: v is None or check(v)), f"null ({null_means}) or {text}"


SEED = (lambda v: _int(v) and 0 <= v <= 2**32 - 1, "an integer from 0 to 4294967295")
FRACTION = (lambda v: _number(v) and 0 < v < 1, "a number between 0 and 1")
POSITIVE = (lambda v: _number(v) and v > 0, "a number > 0")
NON_NEGATIVE = (lambda v: _number(v) and v >= 0, "a number >= 0")
NOISE = (
    lambda v: _number(v) and 0 <= v <= 1,
    "a number from 0 to 1 (beyond that the labels are noise)",
)


def one_of(options: Iterable[str]) -> tuple[Callable[[Any], bool], str]:
    options = tuple(options)
    return (lambda v: v in options), "one of " + ", ".join(options)


def _devices(v: Any) -> bool:
    if isinstance(v, (list, ListConfig)):
        return len(v) > 0 and all(_int(d) and d >= 0 for d in v)
    return v == "auto" or (_int(v) and (v >= 1 or v == -1))


# The strategies the project is tested with: one process, or DDP (see ddp.py).
STRATEGIES = ("auto", "ddp")

TRAIN_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "seed": SEED,
    "model.optimizer.lr": POSITIVE,
    "model.steps_per_call": at_least(1),
    "model.gradient_clip_val": optional(POSITIVE, "no clipping"),
    "model.lr_hidden": optional(NON_NEGATIVE, "the optimizer's lr"),
    "model.lr_out": optional(NON_NEGATIVE, "the optimizer's lr"),
    "trainer.max_epochs": (
        lambda v: _int(v) and (v >= 1 or v == -1),
        "an integer >= 1, or -1 for no limit",
    ),
    "trainer.accelerator": one_of(ACCELERATORS),
    "trainer.devices": (_devices, "an integer >= 1, -1 (all), 'auto' or a list of device ids"),
    "trainer.strategy": one_of(STRATEGIES),
    "trainer.num_nodes": at_least(1),
    "callbacks.last_checkpoint.every_n_epochs": at_least(1),
    "scheduler.max_epochs": (
        lambda v: _int(v) and v >= 1,
        "an integer >= 1: cosine anneals to 0 at that epoch (it follows trainer.max_epochs, "
        "so with trainer.max_epochs=-1 set scheduler.max_epochs)",
    ),
    "scheduler.warmup_epochs": at_least(0),
    "scheduler.step_size": at_least(1),
    "scheduler.gamma": POSITIVE,
    "scheduler.factor": (lambda v: _number(v) and 0 < v < 1, "a number between 0 and 1"),
    "scheduler.patience": at_least(0),
}
# The chapter's classes' own keys: checked when the config names them (a copier's network
# may give `activation` or `hidden` a meaning of its own).
MLP_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "model.hidden": at_least(1),
    "model.depth": at_least(1),
    "model.activation": one_of(ACTIVATIONS),
    "model.net.n_in": at_least(1),
    "model.net.n_out": at_least(1),
}
XOR_DATA_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "data.n_samples": at_least(1),
    "data.n_val": at_least(1),
    "data.n_test": at_least(1),
    "data.noise": NOISE,
    "data.aspect": NON_NEGATIVE,
    "data.batch_size": optional(at_least(1), "the full batch"),
    "data.seed": SEED,
    "data.problem": one_of(["xor", *PROBLEMS, "csv"]),
    "data.val_fraction": FRACTION,
    "data.test_fraction": FRACTION,
}
# Lightning's own options that manual optimization (`model.steps_per_call` > 1) cannot
# honour (it raises deep in `fit`): the value each must keep, and what to use instead.
NOT_UNDER_MANUAL_OPTIMIZATION = {
    "trainer.gradient_clip_val": (None, "use model.gradient_clip_val (clips before every step)"),
    "trainer.accumulate_grad_batches": (1, "use a larger data.batch_size (data are in memory)"),
}
TRAIN_KEYS = {
    "": {"seed", "ckpt_path", "resume", "optimized_metric", "data", "model", "task",
         "scheduler", "trainer", "logger", "callbacks", "paths", "hparams_search"},
}  # fmt: skip
XOR_DATA_TARGET = "xor_lightning.datamodule.XORDataModule"

EVAL_RULES = {
    "data.n_val": optional(at_least(1), "as in the checkpoint"),
    "data.n_test": optional(at_least(1), "as in the checkpoint"),
    "data.noise": optional(NOISE, "as in the checkpoint"),
    "data.aspect": optional(NON_NEGATIVE, "as in the checkpoint"),
    "data.seed": optional(SEED, "as in the checkpoint"),
    "data.batch_size": optional(at_least(1), "as in the checkpoint"),
    "accelerator": one_of(ACCELERATORS),
}


def check(cfg: Any, rules: dict[str, tuple[Callable[[Any], bool], str]]) -> None:
    """Raise `UserError` for the first key whose value breaks its rule."""
    for key, (ok, allowed) in rules.items():
        value = select(cfg, key, "<absent>")
        if value == "<absent>":
            continue  # a group option that has no such key (e.g. callbacks=none)
        if not ok(value):
            raise UserError(f"{key}={value!r} is not allowed: use {allowed}")


def check_keys(cfg: Any, known: dict[str, set[str]]) -> None:
    """Raise `UserError` for a key nothing reads (a typo added with `+`)."""
    for section, names in known.items():
        node = select(cfg, section, None) if section else cfg
        if not isinstance(node, (DictConfig, dict)):
            continue
        for name in node:
            if name not in names and not (section == "" and name == "hydra"):
                # `hydra` is there when a launcher checks the whole composed config
                full = f"{section}.{name}" if section else name
                raise UserError(f"unknown key {full}: known keys are {', '.join(sorted(names))}")


def check_trainer_keys(cfg: Any) -> None:
    """Every `trainer.*` key must be a `lightning.Trainer` argument."""
    from lightning.pytorch import Trainer

    allowed = set(arguments(Trainer)[0]) - {"callbacks", "logger"}
    for name in at(cfg, "trainer"):
        if name != "_target_" and name not in allowed:
            raise UserError(f"unknown key trainer.{name}: not an argument of lightning.Trainer")


def check_manual_optimization(cfg: Any) -> None:
    steps = select(cfg, "model.steps_per_call", 1)
    if steps == 1:
        return
    for key, (default, instead) in NOT_UNDER_MANUAL_OPTIMIZATION.items():
        value = select(cfg, key, default)
        if value != default:
            raise UserError(
                f"{key}={value!r} is not allowed with model.steps_per_call={steps} (manual "
                f"optimization): {instead}, or model.steps_per_call=1"
            )


# Loggers and callbacks whose package is an extra, not in the default install (by class name,
# so a YAML of your own that names one is checked too): the option, its package, its extra.
EXTRAS = {
    "MLFlowLogger": ("logger=mlflow", "mlflow", "mlflow"),
    "WandbLogger": ("logger=wandb", "wandb", "wandb"),
    "RichProgressBar": ("callbacks=rich", "rich", "rich"),
}


def check_extras(cfg: Any) -> None:
    """A logger or callback whose package is not installed: one line naming the extra."""
    for group in ("logger", "callbacks"):
        for node in (select(cfg, group, None) or {}).values():
            if not isinstance(node, (dict, DictConfig)):
                continue  # null: turned off (e.g. callbacks.boundary_plot=null)
            name = str(node.get("_target_")).rpartition(".")[2]
            option, module, extra = EXTRAS.get(name, ("", "", ""))
            if option and not installed(module):
                raise UserError(f"{option} needs the {module} package: pip install -e '.[{extra}]'")


def check_task(cfg: Any) -> Any:
    """The task builds (`task._target_` trusted, its arguments valid), and a network whose
    config states its outputs (`n_out`) has as many as the task needs. The task."""
    from omegaconf import OmegaConf

    from xor_lightning.tasks import make_task

    task = select(cfg, "task", None)
    if task is None:
        raise UserError("task is required: task=binary, multiclass or regression")
    made = make_task(task if isinstance(task, dict) else OmegaConf.to_container(task))
    n_out = select(cfg, "model.net.n_out", None)
    if isinstance(n_out, int) and n_out != made.outputs:
        raise UserError(
            f"model.net.n_out={n_out} does not fit task={made.name}, which needs "
            f"{made.outputs} output{'s' * (made.outputs > 1)} per point: set "
            f"model.net.n_out={made.outputs}, or another task"
        )
    return made


def check_scheduler(cfg: Any) -> None:
    """Every `scheduler.*` key must be an argument of its `_target_`; a warm-up must end."""
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
    if scheduler.get("warmup_epochs", 0) >= scheduler.get("max_epochs", math.inf):
        raise UserError(
            f"scheduler.warmup_epochs={at(scheduler, 'warmup_epochs')} is not allowed: use "
            f"fewer than scheduler.max_epochs={at(scheduler, 'max_epochs')}"
        )


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


def validate_train(cfg: Any) -> None:
    """Refuse the run's config (a DictConfig, or the same config resolved as plain dicts:
    see `plain.py`) with a `UserError` naming the first key that breaks a rule."""
    check_keys(cfg, TRAIN_KEYS)
    check(cfg, {"seed": SEED})  # before data.seed, which follows it
    check_data(cfg)
    task = check_task(cfg)
    if at(at(cfg, "data"), "_target_") == XOR_DATA_TARGET:
        check(cfg, XOR_DATA_RULES)
        check_csv(at(cfg, "data"), task)
    check_module(cfg)
    check(cfg, TRAIN_RULES)
    if select(cfg, "model.net._target_", None) in MLP_TARGETS:
        check(cfg, MLP_RULES)
    check_trainer_keys(cfg)
    check_manual_optimization(cfg)
    check_scheduler(cfg)
    check_extras(cfg)
