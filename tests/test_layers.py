"""The layers point one way: an import graph of the package, built with `ast`
from every import (at module level, inside functions, and under
TYPE_CHECKING), has no cycle and no import from a lower layer to a higher one.

TYPE_CHECKING imports count: a type a module names is a thing it knows about,
and a cycle through annotations is still two modules that cannot be read (or
moved) one without the other.

The layers, lowest first (a module may import its own layer and those below,
but not a peer package of its layer: the two engines, the two backends, stay
apart):

    0  smsbatch (the package's __init__: the version), core/
    1  virtual/, realtime/
    2  local/, broker/
    3  present/
    4  the top level: cli.py, config.py, replications.py, assembly.py, ...
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "smsbatch"

LAYERS = {"core": 0, "virtual": 1, "realtime": 1, "local": 2, "broker": 2, "present": 3}
TOP = 4


def module_name(path: Path) -> str:
    parts = ("smsbatch", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(source: str, modules: set[str]) -> set[str]:
    """The package's modules `source` imports anywhere in it (`from a import b` is
    a.b when a.b is a module, else a)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.update(
                f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                for alias in node.names
            )
    return {name for name in found if name in modules}


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    modules = set(paths)
    return {name: imported(path.read_text(encoding="utf-8"), modules) - {name} for name, path in paths.items()}


def package_of(module: str) -> str | None:
    """core, realtime, ... for a module in a subpackage; None at the top level."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else None


def layer(module: str) -> int:
    if module == "smsbatch":
        return 0
    package = package_of(module)
    return LAYERS[package] if package else TOP


def wrong_way(graph: dict[str, set[str]]) -> list[str]:
    """Imports of a higher layer, or of a peer package in the same layer."""
    found = []
    for module, targets in graph.items():
        for target in targets:
            upward = layer(target) > layer(module)
            peer = layer(target) == layer(module) < TOP and package_of(target) != package_of(module)
            if upward or (peer and target != "smsbatch"):
                found.append(f"{module} -> {target}")
    return sorted(found)


def a_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle as [a, b, ..., a], or [] when there is none (depth-first search)."""
    state: dict[str, str] = {}  # "open" on the current path, "done" once every path from it is checked
    path: list[str] = []

    def visit(module: str) -> list[str]:
        state[module] = "open"
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[module] = "done"
        path.pop()
        return []

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return []


def test_no_import_goes_up_a_layer_or_across_to_a_peer():
    assert wrong_way(import_graph()) == []


def test_the_package_has_no_import_cycle():
    assert a_cycle(import_graph()) == []


def test_the_checks_see_what_they_are_for():
    """The checker itself: it finds a cycle, an upward import and a peer import
    when there is one (a test that can never fail proves nothing)."""
    graph = {"smsbatch.core.a": {"smsbatch.cli"}, "smsbatch.cli": {"smsbatch.core.a"}, "smsbatch.core.b": set()}
    assert a_cycle(graph) == ["smsbatch.cli", "smsbatch.core.a", "smsbatch.cli"]
    assert wrong_way(graph) == ["smsbatch.core.a -> smsbatch.cli"]
    assert wrong_way({"smsbatch.virtual.runner": {"smsbatch.realtime.status"}}) == [
        "smsbatch.virtual.runner -> smsbatch.realtime.status"
    ]
    assert a_cycle({"smsbatch.core.b": set()}) == []


def test_imports_inside_functions_and_under_type_checking_count():
    source = """
from typing import TYPE_CHECKING
import smsbatch.core.model
if TYPE_CHECKING:
    from smsbatch.realtime.runner import Runner
def later():
    from smsbatch.present import report
"""
    modules = {"smsbatch.core.model", "smsbatch.realtime.runner", "smsbatch.present", "smsbatch.present.report"}
    assert imported(source, modules) == {"smsbatch.core.model", "smsbatch.realtime.runner", "smsbatch.present.report"}
    assert "smsbatch.present.report" in import_graph()["smsbatch.cli"]  # the real tree: inside a function
