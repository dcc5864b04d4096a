"""Continue a vectorised group from its jobs' own `last.ckpt` files.

The jobs' checkpoints are the only record of an interrupted group (each can also be
resumed alone with `resume=<job dir>`), so resuming the group means joining them: each
job's weights, Adam state and best checkpoint go into its slice of the stacked module,
and the loop state, the same for every job stopped at the same step, is the group's.
The result is an ordinary Lightning checkpoint of the stacked module, which `fit`
restores as it restores any.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from xor_vectorized.checkpoints import best_state
from xor_vectorized.module import StackedModule
from xor_vectorized.net import StackedAdam


def _net_state(ckpt: dict[str, Any]) -> dict[str, Tensor]:
    return {
        k.removeprefix("net."): v for k, v in ckpt["state_dict"].items() if k.startswith("net.")
    }


def _adam(ckpt: dict[str, Any]) -> list[dict[str, Tensor]]:
    state = ckpt["optimizer_states"][0]["state"]
    return [state[i] for i in sorted(state)]


def stacked_checkpoint(module: StackedModule, lasts: list[Path]) -> dict[str, Any]:
    """A checkpoint of `module` that holds job k's `lasts[k]` (its last.ckpt) in slice k."""
    ckpts = [torch.load(p, map_location="cpu", weights_only=True) for p in lasts]
    ckpt_dirs = [p.parent for p in lasts]
    net = module.net
    opt = module.configure_optimizers()
    params = net.flat_params()
    adam = isinstance(opt, StackedAdam)  # plain SGD has no state to join
    for p in params if adam else []:
        opt.state[p] = {
            "step": torch.zeros(len(p)),
            "exp_avg": torch.zeros_like(p),
            "exp_avg_sq": torch.zeros_like(p),
        }
    best: dict[str, Any] = {}
    for k, (ckpt, ckpt_dir) in enumerate(zip(ckpts, ckpt_dirs, strict=True)):
        net.load_net_state(k, _net_state(ckpt))
        if adam:
            _load_adam(opt, params, net, k, _adam(ckpt))
        state = best_state(ckpt)
        if state is not None:
            path = ckpt_dir / Path(state["best_model_path"]).name
            if path.is_file():
                _join_best(
                    best, module, opt, k, torch.load(path, map_location="cpu", weights_only=True)
                )
    first = ckpts[0]
    return {
        "epoch": first["epoch"],
        "global_step": first["global_step"],
        "pytorch-lightning_version": first["pytorch-lightning_version"],
        "state_dict": module.state_dict(),
        "loops": first["loops"],
        "callbacks": {},
        "optimizer_states": [opt.state_dict()],
        "lr_schedulers": [],
        "stacked_best": best,
    }


def _load_adam(
    opt: Any, params: list[Tensor], net: Any, k: int, states: list[dict[str, Tensor]]
) -> None:
    for p, st in zip(params, states, strict=True):
        opt.state[p]["step"][k] = st["step"]
    for key in ("exp_avg", "exp_avg_sq"):
        net.put([opt.state[p][key] for p in params], k, [st[key] for st in states])


def _join_best(
    best: dict[str, Any], module: StackedModule, opt: Any, k: int, ckpt: dict[str, Any]
) -> None:
    """Job k's best checkpoint into the module's record of each model's best."""
    net, K = module.net, len(module.net)
    params = net.flat_params()
    if not best:
        best.update(
            score=torch.full((K,), float("nan")),
            epoch=torch.full((K,), -1, dtype=torch.long),
            step=torch.full((K,), -1, dtype=torch.long),
            params=[torch.zeros_like(p) for p in params],
            state=[{n: torch.zeros_like(v) for n, v in opt.state[p].items()} for p in params],
            loops={},
            metrics={},
        )
    state = best_state(ckpt)
    best["score"][k] = float(state["best_model_score"]) if state else float("nan")
    best["epoch"][k], best["step"][k] = ckpt["epoch"], ckpt["global_step"]
    weights, adam = _net_state(ckpt), _adam(ckpt)
    net.put(best["params"], k, [weights[name] for name in net.names])
    for i, st in enumerate(adam):
        best["state"][i]["step"][k] = st["step"]
    for key in ("exp_avg", "exp_avg_sq") if adam else ():
        net.put([s[key] for s in best["state"]], k, [st[key] for st in adam])
    best["loops"][int(ckpt["epoch"])] = ckpt["loops"]["fit_loop"]
    best["metrics"][k] = dict(ckpt.get("metrics", {}))
