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


# Settings of the whole interpreter: made in one module, and only by the commands that need them.
INTERPRETER_WIDE = {("gc", "set_threshold"), ("sys", "setswitchinterval")}
INTERPRETER_MODULE = "runtime/interpreter.py"


def interpreter_wide_calls(path: Path) -> list[str]:
    return [
        f"{node.func.value.id}.{node.func.attr}"
        for node in ast.walk(ast.parse(path.read_text("utf-8")))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and (node.func.value.id, node.func.attr) in INTERPRETER_WIDE
    ]


def importers_of_the_interpreter_module(path: Path) -> bool:
    return any(
        isinstance(node, ast.ImportFrom) and node.module == "runtime.interpreter"
        for node in ast.walk(ast.parse(path.read_text("utf-8")))
    )


def test_settings_of_the_whole_interpreter_are_made_in_one_module_by_the_command_line() -> None:
    made, imported = [], []
    for package in ALLOWED:
        for path in sorted((ROOT / package).rglob("*.py")):
            where = str(path.relative_to(ROOT))
            made += [f"{where}: {call}" for call in interpreter_wide_calls(path)]
            if importers_of_the_interpreter_module(path):
                imported.append(where)
    assert made == [f"{INTERPRETER_MODULE}: gc.set_threshold"]
    assert imported and all(where.startswith("outreach/") for where in imported), imported
