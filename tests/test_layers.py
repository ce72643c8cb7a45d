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


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports (absolute imports), by its full name."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def imported_top_levels(path: Path) -> set[str]:
    """The top-level packages a file imports, third-party ones included."""
    return {module.split(".")[0] for module in imported_modules(path)}


def imported_packages(path: Path) -> set[str]:
    return imported_top_levels(path) & set(ALLOWED)


def test_each_package_imports_only_those_below_it() -> None:
    wrong = []
    for package, allowed in ALLOWED.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            for imported in sorted(imported_packages(path) - allowed - {package}):
                wrong.append(f"{path.relative_to(ROOT)} imports {imported}")
    assert wrong == []


# The parts of a projection file that the writer (projections/store.py) sits on, and what each may
# import of projections/: none of them imports the writer or the index it keeps.
STORE_PARTS = {
    "views": set(),
    "schema": {"views"},
    "lockdown": set(),
    "file_lock": set(),
    "batch_insert": set(),
    "totals": {"batch_insert", "rows", "views"},
}


def imported_projections(path: Path) -> set[str]:
    return {module.split(".")[1] for module in imported_modules(path) if module.startswith("projections.")}


def test_the_writers_parts_sit_below_it() -> None:
    wrong = []
    for name, allowed in STORE_PARTS.items():
        for imported in sorted(imported_projections(ROOT / "projections" / f"{name}.py") - allowed):
            wrong.append(f"projections/{name}.py imports projections.{imported}")
    assert wrong == []


# Calls that change the whole process: made by the entry point that needs them, never on import.
PROCESS_WIDE = {"set_memory_pool", "setswitchinterval", "set_threshold", "setrecursionlimit", "set_cpu_count"}


def test_no_module_changes_the_process_when_imported() -> None:
    wrong = []
    for package in ALLOWED:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.parse(path.read_text("utf-8")).body:
                call = node.value if isinstance(node, ast.Expr) else None
                name = call.func.attr if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) else None
                if name in PROCESS_WIDE:
                    wrong.append(f"{path.relative_to(ROOT)}:{node.lineno} calls {name} on import")
    assert wrong == []


# nats-py's private attributes the reader relies on (tests/test_reader.py holds them to its versions).
NATS_PY_PRIVATE = {"_sub", "_pending_queue", "_pending_size"}


def test_one_adapter_reads_nats_and_the_message_type_needs_neither_it_nor_the_fold() -> None:
    """consumers/delivery.py (the message and its delivery metadata) imports no NATS client and no
    other consumer; the fold imports no NATS client; nothing but the reader reaches into nats-py's
    private attributes, and the reader only in ``take``."""
    delivery = imported_modules(ROOT / "consumers" / "delivery.py")
    assert sorted(m for m in delivery if m.split(".")[0] in {"nats", "faststream", "consumers"}) == []
    fold = imported_modules(ROOT / "consumers" / "fold.py")
    assert sorted(m for m in fold if m.split(".")[0] in {"nats", "faststream"} or m == "consumers.reader") == []

    from_the_fold = [
        f"{path.relative_to(ROOT)} imports {alias.name} from consumers.fold"
        for folder in (*ALLOWED, "tests")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text("utf-8")))
        if isinstance(node, ast.ImportFrom) and node.module == "consumers.fold"
        for alias in node.names
        if alias.name in {"StreamMessage", "delivered"}
    ]
    assert from_the_fold == []

    users = set()
    for package in ALLOWED:
        for path in sorted((ROOT / package).rglob("*.py")):
            for function in ast.walk(ast.parse(path.read_text("utf-8"))):
                if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef) and any(
                    isinstance(node, ast.Attribute) and node.attr in NATS_PY_PRIVATE for node in ast.walk(function)
                ):
                    users.add(f"{path.relative_to(ROOT)}: {function.name}")
    assert users == {"consumers/reader.py: take"}


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


def test_projections_and_the_memory_guard_know_nothing_of_nats() -> None:
    wrong = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in [*sorted((ROOT / "projections").rglob("*.py")), ROOT / "runtime" / "memory.py"]
        for name in sorted(imported_top_levels(path) & {"nats", "faststream"})
    ]
    assert wrong == []


def test_the_process_memory_bound_is_set_at_the_projectors_entry_point_alone() -> None:
    """``limit_data`` and ``tune_allocators`` change the whole process: only `outreach project` calls
    them, and the benchmark's process that runs the projector as it does."""
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
    assert callers == ["outreach/cli.py", "outreach/measure.py"]


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


def test_settings_of_the_whole_interpreter_are_made_in_one_module_by_the_command_line() -> None:
    made, imported = [], []
    for package in ALLOWED:
        for path in sorted((ROOT / package).rglob("*.py")):
            where = str(path.relative_to(ROOT))
            made += [f"{where}: {call}" for call in interpreter_wide_calls(path)]
            if "runtime.interpreter" in imported_modules(path):
                imported.append(where)
    assert made == [f"{INTERPRETER_MODULE}: gc.set_threshold"]
    assert imported and all(where.startswith("outreach/") for where in imported), imported


def test_reading_a_file_loads_none_of_the_writers_modules() -> None:
    """`outreach sql` starts as a process for every query an analyst types: reading a file (the
    query, the snapshot) must not load the writer, its index of events or pyarrow."""
    import subprocess
    import sys

    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, outreach.cli, outreach.reading; print(' '.join(sorted(sys.modules)))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert [m for m in loaded if m.split(".")[0] == "pyarrow" or m in WRITERS_MODULES] == []


WRITERS_MODULES = {
    "projections.store",
    "projections.known",
    "projections.batch_insert",
    "projections.copy",
    "projections.totals",
}
