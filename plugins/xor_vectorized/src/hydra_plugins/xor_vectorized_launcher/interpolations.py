"""What a config's interpolations read, and the simplest ones' values without OmegaConf.

The jobs of one shape (`hydra_plugins.xor_sweeper.shapes`) differ in a few values and in
their own `hydra.job.*`/`hydra.runtime.output_dir`; an interpolation that reads none of
them resolves the same for every job, and OmegaConf resolves it once (`template.py`).
Resolving one costs 0.1 to 0.4 ms (most of it parsing the string), and every job's paths
(`${paths.output_dir}/checkpoints`) read its own output dir, so the commonest form, text
and node references (`${a.b}`, `${..x}`, `${hydra:runtime.output_dir}`), is evaluated here
the way OmegaConf's `GrammarVisitor.visitText` evaluates it: a lone reference is the value
it refers to, as it is; otherwise the text and each value's `str()`, joined. Anything else
(escapes, other resolvers, brackets, spaces) is `Leaf.parts = None`: OmegaConf resolves it
for each job that may change it. A reference is read conservatively: a resolver this
module does not know to read only its arguments may read anything.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from xor_vectorized import app

Path = tuple[Any, ...]  # dict keys (str) and list indices (int), from the config's root
ABSENT = object()  # what `get_path` finds where a path leads nowhere

_KEY = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
_SIMPLE = re.compile(rf"\$\{{(?:(\.*)({_KEY})|hydra:({_KEY}))\}}")
_TEXT = re.compile(r"[^${}\\]*")
_REF = re.compile(rf"\$\{{\s*(\.*)({_KEY})\s*\}}")
_RESOLVER = re.compile(r"\$\{\s*([A-Za-z_][\w.]*)\s*:")
# Resolvers that read nothing but their arguments (`${n_features:${data}}` reads `data`),
# and give the same value for the same arguments throughout a sweep (`now` and `pid` are
# cached in the sweep's config, which every job's copies).
ARGUMENTS_ONLY = {"now", "pid", "oc.env", "oc.decode", "coalesce", "n_features"}
# Of those, the ones given a whole node that read only some of its keys (`n_features` reads
# `data.problem`, not `data.seed`, which varies in a seed sweep): the app's `config` says.
READS = {"n_features": "N_FEATURES_READS"}
_ONE_NODE = re.compile(rf"\$\{{([A-Za-z_][\w.]*):\$\{{(\.*)({_KEY})\}}\}}")
# `${oc.select:task.num_classes,1}`: reads the key it names (from the root), else a literal
_SELECT = re.compile(rf"\$\{{oc\.select:\s*({_KEY})\s*(?:,[^${{}}\\]*)?\}}")


class Leaf(NamedTuple):
    path: Path
    refs: list[Path] | None  # every node it may read; None: anything
    parts: list[Any] | None  # text (str) and references (Path); None: not evaluated here


def absolute(container: Path, dots: str, key: str) -> Path | None:
    """The path `${<dots><key>}` refers to from a value in `container`; None above the root."""
    names = tuple(key.split("."))
    if not dots:
        return names
    up = len(dots) - 1
    if up > len(container):
        return None
    return container[: len(container) - up] + names


def analyse(path: Path, text: str) -> Leaf:
    """What the interpolation at `path` reads, and its parts when it is text and references."""
    container, parts, refs, at = path[:-1], [], [], 0
    while at < len(text):
        plain = _TEXT.match(text, at)
        assert plain is not None
        if plain.end() > at:
            parts.append(plain.group())
            at = plain.end()
            continue
        ref = _SIMPLE.match(text, at)
        target = ref and (
            ("hydra", *ref.group(3).split(".")) if ref.group(3)
            else absolute(container, ref.group(1), ref.group(2))
        )  # fmt: skip
        if not ref or target is None:
            return Leaf(path, _refs(container, text), None)
        parts.append(target)
        refs.append(target)
        at = ref.end()
    return Leaf(path, refs, parts)


def _refs(container: Path, text: str) -> list[Path] | None:
    """Every node an interpolation that is not text and references may read: the nodes it
    names, when every resolver it calls reads only its arguments; else None (anything)."""
    select = _SELECT.fullmatch(text)
    if select:
        return [tuple(select.group(1).split("."))]
    one = _ONE_NODE.fullmatch(text)
    if one and one.group(1) in READS:  # `${n_features:${data}}`: the keys it reads
        node = absolute(container, one.group(2), one.group(3))
        keys = getattr(app.read("config"), READS[one.group(1)])
        return None if node is None else [(*node, key) for key in keys]
    names = _RESOLVER.findall(text)
    found = _REF.findall(text)
    if text.count("${") != len(names) + len(found) or set(names) - ARGUMENTS_ONLY:
        return None
    targets = [absolute(container, dots, key) for dots, key in found]
    return None if any(t is None for t in targets) else targets  # type: ignore[return-value]


def overlaps(a: Path, b: Path) -> bool:
    """Whether one path is the other or inside it (a node's value includes its children's)."""
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def varying(leaves: Iterable[Leaf], roots: Iterable[Path]) -> set[Path]:
    """The leaves whose value may differ between jobs that differ at `roots`: those that read
    a root, or a node inside or around one, or such a leaf, or may read anything."""
    changed, leaves = list(roots), list(leaves)
    out: set[Path] = set()
    grew = True
    while grew:
        grew = False
        for leaf in leaves:
            if leaf.path not in out and (
                leaf.refs is None or any(overlaps(r, c) for r in leaf.refs for c in changed)
            ):
                out.add(leaf.path)
                changed.append(leaf.path)
                grew = True
    return out


def evaluate(parts: list[Any], value: Callable[[Path], Any]) -> Any:
    """`parts` as OmegaConf's `visitText` joins them, `value(path)` giving each reference's
    resolved value: one reference alone is its value, as it is; else a string."""
    if len(parts) == 1 and isinstance(parts[0], tuple):
        return value(parts[0])
    return "".join(p if isinstance(p, str) else str(value(p)) for p in parts)


def dotted(path: Path) -> str:
    """`a.b[0].c`: the key `task_containers` selects a value by."""
    return "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in path).lstrip(".")


def strings(node: Any, path: Path = ()) -> list[tuple[Path, str]]:
    """Every string value of a plain container that holds an interpolation, by path."""
    items = node.items() if isinstance(node, dict) else enumerate(node)
    out = []
    for key, value in items:
        if isinstance(value, (dict, list)):
            out += strings(value, (*path, key))
        elif isinstance(value, str) and "${" in value:
            out.append(((*path, key), value))
    return out


def put(node: Any, path: Path, value: Any) -> None:
    """Set the value at `path`, in plain containers or a config."""
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


def unsafe(value: Any) -> bool:
    """A resolved string OmegaConf would read as an interpolation or a missing value."""
    if isinstance(value, dict):
        return any(unsafe(v) for v in value.values())
    if isinstance(value, list):
        return any(unsafe(v) for v in value)
    return isinstance(value, str) and ("${" in value or value == "???")


def get_path(node: Any, path: Path, default: Any = ABSENT) -> Any:
    """The value at `path` in plain containers; `default` where there is none."""
    for key in path:
        listed = isinstance(node, list) and isinstance(key, int) and -1 < key < len(node)
        if not listed and not (isinstance(node, dict) and key in node):
            return default
        node = node[key]
    return node
