"""Analysts' read-only queries: the database opened read-only, with no access outside it."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime
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


def open_read_only(path: str | Path) -> duckdb.DuckDBPyConnection:
    """Open a projection for reading; refuse a missing file rather than create an empty one."""
    path = Path(path)
    if not path.is_file():
        raise ProjectionError(f"no projection database at {path}; run `outreach project` (or `outreach demo`) first")
    try:
        return duckdb.connect(str(path), read_only=True, config=READ_ONLY_CONFIG)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise LockedByProjector(
                f"{path} is open for writing by another process (a running projector); "
                f"query through the projector (give --nats), or query a copy of the file"
            ) from None
        raise ProjectionError(f"cannot open {path}: {exc}") from None


def run_query(path: str | Path, sql: str, params: list[Any] | None = None) -> QueryResult:
    """Run one read-only statement on a projection file."""
    con = open_read_only(path)
    try:
        return execute_read_only(con, sql, params)
    finally:
        con.close()


def execute_read_only(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> QueryResult:
    """Run one statement that only reads, on a connection whose external access is disabled;
    anything that would write or reach outside is refused. The answer says as of when it is."""
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
        con.execute("BEGIN TRANSACTION")  # the answer and its as-of come from one snapshot
        cursor = con.execute(sql, params or [])
        columns = [d[0] for d in cursor.description or []]
        rows = cursor.fetchall()
        mark = con.execute(AS_OF).fetchone()
    except duckdb.PermissionException as exc:
        first_line = str(exc).splitlines()[0]
        raise QueryRefused(
            f"files, the network and extensions are out of reach of analyst queries ({first_line})"
        ) from None
    except duckdb.Error as exc:
        raise ProjectionError(f"the query failed: {exc}") from None
    finally:
        with contextlib.suppress(duckdb.Error):
            con.execute("ROLLBACK")
    return QueryResult(columns, rows, *(mark or (None, None)))


AS_OF = "SELECT last_seq, last_stored_at FROM checkpoint ORDER BY updated_at DESC LIMIT 1"
