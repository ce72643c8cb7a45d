"""Analysts' read-only queries: the database opened read-only, with no access outside it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from schemas.errors import ProjectionError, QueryRefused

# Analyst queries may not reach files, the network or extensions, and may not undo that.
READ_ONLY_CONFIG = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "lock_configuration": True,
}
ALLOWED = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]


def open_read_only(path: str | Path) -> duckdb.DuckDBPyConnection:
    """Open a projection for reading; refuse a missing file rather than create an empty one."""
    path = Path(path)
    if not path.is_file():
        raise ProjectionError(f"no projection database at {path}; run `outreach project` (or `outreach demo`) first")
    try:
        return duckdb.connect(str(path), read_only=True, config=READ_ONLY_CONFIG)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise ProjectionError(
                f"{path} is open for writing by another process (a running projector); "
                f"stop it, or query a copy of the file"
            ) from None
        raise ProjectionError(f"cannot open {path}: {exc}") from None


def run_query(path: str | Path, sql: str, params: list[Any] | None = None) -> QueryResult:
    """Run one read-only statement; anything that would write or reach outside is refused."""
    con = open_read_only(path)
    try:
        try:
            statements = con.extract_statements(sql)
        except duckdb.Error as exc:
            raise ProjectionError(f"the query does not parse: {exc}") from None
        if len(statements) != 1:
            raise QueryRefused(f"give exactly one statement (got {len(statements)})")
        kind = statements[0].type
        if kind not in ALLOWED:
            raise QueryRefused(
                f"{kind.name} statements are refused: `outreach sql` only reads (SELECT, WITH … SELECT, "
                f"EXPLAIN). The projection is written by the projector alone."
            )
        try:
            cursor = con.execute(sql, params or [])
        except duckdb.PermissionException as exc:
            first_line = str(exc).splitlines()[0]
            raise QueryRefused(
                f"files, the network and extensions are out of reach of analyst queries ({first_line})"
            ) from None
        except duckdb.Error as exc:
            raise ProjectionError(f"the query failed: {exc}") from None
        columns = [d[0] for d in cursor.description or []]
        return QueryResult(columns, cursor.fetchall())
    finally:
        con.close()
