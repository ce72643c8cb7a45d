"""Old event versions are upcast to the current one when read (schemas/upcast.py, via parse_event).

``tests/golden/session_held_v1.json`` is a session_held payload in the v1 shape (one audience group
as flat ``audience``/``participants``/``estimated`` fields); it must keep parsing for ever.
"""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from schemas.errors import EventInvalid
from schemas.events import EVENT_TYPES, Audience, AudienceCount, EventCorrected, Occurred, SessionHeld
from schemas.files import load_events
from schemas.parse import parse_event, parse_event_versioned
from schemas.upcast import CURRENT_VERSIONS, session_held_v1_to_v2, upcast

GOLDEN = Path(__file__).parent / "golden" / "session_held_v1.json"
EVENT_ID = "11111111-1111-4111-8111-111111111111"
CORRECTION_ID = "22222222-2222-4222-8222-222222222222"
AGENCY = "al-national-coordinator"


def golden_bytes() -> bytes:
    return GOLDEN.read_bytes()


def golden() -> dict[str, Any]:
    return json.loads(golden_bytes())


def session_v1(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": EVENT_ID,
        "event_type": "session_held",
        "schema_version": 1,
        "agency": AGENCY,
        "recorded_at": "2026-01-01T00:00:00Z",
        "county": "AL-06",
        "occurred": "2017-12-21",
        "format": "public_talks",
        "audience": "general_public",
        "participants": None,
    }
    event.update(overrides)
    return event


def correction(replacement: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": CORRECTION_ID,
        "event_type": "event_corrected",
        "schema_version": 1,
        "agency": AGENCY,
        "recorded_at": "2026-01-01T00:00:00Z",
        "corrects": replacement["event_id"],
        "replacement": replacement,
        "reason": "the count was found later",
    }


def problems(event: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(EventInvalid) as info:
        parse_event(json.dumps(event).encode())
    return [(p.field, p.message) for p in info.value.problems]


# ---- the golden v1 payload -----------------------------------------------------------------------


def test_golden_file_is_a_v1_payload() -> None:
    raw = golden()
    assert raw["schema_version"] == 1
    assert (raw["audience"], raw["participants"], raw["estimated"]) == ("students", 10, False)
    assert "reported_total" not in raw


def test_golden_v1_is_upcast_to_the_current_version() -> None:
    event = parse_event(golden_bytes())
    assert isinstance(event, SessionHeld)
    assert (event.schema_version, event.sessions) == (3, 1)
    assert event.participants == (AudienceCount(audience=Audience.students, count=10, estimated=False),)
    assert (event.reported_total, event.total_estimated) == (None, False)
    assert (event.participants_known, event.participants_unknown, event.participants_estimated) == (10, False, False)


def test_golden_v1_keeps_every_other_field() -> None:
    event = parse_event(golden_bytes())
    assert event.event_id == uuid.UUID("8d2fb08a-bee7-5848-b769-c63d399b89f6")
    assert event.agency == "al-national-coordinator"
    assert event.recorded_at == datetime(2018, 1, 8, 9, 15, tzinfo=UTC)
    assert event.occurred == Occurred(start=date(2017, 12, 21))
    assert (event.county, event.municipality) == ("AL-06", "AL-06-maliq")
    assert event.venue == "Shkolla e mesme e bashkuar “Sheqeras”"
    assert event.campaign_id == "al-irregular-migration-prevention"
    assert event.partners == ("al-korce-regional-committee", "iom-albania")
    assert event.format.value == "school_session"
    assert event.title == "Takim informues me nxënës maturantë"
    assert event.source is not None
    assert event.source.startswith("Zyra e Koordinatorit Kombëtar")


def test_golden_v1_equals_the_same_event_written_as_v2() -> None:
    v2 = {k: v for k, v in golden().items() if k not in ("audience", "participants", "estimated")}
    v2["schema_version"] = 2
    v2["participants"] = [{"audience": "students", "count": 10}]
    assert parse_event(golden_bytes()) == parse_event(json.dumps(v2).encode())


@pytest.mark.parametrize("form", ["bytes", "str", "dict"])
def test_parse_event_versioned_reports_the_published_version(form: str) -> None:
    data: Any = {"bytes": golden_bytes(), "str": golden_bytes().decode("utf-8"), "dict": golden()}[form]
    event, published = parse_event_versioned(data)
    assert published == 1
    assert event.schema_version == 3


def test_parse_event_versioned_of_a_current_event() -> None:
    v3 = parse_event(golden_bytes()).model_dump(mode="json")
    event, published = parse_event_versioned(json.dumps(v3).encode())
    assert (published, event.schema_version) == (3, 3)
    assert event == parse_event(golden_bytes())


def test_golden_v1_in_a_jsonl_file(tmp_path: Path) -> None:
    path = tmp_path / "old.jsonl"
    path.write_text(json.dumps(golden(), ensure_ascii=False) + "\n", encoding="utf-8")
    loaded = load_events(path)
    assert loaded.problems == []
    [(line, event)] = loaded.events
    assert line == 1
    assert event == parse_event(golden_bytes())


# ---- other v1 shapes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flat", "expected"),
    [
        ({"participants": None}, AudienceCount(audience=Audience.general_public, count=None, estimated=False)),
        (
            {"participants": 200, "estimated": True},
            AudienceCount(audience=Audience.general_public, count=200, estimated=True),
        ),
        ({"participants": 0}, AudienceCount(audience=Audience.general_public, count=0, estimated=False)),
    ],
)
def test_v1_flat_fields_become_one_group(flat: dict[str, Any], expected: AudienceCount) -> None:
    event = parse_event(json.dumps(session_v1(**flat)).encode())
    assert event.participants == (expected,)


def test_v1_unknown_count_is_unknown_after_upcasting() -> None:
    event = parse_event(json.dumps(session_v1()).encode())
    assert (event.participants_known, event.participants_unknown) == (0, True)


def test_v1_without_audience_has_no_participants() -> None:
    v1 = session_v1()
    del v1["audience"], v1["participants"]
    assert parse_event(json.dumps(v1).encode()).participants == ()


@pytest.mark.parametrize(
    ("flat", "expected"),
    [
        (
            {"participants": None, "estimated": True},
            ("participants.0", "an unknown count cannot be an estimate; give the estimated number"),
        ),
        ({"participants": -3}, ("participants.0.count", "must be at least 0")),
        ({"participants": True}, ("participants.0.count", "must be a whole number, not true/false")),
        (
            {"audience": "pupils"},
            (
                "participants.0.audience",
                "must be one of: students, teachers, officials, civil_society, police, border_guard, "
                "social_workers, employment_office_staff, general_public, other",
            ),
        ),
        (
            {"reported_totl": 3},
            ("reported_totl", "is not a field of this event type; check its spelling against `outreach schema`"),
        ),
    ],
)
def test_invalid_v1_is_reported_in_v2_terms(flat: dict[str, Any], expected: tuple[str, str]) -> None:
    assert problems(session_v1(**flat)) == [expected]


def test_v1_fields_are_not_accepted_in_v2() -> None:
    v2 = session_v1(schema_version=2, participants=[])
    assert problems(v2) == [
        ("audience", "is not a field of this event type; check its spelling against `outreach schema`")
    ]


def test_upcaster_does_not_change_its_input() -> None:
    v1 = golden()
    before = copy.deepcopy(v1)
    v2 = session_held_v1_to_v2(v1)
    assert v1 == before
    assert v2["schema_version"] == 2
    assert v2["participants"] == [{"audience": "students", "count": 10, "estimated": False}]
    assert "audience" not in v2
    assert "estimated" not in v2


def test_upcast_leaves_current_versions_alone() -> None:
    v3 = parse_event(golden_bytes()).model_dump(mode="json")
    assert upcast(v3) == v3
    retraction = {"event_type": "event_retracted", "schema_version": 1, "retracts": EVENT_ID}
    assert upcast(retraction) == retraction


def test_current_versions_match_the_models() -> None:
    assert set(CURRENT_VERSIONS) == set(EVENT_TYPES)
    for kind, model in EVENT_TYPES.items():
        assert model.model_fields["schema_version"].default == CURRENT_VERSIONS[kind], kind


# ---- a v1 replacement inside a correction ------------------------------------------------------


def test_v1_replacement_inside_a_correction_is_upcast() -> None:
    event, published = parse_event_versioned(json.dumps(correction(golden())).encode())
    assert isinstance(event, EventCorrected)
    assert published == 1  # the correction's own version
    assert isinstance(event.replacement, SessionHeld)
    assert event.replacement.schema_version == 3
    assert event.replacement.participants == (AudienceCount(audience=Audience.students, count=10),)
    assert event.replacement == parse_event(golden_bytes())


def test_v1_replacement_inside_a_correction_as_dict() -> None:
    event = parse_event(correction(golden()))
    assert event.replacement == parse_event(golden_bytes())


def test_invalid_v1_replacement_is_reported_under_replacement() -> None:
    bad = session_v1(participants=None, estimated=True)
    assert problems(correction(bad)) == [
        ("replacement.participants.0", "an unknown count cannot be an estimate; give the estimated number")
    ]


def test_a_v1_session_with_participants_but_no_audience_is_refused_not_emptied() -> None:
    event = session_v1(participants=12)
    del event["audience"]
    assert problems(event) == [("participants", "must be a list in square brackets, [ … ]")]
