"""The DuckDB projection: its schema, the one-transaction batch write, and the projector's lookups.

One process writes a database file: the projector. Each batch and its checkpoint are written in
one transaction, so after any crash the file holds exactly the batches up to its checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import operator
import re
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from projections.known import KnownIndex
from projections.query import SPILL_LIMIT
from projections.rows import BatchUpdate, DuplicateRow, FactVersion, KnownEvent, LogRow, RejectedRow
from schemas.errors import ProjectionError
from schemas.reference import regions

log = logging.getLogger("outreach.projector")

# The totals every totals_by_* view carries, in this order.
TOTALS = """\
count(a.fact_id) AS events,
       CAST(coalesce(sum(a.sessions), 0) AS BIGINT) AS sessions,
       CAST(coalesce(sum(a.participants), 0) AS BIGINT) AS participants,
       coalesce(sum(a.sessions) FILTER (WHERE a.participants_unknown), 0)::BIGINT AS sessions_participants_unknown,
       coalesce(sum(a.sessions) FILTER (WHERE a.participants_estimated), 0)::BIGINT AS sessions_participants_estimated,
       CAST(coalesce(sum(a.materials), 0) AS BIGINT) AS materials_distributed,
       count(*) FILTER (WHERE a.materials_unknown) AS materials_unknown,
       CAST(coalesce(sum(a.teams), 0) AS BIGINT) AS teams_established,
       min(a.occurred_start) AS first_activity,
       max(coalesce(a.occurred_end, a.occurred_start)) AS last_activity"""

_SQL_DIR = resources.files("projections")
SCHEMA_SQL = _SQL_DIR.joinpath("schema.sql").read_text("utf-8")
# The same totals read from a pre-aggregated row ``g`` that may be missing (a campaign or plan
# task with no action yet): counts become 0, dates stay NULL.
_TOTAL_NAMES = [line.rsplit(" AS ", 1)[1].rstrip(",") for line in TOTALS.splitlines()]
TOTALS_OR_ZERO = ",\n       ".join(
    f"g.{name}" if name.endswith("_activity") else f"coalesce(g.{name}, 0) AS {name}" for name in _TOTAL_NAMES
)
VIEWS_SQL = (
    _SQL_DIR.joinpath("views.sql")
    .read_text("utf-8")
    .replace("{totals}", TOTALS)
    .replace("{totals_or_zero}", TOTALS_OR_ZERO)
)
VIEWS_SQL += _SQL_DIR.joinpath("slices.sql").read_text("utf-8").replace("{totals}", TOTALS)
VIEWS_SQL += _SQL_DIR.joinpath("coordination.sql").read_text("utf-8").replace("{totals}", TOTALS)

LOCKDOWN = [
    "SET enable_progress_bar = false",
    "SET autoinstall_known_extensions = false",
    "SET autoload_known_extensions = false",
    "SET enable_external_access = false",
    "SET lock_configuration = true",
]
REFERENCE_SQL = """
CREATE OR REPLACE TABLE counties (
    code VARCHAR PRIMARY KEY, country VARCHAR, name VARCHAR, name_en VARCHAR, kind VARCHAR);
CREATE OR REPLACE TABLE municipalities (code VARCHAR PRIMARY KEY, county VARCHAR, name VARCHAR);
"""
INSERT_COUNTIES = "INSERT INTO counties SELECT unnest(?), unnest(?), unnest(?), unnest(?), unnest(?)"
INSERT_MUNICIPALITIES = "INSERT INTO municipalities SELECT unnest(?), unnest(?), unnest(?)"

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
SUPERSEDE = """
UPDATE fact_versions SET superseded_seq = s.seq, superseded_stored_at = s.stored_at
FROM (SELECT unnest(?::UUID[]) AS fact_id, unnest(?::UBIGINT[]) AS seq, unnest(?::TIMESTAMPTZ[]) AS stored_at,
             unnest(?::VARCHAR[]) AS agency) AS s
WHERE fact_versions.fact_id = s.fact_id AND fact_versions.agency = s.agency AND fact_versions.superseded_seq IS NULL
"""

AUDIENCES = "STRUCT(audience VARCHAR, count BIGINT, estimated BOOLEAN)[]"
# DuckDB types of each row class's fields, in field order; the INSERTs are built from these.
_TYPES: dict[type, dict[str, str]] = {
    LogRow: {
        "stream_seq": "UBIGINT",
        "event_id": "UUID",
        "subject": "VARCHAR",
        "event_type": "VARCHAR",
        "schema_version": "INTEGER",
        "agency": "VARCHAR",
        "stored_at": "TIMESTAMPTZ",
        "recorded_at": "TIMESTAMPTZ",
        "occurred_start": "DATE",
        "occurred_end": "DATE",
        "refers_to": "UUID",
        "content_hash": "VARCHAR",
        "payload": "JSON",
    },
    RejectedRow: {
        "stream_seq": "UBIGINT",
        "subject": "VARCHAR",
        "stored_at": "TIMESTAMPTZ",
        "event_id": "VARCHAR",
        "reason": "VARCHAR",
        "payload": "BLOB",
        "payload_bytes": "UBIGINT",
        "payload_sha256": "VARCHAR",
    },
    DuplicateRow: {"stream_seq": "UBIGINT", "event_id": "UUID", "stored_at": "TIMESTAMPTZ", "agency": "VARCHAR"},
    FactVersion: {
        "fact_id": "UUID",
        "version_seq": "UBIGINT",
        "version_stored_at": "TIMESTAMPTZ",
        "superseded_seq": "UBIGINT",
        "superseded_stored_at": "TIMESTAMPTZ",
        "retracted": "BOOLEAN",
        "event_type": "VARCHAR",
        "agency": "VARCHAR",
        "country": "VARCHAR",
        "county": "VARCHAR",
        "municipality": "VARCHAR",
        "campaign_id": "VARCHAR",
        "plan_tasks": "VARCHAR[]",
        "occurred_start": "DATE",
        "occurred_end": "DATE",
        "sessions": "INTEGER",
        "session_format": "VARCHAR",
        "participants": "BIGINT",
        "participants_unknown": "BOOLEAN",
        "participants_estimated": "BOOLEAN",
        "materials": "BIGINT",
        "material_kind": "VARCHAR",
        "materials_unknown": "BOOLEAN",
        "teams": "INTEGER",
        "audiences": AUDIENCES,
        "payload": "JSON",
        "venue": "VARCHAR",
    },
}
_TABLES = {
    LogRow: "event_log",
    RejectedRow: "rejected_events",
    DuplicateRow: "ignored_duplicates",
    FactVersion: "fact_versions",
}


def _insert_sql(row_type: type) -> str:
    types = _TYPES[row_type]
    names = row_type._fields if hasattr(row_type, "_fields") else [f.name for f in fields(row_type)]
    assert list(types) == list(names), row_type
    columns = ", ".join(types)
    values = ", ".join(_SQL_VALUES.get(t, "{name}").format(name=name) for name, t in types.items())
    return f"INSERT INTO {_TABLES[row_type]} ({columns}) SELECT {values} FROM {_BATCH}"


# A batch goes to DuckDB as Arrow columns: built in C++ from the Python values, and read by DuckDB
# without a call back into Python per value (a Python list param costs about 0.6-1.7 us a value).
# A UUID travels as the two halves of its 128-bit integer, read from the UUID without a call (its
# text is a Python call: 1.1 us a value against 0.1), and JSON as text; both are cast in the INSERT.
_BATCH = "arrow_batch"
_HALF = (1 << 64) - 1
_SQL_VALUES = {
    "UUID": "CAST((CAST({name}_hi AS UHUGEINT) << 64) | CAST({name}_lo AS UHUGEINT) AS UUID)",
    "JSON": "CAST({name} AS JSON)",
}
# Arrow's own allocator keeps what it freed for later (50 MiB more peak memory in a 100,000-event
# replay); the system's gives it back.
pa.set_memory_pool(pa.system_memory_pool())
_ARROW_TYPES = {
    "UBIGINT": pa.uint64(),
    "VARCHAR": pa.string(),
    "INTEGER": pa.int32(),
    "TIMESTAMPTZ": pa.timestamp("us", tz="UTC"),
    "DATE": pa.date32(),
    "JSON": pa.string(),
    "BLOB": pa.binary(),
    "BOOLEAN": pa.bool_(),
    "BIGINT": pa.int64(),
    "VARCHAR[]": pa.list_(pa.string()),
    AUDIENCES: pa.list_(pa.struct([("audience", pa.string()), ("count", pa.int64()), ("estimated", pa.bool_())])),
}


def _arrow(row_type: type, rows: list[Any]) -> pa.Table:
    """Rows to an Arrow table of the row type's columns, one pass per column."""
    types = _TYPES[row_type]
    getter = _GETTERS.get(row_type)  # a named tuple's rows are already their columns' values
    columns = zip(*(rows if getter is None else map(getter, rows)), strict=True)
    arrays, names = [], []
    for column, (name, t) in zip(columns, types.items(), strict=True):
        if t == "UUID":
            arrays.append(pa.array([None if v is None else v.int >> 64 for v in column], pa.uint64()))
            arrays.append(pa.array([None if v is None else v.int & _HALF for v in column], pa.uint64()))
            names += [f"{name}_hi", f"{name}_lo"]
        else:
            arrays.append(pa.array(column, _ARROW_TYPES[t]))
            names.append(name)
    return pa.Table.from_arrays(arrays, names=names)


INSERTS = {row_type: _insert_sql(row_type) for row_type in _TYPES}
_GETTERS = {row_type: operator.attrgetter(*_TYPES[row_type]) for row_type in _TYPES if not hasattr(row_type, "_fields")}


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


# DuckDB folds its write-ahead log into the file once the log passes this size, and each such
# checkpoint costs more as the file grows (at the default, 16 MB, one came every third batch and
# commits took 8 us an event at 100,000 events, 45 us at 1,000,000). At 128 MB there are eight times
# fewer: 1,000,000 events replayed at 11,900/s at the end instead of 8,200/s, in the same peak
# memory (the log's rows are in the buffer pool either way). A crash costs reading up to 128 MB of
# log back when the file is next opened.
CHECKPOINT_THRESHOLD = "128MB"
READERS_POLL_S = 0.1
# DuckDB keeps a long string written since the last checkpoint (an event's payload of some
# kilobytes) in its buffer pool until the write-ahead log is folded into the file, and cannot evict
# it: a flood of the largest events (64 KiB) filled a 112 MB pool before the log reached
# CHECKPOINT_THRESHOLD, and every commit after failed. So the writer folds the log itself once the
# long strings written since hold a quarter of the pool.
LONG_STRING_BYTES = 2048
LONG_STRINGS_SHARE = 4


def _connect_for_writing(path: Path, config: dict[str, Any]) -> duckdb.DuckDBPyConnection:
    """Open ``path`` for writing. Another process reading it (an analyst's `outreach sql --db`, a
    notebook, a report) holds a shared lock: wait for as long as it does, saying once which process
    it is, and never fail on it. Another writer (a second projector) is an error at once.

    DuckDB's lock tells a reader from a writer: a read-only connection opens beside readers, never
    beside a writer; its error names the holder's program and PID."""
    said: set[str] = set()
    while True:
        try:
            return duckdb.connect(str(path), config=config)
        except duckdb.Error as exc:
            if "lock" not in str(exc).lower():
                raise ProjectionError(f"cannot open {path} for writing: {exc}") from None
            holder = _holder(exc)
            if not _only_readers(path):
                raise ProjectionError(
                    f"cannot open {path} for writing: {holder} holds it open for writing ({exc}). One projector "
                    f"writes a file; stop the other, or give this one a file of its own (--db)"
                ) from None
            if holder not in said:
                log.warning(
                    "%s is open read-only in %s, a reader (a notebook, `outreach sql --db`, a report); waiting for "
                    "it to close the file, for as long as it takes",
                    path,
                    holder,
                )
                said.add(holder)
            time.sleep(READERS_POLL_S)


def _megabytes(limit: str) -> int:
    """A DuckDB memory limit as the store is given it ("112MB", "1GB") in MB."""
    found = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)i?B\s*", limit, re.IGNORECASE)
    if not found:
        raise ProjectionError(f"cannot read the memory limit {limit!r}: give it as a number of MB, e.g. 112MB")
    scale = {"K": 1 / 1024, "": 1 / (1024 * 1024), "M": 1, "G": 1024, "T": 1024 * 1024}[found.group(2).upper()]
    return max(1, int(int(found.group(1)) * scale))


def _holder(exc: duckdb.Error) -> str:
    """The process DuckDB's lock error names: "Conflicting lock is held in <program> (PID <n>)"."""
    found = re.search(r"held in (.+?) \(PID (\d+)\)", str(exc))
    return f"process {found.group(2)} ({found.group(1)})" if found else "another process"


def _only_readers(path: Path) -> bool:
    """Whether the lock on ``path`` is only readers': a reader can open it beside them, not beside a writer."""
    try:
        duckdb.connect(str(path), read_only=True).close()
    except duckdb.Error as exc:
        return "lock" not in str(exc).lower()
    return True


# The on-disk format of the files made for analysts' own tools (the snapshot, the copy, a replay):
# the one DuckDB 1.1 and every later version read, as BI tools bundle older versions. The live
# projection keeps the newest format: in the older one a checkpoint of a full write-ahead log holds
# a row group's strings in memory at once, more than the projector's buffer pool has left, and
# fails. A replay is built in the newest format and copied into the older one when done.
STORAGE_VERSION = "v1.1.0"

# DuckDB's buffer pool when the caller gives none; the projector and replay give the setting
# (``OUTREACH_MEMORY_LIMIT_MB``, the same by default; why this size: runtime/settings.py).
MEMORY_LIMIT = "112MB"


class ProjectionStore:
    """The projector's read-write handle on one DuckDB file."""

    def __init__(self, path: str | Path, memory_limit: str = MEMORY_LIMIT, threads: int = 1) -> None:
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
        self.root = _connect_for_writing(
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
        self.known = KnownIndex.load(self.con)

    def _create(self) -> None:
        reg = regions()
        counties = list(reg.counties.values())
        munis = list(reg.municipalities.values())
        try:
            self.con.begin()
            self.con.execute(SCHEMA_SQL)
            self.con.execute(REFERENCE_SQL)
            self.con.execute(
                INSERT_COUNTIES,
                [
                    [c.code for c in counties],
                    [c.country for c in counties],
                    [c.name for c in counties],
                    [c.name_en for c in counties],
                    [c.kind for c in counties],
                ],
            )
            self.con.execute(
                INSERT_MUNICIPALITIES, [[m.code for m in munis], [m.county for m in munis], [m.name for m in munis]]
            )
            self.con.execute(VIEWS_SQL)
            self.con.commit()
        except duckdb.Error as exc:
            self.con.rollback()
            raise ProjectionError(f"cannot create the projection schema in {self.path}: {exc}") from None
        # The projector answers analysts' queries on this connection: nothing may reach outside.
        # The settings hold for the whole database, so a second handle in this process finds them set.
        locked = self.con.execute("SELECT current_setting('lock_configuration')").fetchone()
        if not (locked and locked[0]):
            for setting in LOCKDOWN:
                self.con.execute(setting)

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
            if update.supersede:
                s = update.supersede
                con.execute(
                    SUPERSEDE,
                    [[x.fact_id for x in s], [x.seq for x in s], [x.stored_at for x in s], [x.agency for x in s]],
                )
            self._insert(FactVersion, update.versions)
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
        except (duckdb.Error, MemoryError) as exc:
            with contextlib.suppress(duckdb.Error):  # already gone: nothing of it was committed
                con.rollback()
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            message = (
                f"writing the batch ending at stream sequence {update.last_seq} to {self.path} failed; "
                f"nothing of it was kept and the checkpoint did not move: {detail.rstrip('.')}. "
                f"{self._remedy(exc)}, then start the projector again: it resumes from the checkpoint."
            )
            # A database DuckDB invalidated (a fatal error) takes no batch again.
            if self._is_memory(exc) and not isinstance(exc, duckdb.FatalException):
                raise WriteOutOfMemory(message, detail) from None
            raise ProjectionError(message) from None
        self._remember(update.log)
        self._fold_log_if_long(update)

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
        if not rows:
            return
        self.con.register(_BATCH, _arrow(row_type, rows))
        try:
            self.con.execute(INSERTS[row_type])
        finally:
            self.con.unregister(_BATCH)

    def reader(self) -> duckdb.DuckDBPyConnection:
        """A new connection to the same database for one reader: a query, a snapshot. Made on the
        caller's thread; it sees committed batches only."""
        return self.root.cursor()

    def close(self) -> None:
        self.con.close()
        self.root.close()
