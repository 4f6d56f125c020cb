"""The layering of docs/architecture.md holds in the code: every import of every module of
rentabot (at the top or inside a function) goes in an allowed direction, and no modules
import each other in a circle."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.support import ROOT

PACKAGE = ROOT / "src" / "rentabot"

#: Which layers each layer may import (besides itself, and the top-level `rentabot`
#: package for its version). Written once: docs/architecture.md says the same in words.
ALLOWED: dict[str, set[str]] = {
    "domain": set(),
    "storage": {"domain"},
    "settings": {"domain"},
    "service": {"domain", "storage", "settings"},
    "interfaces": {"domain", "service", "settings"},
    "api": {"domain", "service", "interfaces", "settings"},
    "web": {"domain", "service", "interfaces", "settings"},
    "client": set(),
    "cli": {"client", "domain", "service", "settings", "app"},
    "app": {"domain", "storage", "service", "interfaces", "api", "web", "settings"},
}


def _module(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def imports_of(path: Path) -> Iterator[str]:
    """Every rentabot module `path` imports, at any depth of its code."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        else:
            continue
        yield from (name for name in names if name == "rentabot" or name.startswith("rentabot."))


def _graph() -> dict[str, set[str]]:
    modules = {_module(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        graph[module] = set()
        for imported in imports_of(path):
            # `from rentabot.x import y` may name a module y or a name in x: keep what exists.
            graph[module].add(imported if imported in modules else imported.rsplit(".", 1)[0])
    return graph


def test_every_import_points_the_way_the_layers_allow() -> None:
    """No module imports a layer its own layer may not know (e.g. api → storage)."""
    wrong = sorted(
        f"{module} imports {imported}"
        for module, imported_modules in _graph().items()
        for imported in imported_modules
        if (importer := _layer(module))
        and (target := _layer(imported))
        and target != importer
        and target not in ALLOWED[importer]
    )
    assert wrong == []


def test_every_layer_is_known() -> None:
    """Each top-level module or package of rentabot belongs to a layer of ALLOWED."""
    layers = {_layer(module) for module in _graph()} - {""}
    assert layers - set(ALLOWED) == set()


def test_no_modules_import_each_other_in_a_circle() -> None:
    """The module import graph has no cycle (one would mean two concepts not yet apart)."""
    graph = _graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for imported in sorted(graph.get(module, ())):
            if imported == module or imported not in graph:
                continue
            if state.get(imported) == 1:
                cycles.append([*path[path.index(imported) :], imported])
            elif imported not in state:
                visit(imported, [*path, imported])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_the_checker_sees_a_wrong_import(tmp_path: Path) -> None:
    """The import walker finds imports inside functions too, so a lazy one cannot hide."""
    source = tmp_path / "sample.py"
    source.write_text(
        "import os\nfrom rentabot.domain import model\n"
        "def f():\n    from rentabot.storage.store import Store\n"
    )
    assert list(imports_of(source)) == ["rentabot.domain", "rentabot.storage.store"]
