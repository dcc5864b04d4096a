"""Which jobs of a sweep can share one stacked fit, and what sets groups apart.

A job's config decides: `stack_problem` says why it cannot be stacked at all (then it runs
as a fit of its own), `stack_key` which jobs can share a fit (the same config but for the
keys in `VARYING`), `split_keys` what differs between two groups (for the log).
"""

from __future__ import annotations

import functools
import json
from typing import Any

from xor_vectorized import app

# The app's classes a config names, by `_target_` (`<app>.model.MLP`): the engine knows them.
MLP_CLASSES = (("model", "MLP"), ("deep_mlp", "DeepMLP"))  # the chapter's MLP: a faster form
BINARY = ("binary", "Binary")  # a config without a task: a run from before tasks
# The chapter's MLP's keys that may differ between the jobs of one fit (its stacked form
# pads the widths); any other network's jobs share a fit only with the same network.
MLP_VARYING = ("model.hidden", "model.activation", "model.net.hidden", "model.net.activation")
# Keys whose values may differ between the jobs of one fit; everything else must match.
VARYING = (
    "seed",
    "data.seed",
    "data.noise",
    "data.aspect",
    "data.problem",
    *MLP_VARYING,
    "model.optimizer.lr",
    "model.optimizer.betas",
    "model.optimizer.eps",
    "model.optimizer.weight_decay",
    "model.lr_hidden",
    "model.lr_out",
)
ADAM = {"torch.optim.Adam": False, "torch.optim.AdamW": True}  # target -> decoupled decay
ADAM_KEYS = {"_target_", "_partial_", "lr", "betas", "eps", "weight_decay", "fused", "foreach"}
SGD = "torch.optim.SGD"  # plain gradient descent: stacked without momentum
SGD_KEYS = {"_target_", "_partial_", "lr", "weight_decay", "momentum", "dampening", "nesterov",
            "maximize", "fused", "foreach"}  # fmt: skip
CALLBACKS = (
    "LastCheckpoint",
    "HiddenUnitsPlot",
    "ParameterHistograms",
    "EpochPrinter",
    "GracefulStop",
    "BoundaryPlot",
)  # the app's `callbacks`, and ModelCheckpoint
MODEL_CHECKPOINT = "lightning.pytorch.callbacks.ModelCheckpoint"
BEST_KEYS = {"_target_", "dirpath", "filename", "auto_insert_metric_name", "monitor", "mode",
             "save_top_k"}  # fmt: skip
MONITORS = "val/"  # the best on a validation metric, as the task's monitor
LOGGER = ("tb_logger", "StageLogger")


def mlp_targets() -> tuple[str, ...]:
    """The `_target_`s of the app's chapter MLPs, which stack in their faster form."""
    return tuple(app.target(*c) for c in MLP_CLASSES)


def get(cfg: dict[str, Any], key: str, default: Any = None) -> Any:
    for part in key.split("."):
        if not isinstance(cfg, dict) or part not in cfg:
            return default
        cfg = cfg[part]
    return cfg


def stack_problem(cfg: dict[str, Any]) -> str | None:
    """Why this job (its resolved config) must run as a fit of its own; None if it can stack."""
    module = cfg["model"].get("_target_")
    if module and (problem := _module_problem(module)):
        return problem
    task = (cfg.get("task") or {}).get("_target_", app.target(*BINARY))
    if not _per_point_scores(task):
        return f"task._target_={task} (its metrics are not means of per-point scores: Task.scores)"
    opt = cfg["model"]["optimizer"]
    problem = _optimizer_problem(opt)
    if problem:
        return problem
    if cfg.get("ckpt_path") or cfg.get("resume"):
        return "ckpt_path/resume (a job that continues a checkpoint)"
    known = {MODEL_CHECKPOINT, *(app.target("callbacks", c) for c in CALLBACKS)}
    for name, cb in (cfg.get("callbacks") or {}).items():
        if cb and cb.get("_target_") not in known:
            return f"callbacks.{name} ({cb.get('_target_')})"
        if cb and cb.get("_target_") == MODEL_CHECKPOINT:
            extra = set(cb) - BEST_KEYS
            monitor = str(cb.get("monitor"))
            if extra or cb.get("save_top_k", 1) != 1 or not monitor.startswith(MONITORS):
                what = sorted(extra)[0] if extra else "save_top_k/monitor"
                return f"callbacks.{name}.{what} (stacked: the best on a val/ metric)"
    for name, lg in (cfg.get("logger") or {}).items():
        if lg and lg.get("_target_") != app.target(*LOGGER):
            return f"logger.{name} ({lg.get('_target_')})"
    if cfg.get("scheduler"):
        return f"scheduler={cfg['scheduler'].get('_target_')} (stacked: a constant rate)"
    trainer = cfg["trainer"]
    if trainer.get("val_check_interval", 1.0) != 1.0:  # (limit_*_batches: as in a run)
        return f"trainer.val_check_interval={trainer['val_check_interval']} (stacked: whole epochs)"
    devices = cfg["trainer"].get("devices", 1)
    if devices not in (1, "1", "auto") or cfg["trainer"].get("num_nodes", 1) != 1:
        return f"trainer.devices={devices} (stacked fits use one device)"
    return None


@functools.lru_cache(maxsize=32)
def _module_problem(target: str) -> str | None:
    """Why a LightningModule of your own cannot be stacked (None: it can). The engine
    trains what `XORModule` trains (the net, the optimizer, the task its config names):
    a subclass that changes none of its methods (it may take more arguments) is stacked;
    any other runs alone."""
    import inspect

    XORModule = app.read("module").XORModule

    try:
        cls = app.read("targets").target_class({"_target_": target}, "model")[0]
    except Exception:
        return f"model._target_={target} (not importable: its run alone says why)"
    if cls is XORModule:
        return None
    if not (isinstance(cls, type) and issubclass(cls, XORModule)):
        return f"model._target_={target} (a LightningModule of your own, not an XORModule)"
    own = sorted(name for cls_ in cls.__mro__[: cls.__mro__.index(XORModule)]
                 for name, v in vars(cls_).items()
                 if inspect.isfunction(v) and name != "__init__")  # fmt: skip
    return f"model._target_={target} (its own {', '.join(own)})" if own else None


@functools.lru_cache(maxsize=32)
def _per_point_scores(target: str) -> bool:
    """Whether a task class gives per-point scores (`Task.scores`), which the stacked
    module averages per model: the project's tasks do; a task of your own may not."""
    Task = app.read("tasks").Task

    try:
        cls = app.read("targets").target_class({"_target_": target}, "task")[0]
    except Exception:
        return False  # the job's own checks say why, in its run alone
    return isinstance(cls, type) and issubclass(cls, Task) and cls.scores is not Task.scores


def _optimizer_problem(opt: dict[str, Any]) -> str | None:
    """Why the job's optimizer has no stacked form: Adam, AdamW and plain SGD have."""
    target = opt.get("_target_")
    if target == SGD:
        if set(opt) - SGD_KEYS:
            extra = sorted(set(opt) - SGD_KEYS)[0]
            return f"model.optimizer.{extra} (stacked SGD: lr, weight_decay)"
        if opt.get("momentum", 0) != 0 or opt.get("nesterov") or opt.get("maximize"):
            return "model.optimizer.momentum/nesterov/maximize (stacked SGD: plain, momentum 0)"
        return None
    if target not in ADAM:
        return f"model.optimizer._target_={target} (stacked: Adam, AdamW, SGD)"
    if set(opt) - ADAM_KEYS:
        extra = sorted(set(opt) - ADAM_KEYS)[0]
        return f"model.optimizer.{extra} (stacked: lr, betas, eps, weight_decay)"
    return None


def stack_key(unresolved: dict[str, Any]) -> str:
    """The job's config without the keys that may differ: equal keys share a fit."""
    pruned = json.loads(json.dumps(unresolved, default=str))
    mlp = get(pruned, "model.net._target_") in mlp_targets()
    for key in VARYING if mlp else [k for k in VARYING if k not in MLP_VARYING]:
        *parents, last = key.split(".")
        node = get(pruned, ".".join(parents)) if parents else pruned
        if isinstance(node, dict):
            node.pop(last, None)
    return json.dumps(pruned, sort_keys=True)


def split_keys(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two configs."""
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += split_keys(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(f"{prefix}{key}")
    return out
