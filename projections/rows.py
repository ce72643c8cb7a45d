"""The rows a batch adds to the projection, as plain data. The fold builds them; the store writes them.

Every row is a named tuple, made whole and never changed: the parser's thread makes them and the
writer's reads them. (A frozen dataclass would do as well, but sets each field through a Python
call, and the fold makes several rows an event.)"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import NamedTuple


class LogRow(NamedTuple):
    stream_seq: int
    event_id: uuid.UUID
    subject: str
    event_type: str
    schema_version: int
    agency: str
    stored_at: datetime
    recorded_at: datetime
    occurred_start: date | None
    occurred_end: date | None
    refers_to: uuid.UUID | None
    content_hash: str
    payload: str


class RejectedRow(NamedTuple):
    stream_seq: int
    subject: str
    stored_at: datetime
    event_id: str | None
    reason: str
    payload: bytes  # the raw bytes received, or their first ``REJECTED_PAYLOAD_BYTES``
    payload_bytes: int  # how many bytes were received
    payload_sha256: str  # of all of them, in hex


class DuplicateRow(NamedTuple):
    stream_seq: int
    event_id: uuid.UUID
    stored_at: datetime
    agency: str


class AudienceCount(NamedTuple):
    """One audience group of a session, as the ``audiences`` column's struct holds it."""

    audience: str
    count: int | None
    estimated: bool


class FactVersion(NamedTuple):
    """One version of a fact, with what the totals need derived once, from the validated event:
    the payload itself is written once, to the event log (and here only for campaign and plan-task
    definitions, which the views read). A retraction's version has no figures. Made on the parser's
    thread and read on the writer's: a version that stops being current is a new value
    (``_replace``), never this one changed."""

    fact_id: uuid.UUID
    version_seq: int
    version_stored_at: datetime
    superseded_seq: int | None
    superseded_stored_at: datetime | None
    retracted: bool
    event_type: str
    agency: str
    country: str | None = None
    county: str | None = None
    municipality: str | None = None
    campaign_id: str | None = None
    plan_tasks: tuple[str, ...] = ()
    occurred_start: date | None = None
    occurred_end: date | None = None
    sessions: int = 0
    session_format: str | None = None
    participants: int = 0
    participants_unknown: bool = False
    participants_estimated: bool = False
    materials: int = 0
    material_kind: str | None = None
    materials_unknown: bool = False
    teams: int = 0
    audiences: tuple[AudienceCount, ...] | None = None  # sessions only
    payload: str | None = None  # definitions only: the validated, upcast event as canonical JSON
    venue: str | None = None  # actions only: where (possible_duplicates compares it)


class Supersede(NamedTuple):
    """The current version (in the database) of ``fact_id`` stops being current at ``seq``."""

    fact_id: uuid.UUID
    seq: int
    stored_at: datetime
    agency: str


class KnownEvent(NamedTuple):
    """What the projection already knows of an event_id, for dedup and for corrections."""

    event_id: uuid.UUID
    stream_seq: int
    content_hash: str | None  # read only for an event_id published again, to compare
    agency: str
    event_type: str
    retracted: bool | None  # None: not a fact (a correction or retraction itself)
    payload: str | None = None  # as published; read only to compare a reused event_id


@dataclass(frozen=True, slots=True)
class BatchUpdate:
    """Everything one batch changes, written in one transaction with the checkpoint. The fold
    makes it whole (``consumers.fold.fold_batch``); nothing fills it in afterwards."""

    last_seq: int
    last_stored_at: datetime | None
    digest: str  # the running digest of the stream up to last_seq
    gaps: tuple[tuple[int, int], ...] = ()  # stream sequences missing (first, last)
    log: tuple[LogRow, ...] = ()
    rejected: tuple[RejectedRow, ...] = ()
    duplicates: tuple[DuplicateRow, ...] = ()
    versions: tuple[FactVersion, ...] = ()
    supersede: tuple[Supersede, ...] = ()
