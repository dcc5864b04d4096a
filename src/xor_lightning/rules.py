"""The allowed values of the keys a run reads, one table per section of the config.

Each rule is a test and the words that say what it allows; `check` applies a table and
raises the first value that breaks its rule as one line (`data.noise=2 is not allowed: use a
number from 0 to 1 ...`). `validate.py` applies these tables in its one pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

from omegaconf import ListConfig

from xor_lightning.errors import UserError
from xor_lightning.model import ACTIVATIONS
from xor_lightning.plain import select
from xor_lightning.zoo import PROBLEMS

Rule = tuple[Callable[[Any], bool], str]

ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
# The strategies the project is tested with: one process, or DDP (see ddp.py).
STRATEGIES = ("auto", "ddp")


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v: Any) -> bool:
    return (_int(v) or isinstance(v, float)) and math.isfinite(v)


def at_least(low: int) -> Rule:
    return (lambda v: _int(v) and v >= low), f"an integer >= {low}"


def optional(rule: Rule, null_means: str) -> Rule:
    test, text = rule
    return (lambda v: v is None or test(v)), f"null ({null_means}) or {text}"


def one_of(options: Iterable[str]) -> Rule:
    options = tuple(options)
    return (lambda v: v in options), "one of " + ", ".join(options)


def _devices(v: Any) -> bool:
    if isinstance(v, (list, ListConfig)):
        return len(v) > 0 and all(_int(d) and d >= 0 for d in v)
    return v == "auto" or (_int(v) and (v >= 1 or v == -1))


SEED = (lambda v: _int(v) and 0 <= v <= 2**32 - 1, "an integer from 0 to 4294967295")
FRACTION = (lambda v: _number(v) and 0 < v < 1, "a number between 0 and 1")
POSITIVE = (lambda v: _number(v) and v > 0, "a number > 0")
NON_NEGATIVE = (lambda v: _number(v) and v >= 0, "a number >= 0")
NOISE = (
    lambda v: _number(v) and 0 <= v <= 1,
    "a number from 0 to 1 (beyond that the labels are noise)",
)

# The chapter's datamodule's keys (data=xor, the zoo's problems, data=csv).
XOR_DATA_RULES: dict[str, Rule] = {
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
# What XORModule reads besides the network.
MODEL_RULES: dict[str, Rule] = {
    "model.optimizer.lr": POSITIVE,
    "model.steps_per_call": at_least(1),
    "model.gradient_clip_val": optional(POSITIVE, "no clipping"),
    "model.lr_hidden": optional(NON_NEGATIVE, "the optimizer's lr"),
    "model.lr_out": optional(NON_NEGATIVE, "the optimizer's lr"),
}
# The chapter's networks' own keys: checked when the config names them (a copier's network
# may give `activation` or `hidden` a meaning of its own).
MLP_RULES: dict[str, Rule] = {
    "model.hidden": at_least(1),
    "model.depth": at_least(1),
    "model.activation": one_of(ACTIVATIONS),
    "model.net.n_in": at_least(1),
    "model.net.n_out": at_least(1),
}
TRAINER_RULES: dict[str, Rule] = {
    "trainer.max_epochs": (
        lambda v: _int(v) and (v >= 1 or v == -1),
        "an integer >= 1, or -1 for no limit",
    ),
    "trainer.accelerator": one_of(ACCELERATORS),
    "trainer.devices": (_devices, "an integer >= 1, -1 (all), 'auto' or a list of device ids"),
    "trainer.strategy": one_of(STRATEGIES),
    "trainer.num_nodes": at_least(1),
}
# Lightning's own options that manual optimization (`model.steps_per_call` > 1) cannot
# honour (it raises deep in `fit`): the value each must keep, and what to use instead.
NOT_UNDER_MANUAL_OPTIMIZATION = {
    "trainer.gradient_clip_val": (None, "use model.gradient_clip_val (clips before every step)"),
    "trainer.accumulate_grad_batches": (1, "use a larger data.batch_size (data are in memory)"),
}
SCHEDULER_RULES: dict[str, Rule] = {
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
CALLBACK_RULES: dict[str, Rule] = {"callbacks.last_checkpoint.every_n_epochs": at_least(1)}

# xor-eval's overrides of the checkpoint's data, and its accelerator.
EVAL_RULES: dict[str, Rule] = {
    "data.n_val": optional(at_least(1), "as in the checkpoint"),
    "data.n_test": optional(at_least(1), "as in the checkpoint"),
    "data.noise": optional(NOISE, "as in the checkpoint"),
    "data.aspect": optional(NON_NEGATIVE, "as in the checkpoint"),
    "data.seed": optional(SEED, "as in the checkpoint"),
    "data.batch_size": optional(at_least(1), "as in the checkpoint"),
    "accelerator": one_of(ACCELERATORS),
}


def check(cfg: Any, rules: dict[str, Rule]) -> None:
    """Raise `UserError` for the first key whose value breaks its rule."""
    for key, (ok, allowed) in rules.items():
        value = select(cfg, key, "<absent>")
        if value == "<absent>":
            continue  # a group option that has no such key (e.g. callbacks=none)
        if not ok(value):
            raise UserError(f"{key}={value!r} is not allowed: use {allowed}")
