"""A whole copy of a projection, as of one committed batch, written by the projector on request.

The snapshot (``projections.snapshot``) carries the totals, every few seconds; a reading command
that needs more while the projector holds the file (an export of ``event_history``, a report with
more figures than the snapshot copies, ``verify``) asks the projector for this instead. Its tables
are copied in Arrow batches inside one read transaction, and its views are made anew over them, so
every command gives on the copy what it gives on the projection once the projector is stopped.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import duckdb

from projections.schema import REFERENCE_SQL, SCHEMA_SQL, STORAGE_VERSION
from projections.store import MEMORY_LIMIT
from projections.views import VIEWS_SQL

# Every table of a projection; the views are made from these.
TABLES = (
    "checkpoint",
    "checkpoint_log",
    "stream_gaps",
    "event_log",
    "rejected_events",
    "ignored_duplicates",
    "fact_versions",
    "totals_cells",
    "counties",
    "municipalities",
)
# A checkpoint in STORAGE_VERSION holds a row group's strings in memory at once: with DuckDB's
# 122,880-row groups, 150,000 events of ordinary size outgrow a 112 MB pool. Smaller groups keep
# what one checkpoint holds within the pool (older readers read any size of group).
COPY_ROW_GROUP = 8_192
BATCH_ROWS = 50_000  # rows held at once while copying: bounded memory whatever the projection's size
READER_POOL = "32MB"  # copy_file's reading side only streams its rows out, a batch at a time


def copy_path(db: Path) -> Path:
    """Where the copy of ``db`` is written: ``outreach.duckdb`` -> ``outreach.copy.duckdb``."""
    return db.with_name(f"{db.stem}.copy{db.suffix or '.duckdb'}")


def write_copy(
    reader: duckdb.DuckDBPyConnection, db: Path, memory_limit: str = MEMORY_LIMIT
) -> tuple[Path, int | None]:
    """Copy the projection through ``reader`` (a cursor of its connection, made by the caller's
    thread, closed here) into ``copy_path(db)``, renamed over the previous copy when whole; return
    the path and the stream sequence it is as of. ``memory_limit``: the copy's own buffer pool, in
    the projector's process."""
    target = copy_path(db)
    partial = target.with_name(target.name + ".partial")
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()
    out = _new_file(partial, memory_limit)
    try:
        row = _copy_tables(reader, out)
    finally:
        out.close()
        reader.close()
    os.replace(partial, target)
    return target, (int(row[0]) if row and row[0] is not None else None)


def copy_file(source: Path, target: Path, memory_limit: str = MEMORY_LIMIT) -> None:
    """Copy the projection file ``source`` (a replay's, no longer written) into ``target``, a new
    file in ``STORAGE_VERSION``, as ``write_copy`` does, through connections of its own: the new
    file's with a buffer pool of ``memory_limit``, the reading one with ``READER_POOL``. ``target``
    appears whole or not at all."""
    partial = target.with_name(target.name + ".partial")
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()
    reader = duckdb.connect(str(source), read_only=True, config={"memory_limit": READER_POOL, "threads": 1})
    out = _new_file(partial, memory_limit)
    try:
        _copy_tables(reader, out)
    finally:
        out.close()
        reader.close()
    os.replace(partial, target)


def _new_file(path: Path, memory_limit: str) -> duckdb.DuckDBPyConnection:
    """A connection to a new projection file at ``path``, in ``STORAGE_VERSION`` and with row groups
    of ``COPY_ROW_GROUP`` rows, its tables made and empty."""
    out = duckdb.connect(config={"memory_limit": memory_limit})
    out.execute(
        f"ATTACH ? AS copied_file (STORAGE_VERSION '{STORAGE_VERSION}', ROW_GROUP_SIZE {COPY_ROW_GROUP})", [str(path)]
    )
    out.execute("USE copied_file")
    out.execute(SCHEMA_SQL)
    out.execute(REFERENCE_SQL)
    return out


def _copy_tables(reader: duckdb.DuckDBPyConnection, out: duckdb.DuckDBPyConnection) -> tuple[Any, ...] | None:
    """Every table from ``reader``, as of one committed batch, into ``out``, ``BATCH_ROWS`` rows a
    statement (each its own transaction, so ``out`` checkpoints as it goes and no statement holds a
    whole table: one ``COPY FROM DATABASE`` into the older format does, and runs out of the pool);
    then the views over them. Returns the checkpoint's ``max(last_seq)`` row."""
    reader.execute("BEGIN TRANSACTION")
    for table in TABLES:
        rows = reader.sql(f"SELECT * FROM {table}")
        batches = getattr(rows, "to_arrow_reader", None) or rows.fetch_arrow_reader  # DuckDB 2, or 1.x
        for batch in batches(BATCH_ROWS):
            out.register("copied", batch)
            try:
                out.execute(f"INSERT INTO {table} SELECT * FROM copied")
            finally:
                out.unregister("copied")
    row = reader.execute("SELECT max(last_seq) FROM checkpoint").fetchone()
    reader.execute("ROLLBACK")
    out.execute(VIEWS_SQL)
    out.execute("CHECKPOINT")
    return row
