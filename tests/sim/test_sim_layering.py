"""The simulator sits beside the sans-I/O core: it imports the core, the core never imports it,
and the simulator itself does no I/O (an AST check over the source files)."""

from __future__ import annotations

import ast
from pathlib import Path

PROTOCOL = Path(__file__).resolve().parents[2] / "protocol"
SIM = PROTOCOL / "sim"
#: What the simulator must not import: it is as pure as the core it drives.
SIM_FORBIDDEN = (
    "asyncio",
    "socket",
    "sqlite3",
    "aiosqlite",
    "time",
    "swarmd.node",
    "swarmd.storage",
)


def imported_modules(path: Path) -> list[str]:
    """Absolute names of every module `path` imports (relative imports resolved)."""
    package = ["swarmd", *path.relative_to(PROTOCOL.parent).parent.parts]
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            names.append(module)
            names.extend(f"{module}.{alias.name}" for alias in node.names)
    return names


def test_the_core_never_imports_the_simulator() -> None:
    offenders = [
        f"{path.relative_to(PROTOCOL)} imports {name}"
        for path in sorted(PROTOCOL.rglob("*.py"))
        if SIM not in path.parents
        for name in imported_modules(path)
        if name == "swarmd.protocol.sim" or name.startswith("swarmd.protocol.sim.")
    ]
    assert offenders == []


def test_the_simulator_does_no_io() -> None:
    paths = sorted(SIM.rglob("*.py"))
    assert len(paths) > 10  # the walk found the package
    offenders = [
        f"{path.relative_to(PROTOCOL)} imports {name}"
        for path in paths
        for name in imported_modules(path)
        if any(name == bad or name.startswith(bad + ".") for bad in SIM_FORBIDDEN)
    ]
    assert offenders == []


def test_relative_imports_resolve_to_swarmd_names() -> None:
    names = imported_modules(SIM / "scenarios" / "flood.py")
    assert "swarmd.protocol.node_core.PeerMisbehaved" in names
    assert "swarmd.protocol.sim.swarm" in names
