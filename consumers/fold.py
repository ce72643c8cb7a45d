"""The fold: a batch of stream messages to the rows it adds to the projection. Pure: no I/O.

The projector parses a batch (``parse_batch``, which also derives each event's rows), asks the
projection what it already knows of the event_ids the batch mentions (``referenced_ids``; the
content of its own, ``published_ids``, to compare an event published again), and folds
(``fold_batch``). Each message ends in exactly one place: the event log (accepted),
``rejected_events`` (with a reason), or ``ignored_duplicates`` (the same event again, identical).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from consumers import coordination as coord
from consumers.delivery import StreamMessage
from projections.rows import (
    AudienceCount,
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
    CampaignDefined,
    CoordinatorAppointed,
    EventBase,
    EventCorrected,
    EventRetracted,
    MaterialsDistributed,
    PlanTaskDefined,
    ReportSubmitted,
    SessionHeld,
    TeamEstablished,
)
from schemas.parse import MAX_EVENT_BYTES, parse_event_versioned
from schemas.subjects import parse_subject

MAX_REASON = 2000
# What a rejected message keeps of its raw bytes: enough to see what was sent.
REJECTED_PAYLOAD_BYTES = 4096


# Types compared with ``type(event) is`` / ``in``: pydantic's models make ``isinstance`` a Python
# call, several an event; no event class has subclasses.
DEFINITIONS = (CampaignDefined, PlanTaskDefined)


GENESIS = "0" * 64


def chain_link(m: StreamMessage, payload_sha256: bytes) -> bytes:
    """What a message adds to the running digest: its stream sequence, subject, message id and
    the payload's sha256. It needs no other message, so it is made where the batch is parsed."""
    return f"{m.seq}\x00{m.subject}\x00{m.msg_id or ''}\x00".encode() + payload_sha256


def chain_digest(previous: str, links: list[bytes]) -> str:
    """The running digest after these links (``chain_link``): each hashes the previous digest and
    its link. Any deleted, changed or re-ordered message changes every digest after it."""
    digest = bytes.fromhex(previous)
    for link in links:
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


class Parsed(NamedTuple):
    """A message as the fold needs it: plain data derived from the message alone, made while the
    batch is parsed (on the pipeline's parsing thread, beside the writer's, its slowest stage), so
    that the fold only decides. A parsed batch holds these rows, not the validated events. A valid
    event's ``problem`` is None and every field is set; an invalid one carries only its problem."""

    msg: StreamMessage
    link: bytes  # the message's link of the running digest
    problem: str | None  # why it is refused whatever the projection holds: invalid, or a subject that does not fit
    agency: str = ""
    event_id: uuid.UUID | None = None
    event_type: str = ""
    refers_to: uuid.UUID | None = None  # the event a correction or retraction is about
    replacement_type: str | None = None  # a correction's replacement's event type
    defines: DefinitionKey | None = None  # the campaign or plan task it defines
    log: LogRow | None = None  # the event log's row, should it be accepted
    version: FactVersion | None = None  # the version of a fact it states (None: a retraction)
    coordination: EventBase | None = None  # an appointment, submission or link: the event, for its rules


def parse_batch(msgs: list[StreamMessage]) -> list[Parsed]:
    """Validate every message of a batch and derive what the fold needs of it; an invalid one
    carries its problem instead. Nothing a message holds can make this raise: any failure is that
    message's problem."""
    out = []
    for msg in msgs:
        sha = hashlib.sha256(msg.data).digest()
        link = chain_link(msg, sha)
        try:
            # "In the future" means after the stream stored it: the fold is the same in any year.
            event, version = parse_event_versioned(msg.data, stored_at=msg.stored_at)
        except EventInvalid as exc:
            out.append(Parsed(msg, link, "invalid: " + "; ".join(str(p) for p in exc.problems)))
            continue
        except Exception as exc:  # a bug in a validator must not stop the projector for everyone
            out.append(Parsed(msg, link, f"invalid: could not be read ({type(exc).__name__}: {exc})"))
            continue
        try:
            out.append(_prepare(msg, link, event, version, sha.hex()))
        except Exception as exc:  # nor a bug in what is derived from it: that message's rejection
            out.append(Parsed(msg, link, f"could not be folded ({type(exc).__name__}: {exc})"))
    return out


def _prepare(msg: StreamMessage, link: bytes, event: EventBase, published_version: int, digest: str) -> Parsed:
    refers_to: uuid.UUID | None = None
    replacement_type = None
    version: FactVersion | None = None
    if type(event) is EventCorrected:
        refers_to, replacement_type = event.corrects, event.replacement.event_type
        version = _version(event.replacement, msg)
    elif type(event) is EventRetracted:
        refers_to = event.retracts
    else:
        version = _version(event, msg)
    occurred = event.occurred
    log = LogRow(  # by position, the cheaper call on the hot path
        msg.seq,
        event.event_id,
        msg.subject,
        event.event_type,
        published_version,
        event.agency,
        msg.stored_at,
        event.recorded_at,
        occurred.start if occurred else None,
        occurred.end if occurred else None,
        refers_to,
        digest,
        msg.data.decode("utf-8"),
    )
    return Parsed(
        msg,
        link,
        _check_subject(msg.subject, event),
        event.agency,
        event.event_id,
        event.event_type,
        refers_to,
        replacement_type,
        definition_key(event),
        log,
        version,
        event if event.event_type in coord.COORDINATION_TYPES else None,
    )


# An event's identity: the publishing agency and its event_id. Two agencies may use the same
# event_id without touching each other's events.
EventKey = tuple[str, uuid.UUID]
# A definition's identity: ("campaign", campaign_id) or ("plan_task", "<plan_id>/<part>/<task>").
DefinitionKey = tuple[str, str]


def referenced_ids(parsed: list[Parsed]) -> list[EventKey]:
    """Every (agency, event_id) the batch mentions: its own and those it corrects or retracts
    (always one of the same agency's)."""
    keys: set[EventKey] = set()
    for p in parsed:
        if p.event_id is None:
            continue
        keys.add((p.agency, p.event_id))
        if p.refers_to is not None:
            keys.add((p.agency, p.refers_to))
        if p.coordination is not None and p.problem is None and p.event_type == "actions_linked":
            keys.update(coord.members(p.coordination))  # type: ignore[arg-type]
    return list(keys)


def published_ids(parsed: list[Parsed]) -> set[EventKey]:
    """The (agency, event_id) of each event of the batch: a known one is an event published again,
    compared with what was published first."""
    return {(p.agency, p.event_id) for p in parsed if p.event_id is not None}


def definition_key(event: EventBase) -> DefinitionKey | None:
    """What a definition defines (a correction's replacement included), else None."""
    if type(event) is EventCorrected:
        event = event.replacement
    if type(event) is CampaignDefined:
        return "campaign", event.campaign_id
    if type(event) is PlanTaskDefined:
        return "plan_task", event.task_ref
    return None


def referenced_definitions(parsed: list[Parsed]) -> list[DefinitionKey]:
    """Every campaign and plan task the batch's definitions define."""
    return list({p.defines for p in parsed if p.defines is not None and p.problem is None})


def same_event(data: bytes, published: str | None, stored_at: datetime) -> bool:
    """Whether an earlier payload states the same event as ``data`` (it may be written
    differently); both judged as of ``stored_at``, the later message's storage time, never the
    wall clock. Asked only of an event_id published again with other bytes: rare."""
    if published is None:
        return False
    try:
        event = parse_event_versioned(data, stored_at=stored_at)[0]
        return parse_event_versioned(published.encode(), stored_at=stored_at)[0] == event
    except EventInvalid:
        return False


def fold_batch(
    parsed: list[Parsed],
    known: dict[EventKey, KnownEvent],
    owners: dict[DefinitionKey, str] | None = None,
    coordination: coord.Coordination | None = None,
    *,
    after_seq: int = 0,
    digest: str = GENESIS,
) -> BatchUpdate:
    """Fold a parsed batch into everything it changes, given what the projection knew before it:
    the events it mentions (``known``), who first defined the campaigns and plan tasks it defines
    (``owners``), the appointments and links in force (``coordination``, needed only by a batch
    with a coordination event or a retraction), the checkpoint it follows (``after_seq``) and the
    running digest there (``digest``; both default to the stream's start). Each message ends
    accepted, ignored as a duplicate, or rejected with a reason; an unexpected failure while folding
    one message is that message's rejection. Nothing given is changed: the update is a new value."""
    if not parsed:
        raise ValueError("an empty batch has nothing to fold")
    state = _FoldState(dict(known), dict(owners or {}), coordination or coord.Coordination())
    for p in parsed:
        try:
            reason = _apply(p, state)
        except Exception as exc:  # only storing can stop the projector, never one message
            reason = f"could not be folded ({type(exc).__name__}: {exc})"
        if reason is not None:
            state.rejected.append(_rejected(p.msg, reason))
    last = parsed[-1].msg
    return BatchUpdate(
        last_seq=last.seq,
        last_stored_at=last.stored_at,
        digest=chain_digest(digest, [p.link for p in parsed]),
        gaps=tuple(gaps(after_seq, [p.msg for p in parsed])),
        log=tuple(state.log),
        rejected=tuple(state.rejected),
        duplicates=tuple(state.duplicates),
        versions=tuple(state.versions),
        supersede=tuple(state.supersede),
    )


@dataclass(slots=True)
class _FoldState:
    """One ``fold_batch`` call's own working state: copies of what it was given, which grow with
    the batch, and the rows it makes. Nothing here is shared; the values in it are never changed,
    only replaced."""

    known: dict[EventKey, KnownEvent]
    owners: dict[DefinitionKey, str]
    coordination: coord.Coordination  # appointments and links in force, replaced as the batch changes them
    current: dict[EventKey, int] = field(default_factory=dict)  # fact -> index in versions of its version
    log: list[LogRow] = field(default_factory=list)
    rejected: list[RejectedRow] = field(default_factory=list)
    duplicates: list[DuplicateRow] = field(default_factory=list)
    versions: list[FactVersion] = field(default_factory=list)
    supersede: list[Supersede] = field(default_factory=list)


def _apply(p: Parsed, state: _FoldState) -> str | None:
    """Apply one message; return why it is rejected, or None when it was accepted or ignored.
    Everything that can fail is computed before anything is changed, so a rejected message leaves
    no trace but its rejection."""
    if p.problem is not None:
        return p.problem
    msg, agency, event_id, log = p.msg, p.agency, p.event_id, p.log
    assert event_id is not None and log is not None
    digest = log.content_hash  # the payload's sha256 as published: what auditors can recompute
    key = (agency, event_id)
    seen = state.known.get(key)
    if seen is not None:
        if seen.content_hash == digest or same_event(msg.data, seen.payload, msg.stored_at):
            state.duplicates.append(DuplicateRow(msg.seq, event_id, msg.stored_at, agency))
            return None
        return (
            f"conflict: event_id {event_id} was already used at stream sequence {seen.stream_seq} "
            f"with different content; a change to an event is published as an event_corrected"
        )
    defines = p.defines
    if defines is not None:
        owner = state.owners.get(defines)
        if owner is not None and owner != agency:
            kind, ref = defines
            what = "campaign" if kind == "campaign" else "plan task"
            return (
                f"{what} {ref!r} was defined by agency {owner!r}; only that agency may define or redefine it "
                f"(any agency may report actions under it)"
            )

    if p.coordination is not None:
        reason = _check_coordination(p, state)
        if reason is not None:
            return reason
    refers_to = p.refers_to
    if refers_to is not None:
        target = state.known.get((agency, refers_to))
        reason = _check_target(p, refers_to, target)
        if reason is not None:
            return reason
        assert target is not None
        version = p.version or _retracted_version(target, msg)
        fact_state: bool | None = None
    else:
        assert p.version is not None
        version = p.version
        fact_state = False

    # Nothing below can fail: the message is accepted.
    if refers_to is not None:
        _supersede((agency, refers_to), version, state)
        state.known[(agency, refers_to)] = target._replace(retracted=version.retracted)
    else:
        state.current[key] = len(state.versions)
        state.versions.append(version)
    if defines is not None:
        state.owners.setdefault(defines, agency)
    if p.coordination is not None:
        state.coordination = coord.accepted(p.coordination, key, state.coordination)
    elif refers_to is not None and p.replacement_type is None:
        state.coordination = coord.retracted((agency, refers_to), state.coordination)
    state.known[key] = KnownEvent(event_id, msg.seq, digest, agency, p.event_type, fact_state, log.payload)
    state.log.append(log)
    return None


def _check_coordination(p: Parsed, state: _FoldState) -> str | None:
    """The rules of appointments, submissions and links (consumers/coordination.py), given the
    countries of the actions this batch stated so far."""
    assert p.coordination is not None
    batch_countries = {k: state.versions[i].country for k, i in state.current.items()}
    return coord.check(p.coordination, p.msg.seq, state.known, batch_countries, state.coordination)


def _check_subject(subject: str, event: EventBase) -> str | None:
    where = parse_subject(subject)
    if where is None:
        return f"subject {subject!r} does not follow outreach.events.<agency>.<event_type>.<event_id>"
    subject_agency, subject_type, subject_id = where
    if subject_agency != event.agency:
        return (
            f"agency mismatch: the event says agency {event.agency!r} but was published on "
            f"{subject_agency!r}'s subject; an agency publishes only as itself"
        )
    if subject_type != event.event_type:
        return f"event type mismatch: the event is {event.event_type!r}, the subject says {subject_type!r}"
    if subject_id is not None and not _is_text_of(subject_id, event.event_id):
        return f"event_id mismatch: the event's event_id is {event.event_id}, the subject says {subject_id!r}"
    return None


def _is_text_of(text: str, event_id: uuid.UUID) -> bool:
    """Whether ``text`` is ``str(event_id)``: lower-case hexadecimal digits with dashes after the
    8th, 12th, 16th and 20th. Compared without formatting the UUID, a call an event saved."""
    dashed = len(text) == 36 and text[8] == text[13] == text[18] == text[23] == "-"
    return dashed and text.replace("-", "") == event_id.hex


def _check_target(p: Parsed, target_id: uuid.UUID, target: KnownEvent | None) -> str | None:
    corrects = p.replacement_type is not None
    verb = "corrects" if corrects else "retracts"
    if target is None:
        return (
            f"unknown event: {verb} {target_id}, which agency {p.agency!r} has not published "
            f"(publish the original first; an agency corrects or retracts only its own events)"
        )
    if target.retracted is None:
        return (
            f"{verb} {target_id}, which is itself a {target.event_type}; "
            f"corrections and retractions refer to the original event"
        )
    if target.retracted:
        return f"{verb} {target_id}, which was already retracted"
    if corrects and p.replacement_type != target.event_type:
        return (
            f"the replacement is a {p.replacement_type} but {target_id} is a "
            f"{target.event_type}; a correction keeps the event type"
        )
    return None


def _supersede(fact: EventKey, version: FactVersion, state: _FoldState) -> None:
    """``version`` becomes the fact's current version: the one this batch made before it is
    replaced by a copy that says when it stopped being current; else the database's is superseded."""
    previous = state.current.get(fact)
    if previous is not None:
        state.versions[previous] = state.versions[previous]._replace(
            superseded_seq=version.version_seq, superseded_stored_at=version.version_stored_at
        )
    else:
        state.supersede.append(Supersede(fact[1], version.version_seq, version.version_stored_at, fact[0]))
    state.current[fact] = len(state.versions)
    state.versions.append(version)


def _version(event: EventBase, msg: StreamMessage) -> FactVersion:
    """A fact's version from the event (or a correction's replacement) that states it, with the
    figures the totals sum, made whole in one call."""
    kind = type(event)
    county = event.county
    if kind in DEFINITIONS or kind is CoordinatorAppointed or kind is ReportSubmitted:
        country = event.country
    else:
        country = county[:2] if county else None  # read as attributes every event has: no getattr on a model
    occurred = event.occurred
    sessions, session_format, audiences = 0, None, None
    participants, participants_unknown, participants_estimated = 0, False, False
    materials, material_kind, materials_unknown = 0, None, False
    teams, payload = 0, None
    if kind is SessionHeld:
        sessions, session_format = event.sessions, event.format._value_
        participants, participants_unknown, participants_estimated, audiences = _session_figures(event)
    elif kind is MaterialsDistributed:
        quantity = event.quantity
        materials, material_kind, materials_unknown = quantity or 0, event.kind._value_, quantity is None
    elif kind is TeamEstablished:
        teams = 1
    elif kind in DEFINITIONS or event.event_type in coord.COORDINATION_TYPES:
        payload = event.model_dump_json()  # the views read definitions, links and submissions from it
    return FactVersion(
        event.event_id,
        msg.seq,
        msg.stored_at,
        None,
        None,
        False,
        event.event_type,
        event.agency,
        country,
        county,
        event.municipality,
        event.campaign_id,
        tuple(event.plan_tasks),
        occurred.start if occurred is not None else None,
        occurred.end if occurred is not None else None,
        sessions,
        session_format,
        participants,
        participants_unknown,
        participants_estimated,
        materials,
        material_kind,
        materials_unknown,
        teams,
        audiences,
        payload,
        event.venue,
    )


def _session_figures(event: SessionHeld) -> tuple[int, bool, bool, tuple[AudienceCount, ...]]:
    """A session's participants, whether some are uncounted, whether any are estimated, and its
    audience groups, in one pass over the groups (``participants_known``, ``participants_unknown``
    and ``participants_estimated`` each walk them again)."""
    counted, uncounted, estimated = 0, False, event.total_estimated
    audiences = []
    for g in event.participants:
        count = g.count
        if count is None:
            uncounted = True
        else:
            counted += count
        estimated = estimated or g.estimated
        audiences.append(AudienceCount(g.audience._value_, count, g.estimated))
    total = event.reported_total
    participants = counted if total is None else total
    return participants, total is None and (uncounted or not audiences), estimated, tuple(audiences)


def _retracted_version(target: KnownEvent, msg: StreamMessage) -> FactVersion:
    return FactVersion(target.event_id, msg.seq, msg.stored_at, None, None, True, target.event_type, target.agency)


def _rejected(msg: StreamMessage, reason: str) -> RejectedRow:
    """The rejection of one message. Its text columns are made storable whatever the message held
    (a lone surrogate or a NUL would make DuckDB refuse the whole batch); the payload is kept as the
    exact bytes received up to ``REJECTED_PAYLOAD_BYTES``, with the length and sha256 of the whole
    (which the stream keeps at its sequence): a flood of large junk costs the file a bounded row each."""
    data = msg.data
    return RejectedRow(
        msg.seq,
        _text(msg.subject),
        msg.stored_at,
        _event_id_of(data) if len(data) <= MAX_EVENT_BYTES else None,
        _text(reason[:MAX_REASON]),
        data[:REJECTED_PAYLOAD_BYTES],
        len(data),
        hashlib.sha256(data).hexdigest(),
    )


def _text(value: str) -> str:
    """Text as DuckDB stores it: lone surrogates and NULs replaced, the rest unchanged."""
    if value.isascii() and "\x00" not in value:
        return value
    return value.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")


def _event_id_of(data: bytes) -> str | None:
    """The event_id of a rejected payload, when one can be read, for auditors to search by."""
    try:
        value = json.loads(data.decode("utf-8")).get("event_id")  # strict UTF-8: no surrogates let through
    except (ValueError, AttributeError, RecursionError):
        return None
    return _text(value[:64]) if isinstance(value, str) else None
