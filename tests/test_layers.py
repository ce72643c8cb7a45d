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


SERVICE_SUBJECTS = {"query_subject", "copy_subject", "status_subject"}
PROTOCOL = "runtime.protocol"


def imported_names(path: Path) -> tuple[set[str], set[str]]:
    """The modules a file imports from, and the names it imports from ``schemas.subjects``."""
    modules, subjects = set(), set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
            if node.module == "schemas.subjects":
                subjects.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
    return modules, subjects


def test_the_services_are_asked_and_answered_through_their_protocol() -> None:
    """Every module that names a service's subject and talks to NATS speaks to the service through
    ``runtime.protocol``: no second, hand-built request-reply, and no second encoding of what
    travels. (``outreach/auth.py`` names the subjects only in the server's permissions.)"""
    wrong = []
    for package in ALLOWED:
        for path in sorted((ROOT / package).rglob("*.py")):
            modules, subjects = imported_names(path)
            talks = any(m.split(".")[0] == "nats" or m == "runtime.connection" for m in modules)
            if subjects & SERVICE_SUBJECTS and talks and PROTOCOL not in modules:
                wrong.append(f"{path.relative_to(ROOT)} names {sorted(subjects & SERVICE_SUBJECTS)}")
    assert wrong == []
    # Both sides use it: the projector answers, the command line, the agencies and the benchmark ask.
    users = {
        str(path.relative_to(ROOT))
        for package in ALLOWED
        for path in (ROOT / package).rglob("*.py")
        if PROTOCOL in imported_names(path)[0]
    }
    assert users == {
        "consumers/app.py",
        "consumers/queries.py",
        "producers/receipts.py",
        "outreach/reading.py",
        "outreach/bench.py",
    }


def test_the_command_line_parses_and_prints() -> None:
    """``outreach/cli.py`` touches neither NATS nor the protocol: the work is in modules by role."""
    modules, _ = imported_names(ROOT / "outreach" / "cli.py")
    assert {m for m in modules if m.split(".")[0] == "nats" or m == PROTOCOL} == set()
