"""The fold on plain lists of messages: no broker, no database."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from consumers import coordination as coord
from consumers import fold
from consumers.delivery import StreamMessage
from consumers.fold import fold_batch, parse_batch
from projections.rows import FactVersion, KnownEvent
from schemas.parse import parse_event
from tests.factories import session

AT = datetime(2026, 1, 1, tzinfo=UTC)  # stored after every recorded_at the tests use


def correction(original: dict[str, Any], students: int, agency: str | None = None) -> dict[str, Any]:
    agency = agency or original["agency"]
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "event_corrected",
        "agency": agency,
        "recorded_at": "2025-01-02T00:00:00Z",
        "corrects": original["event_id"],
        "replacement": dict(original, agency=agency, participants=[{"audience": "students", "count": students}]),
    }


def retraction(original: dict[str, Any], agency: str | None = None) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "event_retracted",
        "agency": agency or original["agency"],
        "recorded_at": "2025-01-02T00:00:00Z",
        "retracts": original["event_id"],
        "reason": "reported twice",
    }


def students(version: FactVersion) -> int | None:
    """The students count a fact version states (None for a retraction)."""
    if version.audiences is None:
        return None
    return version.audiences[0].count


def messages(*events: dict[str, Any], first_seq: int = 1) -> list[StreamMessage]:
    return [
        StreamMessage(first_seq + i, f"outreach.events.{e['agency']}.{e['event_type']}", json.dumps(e).encode(), AT)
        for i, e in enumerate(events)
    ]


def known_from(
    event: dict[str, Any], seq: int, retracted: bool | None = False
) -> dict[tuple[str, uuid.UUID], KnownEvent]:
    parsed = parse_event(event)
    return {
        (parsed.agency, parsed.event_id): KnownEvent(
            parsed.event_id,
            seq,
            hashlib.sha256(json.dumps(event).encode()).hexdigest(),
            parsed.agency,
            parsed.event_type,
            retracted,
        )
    }


def test_a_fact_becomes_one_log_row_and_one_current_version() -> None:
    update = fold_batch(parse_batch(messages(session(students=12))), {})
    assert (len(update.log), len(update.versions), update.rejected, update.last_seq) == (1, 1, (), 1)
    version = update.versions[0]
    assert (students(version), version.superseded_seq, version.retracted) == (12, None, False)


def test_corrections_and_retractions_within_one_batch_chain_versions() -> None:
    first = session(students=10)
    update = fold_batch(parse_batch(messages(first, correction(first, 11), correction(first, 12))), {})
    assert [(v.version_seq, v.superseded_seq, students(v)) for v in update.versions] == [
        (1, 2, 10),
        (2, 3, 11),
        (3, None, 12),
    ]
    assert update.supersede == ()  # nothing in the database to supersede


def test_a_correction_of_a_fact_in_the_database_supersedes_its_current_version() -> None:
    first = session(students=10)
    update = fold_batch(parse_batch(messages(correction(first, 14), first_seq=8)), known_from(first, 3))
    assert [(s.fact_id, s.seq) for s in update.supersede] == [(uuid.UUID(first["event_id"]), 8)]
    assert [(v.version_seq, students(v)) for v in update.versions] == [(8, 14)]


def test_a_retraction_adds_a_retracted_version_and_a_second_one_is_rejected() -> None:
    first = session()
    update = fold_batch(parse_batch(messages(retraction(first), retraction(first), first_seq=5)), known_from(first, 1))
    assert [(v.version_seq, v.retracted, students(v)) for v in update.versions] == [(5, True, None)]
    assert [r.reason for r in update.rejected] == [f"retracts {first['event_id']}, which was already retracted"]


def test_correcting_a_retracted_event_or_a_correction_is_rejected() -> None:
    first = session()
    fix = correction(first, 3)
    update = fold_batch(parse_batch(messages(first, fix, correction(dict(first, event_id=fix["event_id"]), 4))), {})
    assert len(update.rejected) == 1
    assert update.rejected[0].reason == (
        f"corrects {fix['event_id']}, which is itself a event_corrected; "
        "corrections and retractions refer to the original event"
    )
    update = fold_batch(parse_batch(messages(correction(first, 5))), known_from(first, 1, retracted=True))
    assert [r.reason for r in update.rejected] == [f"corrects {first['event_id']}, which was already retracted"]


def test_a_correction_may_not_change_the_event_type() -> None:
    first = session()
    replacement = {
        "event_id": first["event_id"],
        "event_type": "materials_distributed",
        "agency": "al-a",
        "recorded_at": "2025-01-01T00:00:00Z",
        "occurred": "2024-05-01",
        "county": "AL-06",
        "kind": "leaflet",
        "quantity": 10,
    }
    fix = {
        "event_id": str(uuid.uuid4()),
        "event_type": "event_corrected",
        "agency": "al-a",
        "recorded_at": "2025-01-02T00:00:00Z",
        "corrects": first["event_id"],
        "replacement": replacement,
    }
    update = fold_batch(parse_batch(messages(first, fix)), {})
    assert [r.reason for r in update.rejected] == [
        f"the replacement is a materials_distributed but {first['event_id']} is a session_held; "
        "a correction keeps the event type"
    ]


def test_an_identical_repeat_is_ignored_and_a_changed_one_is_a_conflict() -> None:
    first = session(students=10)
    changed = dict(first, participants=[{"audience": "students", "count": 99}])
    update = fold_batch(parse_batch(messages(first, first, changed)), {})
    assert [d.stream_seq for d in update.duplicates] == [2]
    assert [(r.stream_seq, r.event_id) for r in update.rejected] == [(3, first["event_id"])]
    assert update.rejected[0].reason.startswith(
        f"conflict: event_id {first['event_id']} was already used at stream sequence 1 with different content"
    )


def test_the_same_content_written_differently_is_the_same_event() -> None:
    first = session()
    reordered = json.dumps(dict(reversed(list(first.items())))).encode()
    msgs = [*messages(first), StreamMessage(2, "outreach.events.al-a.session_held", reordered, AT)]
    update = fold_batch(parse_batch(msgs), {})
    assert (len(update.log), len(update.duplicates), update.rejected) == (1, 1, ())


def test_every_message_lands_in_exactly_one_place() -> None:
    first = session()
    batch = messages(first, first, session(agency="al-b"), retraction(session()))
    batch[2] = StreamMessage(3, "outreach.events.al-a.session_held", batch[2].data, AT)  # spoofed
    update = fold_batch(parse_batch(batch), {})
    places = sorted(
        [r.stream_seq for r in update.log]
        + [r.stream_seq for r in update.rejected]
        + [r.stream_seq for r in update.duplicates]
    )
    assert places == [1, 2, 3, 4]
    assert (len(update.log), len(update.duplicates), len(update.rejected)) == (1, 1, 2)


def test_a_failure_while_reading_one_message_is_that_messages_rejection(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug anywhere in parsing (here: the parser raising what it never should) rejects the one
    message it met; the batch around it is read and folded as ever."""
    real = fold.parse_event_versioned

    def buggy(data: bytes, **kwargs: Any) -> Any:
        if b'"AL-09"' in data:
            raise RuntimeError("a bug in a validator")
        return real(data, **kwargs)

    monkeypatch.setattr(fold, "parse_event_versioned", buggy)
    parsed = parse_batch(messages(session(county="AL-06"), session(county="AL-09"), session(county="AL-10")))
    assert [p.problem for p in parsed] == [
        None,
        "invalid: could not be read (RuntimeError: a bug in a validator)",
        None,
    ]
    update = fold_batch(parsed, {})
    assert [r.stream_seq for r in update.log] == [1, 3]
    assert [(r.stream_seq, r.reason) for r in update.rejected] == [
        (2, "invalid: could not be read (RuntimeError: a bug in a validator)")
    ]


def test_a_failure_while_folding_one_message_is_that_messages_rejection_and_changes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = fold._version

    def buggy(event: Any, msg: StreamMessage) -> FactVersion:
        if getattr(event, "county", None) == "AL-09":
            raise RuntimeError("a bug in the fold")
        return real(event, msg)

    monkeypatch.setattr(fold, "_version", buggy)
    update = fold_batch(
        parse_batch(messages(session(county="AL-06"), session(county="AL-09"), session(county="AL-10"))), {}
    )
    assert [(r.stream_seq, v.county) for r, v in zip(update.log, update.versions, strict=True)] == [
        (1, "AL-06"),
        (3, "AL-10"),
    ]
    assert [(r.stream_seq, r.reason) for r in update.rejected] == [
        (2, "could not be folded (RuntimeError: a bug in the fold)")
    ]
    assert (update.duplicates, update.supersede, update.last_seq) == ((), (), 3)


def test_a_parsed_batch_folded_again_starts_from_versions_nothing_supersedes() -> None:
    """A parsed batch carries its rows; a second fold of it, given other knowledge, must not keep
    what the first fold wrote into them."""
    first = session(students=10)
    fix = correction(first, 11)
    parsed = parse_batch(messages(first, fix))
    assert [(v.version_seq, v.superseded_seq) for v in fold_batch(parsed, {}).versions] == [(1, 2), (2, None)]
    # The correction's own event_id was used before with other content: this time it is refused.
    used = known_from(dict(fix, reason="another text"), 0)
    update = fold_batch(parsed, used)
    assert [(v.version_seq, v.superseded_seq, v.superseded_stored_at) for v in update.versions] == [(1, None, None)]
    assert [r.stream_seq for r in update.rejected] == [2]


def test_the_subjects_event_id_must_be_the_events_as_text() -> None:
    """The event_id in the subject is the event's own, written as str() of the UUID writes it:
    lower-case, with its four dashes; any other spelling of the same UUID is a mismatch."""
    event_id = uuid.UUID("1b4e28ba-2fa1-11d2-883f-0016d3cca427")
    canonical = str(event_id)
    spellings = [
        canonical,
        canonical.upper(),
        event_id.hex,
        "{" + canonical + "}",
        canonical[:8] + canonical[9:] + "-",  # a dash moved to the end
        canonical.replace("-", "", 1) + "0",  # 36 characters, one dash short
        canonical[:35] + "8",
        "1b4e28ba-2fa1-11d2-883f--016d3cca427",  # a fifth dash in place of a digit
    ]
    assert [fold._is_text_of(text, event_id) for text in spellings] == [text == canonical for text in spellings]
    assert sum(fold._is_text_of(text, event_id) for text in spellings) == 1

    event = session()
    wrong = f"outreach.events.{event['agency']}.session_held.{event['event_id'].upper()}"
    right = f"outreach.events.{event['agency']}.session_held.{event['event_id']}"
    payload = json.dumps(event).encode()
    update = fold_batch(parse_batch([StreamMessage(1, wrong, payload, AT), StreamMessage(2, right, payload, AT)]), {})
    said = event["event_id"].upper()
    assert [r.reason for r in update.rejected] == [
        f"event_id mismatch: the event's event_id is {event['event_id']}, the subject says {said!r}"
    ]
    assert [r.stream_seq for r in update.log] == [2]


def test_what_the_parser_makes_and_the_fold_returns_cannot_be_changed() -> None:
    first = session(students=10)
    parsed = parse_batch(messages(first, correction(first, 11)))
    version = parsed[0].version
    assert version is not None
    with pytest.raises(AttributeError):
        version.superseded_seq = 2  # type: ignore[misc]
    update = fold_batch(parsed, {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        update.last_seq = 1  # type: ignore[misc]
    # The fold made a new value for the version the correction superseded; the parser's is as made.
    assert [(v.version_seq, v.superseded_seq, v.superseded_stored_at) for v in update.versions] == [
        (1, 2, AT),
        (2, None, None),
    ]
    assert (version.version_seq, version.superseded_seq, version.superseded_stored_at) == (1, None, None)
    assert update.versions[0]._replace(superseded_seq=None, superseded_stored_at=None) == version


def test_the_fold_returns_the_whole_update_with_its_digest_and_gaps() -> None:
    """The checkpoint's digest and the gaps come out of the fold with the rows: sequences 5, 6 and 9
    after checkpoint 2 miss 3-4 and 7-8."""
    batch = messages(session(), session(), first_seq=5) + messages(session(), first_seq=9)
    previous = "ab" * 32
    update = fold_batch(parse_batch(batch), {}, after_seq=2, digest=previous)
    digest = bytes.fromhex(previous)
    for m in batch:
        link = f"{m.seq}\x00{m.subject}\x00\x00".encode() + hashlib.sha256(m.data).digest()
        digest = hashlib.sha256(digest + link).digest()
    assert (update.last_seq, update.last_stored_at, update.digest, update.gaps) == (
        9,
        AT,
        digest.hex(),
        ((3, 4), (7, 8)),
    )
    assert [r.stream_seq for r in update.log] == [5, 6, 9]


def test_the_fold_changes_neither_what_it_is_given_nor_the_coordination_in_force() -> None:
    """A batch retracts a link and links the same two actions anew: the second link is accepted
    only because the fold goes on from the coordination without the first; the coordination and
    the knowledge it was given are as they were."""
    one, two = session(), session()
    old_link = {
        "event_id": str(uuid.uuid4()),
        "event_type": "actions_linked",
        "agency": "al-a",
        "recorded_at": "2025-01-01T00:00:00Z",
        "actions": [{"agency": "al-a", "event_id": e["event_id"]} for e in (one, two)],
        "counts": {"agency": "al-a", "event_id": one["event_id"]},
        "reason": "the same meeting",
    }
    new_link = dict(old_link, event_id=str(uuid.uuid4()))
    known = {**known_from(one, 1), **known_from(two, 2), **known_from(old_link, 3)}
    members = tuple(("al-a", uuid.UUID(e["event_id"])) for e in (one, two))
    old_key = ("al-a", uuid.UUID(old_link["event_id"]))
    given = coord.Coordination(links={old_key: members}, countries=dict.fromkeys(members, "AL"))
    known_before, links_before = dict(known), dict(given.links)
    update = fold_batch(parse_batch(messages(retraction(old_link), new_link, first_seq=4)), known, {}, given)
    assert ([r.stream_seq for r in update.log], update.rejected) == ([4, 5], ())
    assert [(s.fact_id, s.seq) for s in update.supersede] == [(old_key[1], 4)]
    assert (known, dict(given.links)) == (known_before, links_before)
    # Folded again from the same coordination, the new link alone is refused: the old one is in force.
    update = fold_batch(parse_batch(messages(new_link, first_seq=5)), known, {}, given)
    assert [r.reason for r in update.rejected] == [
        f"al-a/{one['event_id']} is already linked, by al-a's actions_linked {old_link['event_id']}; "
        "retract that link first to link it otherwise"
    ]


def test_a_retraction_of_neither_a_link_nor_an_appointment_keeps_the_same_coordination() -> None:
    action, link = ("al-a", uuid.uuid4()), ("al-a", uuid.uuid4())
    given = coord.Coordination(links={link: (action,)})
    assert coord.retracted(action, given) is given
    after = coord.retracted(link, given)
    assert (dict(after.links), dict(given.links)) == ({}, {link: (action,)})
