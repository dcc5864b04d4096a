"""One Lightning fit for a group of sweep jobs: the vectorised launcher's engine.

`stack_problem` says why a job cannot share a fit (then it runs as a run of its own),
`stack_key` which jobs can share one, and `fit_group` trains them: each job's net
initialised from its own seed as `train.build` does, its own data and batches (its own
`XORDataModule`), its own optimizer values, all in a `StackedModule` that the Trainer
runs with the job's own trainer settings. What each job leaves behind is written by
`job_outputs.py`.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

log = logging.getLogger(__name__)

# Keys whose values may differ between the jobs of one fit; everything else must match.
VARYING = (
    "seed",
    "data.seed",
    "data.noise",
    "data.problem",
    "model.hidden",
    "model.activation",
    "model.net.hidden",
    "model.net.activation",
    "model.optimizer.lr",
    "model.optimizer.betas",
    "model.optimizer.eps",
    "model.optimizer.weight_decay",
)
ADAM = {"torch.optim.Adam": False, "torch.optim.AdamW": True}  # target -> decoupled decay
ADAM_KEYS = {"_target_", "_partial_", "lr", "betas", "eps", "weight_decay", "fused", "foreach"}
CALLBACKS = {
    "xor_lightning.callbacks.LastCheckpoint",
    "xor_lightning.callbacks.HiddenUnitsPlot",
    "xor_lightning.callbacks.ParameterHistograms",
    "xor_lightning.callbacks.EpochPrinter",
    "xor_lightning.callbacks.GracefulStop",
    "xor_lightning.callbacks.BoundaryPlot",
    "lightning.pytorch.callbacks.ModelCheckpoint",
}
BEST_KEYS = {"_target_", "dirpath", "filename", "auto_insert_metric_name", "monitor", "mode",
             "save_top_k"}  # fmt: skip
MONITORS = {"val/acc", "val/loss"}
LOGGERS = {"xor_lightning.tb_logger.StageLogger"}


def _get(cfg: dict[str, Any], key: str, default: Any = None) -> Any:
    for part in key.split("."):
        if not isinstance(cfg, dict) or part not in cfg:
            return default
        cfg = cfg[part]
    return cfg


def stack_problem(cfg: dict[str, Any]) -> str | None:
    """Why this job (its resolved config) must run as a fit of its own; None if it can stack."""
    opt = cfg["model"]["optimizer"]
    if opt.get("_target_") not in ADAM:
        return f"model.optimizer._target_={opt.get('_target_')} (stacked: Adam, AdamW)"
    if set(opt) - ADAM_KEYS:
        extra = sorted(set(opt) - ADAM_KEYS)[0]
        return f"model.optimizer.{extra} (stacked: lr, betas, eps, weight_decay)"
    if cfg["model"]["net"].get("_target_") != "xor_lightning.model.MLP":
        return f"model.net._target_={cfg['model']['net'].get('_target_')}"
    if cfg["data"].get("_target_") != "xor_lightning.datamodule.XORDataModule":
        return f"data._target_={cfg['data'].get('_target_')}"
    if cfg.get("ckpt_path") or cfg.get("resume"):
        return "ckpt_path/resume (a job that continues a checkpoint)"
    for name, cb in (cfg.get("callbacks") or {}).items():
        if cb and cb.get("_target_") not in CALLBACKS:
            return f"callbacks.{name} ({cb.get('_target_')})"
        if cb and cb.get("_target_") == "lightning.pytorch.callbacks.ModelCheckpoint":
            extra = set(cb) - BEST_KEYS
            if extra or cb.get("save_top_k", 1) != 1 or cb.get("monitor") not in MONITORS:
                what = sorted(extra)[0] if extra else "save_top_k/monitor"
                return f"callbacks.{name}.{what} (stacked: the best on val/acc or val/loss)"
    for name, lg in (cfg.get("logger") or {}).items():
        if lg and lg.get("_target_") not in LOGGERS:
            return f"logger.{name} ({lg.get('_target_')})"
    if cfg.get("scheduler"):
        return f"scheduler={cfg['scheduler'].get('_target_')} (stacked: a constant rate)"
    trainer = cfg["trainer"]
    for key, plain in (("limit_train_batches", 1.0), ("val_check_interval", 1.0)):
        if trainer.get(key, plain) != plain:
            return f"trainer.{key}={trainer[key]} (stacked: whole epochs)"
    devices = cfg["trainer"].get("devices", 1)
    if devices not in (1, "1", "auto") or cfg["trainer"].get("num_nodes", 1) != 1:
        return f"trainer.devices={devices} (stacked fits use one device)"
    return None


def stack_key(unresolved: dict[str, Any]) -> str:
    """The job's config without the keys that may differ: equal keys share a fit."""
    pruned = json.loads(json.dumps(unresolved, default=str))
    for key in VARYING:
        *parents, last = key.split(".")
        node = _get(pruned, ".".join(parents)) if parents else pruned
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


def init_net(cfg: dict[str, Any]) -> Any:
    """The job's freshly initialised net and its datamodule, drawn as `train.build` draws them
    (seeded, then built in the same order; tests/test_stacked.py checks it bit for bit)."""
    import lightning as L

    from xor_lightning.datamodule import XORDataModule
    from xor_lightning.model import MLP

    def args(node: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in node.items() if not k.startswith("_")}

    L.seed_everything(cfg["seed"], workers=True, verbose=False)
    datamodule = XORDataModule(**args(cfg["data"]))  # `stack_problem` checked the targets
    return MLP(**args(cfg["model"]["net"])), datamodule


@dataclass
class GroupResult:
    """What a group's fit leaves for its jobs' outputs (all tensors on the CPU)."""

    last: list[Tensor]  # stacked params, MLP order
    last_state: list[dict[str, Tensor]]  # stacked Adam state per param
    loops: dict[str, Any]
    epoch: int
    global_step: int
    best: dict[str, Any]
    history: dict[str, list[tuple[int, int, Tensor]]]
    tested: dict[str, Tensor]
    failed_at: Tensor
    failed_loss: Tensor
    signal: int | None
    stopped_at: Tensor  # the epoch an Optuna pruner stopped a model at, or -1
    stopped_loops: dict[int, dict[str, Any]]
    net: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    def series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """`key`'s history as arrays: the epochs (E,) and every model's values (E, K)."""
        cache = self.extra.setdefault("series", {})
        if key not in cache:
            rows = self.history.get(key, [])
            epochs = np.array([e for e, _, _ in rows], dtype=np.int64)
            values = np.stack([v.numpy() for _, _, v in rows]) if rows else np.zeros((0, 0))
            cache[key] = (epochs, values)
        return cache[key]


def _hyper(cfgs: list[dict[str, Any]], decoupled: bool) -> dict[str, Tensor]:
    """Each job's optimizer values, with torch's defaults for those it leaves out."""

    def values(key: str, default: Any) -> Tensor:
        return torch.tensor(
            [c["model"]["optimizer"].get(key, default) for c in cfgs], dtype=torch.float64
        )

    betas = values("betas", (0.9, 0.999))
    return {
        "lr": values("lr", 1e-3),
        "beta1": betas[:, 0],
        "beta2": betas[:, 1],
        "eps": values("eps", 1e-8),
        "weight_decay": values("weight_decay", 1e-2 if decoupled else 0.0),
    }


def fit_group(
    cfgs: list[dict[str, Any]],
    root_dir: str,
    resume: list[Path] | None = None,
    callbacks: list[Any] = (),
    pictures: bool = False,
) -> GroupResult:
    """Train the jobs whose resolved configs are `cfgs` as one fit; test each best model.

    `resume`: the jobs' own `last.ckpt` files (all saved at the same step) to continue from.
    `callbacks`: more Lightning callbacks for the fit (they may call `snapshot`).
    `pictures`: keep what a run's pictures and histograms are drawn from (small groups).
    """
    from hydra.utils import instantiate

    from xor_lightning.callbacks import GracefulStop
    from xor_lightning.config import quiet_known_warnings
    from xor_lightning.stacked.checkpoints import quiet_lightning
    from xor_lightning.stacked.data import StackedDataModule
    from xor_lightning.stacked.module import StackedModule
    from xor_lightning.stacked.net import StackedMLP
    from xor_lightning.stacked.resume import stacked_checkpoint

    quiet_known_warnings()  # as a run's `build` does
    first = cfgs[0]
    nets, datamodules = zip(*(init_net(c) for c in cfgs), strict=True)
    net = StackedMLP(nets, [c["model"]["net"]["activation"] for c in cfgs])
    decoupled = ADAM[first["model"]["optimizer"]["_target_"]]
    best_cfg = _get(first, "callbacks.best_checkpoint") or {}
    module = StackedModule(
        net,
        _hyper(cfgs, decoupled),
        decoupled,
        first["model"].get("gradient_clip_val"),
        monitor=best_cfg.get("monitor", "val/acc"),
        mode=best_cfg.get("mode", "max"),
    )
    module.print_every_n_epochs = (_get(first, "callbacks.epoch_printer") or {}).get(
        "every_n_epochs", 100
    )
    if pictures:
        every = [(_get(first, f"callbacks.{name}") or {}).get("every_n_epochs", 0)
                 for name in ("boundary_plot", "hidden_units_plot", "histograms")]  # fmt: skip
        module.snapshot_every = min((e for e in every if e > 0), default=0)
    stop = GracefulStop()
    trainer_cfg = {k: v for k, v in first["trainer"].items() if k != "default_root_dir"}
    datamodule = StackedDataModule(list(datamodules))
    with quiet_lightning():
        trainer = instantiate(
            trainer_cfg,
            callbacks=[stop, *callbacks],
            logger=False,
            enable_checkpointing=False,
            default_root_dir=root_dir,
        )
        if resume:  # an ordinary checkpoint of the stacked module, joined from the jobs' own
            joined = Path(root_dir) / f".resume-{os.getpid()}.ckpt"
            torch.save(stacked_checkpoint(module, resume), joined)
            try:
                trainer.fit(module, datamodule=datamodule, ckpt_path=joined)
            finally:
                joined.unlink(missing_ok=True)
        else:
            trainer.fit(module, datamodule=datamodule)
    result = snapshot(trainer, module)
    result.signal = stop.signal
    if pictures:
        result.extra["data"] = {n: (d.X.cpu(), d.y.cpu()) for n, d in datamodule.sets.items()}
    if stop.signal is None:
        if module.best:  # the best weights are what is tested, as in a run alone
            with torch.no_grad():
                for p, b in zip(net.flat_params(), module.best["params"], strict=True):
                    p.copy_(b)
        with quiet_lightning():
            trainer.test(module, datamodule=datamodule, verbose=False)
        result.tested = {k: v.cpu() for k, v in module.tested.items()}
    return result


def snapshot(trainer: Any, module: Any) -> GroupResult:
    """The group's state now, on the CPU: what its jobs' outputs are written from."""
    params = module.net.flat_params()
    opt = trainer.optimizers[0]
    return GroupResult(
        last=[p.detach().cpu().clone() for p in params],
        last_state=[{k: v.cpu().clone() for k, v in opt.state[p].items()} for p in params],
        loops=trainer.fit_loop.state_dict(),
        epoch=trainer.current_epoch,
        global_step=trainer.global_step,
        best=_to_cpu(module.best),
        history={k: [(e, s, v.cpu()) for e, s, v in vs] for k, vs in module.history.items()},
        tested={},
        failed_at=module.failed_at.cpu(),
        failed_loss=module.failed_loss.cpu(),
        signal=None,
        stopped_at=module.stopped_at.cpu(),
        stopped_loops=dict(module.stopped_loops),
        extra={"batches_per_epoch": module.batches_per_epoch, "snapshots": module.snapshots},
        net=module.net,
    )


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, Tensor):
        return obj.cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    return obj
