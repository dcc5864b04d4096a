"""The architecture, as the import graph shows it: no circle between files and no cycle
between folders, in the template and in each plugin package (`plugins/<name>/src`); the
plugins import nothing of the template, and the template imports them only inside a
function (it runs without them). Every import counts, inside functions too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PLUGINS = sorted((SRC.parent / "plugins").glob("*/src"))
assert len(PLUGINS) >= 2  # where the tests below look


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


@pytest.mark.parametrize("src", [SRC, *PLUGINS], ids=lambda p: str(p.parent.name))
def test_no_circle_between_files(src):
    assert cycles(import_graph(src)) == []


@pytest.mark.parametrize("src", [SRC, *PLUGINS], ids=lambda p: str(p.parent.name))
def test_no_cycle_between_folders(src):
    mods, graph = modules(src), import_graph(src)
    folders: dict[str, set[str]] = {}
    for m, targets in graph.items():
        here = str(mods[m].parent.relative_to(src))
        folders.setdefault(here, set())
        folders[here] |= {str(mods[t].parent.relative_to(src)) for t in targets} - {here}
    assert cycles(folders) == []


def imported(f: Path, top_level_only: bool = False) -> set[str]:
    """Every module `f` imports (absolute imports), or only those at its top level."""
    tree = ast.parse(f.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


@pytest.mark.parametrize("src", PLUGINS, ids=lambda p: str(p.parent.name))
def test_no_plugin_package_imports_the_template(src):
    found = [(str(f.relative_to(src)), m) for f in src.rglob("*.py") for m in imported(f)
             if m.split(".")[0] == "xor_lightning"]  # fmt: skip
    assert found == []


def test_the_template_imports_a_plugin_package_only_inside_a_function():
    own = {m for src in PLUGINS for m in modules(src)}
    found = [(str(f.relative_to(SRC)), m) for f in (SRC / "xor_lightning").rglob("*.py")
             for m in imported(f, top_level_only=True) if m in own]  # fmt: skip
    assert found == []
