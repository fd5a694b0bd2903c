"""The layering rules, read from the source files (AST): imports flow node -> storage ->
protocol; the sans-I/O core touches no I/O module and never the simulator; node/ modules form
no import cycle and import each other only at module level (a function-level import hides a
cycle)."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The code folders and the packages they install as.
PACKAGES = {"protocol": "swarmd.protocol", "storage": "swarmd.storage", "node": "swarmd.node"}
PROTOCOL_FORBIDDEN = ("swarmd.node", "swarmd.storage", "asyncio", "sqlite3", "socket", "aiosqlite")
SIM_PACKAGE = "swarmd.protocol.sim"


@dataclass(frozen=True)
class Import:
    module: str  # the absolute module imported (for `from a import b`: a.b when a.b is a module)
    line: int
    top_level: bool  # at module level (also inside a module-level if/try), not in a function


def module_name(path: Path) -> str:
    folder, *rest = path.relative_to(ROOT).with_suffix("").parts
    parts = [PACKAGES[folder], *rest]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files(folder: str) -> list[Path]:
    return sorted(path for path in (ROOT / folder).rglob("*.py") if "__pycache__" not in path.parts)


def all_modules() -> dict[str, Path]:
    return {module_name(path): path for folder in PACKAGES for path in source_files(folder)}


def _resolve(module: str, node: ast.ImportFrom, known: dict[str, Path]) -> list[str]:
    """The modules `from X import a, b` names: X.a when it is a module, else X."""
    if node.level:
        package = module if known[module].name == "__init__.py" else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{node.module}" if node.module else package
    else:
        base = node.module or ""
    names = []
    for alias in node.names:
        candidate = f"{base}.{alias.name}"
        names.append(candidate if candidate in known else base)
    return names


def imports_of(module: str, known: dict[str, Path], source: str | None = None) -> list[Import]:
    path = known[module]
    tree = ast.parse(path.read_text() if source is None else source, str(path))
    found: list[Import] = []

    def visit(node: ast.AST, top_level: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = top_level and not isinstance(
                child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda
            )
            if isinstance(child, ast.Import):
                found.extend(Import(a.name, child.lineno, top_level) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                for name in _resolve(module, child, known):
                    found.append(Import(name, child.lineno, top_level))
            visit(child, inner)

    visit(tree, True)
    return found


def _names(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


KNOWN = all_modules()
IMPORTS = {module: imports_of(module, KNOWN) for module in KNOWN}


def test_the_module_map_is_read() -> None:
    assert "swarmd.protocol.node_core" in KNOWN or "swarmd.protocol.node_core.core" in KNOWN
    assert "swarmd.node.runtime.driver" in KNOWN
    assert any(i.module == "swarmd.node.runtime.driver" for i in IMPORTS["swarmd.node.http.api"])


def test_protocol_does_no_io_and_knows_no_shell() -> None:
    bad = [
        f"{module}:{i.line} imports {i.module}"
        for module, imports in IMPORTS.items()
        if _names(module, "swarmd.protocol")
        for i in imports
        if any(_names(i.module, forbidden) for forbidden in PROTOCOL_FORBIDDEN)
    ]
    assert bad == []


def test_storage_does_not_import_node() -> None:
    bad = [
        f"{module}:{i.line} imports {i.module}"
        for module, imports in IMPORTS.items()
        if _names(module, "swarmd.storage")
        for i in imports
        if _names(i.module, "swarmd.node")
    ]
    assert bad == []


def test_the_core_never_imports_the_simulator() -> None:
    bad = [
        f"{module}:{i.line} imports {i.module}"
        for module, imports in IMPORTS.items()
        if _names(module, "swarmd.protocol") and not _names(module, SIM_PACKAGE)
        for i in imports
        if _names(i.module, SIM_PACKAGE)
    ]
    assert bad == []


def test_node_modules_import_each_other_only_at_module_level() -> None:
    bad = [
        f"{module}:{i.line} imports {i.module} inside a function"
        for module, imports in IMPORTS.items()
        if _names(module, "swarmd.node")
        for i in imports
        if not i.top_level and _names(i.module, "swarmd")
    ]
    assert bad == []


def node_graph() -> dict[str, set[str]]:
    """Module-level imports among node modules (`from . import x` counts as importing x)."""
    return {
        module: {i.module for i in imports if i.top_level and i.module in KNOWN}
        & {m for m in KNOWN if _names(m, "swarmd.node")}
        for module, imports in IMPORTS.items()
        if _names(module, "swarmd.node")
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` (as a path that ends where it starts), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := walk(target)) is not None:
                return cycle
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (cycle := walk(module)) is not None:
            return cycle
    return None


def test_node_modules_have_no_import_cycle() -> None:
    assert find_cycle(node_graph()) is None


def test_the_cycle_finder_finds_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_imports_are_resolved_and_placed() -> None:
    module = "swarmd.node.cli.fake"
    known = {**KNOWN, module: ROOT / "node" / "cli" / "fake.py"}
    source = (
        "import os\nfrom . import common\nfrom ..runtime.driver import Daemon\n"
        "def f():\n    from .. import logs\n"
    )
    found = imports_of(module, known, source)
    assert found == [
        Import("os", 1, True),
        Import("swarmd.node.cli.common", 2, True),
        Import("swarmd.node.runtime.driver", 3, True),
        Import("swarmd.node.logs", 5, False),
    ]
