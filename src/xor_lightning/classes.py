"""The checks that follow the classes a config names: its network (`model.net._target_`),
its LightningModule (`model._target_`, a copier's own), its task and its datamodule
(`data._target_`), the chapter's or a copier's own.

A class is accepted when a config file of the project names it at that place (see
`checkpoint.trusted`), and the keys beside it are its arguments, read from its signature:
there is no list of networks or keys to edit. A sweep over a key the network does not take
is refused before the sweep starts (`SweptKeysCheck`, a Hydra callback in conf/train.yaml).
"""

from __future__ import annotations

import functools
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from xor_lightning.errors import UserError, refuse
from xor_lightning.plain import at
from xor_lightning.targets import DATA, NET, own_module, target_class, trusted

# What `model.*` holds besides the network's own arguments (read by XORModule).
MODEL_KEYS = ("net", "optimizer", "gradient_clip_val", "steps_per_call")
# The chapter's MLPs' per-layer learning rates (read by XORModule): their layers are Linear.
MLP_KEYS = ("lr_hidden", "lr_out")
MLP_TARGETS = ("xor_lightning.model.MLP", "xor_lightning.deep_mlp.DeepMLP")


def arguments(cls: type) -> tuple[list[str], bool]:
    """A class's keyword arguments, and whether it takes any (`**kwargs`)."""
    names, any_kwargs = _arguments(cls)
    return list(names), any_kwargs


@functools.lru_cache(maxsize=256)
def _arguments(cls: type) -> tuple[tuple[str, ...], bool]:
    """`arguments`, read once a class (a sweep checks thousands of jobs' configs)."""
    import inspect

    params = inspect.signature(cls).parameters.values()
    names = [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    return tuple(names), any(p.kind == p.VAR_KEYWORD for p in params)


def _target(node: Any, where: str, kind: str) -> type:
    """The class `node._target_` names: one the project's config files name, importable."""
    target = node.get("_target_")
    if target not in trusted(where):
        raise UserError(
            f"{where}._target_={target!r} is named by no config file of the project: add a "
            f"YAML under conf/{where.split('.')[0]}/ that names it ({kind})"
        )
    return target_class({"_target_": target}, where)[0]


def check_module(cfg: Any) -> None:
    """A LightningModule of your own (`model._target_`): a trusted LightningModule class
    whose arguments are the `model.*` keys; the shipped one's network (`check_net`)."""
    import lightning as L

    if not own_module(cfg):
        return check_net(cfg)
    _check_class(cfg, "model", L.LightningModule, "your LightningModule")


def _check_class(cfg: Any, where: str, base: type, kind: str) -> None:
    """`<where>._target_` is a trusted subclass of `base`; every `<where>.*` key is one of
    its arguments."""
    node = at(cfg, where)
    cls, target = _target(node, where, kind), at(node, "_target_")
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise UserError(f"{where}._target_={target} is not a {base.__name__} class")
    names, any_kwargs = arguments(cls)
    for key in node:
        if not any_kwargs and not str(key).startswith("_") and key not in names:
            raise UserError(
                f"unknown key {where}.{key}: known keys are _target_ and the arguments of "
                f"{target} ({', '.join(names) or 'none'})"
            )


def check_net(cfg: Any) -> None:
    """`model.net._target_` is a trusted nn.Module class; every other `model.*` key and every
    `model.net.*` key is one of its arguments (of a DictConfig or its plain containers)."""
    import torch

    model = at(cfg, "model")
    net = model.get("net")
    if not isinstance(net, (DictConfig, dict)):
        raise UserError("model.net is required: the network's _target_ and its arguments")
    cls = _target(net, NET, "your network")
    target = at(net, "_target_")
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise UserError(f"model.net._target_={target} is not a torch.nn.Module class")
    names, any_kwargs = arguments(cls)
    if any_kwargs:
        return
    takes = f"{target} takes {', '.join(names) or 'no arguments'}"
    known = MODEL_KEYS + (MLP_KEYS if target in MLP_TARGETS else ())
    for key in model:
        if key not in known and key not in names:
            raise UserError(
                f"unknown key model.{key}: known keys are {', '.join(known)} and the "
                f"network's arguments ({takes})"
            )
    for key in net:
        if not str(key).startswith("_") and key not in names:
            raise UserError(f"unknown key model.net.{key}: {takes}")


def check_data(cfg: Any) -> None:
    """`data._target_` is a trusted LightningDataModule class; every `data.*` key is one of
    its arguments (of a DictConfig or its plain containers)."""
    import lightning as L

    _check_class(cfg, DATA, L.LightningDataModule, "your LightningDataModule")


def check_swept_keys(cfg: DictConfig) -> None:
    """Refuse a sweep (hydra.sweeper.params or a command-line sweep) over a `model.*` key
    that the network does not take, e.g. the shipped Optuna search's model.hidden with a
    network of your own: one line before any job runs."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = OmegaConf.select(cfg, "hydra.sweeper.params") or {}
    lines = [f"{k}={v}" for k, v in params.items()]
    lines += list(OmegaConf.select(cfg, "hydra.overrides.task") or [])
    overrides = [o for o in OverridesParser.create().parse_overrides(lines)]
    swept = {o.key_or_group for o in overrides if o.is_sweep_override()}
    model = cfg.get("model")
    if "model" in swept or not isinstance(model, DictConfig) or "_target_" in model:
        return  # several networks, or a module of your own: each job's own check decides
    try:
        target = cfg.model.net._target_
        names, any_kwargs = arguments(target_class({"_target_": target}, NET)[0])
    except Exception:
        return  # the jobs' own check says what is wrong
    for key in sorted(swept):
        parts = [*key.split("."), ""]
        if parts[0] != "model" or (parts[1] in MODEL_KEYS + MLP_KEYS and parts[1] != "net"):
            continue  # not the network's, or read by XORModule (model.optimizer.lr)
        name = parts[2] if parts[1] == "net" else parts[1]
        if any_kwargs or not name or name.startswith("_") or name in names:
            continue
        where = "hydra.sweeper.params" if key in {str(k).lstrip("+") for k in params} else "-m"
        raise UserError(
            f"the sweep searches {key} ({where}), which {target} does not take (it takes "
            f"{', '.join(names) or 'nothing'}): search your network's keys instead (for "
            "hparams_search, a YAML of your own under conf/hparams_search/)"
        )


class SweptKeysCheck(Callback):
    """Hydra callback: `check_swept_keys` before a multirun starts (before its dir exists)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            check_swept_keys(config)
        except UserError as e:  # before Hydra's logging exists: stderr, like run_app
            refuse(e)
