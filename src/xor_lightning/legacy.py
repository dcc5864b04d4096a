"""Checkpoints written before tasks and the chapter's `MLP` class, read as today's.

Such a checkpoint's run config has no `task` (they were all binary), keeps
`data.batches_per_chunk` (its run stepped chunks of mini-batches under manual
optimization: today's `model.steps_per_call`), and names `xor_lightning.model.MLP` with a
`depth`, an `nn.Sequential` whose weights are `net.0.*` and `net.2.*`. Upgraded in place:
one hidden layer becomes today's `MLP` (`net.fc1.*`, `net.fc2.*`: the same tensors in the
same order, so the optimizer state still fits), more become `DeepMLP`. A resumed old run
keeps its manual optimization, so its loop state and step counts go on unchanged.
"""

from __future__ import annotations

from typing import Any

MLP, DEEP = "xor_lightning.model.MLP", "xor_lightning.deep_mlp.DeepMLP"
RUN_CONFIG = "run_config"  # where a checkpoint keeps its run's config (checkpoint.py)
BINARY = {"_target_": "xor_lightning.binary.Binary", "monitor": "val/acc", "mode": "max"}
RENAMED = {"0.": "fc1.", "2.": "fc2."}  # nn.Sequential(Linear, Tanh, Linear) -> MLP


def upgrade_net(net: dict[str, Any]) -> dict[str, Any]:
    """An old MLP config: `depth` 1 -> today's MLP, more -> DeepMLP."""
    if net.get("_target_") != MLP or "depth" not in net:
        return net
    depth = net["depth"]
    if depth == 1:
        return {k: v for k, v in net.items() if k != "depth"}
    return {**net, "_target_": DEEP}


def upgrade_config(config: dict[str, Any]) -> dict[str, Any]:
    """An old run config as today's (a new dict; today's is returned as it is)."""
    data, model = config.get("data") or {}, config.get("model") or {}
    if "task" in config and "batches_per_chunk" not in data:
        return config
    config = {**config, "task": config.get("task") or dict(BINARY)}
    model = {**model, "net": upgrade_net(model.get("net") or {})}
    if "batches_per_chunk" in data:
        data = {k: v for k, v in data.items() if k != "batches_per_chunk"}
        model.setdefault("steps_per_call", config["data"]["batches_per_chunk"])
    if model["net"].get("_target_") == MLP:
        model.pop("depth", None)  # the old mlp.yaml's key for the net's depth
    return {**config, "data": data, "model": model}


def upgrade_checkpoint(ckpt: dict[str, Any]) -> None:
    """Upgrade an old checkpoint in place: run config, hyperparameters, weights' names."""
    old_net = ((ckpt.get(RUN_CONFIG) or {}).get("model") or {}).get("net") or {}
    if isinstance(ckpt.get(RUN_CONFIG), dict):
        ckpt[RUN_CONFIG] = upgrade_config(ckpt[RUN_CONFIG])
    hparams = ckpt.get("hyper_parameters")
    if isinstance(hparams, dict) and isinstance(hparams.get("net"), dict):
        if not hparams.get("task"):
            chunk = (ckpt.get("datamodule_hyper_parameters") or {}).get("batches_per_chunk")
            hparams.setdefault("steps_per_call", chunk or 1)
        old_net = old_net or hparams["net"]
        hparams["net"] = upgrade_net(hparams["net"])
    data = ckpt.get("datamodule_hyper_parameters")
    if isinstance(data, dict):
        data.pop("batches_per_chunk", None)
    if upgrade_net(old_net).get("_target_") == MLP and "depth" in old_net:
        state = ckpt.get("state_dict") or {}
        for key in [k for k in state if k.startswith(("net.0.", "net.2."))]:
            rest = key.removeprefix("net.")
            state[f"net.{RENAMED[rest[:2]]}{rest[2:]}"] = state.pop(key)
