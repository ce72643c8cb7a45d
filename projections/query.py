"""Analysts' read-only queries: the database opened read-only, with no access outside it."""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb

from projections.memory_guard import MemoryGuard, data_limit_mib
from schemas.errors import ProjectionError, QueryRefused

# What DuckDB may spill to its temporary directory (beside the file, ``<file>.tmp``) for one
# database: a query that needs more is refused rather than filling the disk.
SPILL_LIMIT = "1GiB"
# Analyst queries may not reach files, the network or extensions, and may not undo that.
READ_ONLY_CONFIG = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "max_temp_directory_size": SPILL_LIMIT,
    "lock_configuration": True,
}
# The table functions a query may call: they read the projection or make values, and nothing else.
# Any other is refused by name, known or new: checkpoint() and force_checkpoint() write the file,
# query() and json_execute_serialized_sql() run a statement no check has seen, the logging and
# profiling switches change the database's state, the readers of files and secrets reach outside.
TABLE_FUNCTIONS = frozenset(
    {
        "range",
        "generate_series",
        "unnest",
        "repeat",
        "repeat_row",
        "json_each",
        "json_tree",
        "summary",
        "histogram",
        "histogram_values",
        "pg_timezone_names",
        "icu_calendar_names",
        "duckdb_columns",
        "duckdb_constraints",
        "duckdb_databases",
        "duckdb_dependencies",
        "duckdb_functions",
        "duckdb_indexes",
        "duckdb_keywords",
        "duckdb_memory",
        "duckdb_temporary_files",
        "duckdb_schemas",
        "duckdb_sequences",
        "duckdb_settings",
        "duckdb_tables",
        "duckdb_types",
        "duckdb_views",
        "pragma_table_info",
        "pragma_show",
        "pragma_version",
        "pragma_database_size",
        "pragma_storage_info",
        "pragma_collations",
    }
)
# The projection's own table macros (``totals_by_county_as_of(…)`` and the like) are table functions too.
_MACRO = re.compile(r"CREATE\s+(?:OR\s+REPLACE\s+)?MACRO\s+(\w+)\s*\([^)]*\)\s+AS\s+TABLE", re.I)
PROJECTION_MACROS = frozenset(
    name.lower()
    for sql_file in ("views.sql", "slices.sql", "coordination.sql")
    for name in _MACRO.findall(resources.files("projections").joinpath(sql_file).read_text("utf-8"))
)
SERIALIZE = "SELECT json_serialize_sql(?)"
# The functions that build a value as large as a number says, shadowed on the query's connection
# (a temporary macro is found before the built-in) by ones that refuse a value larger than one
# reply before it is built: `repeat('x', 1500000000)` would be built outside DuckDB's pool.
MAX_VALUE_CHARS = 64 * 1024  # no value of the projection is larger: no event is
VALUE_TOO_LARGE = "outreach: refused before it was built"
_REFUSE_VALUE = (
    f"error('{VALUE_TOO_LARGE}: {{name}}() would make a value of more than {MAX_VALUE_CHARS:,} characters, more "
    "than one answer holds')"
)
# The count is checked inside the call, so that the value is never built (DuckDB folds a constant
# CASE's every branch while it plans).
BOUNDED_BUILDERS = [
    f"CREATE OR REPLACE TEMP MACRO repeat(s, n) AS system.main.repeat(s, CASE WHEN length(s) * n > "
    f"{MAX_VALUE_CHARS} THEN {_REFUSE_VALUE.format(name='repeat')} ELSE n END)",
    f"CREATE OR REPLACE TEMP MACRO lpad(s, n, c) AS system.main.lpad(s, CASE WHEN n > {MAX_VALUE_CHARS} THEN "
    f"{_REFUSE_VALUE.format(name='lpad')} ELSE n END, c)",
    f"CREATE OR REPLACE TEMP MACRO rpad(s, n, c) AS system.main.rpad(s, CASE WHEN n > {MAX_VALUE_CHARS} THEN "
    f"{_REFUSE_VALUE.format(name='rpad')} ELSE n END, c)",
]
ALLOWED = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}
# What comes before the statement an EXPLAIN explains: comments, EXPLAIN, then ANALYZE or options.
_COMMENTS = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*", re.S)
_EXPLAIN = re.compile(r"EXPLAIN\b\s*(?:ANALY[SZ]E\b\s*|\([^()]*\)\s*)?", re.I)


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]
    as_of_seq: int | None = None  # the stream sequence the projection had applied
    as_of_stored_at: datetime | None = None  # when the stream stored that message

    @property
    def as_of(self) -> str:
        if self.as_of_seq is None:
            return "as of nothing yet: no event has been projected"
        when = self.as_of_stored_at.isoformat() if self.as_of_stored_at else "unknown time"
        return f"as of stream sequence {self.as_of_seq}, stored {when}"


class LockedByProjector(ProjectionError):
    """The file is open for writing by a running projector: ask the projector instead."""


DUCKDB_MAGIC = b"DUCK"  # bytes 8 to 11 of every DuckDB database file


def open_read_only(path: str | Path) -> duckdb.DuckDBPyConnection:
    """Open a projection for reading; refuse a missing file rather than create an empty one, and
    a file that is no DuckDB database (an export, a log) in a sentence."""
    path = Path(path)
    if not path.is_file():
        raise ProjectionError(f"no projection database at {path}; run `outreach project` (or `outreach demo`) first")
    try:
        with path.open("rb") as file:
            head = file.read(12)
    except OSError as exc:
        raise ProjectionError(f"cannot open {path}: {exc.strerror}") from None
    if head[8:12] != DUCKDB_MAGIC:
        raise ProjectionError(
            f"{path} is not a projection: it holds no DuckDB database (an export or a log is read with other "
            f"tools); give the projection's file, such as outreach.duckdb"
        )
    try:
        return duckdb.connect(str(path), read_only=True, config=READ_ONLY_CONFIG)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise LockedByProjector(
                f"{path} is open for writing by another process (a running projector); "
                f"query through the projector (give --nats), or query a copy of the file"
            ) from None
        raise ProjectionError(f"cannot open {path}: {exc}") from None
    except duckdb.Error as exc:
        raise ProjectionError(f"cannot open {path}: {exc}") from None


def run_query(
    path: str | Path, sql: str, params: list[Any] | None = None, limits: QueryLimits | None = None
) -> QueryResult:
    """Run one read-only statement on a projection file."""
    con = open_read_only(path)
    try:
        return execute_read_only(con, sql, params, limits)
    finally:
        con.close()


@dataclass(frozen=True)
class QueryLimits:
    """What one analyst's query may take: its time, the rows of its answer, and (answers sent as one
    reply) its bytes as JSON, counted as the rows are fetched so that a wide answer is refused
    before it is all held in memory."""

    seconds: float = 30.0
    max_rows: int = 100_000
    max_bytes: int | None = None


def too_large(rows: str) -> QueryRefused:
    return QueryRefused(f"result too large: {rows} rows; add LIMIT, or use `outreach export`")


def _json_size_at_least(value: Any) -> int:
    """A lower bound of a value's size as JSON: its text and bytes, a byte for anything else."""
    if isinstance(value, str | bytes):
        return len(value) + 2
    if isinstance(value, list | tuple):
        return 2 + sum(_json_size_at_least(item) for item in value)
    if isinstance(value, dict):
        return 2 + sum(len(str(key)) + _json_size_at_least(item) for key, item in value.items())
    return 1


def _memory_limit(con: duckdb.DuckDBPyConnection) -> str:
    """What queries on ``con`` may use, as DuckDB shows it (after the failed transaction ends),
    and the kernel's limit of the process, where one is set (the projector's)."""
    try:
        con.execute("ROLLBACK")
        pool = str(con.execute("SELECT current_setting('memory_limit')").fetchone()[0])
    except duckdb.Error:
        pool = "its memory limit"
    limit = data_limit_mib()
    return pool if limit is None else f"{pool} of DuckDB's pool, in a process limited to {limit:,} MiB"


def _explains_a_select(con: duckdb.DuckDBPyConnection, query: str) -> bool:
    """Whether an EXPLAIN statement explains one SELECT; anything it cannot tell is no."""
    explain = _EXPLAIN.match(query, _COMMENTS.match(query).end())
    if explain is None:
        return False
    try:
        inner = con.extract_statements(query[explain.end() :])
    except duckdb.Error:
        return False
    return len(inner) == 1 and inner[0].type == duckdb.StatementType.SELECT


def _functions(tree: Any) -> Iterator[tuple[str, str, bool]]:
    """What a parsed statement (json_serialize_sql's tree) calls, anywhere in it: each function's
    kind ("table" or "scalar"), name, and whether it is named with its schema (``system.main.x``)."""
    if isinstance(tree, dict):
        if tree.get("type") == "TABLE_FUNCTION":
            function = tree.get("function") or {}
            yield "table", str(function.get("function_name", "")).lower(), False
        elif tree.get("class") == "FUNCTION":
            qualified = bool(tree.get("schema") or tree.get("catalog"))
            yield "scalar", str(tree.get("function_name", "")).lower(), qualified
        for value in tree.values():
            yield from _functions(value)
    elif isinstance(tree, list):
        for item in tree:
            yield from _functions(item)


_BUILDERS = {"repeat", "lpad", "rpad"}
# Formatters whose text says how wide a value to build: `printf('%1000000000d', 1)` is 1 GB made in
# one piece, which no watching of memory can stop. Their format must be a constant text with no
# width or precision over MAX_VALUE_CHARS, and none given by an argument (`%*d`, `{:>{}}`).
FORMATTERS = {"printf", "format"}
_DYNAMIC_WIDTH = {"printf": re.compile(r"%[^a-zA-Z%]*\*"), "format": re.compile(r"\{[^{}]*:[^{}]*\{")}
# Where a width or precision is written: a printf spec up to its conversion, a format spec after ':'.
_SPECS = {"printf": re.compile(r"%([^a-zA-Z%]*)"), "format": re.compile(r"\{[^{}]*:([^{}]*)\}")}


def _format_refusal(name: str, arguments: list[Any]) -> str | None:
    """Why a call of printf() or format() is refused; None when its format is bounded."""
    first = arguments[0].get("expression", {}) if arguments and isinstance(arguments[0], dict) else {}
    literal = first.get("literal") or {}
    if first.get("class") != "CONSTANT" or literal.get("kind") != "STRING":
        return f"{name}() is refused with a format that is not a constant text: write its format in the query"
    text = str(literal.get("text", ""))
    widths = [int(number) for spec in _SPECS[name].findall(text) for number in re.findall(r"\d+", spec)]
    if _DYNAMIC_WIDTH[name].search(text) or any(width > MAX_VALUE_CHARS for width in widths):
        return (
            f"{name}() is refused with a width or precision over {MAX_VALUE_CHARS:,} characters, or one given by "
            f"an argument: it would make a value larger than one answer holds"
        )
    return None


def _formatters(tree: Any) -> Iterator[tuple[str, list[Any]]]:
    """Every call of printf() or format() in a parsed statement, with its arguments."""
    if isinstance(tree, dict):
        name = str(tree.get("function_name", "")).lower()
        if tree.get("class") == "FUNCTION" and name in FORMATTERS:
            yield name, list(tree.get("arguments") or tree.get("children") or [])
        for value in tree.values():
            yield from _formatters(value)
    elif isinstance(tree, list):
        for item in tree:
            yield from _formatters(item)


def refuse_table_functions(con: duckdb.DuckDBPyConnection, select: str) -> None:
    """Refuse a SELECT that calls a table function outside ``TABLE_FUNCTIONS`` and the projection's
    own macros (a read-only transaction does not stop ``checkpoint()`` writing the file), or one of
    the value builders by its schema's name, past the macros that bound it."""
    try:
        found = con.execute(SERIALIZE, [select]).fetchone()
        tree = json.loads(found[0]) if found else {"error": True}
    except (duckdb.Error, ValueError) as exc:
        raise ProjectionError(f"the query could not be checked before it ran: {exc}") from None
    if tree.get("error"):
        raise ProjectionError(f"the query could not be checked before it ran: {tree.get('error_message', tree)}")
    for name, arguments in _formatters(tree.get("statements", [])):
        reason = _format_refusal(name, arguments)
        if reason is not None:
            raise QueryRefused(reason)
    for kind, name, qualified in _functions(tree.get("statements", [])):
        if kind == "scalar":
            if qualified and name in _BUILDERS:  # past the macros that bound them (BOUNDED_BUILDERS)
                raise QueryRefused(f"{name}() is called by its schema's name, which is refused: call it as {name}()")
            continue
        if name not in TABLE_FUNCTIONS and name not in PROJECTION_MACROS:
            raise QueryRefused(
                f"the table function {name}() is refused: files, the network and extensions are out of reach of "
                f"analyst queries, and nothing they say may write the projection or change its settings. Table "
                f"functions a query may call: {', '.join(sorted(TABLE_FUNCTIONS))}, and the projection's "
                f"table macros: {', '.join(sorted(PROJECTION_MACROS))}"
            )


def execute_read_only(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    params: list[Any] | None = None,
    limits: QueryLimits | None = None,
    guard: MemoryGuard | None = None,
) -> QueryResult:
    """Run one statement that only reads, in a read-only transaction on a connection whose external
    access is disabled: anything that would write (EXPLAIN ANALYZE of a write included) or reach
    outside is refused. A query past ``limits.seconds`` is interrupted inside DuckDB, and so is one
    running while ``guard`` finds the process past its memory bound; an answer of more than
    ``limits.max_rows`` rows is refused. The answer says as of when it is."""
    limits = limits or QueryLimits()
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise ProjectionError(f"the query does not parse: {exc}") from None
    if len(statements) != 1:
        raise QueryRefused(f"the query is refused: it holds {len(statements)} statements, and one is run at a time")
    kind = statements[0].type
    if kind not in ALLOWED:
        raise QueryRefused(
            f"{kind.name} statements are refused: `outreach sql` only reads (SELECT, WITH … SELECT, "
            f"EXPLAIN). The projection is written by the projector alone."
        )
    if kind == duckdb.StatementType.EXPLAIN and not _explains_a_select(con, statements[0].query):
        # A read-only transaction does not stop everything: EXPLAIN ANALYZE CHECKPOINT wrote the file.
        raise QueryRefused(
            "EXPLAIN of anything but a SELECT is refused (EXPLAIN SELECT … and EXPLAIN ANALYZE SELECT … are "
            "answered): `outreach sql` only reads. The projection is written by the projector alone."
        )
    select = statements[0].query
    if kind == duckdb.StatementType.EXPLAIN:
        select = select[_EXPLAIN.match(select, _COMMENTS.match(select).end()).end() :]  # type: ignore[union-attr]
    refuse_table_functions(con, select)
    try:
        for builder in BOUNDED_BUILDERS:
            con.execute(builder)
    except duckdb.Error as exc:
        raise ProjectionError(f"the query could not be prepared: {exc}") from None
    timer = threading.Timer(limits.seconds, con.interrupt)
    count = 0
    watching = guard.watching(con) if guard is not None else contextlib.nullcontext(None)
    watch = None
    try:
        with watching as watch:
            # One read-only transaction: DuckDB itself refuses any write, and the answer and its as-of
            # come from one snapshot.
            con.execute("BEGIN TRANSACTION READ ONLY")
            timer.start()
            cursor = con.execute(sql, params or [])
            columns = [d[0] for d in cursor.description or []]
            rows: list[tuple[Any, ...]] = []
            size = 0
            while chunk := cursor.fetchmany(FETCH_ROWS):
                count += len(chunk)
                if count <= limits.max_rows:
                    rows.extend(chunk)
                    if limits.max_bytes is not None:
                        size += _json_size_at_least(chunk)
                        if size > limits.max_bytes:
                            raise QueryRefused(
                                f"result too large: its first {count:,} rows are more than {limits.max_bytes:,} "
                                f"bytes as JSON, what one reply holds; add LIMIT, or use `outreach export`"
                            )
                else:
                    rows = []  # counted on to tell the analyst how many, never kept
            if count > limits.max_rows:
                raise too_large(f"{count:,}")
            mark = con.execute(AS_OF).fetchone()
    except duckdb.InterruptException:
        if watch is not None and watch.stopped:
            raise QueryRefused(watch.reason) from None
        if count > limits.max_rows:
            raise too_large(f"more than {count:,}") from None
        raise QueryRefused(f"the query ran longer than {limits.seconds:g} s and was stopped") from None
    except duckdb.PermissionException as exc:
        first_line = str(exc).splitlines()[0]
        raise QueryRefused(
            f"files, the network and extensions are out of reach of analyst queries ({first_line})"
        ) from None
    except duckdb.TransactionException as exc:
        if "read-only" not in str(exc):
            raise ProjectionError(f"the query failed: {exc}") from None
        raise QueryRefused(
            "the query would write, and is refused: `outreach sql` only reads. The projection is "
            "written by the projector alone."
        ) from None
    except (duckdb.OutOfMemoryException, MemoryError) as exc:  # MemoryError: its rows, made into Python's
        if "max_temp_directory_size" in str(exc):
            raise QueryRefused(
                f"the query needs more room on disk than queries may spill to here ({SPILL_LIMIT}, beside the "
                "file); narrow it with WHERE or LIMIT, or use `outreach export`"
            ) from None
        raise QueryRefused(
            f"the query needs more memory than queries are given here ({_memory_limit(con)}); narrow it "
            "with WHERE or LIMIT, or use `outreach export`"
        ) from None
    except duckdb.Error as exc:
        if VALUE_TOO_LARGE in str(exc):
            raise QueryRefused(
                f"{str(exc).split(VALUE_TOO_LARGE + ': ', 1)[1].splitlines()[0]}; make it smaller"
            ) from None
        raise ProjectionError(f"the query failed: {exc}") from None
    finally:
        timer.cancel()
        with contextlib.suppress(duckdb.Error):
            con.execute("ROLLBACK")
    return QueryResult(columns, rows, *(mark or (None, None)))


# Rows fetched at a time, each chunk measured before the next is fetched: an answer too large for
# one reply is refused once it passes the reply's size by at most one chunk.
FETCH_ROWS = 256
AS_OF = "SELECT last_seq, last_stored_at FROM checkpoint ORDER BY updated_at DESC LIMIT 1"
