"""The package's architecture, as the import graph shows it: no circle between files, no
cycle between folders, and no import from the package up into its own Hydra plugins (the
plugins use the package, never the reverse). Every import counts, inside functions too."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def modules(src: Path) -> dict[str, Path]:
    out = {}
    for f in src.rglob("*.py"):
        parts = list(f.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def import_graph(src: Path) -> dict[str, set[str]]:
    """Module -> the modules of `src` it imports (`import a.b`, `from a.b import c`)."""
    mods = modules(src)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, f in mods.items():
        for node in ast.walk(ast.parse(f.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            graph[m] |= {n for n in names if n in mods and n != m}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_circle_and_nothing_else():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_circle_between_files():
    assert cycles(import_graph(SRC)) == []


def test_no_cycle_between_folders():
    mods, graph = modules(SRC), import_graph(SRC)
    folders: dict[str, set[str]] = {}
    for m, targets in graph.items():
        here = str(mods[m].parent.relative_to(SRC))
        folders.setdefault(here, set())
        folders[here] |= {str(mods[t].parent.relative_to(SRC)) for t in targets} - {here}
    assert cycles(folders) == []


def test_the_package_never_imports_its_plugins():
    up = [(m, t) for m, ts in import_graph(SRC).items() for t in ts
          if m.startswith("xor_lightning") and t.startswith("hydra_plugins")]  # fmt: skip
    assert up == []
