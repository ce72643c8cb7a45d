"""The projector's writer: one batch and its checkpoint in one DuckDB transaction, and the lookups
the fold needs of what the file holds.

One process writes a database file: the projector. Each batch and its checkpoint are written in
one transaction, so after any crash the file holds exactly the batches up to its checkpoint. The
rest of a projection file lives by role: its tables and views (``projections.schema``,
``projections.views``), a batch as Arrow columns (``projections.batch_insert``), opening the file
beside its readers (``projections.file_lock``), what the connection may not do
(``projections.lockdown``).
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from projections.batch_insert import BatchInsert
from projections.file_lock import connect_for_writing
from projections.known import KnownIndex
from projections.lockdown import lock_down
from projections.query import SPILL_LIMIT
from projections.rows import BatchUpdate, DuplicateRow, FactVersion, KnownEvent, LogRow, RejectedRow
from projections.schema import create_projection
from projections.totals import BACKFILL, TOTALS_MISMATCH, KeptTotals
from schemas.errors import ProjectionError

SELECT_CHECKPOINT = "SELECT last_seq, stream_created, digest FROM checkpoint WHERE stream = ?"
# The checkpoint only moves forward, from the sequence the batch was folded after, and the
# database itself refuses anything else: a second writer (whose batch was folded against what it
# knew, not what the file now holds), or a bug, that would apply a batch again changes no row
# here, and its transaction is rolled back whole.
ADVANCE_CHECKPOINT = """
INSERT INTO checkpoint (stream, stream_created, last_seq, last_stored_at, digest, updated_at) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (stream) DO UPDATE SET last_seq = excluded.last_seq, last_stored_at = excluded.last_stored_at,
    digest = excluded.digest, updated_at = excluded.updated_at
WHERE checkpoint.last_seq = ? AND checkpoint.last_seq < excluded.last_seq
"""
INSERT_CHECKPOINT_LOG = "INSERT INTO checkpoint_log VALUES (?, ?, ?, ?, ?)"
INSERT_GAPS = "INSERT INTO stream_gaps SELECT unnest(?::UBIGINT[]), unnest(?::UBIGINT[]), ?"
# The content of events the index found, to compare an event published again with: by stream
# sequence, a handful of integers written into the statement (a list parameter would be joined
# against every row of the log).
SELECT_CONTENT = """
SELECT stream_seq, agency, event_id, content_hash, payload FROM event_log WHERE stream_seq IN ({seqs})
"""
# Who first defined each campaign and plan task: only that agency may define it again.
SELECT_OWNERS = """
WITH wanted AS (SELECT unnest(?::VARCHAR[]) AS kind, unnest(?::VARCHAR[]) AS ref),
defined AS (
    SELECT CASE event_type WHEN 'campaign_defined' THEN 'campaign' ELSE 'plan_task' END AS kind,
           CASE event_type WHEN 'campaign_defined' THEN payload ->> 'campaign_id'
                ELSE concat_ws('/', payload ->> 'plan_id', payload ->> 'part', payload ->> 'task') END AS ref,
           agency, version_seq
    FROM fact_versions
    WHERE event_type IN ('campaign_defined', 'plan_task_defined') AND payload IS NOT NULL
)
SELECT d.kind, d.ref, arg_min(d.agency, d.version_seq) FROM defined d SEMI JOIN wanted w USING (kind, ref)
GROUP BY d.kind, d.ref
"""
# No RETURNING: DuckDB carries out an UPDATE that returns rows as a delete and an insert of each
# whole row, which leaves every superseded version's row deleted and written again at the end of the
# table. The kept totals read the versions a batch supersedes before this runs (``KeptTotals.current``).
SUPERSEDE = """
UPDATE fact_versions SET superseded_seq = s.seq, superseded_stored_at = s.stored_at
FROM (SELECT unnest(?::UUID[]) AS fact_id, unnest(?::UBIGINT[]) AS seq, unnest(?::TIMESTAMPTZ[]) AS stored_at,
             unnest(?::VARCHAR[]) AS agency) AS s
WHERE fact_versions.fact_id = s.fact_id AND fact_versions.agency = s.agency AND fact_versions.superseded_seq IS NULL
"""

# The table each row type of a batch goes to, by field name into the column of that name.
TABLES: dict[type, str] = {
    LogRow: "event_log",
    RejectedRow: "rejected_events",
    DuplicateRow: "ignored_duplicates",
    FactVersion: "fact_versions",
}


# How DuckDB (and the operating system through it) says a write failed for want of memory, disk or
# permission; its error classes do not tell them apart (a commit's failures are all "TransactionContext").
MEMORY_FAILURES = ("out of memory", "failed to pin block", "memory limit")
DISK_FAILURES = ("no space left", "file too large", "disk quota", "disk is full")
PERMISSION_FAILURES = ("permission denied", "read-only file system", "read only file system", "operation not permitted")


class WriteOutOfMemory(ProjectionError):
    """A batch could not be written for want of memory: nothing of it was written, and the same
    batch may be written again once memory is free (an analyst's query may hold it for a moment)."""

    def __init__(self, message: str, detail: str) -> None:
        super().__init__(message)
        self.detail = detail  # DuckDB's (or Python's) words for what could not be allocated


class CheckpointNotAdvanced(ProjectionError):
    """A batch would not move the checkpoint forward from the sequence it was folded after: it was
    refused, and nothing of it written."""


@dataclass(frozen=True)
class Checkpoint:
    last_seq: int
    stream_created: datetime
    digest: str


# DuckDB folds its write-ahead log into the file once the log passes this size, and each fold costs
# more as the file grows: a larger threshold makes fewer of them, in the same peak memory (the log's
# rows are in the buffer pool either way). A crash costs reading up to this much log back when the
# file is next opened.
CHECKPOINT_THRESHOLD = "128MB"
# DuckDB keeps a long string written since the write-ahead log was last folded into the file (an
# event's payload of some kilobytes) in its buffer pool, and cannot evict it: a flood of the largest
# events would fill the pool before the log reached CHECKPOINT_THRESHOLD, and every commit after
# would fail. So the writer folds the log itself once the long strings written since hold
# 1 / LONG_STRINGS_SHARE of the pool.
LONG_STRING_BYTES = 2048
LONG_STRINGS_SHARE = 4


def _megabytes(limit: str) -> int:
    """A DuckDB memory limit as the store is given it ("112MB", "1GB") in MB."""
    found = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)i?B\s*", limit, re.IGNORECASE)
    if not found:
        raise ProjectionError(f"cannot read the memory limit {limit!r}: give it as a number of MB, e.g. 112MB")
    scale = {"K": 1 / 1024, "": 1 / (1024 * 1024), "M": 1, "G": 1024, "T": 1024 * 1024}[found.group(2).upper()]
    return max(1, int(int(found.group(1)) * scale))


# DuckDB's buffer pool when the caller gives none; the projector and replay give the setting
# (``OUTREACH_MEMORY_LIMIT_MB``, the same by default; why this size: runtime/settings.py).
MEMORY_LIMIT = "112MB"


class ProjectionStore:
    """The projector's read-write handle on one DuckDB file."""

    def __init__(
        self, path: str | Path, memory_limit: str = MEMORY_LIMIT, threads: int = 1, *, keep_totals: bool = True
    ) -> None:
        """``keep_totals=False``: a new file built from the first event in one go (a replay), whose
        totals are computed once, by ``build_totals`` at its end, instead of batch by batch."""
        self.path = Path(path)
        self.memory_limit = memory_limit
        self.long_strings = 0  # bytes of long strings written since the write-ahead log was last folded
        self.long_strings_limit = _megabytes(memory_limit) * 1024 * 1024 // LONG_STRINGS_SHARE
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ProjectionError(f"cannot open {self.path} for writing: {exc}") from None
        # A bounded buffer pool keeps the projector's memory flat however large the file grows. One
        # thread a statement: the writer, the snapshots and analysts' queries each run on their own
        # thread side by side, and a statement's second thread only adds to the memory held at once.
        self.root = connect_for_writing(
            self.path,
            {
                "memory_limit": memory_limit,
                "checkpoint_threshold": CHECKPOINT_THRESHOLD,
                "threads": threads,
                # Analysts' queries through the projector spill here too: bounded, never the whole disk.
                "max_temp_directory_size": SPILL_LIMIT,
            },
        )
        # The writer has a connection of its own, used by one thread at a time; readers (queries,
        # snapshots) get cursors of the root connection, never the writer's.
        self.con = self.root.cursor()
        self._create()
        self.known = KnownIndex.load(self.con, self.path.parent)
        self.totals = KeptTotals(self.con) if keep_totals else None

    def _create(self) -> None:
        """Make the projection's tables, reference tables and views, lock the connection down, and
        prepare each row type's insert from the tables as they now are."""
        try:
            self.con.begin()
            kept = self.con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'totals_cells'").fetchone()
            create_projection(self.con)
            if not kept or kept[0] == 0:  # a file made before the totals were kept: from its actions, once
                self.con.execute(BACKFILL)
            self.con.commit()
        except duckdb.Error as exc:
            self.con.rollback()
            raise ProjectionError(f"cannot create the projection schema in {self.path}: {exc}") from None
        # The projector answers analysts' queries on this connection: nothing may reach outside.
        lock_down(self.con)
        self._inserts = {row_type: BatchInsert(self.con, table, row_type) for row_type, table in TABLES.items()}

    def checkpoint(self, stream: str) -> Checkpoint | None:
        row = self.con.execute(SELECT_CHECKPOINT, [stream]).fetchone()
        return Checkpoint(int(row[0]), row[1], row[2]) if row else None

    def lookup(
        self, keys: list[tuple[str, uuid.UUID]], compare: Collection[tuple[str, uuid.UUID]] = ()
    ) -> dict[tuple[str, uuid.UUID], KnownEvent]:
        """What the projection knows of these (agency, event_id) pairs (only those it has); for
        those in ``compare``, events published again, also their content hash and payload."""
        found = self.known.get(keys)
        content: dict[tuple[int, str, uuid.UUID], tuple[str, str]] = {}
        wanted = sorted(entry.stream_seq for key, entry in found.items() if key in compare)
        if wanted:
            sql = SELECT_CONTENT.format(seqs=", ".join(str(int(seq)) for seq in wanted))
            content = {(int(r[0]), r[1], r[2]): (r[3], r[4]) for r in self.con.execute(sql).fetchall()}
        known = {}
        for (agency, event_id), entry in found.items():
            content_hash, payload = content.get((entry.stream_seq, agency, event_id), (None, None))
            known[agency, event_id] = KnownEvent(
                event_id, entry.stream_seq, content_hash, agency, entry.event_type, entry.retracted, payload
            )
        return known

    def owners(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """The agency that first defined each of these campaigns and plan tasks (only those defined)."""
        if not keys:
            return {}
        rows = self.con.execute(SELECT_OWNERS, [[k[0] for k in keys], [k[1] for k in keys]]).fetchall()
        return {(r[0], r[1]): r[2] for r in rows}

    def apply(self, update: BatchUpdate, stream: str, stream_created: datetime, after_seq: int) -> None:
        """Write one batch, folded after stream sequence ``after_seq``, and its checkpoint in one
        transaction; on error nothing is written."""
        con = self.con
        try:
            con.begin()
            for row_type, rows in (
                (LogRow, update.log),
                (RejectedRow, update.rejected),
                (DuplicateRow, update.duplicates),
            ):
                self._insert(row_type, rows)
            superseded: list[tuple[Any, ...]] = []
            if update.supersede:
                s = update.supersede
                if self.totals is not None:
                    superseded = self.totals.current(con, [(x.agency, x.fact_id) for x in s])
                con.execute(
                    SUPERSEDE,
                    [[x.fact_id for x in s], [x.seq for x in s], [x.stored_at for x in s], [x.agency for x in s]],
                )
            self._insert(FactVersion, update.versions)
            linked_away = self.totals.write(con, superseded, update.versions) if self.totals is not None else None
            now = datetime.now(UTC)
            if update.gaps:
                firsts, lasts = zip(*update.gaps, strict=True)
                con.execute(INSERT_GAPS, [list(firsts), list(lasts), now])
            moved = con.execute(
                ADVANCE_CHECKPOINT,
                [stream, stream_created, update.last_seq, update.last_stored_at, update.digest, now, after_seq],
            ).fetchone()
            if not moved or moved[0] != 1:
                con.rollback()
                stored = self.checkpoint(stream)
                raise CheckpointNotAdvanced(
                    f"refused to apply the batch ending at stream sequence {update.last_seq} to {self.path}: it "
                    f"follows stream sequence {after_seq}, but the file's checkpoint is at "
                    f"{stored.last_seq if stored else '?'}, and a checkpoint moves only forward from where its "
                    f"writer left it. Another projector writes this file, or the batch was applied before; "
                    f"nothing of it was kept."
                )
            con.execute(INSERT_CHECKPOINT_LOG, [stream, update.last_seq, update.last_stored_at, update.digest, now])
            con.commit()
        except ProjectionError:
            with contextlib.suppress(duckdb.Error):
                con.rollback()
            raise
        except (duckdb.Error, MemoryError) as exc:
            with contextlib.suppress(duckdb.Error):  # already gone: nothing of it was committed
                con.rollback()
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            batch = f"writing the batch ending at stream sequence {update.last_seq} to {self.path}"
            kept = f"nothing of it was kept and the checkpoint did not move: {detail.rstrip('.')}"
            if TOTALS_MISMATCH in detail:  # the file's kept totals, not the batch: resuming cannot mend it
                message = (
                    f"{batch} was refused; {kept}. Replay the stream into a new file (`outreach replay --db NEW`) "
                    f"and project into that one."
                )
            else:
                message = (
                    f"{batch} failed; {kept}. {self._remedy(exc)}, then start the projector again: it resumes "
                    f"from the checkpoint."
                )
            # A database DuckDB invalidated (a fatal error) takes no batch again.
            if self._is_memory(exc) and not isinstance(exc, duckdb.FatalException):
                raise WriteOutOfMemory(message, detail) from None
            raise ProjectionError(message) from None
        self._remember(update.log)
        if self.totals is not None and linked_away is not None:
            self.totals.settle(linked_away)
        self._fold_log_if_long(update)

    def build_totals(self) -> None:
        """Compute the kept totals from the actions in force, in one transaction: the end of a
        replay, whose store keeps none batch by batch."""
        try:
            self.con.begin()
            self.con.execute("DELETE FROM totals_cells")
            self.con.execute(BACKFILL)
            self.con.commit()
        except (duckdb.Error, MemoryError) as exc:
            with contextlib.suppress(duckdb.Error):
                self.con.rollback()
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ProjectionError(
                f"computing the totals of {self.path} failed; nothing of them was kept: {detail.rstrip('.')}. "
                f"{self._remedy(exc)}, then replay again."
            ) from None

    def _fold_log_if_long(self, update: BatchUpdate) -> None:
        """Fold the write-ahead log into the file once the long strings written since the last time
        hold ``1 / LONG_STRINGS_SHARE`` of the pool (see LONG_STRING_BYTES). The batch is committed
        already: a failure here stops the projector as a failed write would, its checkpoint moved."""
        texts = [row.payload for row in update.log] + [v.payload for v in update.versions if v.payload is not None]
        # A character is up to 4 bytes: only texts that may be long are encoded to be measured.
        sizes = [len(text.encode()) for text in texts if len(text) >= LONG_STRING_BYTES // 4]
        sizes += [len(row.payload) for row in update.rejected]
        self.long_strings += sum(size for size in sizes if size >= LONG_STRING_BYTES)
        if self.long_strings < self.long_strings_limit:
            return
        try:
            self.con.execute("CHECKPOINT")
        except duckdb.Error as exc:
            if "other write transactions" in str(exc):
                return  # a snapshot is being written beside it: after the next batch, then
            raise ProjectionError(
                f"folding the write-ahead log into {self.path} after the batch ending at stream sequence "
                f"{update.last_seq} failed (the batch itself is kept): {str(exc).strip().splitlines()[0]}. "
                f"{self._remedy(exc)}, then start the projector again: it resumes from the checkpoint."
            ) from None
        self.long_strings = 0

    @staticmethod
    def _is_memory(exc: BaseException) -> bool:
        return isinstance(exc, duckdb.OutOfMemoryException | MemoryError) or any(
            m in str(exc).lower() for m in MEMORY_FAILURES
        )

    def _remedy(self, exc: BaseException) -> str:
        """What failed in a write, by DuckDB's error, and what the operator does about it."""
        text = str(exc).lower()
        if self._is_memory(exc):
            return (
                f"Memory: DuckDB's buffer pool ({self.memory_limit}, OUTREACH_MEMORY_LIMIT_MB) could not hold "
                f"the batch. Raise OUTREACH_MEMORY_LIMIT_MB, or lower OUTREACH_BATCH_BYTES or OUTREACH_BATCH_SIZE"
            )
        if any(m in text for m in DISK_FAILURES):
            return (
                f"Disk: the file system holding {self.path} is full, or the file reached a size limit. Free space "
                f"there (or lift the limit)"
            )
        if isinstance(exc, duckdb.PermissionException) or any(m in text for m in PERMISSION_FAILURES):
            return (
                f"Permissions: the projector may not write {self.path} or its directory (a read-only file system, "
                f"or the file's owner and mode). Give the projector's user write access"
            )
        return "Fix the cause (memory, disk space, file permissions)"

    def _remember(self, log: list[LogRow]) -> None:
        """The index learns what the file has just committed, and only that."""
        for row in log:
            key = (row.agency, row.event_id)
            self.known.add(key, row.stream_seq, row.event_type, fact=row.refers_to is None)
            if row.event_type == "event_retracted":
                self.known.retract((row.agency, row.refers_to))
        self.known.settle()

    def _insert(self, row_type: type, rows: list[Any]) -> None:
        self._inserts[row_type].write(self.con, rows)

    def reader(self) -> duckdb.DuckDBPyConnection:
        """A new connection to the same database for one reader: a query, a snapshot. Made on the
        caller's thread; it sees committed batches only."""
        return self.root.cursor()

    def close(self) -> None:
        self.known.close()
        self.con.close()
        self.root.close()
