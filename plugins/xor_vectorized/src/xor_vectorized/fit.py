"""One Lightning fit for a group of sweep jobs (`groups.py` says which): the engine.

`fit_group` trains them: each job's net initialised from its own seed as `train.build`
does, its own data and batches (its own `XORDataModule`), its own optimizer values, all
in a `StackedModule` that the Trainer runs with the job's own trainer settings. What each
job leaves behind is written by `outputs.py` from the `GroupResult`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from xor_vectorized.groups import ADAM, SGD, get

log = logging.getLogger(__name__)


def curve_keys(metric_names: Any = ("acc",)) -> tuple[str, ...]:
    """Each job's curves, one point an epoch: the losses, the task's metrics, the rate."""
    train, val = ([f"{stage}/{m}" for m in metric_names] for stage in ("train", "val"))
    return ("train/loss", *train, "train/lr", "val/loss", *val)


def xor_data() -> str:
    """The `_target_` of the app's own datamodule, which has a faster stacked form (data.py)."""
    from xor_vectorized import app

    return app.target("datamodule", "XORDataModule")


def init_net(cfg: dict[str, Any]) -> Any:
    """The job's freshly initialised net and its datamodule, drawn as `train.build` draws them
    (seeded, then built in the same order; tests/test_stacked.py checks it bit for bit)."""
    import random

    import numpy as np
    import torch

    from xor_vectorized import app
    from xor_vectorized.anydata import make_datamodule

    # `seed_everything`'s generators, on the CPU where nets and data are built:
    # `torch.manual_seed` also queues a CUDA seeding with a stack trace, a third of this.
    random.seed(cfg["seed"])
    np.random.seed(cfg["seed"])
    torch.default_generator.manual_seed(cfg["seed"])
    datamodule = make_datamodule(cfg["data"])
    return app.read("targets").make_net(cfg["model"]["net"]), datamodule


def stacked_net(cfgs: list[dict[str, Any]], nets: list[Any]) -> Any:
    """The chapter's MLPs padded to one (`StackedMLP`: widths may differ), any other
    network stacked as it is (`StackedNet`: one config, one set of shapes)."""
    from xor_vectorized.anynet import StackedNet
    from xor_vectorized.groups import mlp_targets
    from xor_vectorized.net import StackedMLP

    if cfgs[0]["model"]["net"]["_target_"] in mlp_targets():
        return StackedMLP(nets, [c["model"]["net"]["activation"] for c in cfgs])
    return StackedNet(nets)


@dataclass
class GroupResult:
    """What a group's fit leaves for its jobs' outputs (all tensors on the CPU)."""

    last: list[Tensor]  # stacked params, MLP order
    last_state: list[dict[str, Tensor]]  # stacked optimizer state per param (SGD: none)
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

    @property
    def metric_names(self) -> tuple[str, ...]:
        """The task's metrics (acc, or mse and mae); a fit saved before tasks: binary."""
        return tuple(self.extra.get("metric_names", ("acc",)))

    @property
    def curves(self) -> tuple[str, ...]:
        return curve_keys(self.metric_names)

    def series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """`key`'s history as arrays: the epochs (E,) and every model's values (E, K)."""
        cache = self.extra.setdefault("series", {})
        if key not in cache:
            rows = self.history.get(key, [])
            epochs = np.array([e for e, _, _ in rows], dtype=np.int64)
            values = np.stack([v.numpy() for _, _, v in rows]) if rows else np.zeros((0, 0))
            cache[key] = (epochs, values)
        return cache[key]


def optimizer_kind(cfg: dict[str, Any]) -> tuple[str, bool]:
    """The stacked optimizer a job's config asks for: ("adam", decoupled) or ("sgd", False)."""
    target = cfg["model"]["optimizer"]["_target_"]
    return ("sgd", False) if target == SGD else ("adam", ADAM[target])


def _hyper(cfgs: list[dict[str, Any]], kind: str, decoupled: bool, net: Any) -> dict[str, Tensor]:
    """Each job's optimizer values, with torch's defaults for those it leaves out.

    `lr` is each job's first parameter group's rate (what its run logs as train/lr);
    with `model.lr_hidden`/`model.lr_out` set, `lr_layers` (parameters x jobs) holds each
    job's rate for each of the stacked net's parameters: the output layer's (the last
    weight and bias) `lr_out`, the others `lr_hidden`, either one the optimizer's `lr` when
    null, as the parameter groups of `XORModule.configure_optimizers` hold them.
    """

    def values(key: str, default: Any) -> Tensor:
        return torch.tensor(
            [c["model"]["optimizer"].get(key, default) for c in cfgs], dtype=torch.float64
        )

    def rate(key: str) -> Tensor:
        picked = [c["model"].get(key) for c in cfgs]
        return torch.where(torch.tensor([v is None for v in picked]), lr,
                           torch.tensor([0.0 if v is None else v for v in picked],
                                        dtype=torch.float64))  # fmt: skip

    lr = values("lr", 1e-3)
    hidden, out = rate("lr_hidden"), rate("lr_out")
    hyper = {"lr": hidden, "weight_decay": values("weight_decay", 1e-2 if decoupled else 0.0)}
    if any(c["model"].get(k) is not None for c in cfgs for k in ("lr_hidden", "lr_out")):
        n = len(net.flat_params())  # the chapter's MLP (classes.py): w0, b0, ..., w_out, b_out
        hyper["lr_layers"] = torch.stack([hidden] * (n - 2) + [out] * 2)
    if kind == "sgd":
        return hyper
    betas = values("betas", (0.9, 0.999))
    return {**hyper, "beta1": betas[:, 0], "beta2": betas[:, 1], "eps": values("eps", 1e-8)}


def logging_step(result: GroupResult, epochs: Any) -> Any:
    """Lightning's logging step at the end of each of `epochs` (an int or an array): the
    training batches stepped by then, less one; the last epoch may end early
    (`trainer.max_steps`)."""
    n = result.extra["batches_per_epoch"]
    stepped = result.extra.get("batches_stepped", np.iinfo(np.int64).max)  # (older fits: none)
    return np.minimum((np.asarray(epochs) + 1) * n, stepped) - 1


def fit_group(
    cfgs: list[dict[str, Any]],
    root_dir: str,
    resume: list[Path] | Path | None = None,
    callbacks: list[Any] = (),
    pictures: bool = False,
    last_path: Path | None = None,
) -> GroupResult:
    """Train the jobs whose resolved configs are `cfgs` as one fit; test each best model.

    `resume`: the jobs' own `last.ckpt` files (all saved at the same step) to continue from,
    or one checkpoint of the stacked module (a fit without job dirs: `compact.py`).
    `callbacks`: more Lightning callbacks for the fit (they may call `snapshot`).
    `pictures`: keep what a run's pictures and histograms are drawn from (small groups).
    `last_path`: where the stacked module's checkpoint goes if the fit stops on a signal.
    """
    from hydra.utils import instantiate
    from lightning.pytorch.callbacks import Checkpoint

    from xor_vectorized import app
    from xor_vectorized.checkpoints import quiet_lightning
    from xor_vectorized.data import StackedDataModule
    from xor_vectorized.module import StackedModule
    from xor_vectorized.resume import stacked_checkpoint

    app.read("config").quiet_known_warnings()  # as a run's `build` does
    first = cfgs[0]
    nets, datamodules = zip(*(init_net(c) for c in cfgs), strict=True)
    net = stacked_net(cfgs, list(nets))
    kind, decoupled = optimizer_kind(first)
    best_cfg = get(first, "callbacks.best_checkpoint") or {}
    module = StackedModule(
        net,
        _hyper(cfgs, kind, decoupled, net),
        decoupled,
        first["model"].get("gradient_clip_val"),
        monitor=best_cfg.get("monitor", "val/acc"),
        mode=best_cfg.get("mode", "max"),
        optimizer=kind,
        steps_per_call=first["model"].get("steps_per_call", 1),
        task=app.read("tasks").make_task(first.get("task")),
    )
    module.print_every_n_epochs = (get(first, "callbacks.epoch_printer") or {}).get(
        "every_n_epochs", 100
    )
    if pictures:
        every = [(get(first, f"callbacks.{name}") or {}).get("every_n_epochs", 0)
                 for name in ("boundary_plot", "hidden_units_plot", "histograms")]  # fmt: skip
        module.snapshot_every = min((e for e in every if e > 0), default=0)
    stop = app.read("callbacks").GracefulStop()
    trainer_cfg = {k: v for k, v in first["trainer"].items() if k != "default_root_dir"}
    steps = first["model"].get("steps_per_call", 1)
    if all(c["data"].get("_target_") == xor_data() for c in cfgs):
        datamodule: Any = StackedDataModule(list(datamodules), steps if steps > 1 else None)
    else:  # any datamodule: each job's own loaders, stepped together
        from xor_vectorized.anydata import JobsDataModule

        datamodule = JobsDataModule(list(datamodules))
    with quiet_lightning():
        trainer = instantiate(
            trainer_cfg,
            callbacks=[stop, *callbacks],
            logger=False,
            # no ModelCheckpoint of Lightning's own: the jobs' are written from the results
            enable_checkpointing=any(isinstance(c, Checkpoint) for c in callbacks),
            default_root_dir=root_dir,
        )
        if isinstance(resume, Path):
            trainer.fit(module, datamodule=datamodule, ckpt_path=resume)
        elif resume:  # an ordinary checkpoint of the stacked module, joined from the jobs' own
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
    if stop.signal is not None and last_path is not None:  # the fit resumes from it
        app.read("files").write_atomically(last_path, trainer.save_checkpoint)
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
    loops = trainer.fit_loop.state_dict()
    return GroupResult(
        last=[p.detach().cpu().clone() for p in params],
        last_state=[{k: v.cpu().clone() for k, v in opt.state[p].items()} for p in params],
        loops=loops,
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
        extra={
            "batches_per_epoch": module.batches_per_epoch,
            # the loop's count of training batches stepped (its checkpoint's)
            "batches_stepped": loops["epoch_loop.state_dict"]["_batches_that_stepped"],
            "snapshots": module.snapshots,
            "best_at_epoch_end": module.best_at_epoch_end,
            "metric_names": module.task.metric_names,
        },
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
