"""The folder graph has no loop: each package imports only the packages below it."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# What each package may import, of the project's own packages.
ALLOWED = {
    "schemas": set(),
    "runtime": {"schemas"},
    "projections": {"schemas"},
    "producers": {"schemas", "runtime"},
    "consumers": {"schemas", "runtime", "projections"},
    "outreach": {"schemas", "runtime", "projections", "producers", "consumers"},
}


def imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
    return found & set(ALLOWED)


def test_each_package_imports_only_those_below_it() -> None:
    wrong = []
    for package, allowed in ALLOWED.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            for imported in sorted(imported_packages(path) - allowed - {package}):
                wrong.append(f"{path.relative_to(ROOT)} imports {imported}")
    assert wrong == []


def imported_names(path: Path) -> set[str]:
    """Every module a file imports, third-party ones included, by its top-level name."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
    return found


def test_projections_and_the_memory_guard_know_nothing_of_nats() -> None:
    wrong = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in [*sorted((ROOT / "projections").rglob("*.py")), ROOT / "runtime" / "memory.py"]
        for name in sorted(imported_names(path) & {"nats", "faststream"})
    ]
    assert wrong == []


def test_the_process_memory_bound_is_set_at_the_projectors_entry_point_alone() -> None:
    """``limit_data`` and ``tune_allocators`` change the whole process: only `outreach project` calls them."""
    callers = sorted(
        str(path.relative_to(ROOT))
        for package in ALLOWED
        for path in (ROOT / package).rglob("*.py")
        if path != ROOT / "runtime" / "memory.py"
        and any(
            isinstance(node, ast.Call) and getattr(node.func, "id", None) in {"limit_data", "tune_allocators"}
            for node in ast.walk(ast.parse(path.read_text("utf-8")))
        )
    )
    assert callers == ["outreach/cli.py"]
