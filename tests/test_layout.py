"""The package's architecture, as the import graph shows it: no circle between files, no
cycle between folders, and no import from the package up into the Hydra plugins under
`src/hydra_plugins/` (they use the package, never the reverse); the plugins that are
packages of their own (`plugins/<name>/`) import nothing of the template, and the template
imports them only inside a function (it runs without them). Every import counts, inside
functions too."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PLUGINS = sorted((SRC.parent / "plugins").glob("*/src"))


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


def test_no_plugin_package_imports_the_template():
    assert PLUGINS  # the plugins' own packages are where this test looks
    found = [(str(f.relative_to(SRC.parent)), m) for src in PLUGINS for f in src.rglob("*.py")
             for m in imported(f) if m.split(".")[0] == "xor_lightning"]  # fmt: skip
    assert found == []


def test_the_template_imports_a_plugin_package_only_inside_a_function():
    own = {m for src in PLUGINS for m in modules(src)}
    found = [(str(f.relative_to(SRC)), m) for f in (SRC / "xor_lightning").rglob("*.py")
             for m in imported(f, top_level_only=True) if m in own]  # fmt: skip
    assert found == []
