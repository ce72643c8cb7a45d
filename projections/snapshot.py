"""A consistent snapshot of the totals for analysts' own tools, while the projector writes.

The projector holds the live file's write lock, so the DuckDB CLI, Python or a BI tool cannot
open it. Every few seconds the projector copies the totals views, as of one checkpoint, into a
separate small DuckDB file written under a temporary name and renamed over the previous one:
a reader always opens a whole snapshot, never a half-written one.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import duckdb

from projections.query import LockedByProjector, open_read_only
from projections.schema import STORAGE_VERSION

SNAPSHOT_VIEWS = (
    "totals_by_county",
    "totals_by_campaign",
    "totals_by_plan_task",
    "totals_by_month",
    "totals_by_quarter",
    "totals_by_year",
    "totals_by_agency",
    "totals_by_audience",
    "totals_by_campaign_county",
    "campaign_coverage",
    "campaigns",
    "campaign_partners",
    "plan_tasks",
    "data_quality",
    "report_cells",
    "submissions",
    "changes_since_submission",
    "possible_duplicates",
)
# Copied only while they are at most SNAPSHOT_CELLS_MAX rows, as the report's cells are; a report
# beside a running projector reads a copy of the projection when the snapshot lacks one of them.
BOUNDED_VIEWS = ("report_cells", "changes_since_submission", "possible_duplicates")
# The report's cells are as many as the actions at worst: copied only while they are few enough to
# copy every few seconds without slowing the projector. Past that, a report is made from the live
# file once the projector is stopped (or from a copy it makes on request).
SNAPSHOT_CELLS_MAX = 20_000
SNAPSHOT_INFO = (
    "SELECT stream, last_seq AS as_of_seq, last_stored_at AS as_of_stored_at, digest AS as_of_digest FROM checkpoint"
)
# The checkpoint row too, so that whatever reads a projection's as-of reads a snapshot's alike, and
# the counties' names for the report.
SNAPSHOT_TABLES = (
    ("snapshot_info", SNAPSHOT_INFO),
    ("checkpoint", "SELECT * FROM checkpoint"),
    ("counties", "SELECT * FROM counties"),
)


def snapshot_path(db: Path) -> Path:
    """Where the snapshot of ``db`` lives: ``outreach.duckdb`` -> ``outreach.snapshot.duckdb``."""
    return db.with_name(f"{db.stem}.snapshot{db.suffix or '.duckdb'}")


def is_snapshot(con: duckdb.DuckDBPyConnection) -> bool:
    found = con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'snapshot_info'").fetchone()
    return bool(found and found[0])


def readable(db: Path) -> tuple[Path, str | None]:
    """The file to read ``db``'s totals from, and a note when it is not ``db`` itself: a running
    projector holds ``db``'s write lock, so its latest snapshot is read instead."""
    try:
        open_read_only(db).close()
    except LockedByProjector:
        snapshot = snapshot_path(db)
        if not snapshot.is_file():
            raise LockedByProjector(
                f"{db} is open for writing by a running projector, and it has written no snapshot "
                f"({snapshot}) yet: wait for its first batch, or start it with a snapshot interval above 0"
            ) from None
        con = open_read_only(snapshot)
        try:
            as_of = con.execute("SELECT as_of_seq, as_of_stored_at FROM snapshot_info").fetchone()
        finally:
            con.close()
        when = f"stream sequence {as_of[0]}, stored {as_of[1]}" if as_of else "nothing yet"
        return snapshot, f"{db} is being written by a running projector: read its snapshot {snapshot}, as of {when}"
    return db, None


def write_snapshot(
    reader: duckdb.DuckDBPyConnection, db: Path, *, leave_out: frozenset[str] = frozenset()
) -> frozenset[str]:
    """Copy the totals views (and the checkpoint they are as of) through ``reader``, a cursor of
    the projection's connection made by the caller's thread, into the snapshot file. One at a time.

    Return the ``BOUNDED_VIEWS`` left out: those in ``leave_out``, those of more than
    ``SNAPSHOT_CELLS_MAX`` rows, and one that does not fit DuckDB's pool. A projector that found
    one too large once no longer asks (they grow with the log, but for retractions): computing the
    report's cells or the possible duplicates of 1,000,000 events, only to find them too many, took
    longer than everything else in the snapshot.

    The bounded views come last: one that does not fit the pool ends the transaction every view is
    read in, so the bounded views after it are not copied this time (nor counted as too large)."""
    target = snapshot_path(db)
    partial = target.with_name(target.name + ".partial")
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()
    out = duckdb.connect(str(partial), config={"storage_compatibility_version": STORAGE_VERSION})
    left_out = set(leave_out)
    unbounded = [v for v in SNAPSHOT_VIEWS if v not in BOUNDED_VIEWS]
    bounded = [v for v in SNAPSHOT_VIEWS if v in BOUNDED_VIEWS and v not in leave_out]
    try:
        reader.execute("BEGIN TRANSACTION")  # every view from the same committed state
        for name, query in (*SNAPSHOT_TABLES, *((v, f"SELECT * FROM {v}") for v in unbounded)):
            _copy(reader, out, name, query)
        try:
            for name in bounded:
                if not _copy(reader, out, name, f"SELECT * FROM {name}", SNAPSHOT_CELLS_MAX):
                    left_out.add(name)
        except duckdb.OutOfMemoryException:
            left_out.add(name)
        reader.execute("ROLLBACK")
        out.execute("CHECKPOINT")
    finally:
        out.close()
        reader.close()
    os.replace(partial, target)
    return frozenset(left_out)


def _copy(
    reader: duckdb.DuckDBPyConnection,
    out: duckdb.DuckDBPyConnection,
    name: str,
    query: str,
    most: int | None = None,
) -> bool:
    """One result into a table of the same column names and types, as one INSERT over lists; none
    when it has more than ``most`` rows. Return whether it was copied."""
    described = reader.execute(f"DESCRIBE {query}").fetchall()
    columns = [(row[0], row[1]) for row in described]
    if most is None:
        rows = reader.execute(query).fetchall()
    elif len(rows := reader.execute(query).fetchmany(most + 1)) > most:
        return False
    definition = ", ".join(f'"{c}" {t}' for c, t in columns)
    out.execute(f'CREATE TABLE "{name}" ({definition})')
    if rows:
        values = ", ".join(f"unnest(?::{t}[])" for _, t in columns)
        out.execute(f'INSERT INTO "{name}" SELECT {values}', [list(col) for col in zip(*rows, strict=True)])
    return True
