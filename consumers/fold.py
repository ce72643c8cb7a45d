"""The fold: a batch of stream messages to the rows it adds to the projection. Pure: no I/O.

The projector parses a batch (``parse_batch``), asks the projection what it already knows of the
event_ids the batch mentions (``referenced_ids``), and folds (``fold_batch``). Each message ends
in exactly one place: the event log (accepted), ``rejected_events`` (with a reason), or
``ignored_duplicates`` (the same event again, identical).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from projections.rows import (
    BatchUpdate,
    DuplicateRow,
    FactVersion,
    KnownEvent,
    LogRow,
    RejectedRow,
    Supersede,
)
from schemas.errors import EventInvalid
from schemas.events import (
    EventBase,
    EventCorrected,
    EventRetracted,
)
from schemas.parse import parse_event_versioned
from schemas.subjects import parse_subject

MAX_REASON = 2000


@dataclass(frozen=True, slots=True)
class StreamMessage:
    """One message as JetStream stored it."""

    seq: int
    subject: str
    data: bytes
    stored_at: datetime
    msg_id: str | None = None  # the Nats-Msg-Id header: the publisher's event_id


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def from_reply(subject: str, data: bytes, reply: str, headers: dict[str, str] | None = None) -> StreamMessage:
    """A message's stream sequence and storage time, read from its JetStream reply subject.

    ``$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<nanoseconds>.<pending>``
    (or the longer form with domain and account hash). The time is truncated to the microsecond,
    as the stream's own API reports it, so that "stored by T" means the same everywhere.
    """
    tokens = reply.split(".")
    if len(tokens) == 9:
        seq, nanos = tokens[5], tokens[7]
    else:  # $JS.ACK.<domain>.<account hash>.<stream>.<consumer>.<delivered>.<seq>.<cseq>.<nanos>.<pending>[.<token>]
        seq, nanos = tokens[7], tokens[9]
    msg_id = headers.get("Nats-Msg-Id") if headers else None
    return StreamMessage(int(seq), subject, data, EPOCH + timedelta(microseconds=int(nanos) // 1000), msg_id)


GENESIS = "0" * 64


def chain_digest(previous: str, msgs: list[StreamMessage]) -> str:
    """The running digest after ``msgs``: each link hashes the previous digest, the stream
    sequence, the subject, the message id and the payload's sha256. Any deleted, changed or
    re-ordered message changes every digest after it."""
    digest = bytes.fromhex(previous)
    for m in msgs:
        link = f"{m.seq}\x00{m.subject}\x00{m.msg_id or ''}\x00".encode() + hashlib.sha256(m.data).digest()
        digest = hashlib.sha256(digest + link).digest()
    return digest.hex()


def gaps(last_seq: int, msgs: list[StreamMessage]) -> list[tuple[int, int]]:
    """Stream sequences missing between the checkpoint and this batch, and within it."""
    missing = []
    expected = last_seq + 1
    for m in msgs:
        if m.seq > expected:
            missing.append((expected, m.seq - 1))
        expected = m.seq + 1
    return missing


@dataclass(frozen=True, slots=True)
class Parsed:
    msg: StreamMessage
    event: EventBase | None
    problem: str | None
    published_version: int = 0


def parse_batch(msgs: list[StreamMessage]) -> list[Parsed]:
    """Validate every message of a batch; an invalid one carries its problem instead of an event."""
    out = []
    for msg in msgs:
        try:
            event, version = parse_event_versioned(msg.data)
            out.append(Parsed(msg, event, None, version))
        except EventInvalid as exc:
            out.append(Parsed(msg, None, "invalid: " + "; ".join(str(p) for p in exc.problems)))
    return out


def referenced_ids(parsed: list[Parsed]) -> list[uuid.UUID]:
    """Every event_id the batch mentions: its own and those it corrects or retracts."""
    ids = set()
    for p in parsed:
        e = p.event
        if e is None:
            continue
        ids.add(e.event_id)
        if isinstance(e, EventCorrected):
            ids.add(e.corrects)
        elif isinstance(e, EventRetracted):
            ids.add(e.retracts)
    return list(ids)


def content_hash(data: bytes) -> str:
    """sha256 of a payload as published: cheap, and what auditors can recompute from the stream."""
    return hashlib.sha256(data).hexdigest()


def same_event(event: EventBase, published: str | None) -> bool:
    """Whether an earlier payload states the same event (it may be written differently)."""
    if published is None:
        return False
    try:
        return parse_event_versioned(published.encode())[0] == event
    except EventInvalid:
        return False


def fold_batch(parsed: list[Parsed], known: dict[uuid.UUID, KnownEvent]) -> BatchUpdate:
    """Fold a parsed batch into the rows it adds, given what the projection knew before it."""
    if not parsed:
        raise ValueError("an empty batch has nothing to fold")
    last = parsed[-1].msg
    update = BatchUpdate(last_seq=last.seq, last_stored_at=last.stored_at)
    known = dict(known)  # grows with the batch; the caller's copy is left alone
    current: dict[uuid.UUID, FactVersion] = {}  # versions this batch made, by fact_id
    for p in parsed:
        reason = _apply(p, known, current, update)
        if reason is not None:
            update.rejected.append(_rejected(p.msg, reason))
    return update


def _apply(
    p: Parsed, known: dict[uuid.UUID, KnownEvent], current: dict[uuid.UUID, FactVersion], update: BatchUpdate
) -> str | None:
    """Apply one message; return why it is rejected, or None when it was accepted or ignored."""
    msg, event = p.msg, p.event
    if event is None:
        return p.problem
    where = parse_subject(msg.subject)
    if where is None:
        return f"subject {msg.subject!r} does not follow outreach.events.<agency>.<event_type>"
    subject_agency, subject_type = where
    if subject_agency != event.agency:
        return (
            f"agency mismatch: the event says agency {event.agency!r} but was published on "
            f"{subject_agency!r}'s subject; an agency publishes only as itself"
        )
    if subject_type != event.event_type:
        return f"event type mismatch: the event is {event.event_type!r}, the subject says {subject_type!r}"
    digest = content_hash(msg.data)
    seen = known.get(event.event_id)
    if seen is not None:
        if seen.content_hash == digest or same_event(event, seen.payload):
            update.duplicates.append(DuplicateRow(msg.seq, event.event_id, msg.stored_at))
            return None
        return (
            f"conflict: event_id {event.event_id} was already used at stream sequence {seen.stream_seq} "
            f"with different content; a change to an event is published as an event_corrected"
        )

    refers_to: uuid.UUID | None = None
    if isinstance(event, EventCorrected | EventRetracted):
        refers_to = event.corrects if isinstance(event, EventCorrected) else event.retracts
        target = known.get(refers_to)
        reason = _check_target(event, refers_to, target)
        if reason is not None:
            return reason
        assert target is not None
        if isinstance(event, EventCorrected):
            version = _version(event.replacement, msg)
        else:
            version = _retracted_version(target, msg)
        _supersede(refers_to, version, current, update)
        known[refers_to] = replace(target, retracted=version.retracted)
        fact_state: bool | None = None
    else:
        version = _version(event, msg)
        current[event.event_id] = version
        update.versions.append(version)
        fact_state = False

    payload = msg.data.decode("utf-8")
    known[event.event_id] = KnownEvent(
        event.event_id, msg.seq, digest, event.agency, event.event_type, fact_state, payload
    )
    occurred = event.occurred
    update.log.append(
        LogRow(
            stream_seq=msg.seq,
            event_id=event.event_id,
            subject=msg.subject,
            event_type=event.event_type,
            schema_version=p.published_version,
            agency=event.agency,
            stored_at=msg.stored_at,
            recorded_at=event.recorded_at,
            occurred_start=occurred.start if occurred else None,
            occurred_end=occurred.end if occurred else None,
            refers_to=refers_to,
            content_hash=digest,
            payload=payload,
        )
    )
    return None


def _check_target(
    event: EventCorrected | EventRetracted, target_id: uuid.UUID, target: KnownEvent | None
) -> str | None:
    verb = "corrects" if isinstance(event, EventCorrected) else "retracts"
    if target is None:
        return f"unknown event: {verb} {target_id}, which is not in the log (publish the original first)"
    if target.retracted is None:
        return (
            f"{verb} {target_id}, which is itself a {target.event_type}; "
            f"corrections and retractions refer to the original event"
        )
    if target.agency != event.agency:
        return (
            f"{verb} {target_id}, an event of agency {target.agency!r}; "
            f"only the agency that published an event may correct or retract it"
        )
    if target.retracted:
        return f"{verb} {target_id}, which was already retracted"
    if isinstance(event, EventCorrected) and event.replacement.event_type != target.event_type:
        return (
            f"the replacement is a {event.replacement.event_type} but {target_id} is a "
            f"{target.event_type}; a correction keeps the event type"
        )
    return None


def _supersede(
    fact_id: uuid.UUID, version: FactVersion, current: dict[uuid.UUID, FactVersion], update: BatchUpdate
) -> None:
    previous = current.get(fact_id)
    if previous is not None:
        previous.superseded_seq = version.version_seq
        previous.superseded_stored_at = version.version_stored_at
    else:
        update.supersede.append(Supersede(fact_id, version.version_seq, version.version_stored_at))
    current[fact_id] = version
    update.versions.append(version)


def _version(event: EventBase, msg: StreamMessage) -> FactVersion:
    """A fact's version from the event (or a correction's replacement) that states it."""
    return FactVersion(
        event.event_id,
        msg.seq,
        msg.stored_at,
        None,
        None,
        False,
        event.event_type,
        event.agency,
        event.model_dump_json(),
    )


def _retracted_version(target: KnownEvent, msg: StreamMessage) -> FactVersion:
    return FactVersion(
        target.event_id, msg.seq, msg.stored_at, None, None, True, target.event_type, target.agency, None
    )


def _rejected(msg: StreamMessage, reason: str) -> RejectedRow:
    return RejectedRow(msg.seq, msg.subject, msg.stored_at, _event_id_of(msg.data), reason[:MAX_REASON], msg.data)


def _event_id_of(data: bytes) -> str | None:
    """The event_id of a rejected payload, when one can be read, for auditors to search by."""
    try:
        value = json.loads(data).get("event_id")
    except (ValueError, AttributeError, RecursionError):
        return None
    return value[:64] if isinstance(value, str) else None
