"""`fit.pt`, what a fit without job dirs left (`compact.py`), as data and nothing else.

`xor-unpack` and a rerun of the sweep read it from the sweep dir, which anyone who can
write there may have changed: a pickle can run any code while it is loaded, so the file
holds plain containers only (dicts, lists, tuples, text, numbers, None, tensors) and is
read with `torch.load(weights_only=True)`, which refuses anything else before any of it
runs. The stacked network is kept as its layout (the parameters' names and each model's
shapes: what slicing one model's weights out needs), the jobs' configs as the first
job's and each other job's differences from it. A file that cannot be read so (altered,
cut short, or written by an earlier version, which pickled the network) is `Unreadable`.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from xor_vectorized.anynet import Slices
from xor_vectorized.fit import GroupResult

FORMAT = 2  # the layout below; the earlier one (pickled objects) had no "format" key
CONFIGS = ("resolved", "unresolved", "hydra", "overrides_yaml")  # what a job dir is written from
EARLIER = "xor_vectorized."  # the classes an earlier fit.pt pickled: its network's


class Unreadable(Exception):
    """Why a fit's file cannot be used, in one line."""


class Layout(Slices):
    """A stacked network's slicing without the network: each parameter's name and each
    model's own shapes (`Slices.take` cuts model k's tensors out of stacked ones)."""

    def __init__(self, names: list[str], shapes: list[list[list[int]]], shape_of: Any) -> None:
        self.names = list(names)
        self._shapes = [[tuple(s) for s in kind] for kind in shapes]
        self._of = torch.as_tensor(shape_of).tolist()

    def __len__(self) -> int:
        return len(self._of)

    def param_shapes(self, k: int) -> list[tuple[int, ...]]:
        return self._shapes[self._of[k]]

    @staticmethod
    def of(net: Any) -> dict[str, Any]:
        """`net`'s layout as plain data (the distinct shapes once, and each model's)."""
        kinds: dict[tuple, int] = {}
        of = [kinds.setdefault(tuple(net.param_shapes(k)), len(kinds)) for k in range(len(net))]
        shapes = [[list(s) for s in kind] for kind in kinds]
        return {"names": list(net.names), "shapes": shapes,
                "shape_of": torch.tensor(of, dtype=torch.int32)}  # fmt: skip


def save(path: Path, result: GroupResult, jobs: list[Any], info: dict[str, Any]) -> None:
    """Write `fit.pt` to `path` (a temporary file: the caller renames it); a value that is
    not plain data is refused here, before the file replaces the last good one."""
    state = {name: getattr(result, name) for name in result.__dataclass_fields__}
    state["extra"] = {k: v for k, v in result.extra.items() if k != "series"}
    state["net"] = Layout.of(result.net)
    first = jobs[0].hydra_files
    base = {name: _config(jobs[0], name) for name in CONFIGS}
    flat = {name: _flat(base[name]) for name in CONFIGS}
    saved = {
        "format": FORMAT,
        "result": state,
        "info": info,
        "jobs": [_job(j) for j in jobs],
        "hydra_dir": str(first[0].relative_to(jobs[0].dir)) if first else None,
        "base": base,
        "deltas": [{n: _delta(flat[n], _config(j, n)) for n in CONFIGS} for j in jobs],
    }
    torch.save(saved, path)
    unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    if unsafe:
        raise TypeError(f"fit.pt would hold objects that are not data: {', '.join(unsafe)}")


def _job(job: Any) -> dict[str, Any]:
    """Where the job's dir goes: Hydra's path for it (`os.path.abspath`, as Hydra makes a
    job's `output_dir`: a symlinked sweep dir stays as it was given, not resolved)."""
    dirname = os.path.abspath(job.dir)
    return {"num": job.num, "overrides": list(job.overrides), "dir": dirname, "digest": job.digest}


def read(path: Path, what: str = "fit.pt") -> Any:
    """`torch.load(path, weights_only=True)`, or `Unreadable` saying why not in one line:
    missing, cut short, or asking to run code (a class or function to import or call)."""
    if not path.is_file():
        raise Unreadable(f"{path} is missing")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the unpickler's notes on protocols
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # torch raises many types for a file it cannot read
        found = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)", str(e))
        name = found and found[1]
        if name and name.startswith(EARLIER) and what == "fit.pt":
            raise Unreadable(f"{path} was written by an earlier version, which pickled the "
                             "stacked network into it, and is not loaded any more (loading it "
                             "would run code)") from None  # fmt: skip
        if name:
            raise Unreadable(f"refusing {path}: loading it would run code ({name}); a {what} "
                             "holds data only") from None  # fmt: skip
        raise Unreadable(f"{path} cannot be read as a {what} (cut short or altered: "
                         f"{type(e).__name__})") from None  # fmt: skip


def load(path: Path) -> dict[str, Any]:
    """A fit dir's `fit.pt`: its `GroupResult` rebuilt (`result`), `info`, `jobs` (num,
    overrides, dir, digest), `hydra_dir`, and what `configs` makes each job's configs from;
    `Unreadable` when it cannot be read, or is not what this version writes."""
    file = path / "fit.pt"
    saved = read(file)
    try:
        if not isinstance(saved, dict) or saved.get("format") != FORMAT:
            raise ValueError("no format mark of this version")
        state = dict(saved["result"])
        state["net"] = Layout(**state["net"])
        result = GroupResult(**state)
        jobs, deltas = saved["jobs"], saved["deltas"]
        if not (len(jobs) == len(deltas) == len(result.net)) or not all(
            isinstance(j, dict) and {"num", "overrides", "dir", "digest"} <= j.keys() for j in jobs
        ):
            raise ValueError("its jobs do not match its models")
        if set(saved["base"]) != set(CONFIGS):
            raise ValueError("no configs")
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as e:
        raise Unreadable(f"{file} is not a fit's data as this version writes it ({e})") from None
    return {"result": result, "info": saved["info"], "jobs": jobs,
            "hydra_dir": saved["hydra_dir"], "base": saved["base"], "deltas": deltas}  # fmt: skip


def check_targets(cfg: dict[str, Any], where: str) -> None:
    """Every `_target_` of a job's resolved config (which `xor-unpack` builds a Trainer,
    a module, callbacks and data from) is one the project's config files name at its place
    (`targets.py`), or one of the optimizers the stacked fit trains with: a config altered
    to name any other function would run it when instantiated, as an altered pickle would.
    `Unreadable` naming the first one that is not."""
    from xor_vectorized import app
    from xor_vectorized.groups import ADAM, SGD

    trusted = app.read("targets").trusted  # what the app's config files name at each place

    for path, target in _targets(cfg, ""):
        allowed = trusted(path) | ({*ADAM, SGD} if path == "model.optimizer" else set())
        if target not in allowed:
            raise Unreadable(
                f"refusing {where}: a job's config names {path}._target_="
                f"{target!r}, which no config file of the project names there"
            )


def _targets(node: Any, path: str) -> Any:
    """(place, target) of every `_target_` in a config, places as `model.net`."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "_target_":
                yield path, value
            else:
                yield from _targets(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for value in node:
            yield from _targets(value, path)


def configs(saved: dict[str, Any], k: int) -> dict[str, Any]:
    """Job k's `CONFIGS` (of `load`'s answer): the first job's with its differences set."""
    return {name: _apply(saved["base"][name], saved["deltas"][k][name]) for name in CONFIGS}


def _config(job: Any, name: str) -> Any:
    if name in ("resolved", "unresolved"):
        return getattr(job, name)
    if job.hydra_files is None:
        return None
    files = job.hydra_files[1]
    return files["hydra.yaml"] if name == "hydra" else files["overrides.yaml"]


def _flat(node: Any, prefix: tuple = ()) -> dict[tuple, Any]:
    """A container's leaves by path (an empty dict or a list is a leaf)."""
    if isinstance(node, dict) and node:
        out: dict[tuple, Any] = {}
        for key, value in node.items():
            out.update(_flat(value, (*prefix, key)))
        return out
    return {prefix: node}


def _delta(base: dict[tuple, Any], node: Any) -> Any:
    """How `node` differs from the base's leaves: [(path, value)], or ("whole", node)
    when its keys differ."""
    flat = _flat(node)
    if flat.keys() != base.keys():
        return ("whole", node)
    return [(p, v) for p, v in flat.items() if type(v) is not type(base[p]) or v != base[p]]


def _copy(node: Any) -> Any:
    """A copy of a config's containers (its leaves are immutable values)."""
    if isinstance(node, dict):
        return {k: _copy(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_copy(v) for v in node]
    return node


def _apply(base: Any, delta: Any) -> Any:
    if isinstance(delta, tuple):
        return delta[1]
    node = _copy(base)
    for path, value in delta:
        if not path:
            return value
        parent = node
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = value
    return node
