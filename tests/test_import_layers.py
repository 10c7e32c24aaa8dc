"""Imports among ``bench`` modules go one way: no cycle, function-local imports included.

Every module under ``bench/`` is parsed with :mod:`ast` (nothing is imported); every ``import`` /
``from ... import`` anywhere in it (module level, inside functions, under ``TYPE_CHECKING``) is an
edge to the ``bench`` module it names (``from bench.core import sweep`` names ``bench.core.sweep``;
``from bench.core.sweep import X`` names ``bench.core.sweep``). The layer order is
core -> data/models -> metrics -> run -> analysis/report -> cli/api/the package; a module may
import its own layer or lower ones.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Layer of each top-level part of the package (lower imports nothing above it).
LAYERS: dict[str, int] = {
    "version": 0, "runtime": 0, "extras": 0, "resources": 0, "core": 0,
    "data": 1, "models": 1,
    "metrics": 2,
    "run": 3, "train": 3,
    "analysis": 4, "report": 4,
    "cli": 5, "api": 5, "workflow": 5, "__main__": 5, "": 5,  # "" = the package itself (bench/__init__.py: the public API)
}  # fmt: skip

#: Imports that go up the layer order today, each with the reason it is still there. The test fails
#: when a new one appears and when one of these is gone (then delete its line).
KNOWN_UPWARD: dict[tuple[str, str], str] = {
    ("bench.core.gradmaps", "bench.models"): "gradient maps take a BenchModel and raise CamNotApplicable",
    ("bench.core.library_methods", "bench.models.user"): "--reshape vit: the user adapter's token folding is the libraries' reshape transform",
    ("bench.run.select_on", "bench.analysis.curves"): "--select-on reads the other split's curves",
}


def bench_modules() -> dict[str, Path]:
    """``{dotted name: file}`` of every module of the package (packages by their ``__init__``)."""
    out = {}
    for path in sorted((ROOT / "bench").rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The ``bench`` modules that ``path`` (module ``name``) imports anywhere in its code."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import
                base = package[: len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in modules else target)
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    modules = bench_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


def cycle_path(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One concrete cycle through the component's first module (for the failure message)."""
    members = set(component)
    start = component[0]
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for child in sorted(graph[node] & members):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [start, *reversed(path[:-1]), start] if len(path) > 1 else [start, node, start]
                if child not in parents:
                    parents[child] = node
                    nxt.append(child)
        frontier = nxt
    return component  # pragma: no cover - a component always holds a cycle through each member


def layer(name: str) -> int:
    parts = name.split(".")
    return LAYERS[parts[1] if len(parts) > 1 else ""]


# ------------------------------------------------------------------------------ the checker itself


def test_find_cycles_on_small_graphs():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    two = find_cycles({"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"c"}, "e": {"a", "c"}})
    assert sorted(two) == [["a", "b"], ["c", "d"]]
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}}
    assert cycle_path(graph, ["a", "b", "c"]) == ["a", "b", "c", "a"]


def test_imports_of_sees_local_and_relative_imports(tmp_path):
    pkg = tmp_path / "bench"
    (pkg / "core").mkdir(parents=True)
    for rel in ("__init__.py", "core/__init__.py", "core/a.py", "core/b.py", "core/c.py"):
        (pkg / rel).write_text("")
    (pkg / "core/a.py").write_text(
        "def f():\n    from bench.core import b\n    from .c import x\n"
        "if False:\n    import bench.core.c\n"
    )
    modules = {"bench": pkg / "__init__.py", "bench.core": pkg / "core/__init__.py",
               "bench.core.a": pkg / "core/a.py", "bench.core.b": pkg / "core/b.py", "bench.core.c": pkg / "core/c.py"}  # fmt: skip
    assert imports_of("bench.core.a", modules["bench.core.a"], modules) == {"bench.core.b", "bench.core.c"}


# ------------------------------------------------------------------------------ the package


def test_every_module_has_a_layer():
    missing = sorted({n.split(".")[1] for n in bench_modules() if "." in n} - set(LAYERS))
    assert not missing, f"give these parts of bench a layer in LAYERS: {missing}"


def test_no_import_cycle_among_bench_modules():
    graph = import_graph()
    assert len(graph) > 50 and sum(map(len, graph.values())) > 100  # the parser sees the package
    cycles = find_cycles(graph)
    assert not cycles, "import cycles (function-local imports count): " + "; ".join(
        " -> ".join(cycle_path(graph, c)) for c in cycles
    )


@pytest.mark.parametrize("check", ["new", "stale"])
def test_imports_go_down_the_layers(check):
    graph = import_graph()
    upward = {(a, b) for a, targets in graph.items() for b in targets if layer(b) > layer(a)}
    if check == "new":
        new = sorted(upward - set(KNOWN_UPWARD))
        assert not new, f"imports going up the layer order core -> data/models -> metrics -> run -> analysis/report -> cli: {new}"
    else:
        stale = sorted(set(KNOWN_UPWARD) - upward)
        assert not stale, f"these upward imports are gone: delete them from KNOWN_UPWARD: {stale}"
