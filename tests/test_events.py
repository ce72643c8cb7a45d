"""Unit tests of the event contracts: schemas/events.py, schemas/parse.py and schemas/reference.py.

Every rule has at least one accepted and one rejected example, and every rejection asserts the
exact field and message a user would see. Input goes through ``parse_event`` as bytes, the way
producers and the projector call it, unless a test is about another input form.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, tzinfo
from typing import Any

import pytest
from pydantic import ValidationError

import schemas.events as events_module
from schemas.errors import EventInvalid, Problem
from schemas.events import (
    Audience,
    AudienceCount,
    CampaignDefined,
    EventCorrected,
    EventRetracted,
    MaterialsDistributed,
    Occurred,
    PlanTaskDefined,
    SessionHeld,
    TeamEstablished,
)
from schemas.parse import MAX_EVENT_BYTES, parse_event, parse_event_versioned
from schemas.reference import check_county, check_municipality

EVENT_ID = "11111111-1111-4111-8111-111111111111"
OTHER_ID = "22222222-2222-4222-8222-222222222222"
AGENCY = "al-national-coordinator"
RECORDED_AT = "2026-01-01T00:00:00Z"
DROP = object()  # an override that removes the field

TYPES_LISTED = (
    "campaign_defined, plan_task_defined, session_held, materials_distributed, team_established, "
    "event_corrected, event_retracted, coordinator_appointed, report_submitted, actions_linked"
)
AL_COUNTIES = [f"AL-{n:02d}" for n in range(1, 13)]
PL_COUNTIES = [f"PL-{n:02d}" for n in range(2, 33, 2)]
SLUG_PATTERN = (
    "must be a short name in lower-case letters and digits joined by single dashes, such as al-national-coordinator"
)
COUNTY_PATTERN = (
    "must be a county code: the country's two capital letters, a dash and the county's code, such as AL-06 or PL-02"
)
PLAN_TASK_PATTERN = (
    "must be a plan task: the plan's short name, its part and the task, joined by slashes, "
    "such as pl-nap-2013-2015/III/4"
)
UNKNOWN_AL = "unknown county code for Albania; known: " + ", ".join(AL_COUNTIES)
UNKNOWN_PL = "unknown county code for Poland; known: " + ", ".join(PL_COUNTIES)


# ---- helpers -------------------------------------------------------------------------------------


def _apply(event: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    event.update(overrides)
    return {k: v for k, v in event.items() if v is not DROP}


def envelope(**overrides: Any) -> dict[str, Any]:
    return _apply({"event_id": EVENT_ID, "agency": AGENCY, "recorded_at": RECORDED_AT}, overrides)


def session(**overrides: Any) -> dict[str, Any]:
    event = envelope(
        event_type="session_held",
        schema_version=2,
        county="AL-06",
        occurred="2017-12-21",
        format="school_session",
        participants=[{"audience": "students", "count": 30}, {"audience": "teachers", "count": 7}],
    )
    return _apply(event, overrides)


def materials(**overrides: Any) -> dict[str, Any]:
    event = envelope(
        event_type="materials_distributed", county="AL-06", occurred="2017-12-21", kind="leaflet", quantity=4000
    )
    return _apply(event, overrides)


def team(**overrides: Any) -> dict[str, Any]:
    event = envelope(
        event_type="team_established",
        agency="pl-slaskie-voivodeship-office",
        county="PL-24",
        occurred="2015-02-09",
        team_name="Śląski Wojewódzki Zespół",
        plan_tasks=["pl-nap-2013-2015/III/4"],
        member_institutions=["voivodeship_office", "police"],
    )
    return _apply(event, overrides)


def campaign(**overrides: Any) -> dict[str, Any]:
    event = envelope(
        event_type="campaign_defined",
        campaign_id="al-irregular-migration-prevention",
        name="Mbi parandalimin e migracionit të parregullt",
        country="AL",
        lead_agency=AGENCY,
    )
    return _apply(event, overrides)


def plan_task(**overrides: Any) -> dict[str, Any]:
    event = envelope(
        event_type="plan_task_defined",
        agency="pl-national-coordinator",
        plan_id="pl-nap-2013-2015",
        plan_title="Krajowy Plan Działań Przeciwko Handlowi Ludźmi na lata 2013-2015",
        country="PL",
        first_year=2013,
        last_year=2015,
        part="III",
        task="4",
        title="Powołanie wojewódzkich zespołów",
    )
    return _apply(event, overrides)


def correction(**overrides: Any) -> dict[str, Any]:
    event = envelope(
        event_type="event_corrected",
        event_id=OTHER_ID,
        corrects=EVENT_ID,
        replacement=session(),
        reason="the teachers were counted twice",
    )
    return _apply(event, overrides)


def retraction(**overrides: Any) -> dict[str, Any]:
    event = envelope(event_type="event_retracted", event_id=OTHER_ID, retracts=EVENT_ID, reason="published twice")
    return _apply(event, overrides)


def encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event, ensure_ascii=False).encode("utf-8")


def parse(event: dict[str, Any]) -> Any:
    """Parse an event dict the way a producer does: as JSON bytes."""
    return parse_event(encode(event))


def rejected(data: dict[str, Any] | bytes | str) -> list[Problem]:
    raw = encode(data) if isinstance(data, dict) else data
    with pytest.raises(EventInvalid) as info:
        parse_event(raw)
    return info.value.problems


def problems(data: dict[str, Any] | bytes | str) -> list[tuple[str, str]]:
    """(field, message) of every problem ``parse_event`` reports for this input."""
    return [(p.field, p.message) for p in rejected(data)]


FIXED_NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


class _FixedClock(datetime):
    @classmethod
    def now(cls, tz: tzinfo | None = None) -> datetime:  # type: ignore[override]
        return FIXED_NOW.astimezone(tz) if tz is not None else FIXED_NOW.replace(tzinfo=None)


@pytest.fixture
def fixed_now(monkeypatch: pytest.MonkeyPatch) -> datetime:
    """Pin the clock the "in the future" rules read, so boundaries can be tested to the second."""
    monkeypatch.setattr(events_module, "datetime", _FixedClock)
    return FIXED_NOW


# ---- a valid event, field by field ---------------------------------------------------------------


def test_valid_session_parses_to_exact_values() -> None:
    event = parse(session(municipality="AL-06-maliq", partners=["iom-albania"], reported_total=40))
    assert isinstance(event, SessionHeld)
    assert event.event_id == uuid.UUID(EVENT_ID)
    assert event.event_type == "session_held"
    assert event.schema_version == 3  # a v2 session, read as the current version
    assert event.agency == AGENCY
    assert event.recorded_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert event.occurred == Occurred(start=date(2017, 12, 21))
    assert event.county == "AL-06"
    assert event.municipality == "AL-06-maliq"
    assert event.partners == ("iom-albania",)
    assert event.plan_tasks == ()
    assert event.participants == (
        AudienceCount(audience=Audience.students, count=30),
        AudienceCount(audience=Audience.teachers, count=7),
    )
    assert event.reported_total == 40


@pytest.mark.parametrize(
    ("factory", "model"),
    [
        (session, SessionHeld),
        (materials, MaterialsDistributed),
        (team, TeamEstablished),
        (campaign, CampaignDefined),
        (plan_task, PlanTaskDefined),
        (correction, EventCorrected),
        (retraction, EventRetracted),
    ],
)
def test_each_event_type_parses_from_bytes_str_and_dict(factory: Any, model: type) -> None:
    event = factory()
    from_bytes = parse_event(encode(event))
    assert type(from_bytes) is model
    assert parse_event(json.dumps(event)) == from_bytes
    assert parse_event(event) == from_bytes


# ---- envelope: event_id, agency, recorded_at -----------------------------------------------------


@pytest.mark.parametrize("value", [EVENT_ID, EVENT_ID.upper(), "6a8c3205-303c-508e-8283-1a09c05bb17c"])
def test_event_id_accepts_a_uuid(value: str) -> None:
    assert parse(session(event_id=value)).event_id == uuid.UUID(value)


def test_event_id_must_be_a_uuid() -> None:
    found = rejected(session(event_id="not-a-uuid"))
    assert found == [
        Problem("event_id", "must be an event id: a UUID such as 1b4e28ba-2fa1-11d2-883f-0016d3cca427", '"not-a-uuid"')
    ]


def test_event_id_is_required() -> None:
    assert problems(session(event_id=DROP)) == [
        (
            "event_id",
            "is missing: give each event an id of its own, a UUID such as 1b4e28ba-2fa1-11d2-883f-0016d3cca427, and "
            "keep it when the event is sent again (in a CSV file or workbook, a reference column makes one)",
        )
    ]


@pytest.mark.parametrize("agency", ["a", "iom-albania", "pl-14-voivodeship-office", "a" * 64])
def test_agency_slug_accepted(agency: str) -> None:
    assert parse(session(agency=agency)).agency == agency


@pytest.mark.parametrize("agency", ["AL-national", "al--x", "-al", "al-", "al_x", "al x", "", "ałx"])
def test_agency_must_be_a_slug(agency: str) -> None:
    assert rejected(session(agency=agency)) == [Problem("agency", SLUG_PATTERN, json.dumps(agency, ensure_ascii=False))]


def test_agency_at_most_64_characters() -> None:
    assert problems(session(agency="a" * 65)) == [("agency", "is longer than 64 characters")]


def test_recorded_at_keeps_its_offset() -> None:
    event = parse(session(recorded_at="2018-01-15T09:30:00+01:00"))
    assert event.recorded_at == datetime(2018, 1, 15, 8, 30, tzinfo=UTC)
    assert event.recorded_at.utcoffset() is not None
    assert event.recorded_at.utcoffset().total_seconds() == 3600


@pytest.mark.parametrize("value", ["2026-01-01T00:00:00", "2026-01-01 00:00:00"])
def test_recorded_at_must_be_timezone_aware(value: str) -> None:
    assert rejected(session(recorded_at=value)) == [
        Problem(
            "recorded_at",
            "must give its time zone, such as 2025-03-05T10:00:00Z (Z: UTC) or 2025-03-05T11:00:00+01:00",
            json.dumps(value),
        )
    ]


@pytest.mark.parametrize("value", ["2026-06-15T12:05:00Z", "2026-06-15T14:05:00+02:00", "2026-06-15T12:00:00Z"])
def test_recorded_at_up_to_five_minutes_ahead_is_accepted(fixed_now: datetime, value: str) -> None:
    event = parse(session(recorded_at=value))
    assert event.recorded_at <= fixed_now.replace(minute=5)


@pytest.mark.parametrize("value", ["2026-06-15T12:05:01Z", "2026-06-15T14:05:01+02:00", "2026-06-16T00:00:00Z"])
def test_recorded_at_more_than_five_minutes_ahead_is_in_the_future(fixed_now: datetime, value: str) -> None:
    assert fixed_now.year == 2026
    assert rejected(session(recorded_at=value)) == [Problem("recorded_at", "is in the future", json.dumps(value))]


def test_recorded_at_far_future_rejected_by_the_real_clock() -> None:
    assert problems(session(recorded_at="2100-01-01T00:00:00Z")) == [("recorded_at", "is in the future")]


# ---- occurred ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "start", "end"),
    [
        ("2017-12-21", date(2017, 12, 21), None),
        ("2017-12-20/2017-12-21", date(2017, 12, 20), date(2017, 12, 21)),
        ("2017-12-21/2017-12-21", date(2017, 12, 21), date(2017, 12, 21)),
        ({"start": "2017-12-20", "end": "2017-12-21"}, date(2017, 12, 20), date(2017, 12, 21)),
        ({"start": "2017-12-20"}, date(2017, 12, 20), None),
        ({"start": "2017-12-20", "end": None}, date(2017, 12, 20), None),
    ],
)
def test_occurred_forms(value: Any, start: date, end: date | None) -> None:
    occurred = parse(session(occurred=value)).occurred
    assert (occurred.start, occurred.end) == (start, end)
    assert occurred.last_day == (end or start)


@pytest.mark.parametrize("value", ["2017-12-21/2017-12-20", {"start": "2017-12-21", "end": "2017-12-20"}])
def test_occurred_end_before_start_rejected(value: Any) -> None:
    assert problems(session(occurred=value)) == [("occurred", "range ends (2017-12-20) before it starts (2017-12-21)")]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "2017-13-01",
            [
                (
                    "occurred.start",
                    "must be a date such as 2025-03-05 (year-month-day); "
                    "a range is two dates with a slash, 2025-03-01/2025-03-15",
                )
            ],
        ),
        (
            {"start": "2017-12-20", "until": "2017-12-21"},
            [("occurred.until", "is not a field of this event type; check its spelling against `outreach schema`")],
        ),
        ({"end": "2017-12-21"}, [("occurred.start", "is missing")]),
    ],
)
def test_occurred_malformed(value: Any, expected: list[tuple[str, str]]) -> None:
    assert problems(session(occurred=value)) == expected


@pytest.mark.parametrize("value", ["2026-06-15", "2026-06-16", "2026-06-10/2026-06-16", {"start": "2026-06-16"}])
def test_occurred_up_to_one_day_ahead_is_accepted(fixed_now: datetime, value: Any) -> None:
    assert parse(session(occurred=value)).occurred.last_day <= fixed_now.date().replace(day=16)


@pytest.mark.parametrize("value", ["2026-06-17", "2026-06-10/2026-06-17", {"start": "2026-06-15", "end": "2026-06-17"}])
def test_occurred_more_than_one_day_ahead_is_in_the_future(fixed_now: datetime, value: Any) -> None:
    assert fixed_now.date() == date(2026, 6, 15)
    assert problems(session(occurred=value)) == [("occurred", "2026-06-17 is in the future")]


def test_occurred_far_future_rejected_by_the_real_clock() -> None:
    assert problems(session(occurred="2100-01-01")) == [("occurred", "2100-01-01 is in the future")]


# ---- actions need county and occurred; definitions do not --------------------------------------


@pytest.mark.parametrize("factory", [session, materials, team])
def test_action_requires_county(factory: Any) -> None:
    assert problems(factory(county=DROP)) == [("county", "is missing")]


@pytest.mark.parametrize("factory", [session, materials, team])
def test_action_requires_occurred(factory: Any) -> None:
    assert problems(factory(occurred=DROP)) == [("occurred", "is missing")]


@pytest.mark.parametrize("factory", [session, materials, team])
def test_action_with_neither_reports_both(factory: Any) -> None:
    assert problems(factory(county=DROP, occurred=DROP)) == [
        ("occurred", "is missing"),
        ("county", "is missing"),
    ]


@pytest.mark.parametrize("factory", [session, materials, team])
def test_action_county_null_is_not_absent(factory: Any) -> None:
    assert problems(factory(county=None)) == [("county", "must be text in double quotes")]


@pytest.mark.parametrize("factory", [campaign, plan_task])
def test_definitions_need_no_county_or_occurred(factory: Any) -> None:
    event = parse(factory())
    assert (event.county, event.occurred) == (None, None)


# ---- county ------------------------------------------------------------------------------------


@pytest.mark.parametrize("county", AL_COUNTIES)
def test_every_albanian_county_accepted(county: str) -> None:
    assert parse(session(county=county)).county == county


@pytest.mark.parametrize("county", PL_COUNTIES)
def test_every_polish_voivodeship_accepted(county: str) -> None:
    assert parse(team(county=county)).county == county


@pytest.mark.parametrize(
    ("county", "message"),
    [
        ("AL-13", UNKNOWN_AL),
        ("AL-00", UNKNOWN_AL),
        ("AL-6", UNKNOWN_AL),
        ("PL-13", UNKNOWN_PL),
        ("PL-01", UNKNOWN_PL),
        ("PL-34", UNKNOWN_PL),
        ("DE-BE", "unknown county code; known countries: AL, PL"),
        ("PL-MZ", "unknown county code; write PL-14 for PL-MZ"),
        ("PL-SL", "unknown county code; write PL-24 for PL-SL"),
        ("PL-MA", "unknown county code; write PL-12 for PL-MA"),
        ("al-06", COUNTY_PATTERN),
        ("AL06", COUNTY_PATTERN),
        ("AL-0606", COUNTY_PATTERN),
    ],
)
def test_county_must_be_known(county: str, message: str) -> None:
    assert rejected(session(county=county)) == [Problem("county", message, json.dumps(county))]


def test_check_county_direct() -> None:
    assert check_county("AL-09") is None
    assert check_county("PL-14", "PL") is None
    assert check_county("PL-14", "AL") == "county PL-14 is not in country AL"
    assert check_county("PL-MZ") == "unknown county code; write PL-14 for PL-MZ"
    assert check_county("XX-01") == "unknown county code; known countries: AL, PL"


# ---- municipality ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("county", "municipality"),
    [
        ("AL-06", "AL-06-maliq"),
        ("AL-06", "AL-06-korce"),
        ("AL-06", "Maliq"),
        ("AL-06", "maliq"),
        ("AL-06", "KORÇË"),
        ("AL-06", "Korce"),
        ("AL-01", "Dimal"),
        ("AL-01", "Ura Vajgurore"),  # Dimal's former name
        ("AL-06", "Sheqeras"),  # a village: free names not in the reference are allowed
        ("PL-14", "Maliq"),  # names are matched within the county's own country only
    ],
)
def test_municipality_in_its_county_accepted(county: str, municipality: str) -> None:
    assert parse(session(county=county, municipality=municipality)).municipality == municipality


@pytest.mark.parametrize(
    ("county", "municipality", "message"),
    [
        ("AL-01", "AL-06-maliq", "municipality Maliq (AL-06-maliq) belongs to county AL-06, not AL-01"),
        ("AL-11", "AL-06-korce", "municipality Korçë (AL-06-korce) belongs to county AL-06, not AL-11"),
        ("AL-06", "AL-06-sheqeras", "unknown municipality code"),
        ("PL-14", "PL-14-warszawa", "unknown municipality code"),
        ("AL-01", "Maliq", "municipality Maliq belongs to county AL-06, not AL-01"),
        ("AL-01", "Korce", "municipality Korçë belongs to county AL-06, not AL-01"),
        ("AL-01", "  korçë ", "municipality Korçë belongs to county AL-06, not AL-01"),
        ("AL-06", "Ura Vajgurore", "municipality Dimal belongs to county AL-01, not AL-06"),
    ],
)
def test_municipality_outside_its_county_rejected(county: str, municipality: str, message: str) -> None:
    assert problems(session(county=county, municipality=municipality)) == [("(event)", message)]


@pytest.mark.parametrize("factory", [campaign, plan_task])
def test_municipality_needs_a_county(factory: Any) -> None:
    assert problems(factory(municipality="Maliq")) == [("(event)", "a municipality needs a county")]
    assert parse(factory(municipality="Maliq", county="AL-06")).municipality == "Maliq"


def test_check_municipality_direct() -> None:
    assert check_municipality("AL-06-pustec", "AL-06") is None
    assert check_municipality("Pustec", "AL-06") is None
    assert check_municipality("Pustec", "AL-05") == "municipality Pustec belongs to county AL-06, not AL-05"
    assert check_municipality("AL-06-nowhere", "AL-06") == "unknown municipality code"


# ---- counts ------------------------------------------------------------------------------------


def _with_count(where: str, value: Any) -> dict[str, Any]:
    if where == "participants.0.count":
        return session(participants=[{"audience": "students", "count": value}])
    if where == "reported_total":
        return session(participants=[], reported_total=value)
    return materials(quantity=value)


COUNT_FIELDS = ["participants.0.count", "reported_total", "quantity"]


@pytest.mark.parametrize("where", COUNT_FIELDS)
@pytest.mark.parametrize("value", [0, 1, 24, 10_000_000])
def test_count_accepts_whole_numbers_up_to_ten_million(where: str, value: int) -> None:
    event = parse(_with_count(where, value))
    got = {
        "participants.0.count": lambda: event.participants[0].count,
        "reported_total": lambda: event.reported_total,
        "quantity": lambda: event.quantity,
    }[where]()
    assert got == value
    assert type(got) is int


@pytest.mark.parametrize("where", COUNT_FIELDS)
@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-1, "must be at least 0"),
        (10_000_001, "must be at most 10000000"),
        (1.5, "must be a whole number such as 12, not a decimal number"),
        (5.0, "must be a whole number such as 12, not a decimal number"),
        ("thirty", "must be a whole number such as 12, written without quotes"),
        ("5", "must be a whole number such as 12, written without quotes"),
        (True, "must be a whole number, not true/false"),
        (False, "must be a whole number, not true/false"),
    ],
)
def test_count_rejects_what_is_not_a_whole_number_in_range(where: str, value: Any, message: str) -> None:
    assert rejected(_with_count(where, value)) == [Problem(where, message, json.dumps(value))]


def test_count_null_means_unknown() -> None:
    event = parse(session(participants=[{"audience": "general_public", "count": None}]))
    assert event.participants == (AudienceCount(audience=Audience.general_public, count=None, estimated=False),)
    assert parse(materials(quantity=None)).quantity is None


def test_count_must_be_given_even_when_unknown() -> None:
    assert problems(session(participants=[{"audience": "students"}])) == [("participants.0.count", "is missing")]
    assert problems(materials(quantity=DROP)) == [("quantity", "is missing")]


def test_estimated_count_accepted() -> None:
    event = parse(session(participants=[{"audience": "students", "count": 30, "estimated": True}]))
    assert event.participants[0] == AudienceCount(audience=Audience.students, count=30, estimated=True)
    assert parse(materials(quantity=4000, estimated=True)).estimated is True


def test_unknown_count_cannot_be_estimated() -> None:
    found = problems(
        session(
            participants=[
                {"audience": "students", "count": 30},
                {"audience": "teachers", "count": None, "estimated": True},
            ]
        )
    )
    assert found == [("participants.1", "an unknown count cannot be an estimate; give the estimated number")]


def test_unknown_quantity_cannot_be_estimated() -> None:
    assert problems(materials(quantity=None, estimated=True)) == [
        ("(event)", "an unknown quantity cannot be an estimate; give the estimated number")
    ]


def test_audience_must_be_known() -> None:
    assert problems(session(participants=[{"audience": "kids", "count": 3}])) == [
        (
            "participants.0.audience",
            "must be one of: students, teachers, officials, civil_society, police, border_guard, "
            "social_workers, employment_office_staff, general_public, other",
        )
    ]


def test_duplicate_audience_groups_rejected() -> None:
    groups = [{"audience": "students", "count": 30}, {"audience": "students", "count": None}]
    assert problems(session(participants=groups)) == [("(event)", "participants list the same audience group twice")]


@pytest.mark.parametrize("total", [37, 38, 500])
def test_reported_total_may_equal_or_exceed_the_breakdown(total: int) -> None:
    assert parse(session(reported_total=total)).reported_total == total


@pytest.mark.parametrize("total", [0, 36])
def test_reported_total_below_the_breakdown_rejected(total: int) -> None:
    assert problems(session(reported_total=total)) == [
        ("(event)", f"reported_total {total} is less than the breakdown's sum 37")
    ]


def test_reported_total_with_uncounted_groups() -> None:
    groups = [{"audience": "officials", "count": None}, {"audience": "social_workers", "count": None}]
    assert parse(session(participants=groups, reported_total=24)).reported_total == 24
    groups[0]["count"] = 25
    assert problems(session(participants=groups, reported_total=24)) == [
        ("(event)", "reported_total 24 is less than the breakdown's sum 25")
    ]


def test_total_estimated_needs_reported_total() -> None:
    assert problems(session(total_estimated=True)) == [("(event)", "total_estimated needs a reported_total")]
    event = parse(session(reported_total=40, total_estimated=True))
    assert (event.reported_total, event.total_estimated) == (40, True)


# ---- participants_known / participants_unknown / participants_estimated --------------------------


@pytest.mark.parametrize(
    ("participants", "extra", "known", "unknown", "estimated"),
    [
        ([{"audience": "students", "count": 30}, {"audience": "teachers", "count": 7}], {}, 37, False, False),
        ([{"audience": "officials", "count": None}], {"reported_total": 24}, 24, False, False),
        ([{"audience": "students", "count": 10}], {"reported_total": 12}, 12, False, False),
        ([{"audience": "general_public", "count": None}], {}, 0, True, False),
        ([{"audience": "students", "count": 30}, {"audience": "teachers", "count": None}], {}, 30, True, False),
        ([], {}, 0, True, False),
        ([], {"reported_total": 0}, 0, False, False),
        ([{"audience": "students", "count": 30, "estimated": True}], {}, 30, False, True),
        ([{"audience": "students", "count": None}], {"reported_total": 50, "total_estimated": True}, 50, False, True),
        ([{"audience": "students", "count": 30, "estimated": True}], {"reported_total": 35}, 35, False, True),
    ],
)
def test_participant_properties(
    participants: list[dict[str, Any]], extra: dict[str, Any], known: int, unknown: bool, estimated: bool
) -> None:
    event = parse(session(participants=participants, **extra))
    assert event.participants_known == known
    assert event.participants_unknown is unknown
    assert event.participants_estimated is estimated


# ---- unknown fields; frozen models -------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "field", "value"),
    [
        (session(attendees=30), "attendees", "30"),
        (session(participants=[{"audience": "students", "count": 1, "gender": "f"}]), "participants.0.gender", '"f"'),
        (campaign(budget="1"), "budget", '"1"'),
        (retraction(note="x"), "note", '"x"'),
        (correction(replacement=session(notes="x")), "replacement.notes", '"x"'),
    ],
)
def test_unknown_fields_rejected(event: dict[str, Any], field: str, value: str) -> None:
    assert rejected(event) == [
        Problem(field, "is not a field of this event type; check its spelling against `outreach schema`", value)
    ]


def test_models_are_frozen() -> None:
    event = parse(session())
    with pytest.raises(ValidationError, match="Instance is frozen"):
        event.county = "AL-01"
    with pytest.raises(ValidationError, match="Instance is frozen"):
        event.occurred.start = date(2000, 1, 1)
    with pytest.raises(ValidationError, match="Instance is frozen"):
        event.participants[0].count = 1
    assert isinstance(event.participants, tuple)
    assert event.county == "AL-06"
    assert event.participants[0].count == 30


def test_events_are_hashable_and_compare_by_value() -> None:
    assert parse(session()) == parse(session())
    assert parse(session()) != parse(session(reported_total=40))
    assert len({parse(session()), parse(session())}) == 1


# ---- campaign ----------------------------------------------------------------------------------


def test_valid_campaign() -> None:
    event = parse(campaign(starts="2018-01-01", ends="2018-03-31", target_counties=["AL-06", "AL-09"]))
    assert event.target_counties == ("AL-06", "AL-09")
    assert (event.starts, event.ends) == (date(2018, 1, 1), date(2018, 3, 31))
    assert parse(campaign(starts="2018-01-01", ends="2018-01-01")).ends == date(2018, 1, 1)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"starts": "2018-03-31", "ends": "2018-01-01"},
            ("(event)", "campaign ends (2018-01-01) before it starts (2018-03-31)"),
        ),
        (
            {"target_counties": ["AL-06", "PL-14"]},
            ("(event)", "target_counties PL-14: county PL-14 is not in country AL"),
        ),
        (
            {"country": "PL", "target_counties": ["AL-06"]},
            ("(event)", "target_counties AL-06: county AL-06 is not in country PL"),
        ),
        (
            {"country": "PL", "target_counties": ["PL-MZ"]},
            ("(event)", "target_counties PL-MZ: unknown county code; write PL-14 for PL-MZ"),
        ),
        ({"target_counties": ["AL-13"]}, ("(event)", f"target_counties AL-13: {UNKNOWN_AL}")),
        ({"target_counties": ["AL-06", "AL-06"]}, ("(event)", "target_counties lists the same county twice")),
        ({"country": "DE"}, ("(event)", "country DE has no reference data; known: AL, PL")),
        ({"country": "al"}, ("country", "must be a country's two capital letters, such as AL or PL")),
        ({"country": DROP}, ("country", "is missing")),
        ({"campaign_id": DROP}, ("campaign_id", "is missing")),
        ({"campaign_id": "Irregular Migration"}, ("campaign_id", SLUG_PATTERN)),
        ({"name": "   "}, ("name", "is empty")),
        ({"lead_agency": "IOM"}, ("lead_agency", SLUG_PATTERN)),
    ],
)
def test_invalid_campaign(overrides: dict[str, Any], expected: tuple[str, str]) -> None:
    assert problems(campaign(**overrides)) == [expected]


# ---- plan task and plan_tasks references -------------------------------------------------------


def test_valid_plan_task() -> None:
    event = parse(plan_task())
    assert (event.first_year, event.last_year, event.part, event.task) == (2013, 2015, "III", "4")
    assert event.task_ref == "pl-nap-2013-2015/III/4"
    assert parse(plan_task(first_year=2015, last_year=2015)).last_year == 2015


@pytest.mark.parametrize(("part", "task"), [("III", "4"), ("12", "4.1"), ("IV", "10a"), ("C", "0")])
def test_plan_task_part_and_task_accepted(part: str, task: str) -> None:
    assert parse(plan_task(part=part, task=task)).task_ref == f"pl-nap-2013-2015/{part}/{task}"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"last_year": 2012}, ("(event)", "last_year 2012 is before first_year 2013")),
        ({"first_year": 1989}, ("first_year", "must be at least 1990")),
        ({"last_year": 2101}, ("last_year", "must be at most 2100")),
        ({"part": "iii"}, ("part", "must be a part of a plan in Roman numerals or digits, such as III")),
        ({"part": "III/4"}, ("part", "must be a part of a plan in Roman numerals or digits, such as III")),
        ({"part": ""}, ("part", "must be a part of a plan in Roman numerals or digits, such as III")),
        ({"task": "four"}, ("task", "must be a task number, such as 4 or 2.1a")),
        ({"task": "a1"}, ("task", "must be a task number, such as 4 or 2.1a")),
        ({"task": "4A"}, ("task", "must be a task number, such as 4 or 2.1a")),
        ({"plan_id": "PL NAP"}, ("plan_id", SLUG_PATTERN)),
        ({"title": DROP}, ("title", "is missing")),
    ],
)
def test_invalid_plan_task(overrides: dict[str, Any], expected: tuple[str, str]) -> None:
    assert problems(plan_task(**overrides)) == [expected]


@pytest.mark.parametrize(
    "refs", [["pl-nap-2013-2015/III/4"], ["pl-nap-2013-2015/III/4", "pl-nap-2013-2015/III/5"], ["al-nap/12/4.1a"]]
)
def test_plan_tasks_references_accepted(refs: list[str]) -> None:
    assert parse(team(plan_tasks=refs)).plan_tasks == tuple(refs)


@pytest.mark.parametrize(
    "ref",
    [
        "pl-nap-2013-2015/III",
        "pl-nap-2013-2015",
        "PL-NAP-2013-2015/III/4",
        "pl-nap-2013-2015/iii/4",
        "pl-nap-2013-2015/III/4/5",
        "pl-nap-2013-2015/III/four",
        "pl-nap-2013-2015 / III / 4",
    ],
)
def test_plan_tasks_reference_format(ref: str) -> None:
    assert rejected(team(plan_tasks=[ref])) == [Problem("plan_tasks.0", PLAN_TASK_PATTERN, json.dumps(ref))]


def test_plan_tasks_unique() -> None:
    refs = ["pl-nap-2013-2015/III/4", "pl-nap-2013-2015/III/4"]
    assert problems(team(plan_tasks=refs)) == [("plan_tasks", "lists the same entry twice")]


# ---- partners; member institutions; materials --------------------------------------------------


def test_partners_accepted() -> None:
    partners = ["al-korce-regional-committee", "iom-albania"]
    assert parse(session(partners=partners)).partners == tuple(partners)


def test_partners_must_not_include_the_publishing_agency() -> None:
    assert problems(session(partners=["iom-albania", AGENCY])) == [
        ("(event)", "partners list the publishing agency itself")
    ]


def test_partners_must_be_unique() -> None:
    assert problems(session(partners=["iom-albania", "iom-albania"])) == [("partners", "lists the same entry twice")]


def test_partners_must_be_slugs() -> None:
    assert problems(session(partners=["IOM Albania"])) == [("partners.0", SLUG_PATTERN)]


def test_member_institutions() -> None:
    assert parse(team()).member_institutions == ("voivodeship_office", "police")
    assert problems(team(member_institutions=["police", "police"])) == [
        ("member_institutions", "lists the same institution type twice")
    ]
    assert problems(team(member_institutions=["cops"])) == [
        (
            "member_institutions.0",
            "must be one of: voivodeship_office, regional_government, local_government, police, "
            "border_guard, prosecutor, labour_inspection, education, social_services, "
            "employment_office, ngo, international_organisation, other",
        )
    ]


def test_team_name_required() -> None:
    assert problems(team(team_name=DROP)) == [("team_name", "is missing")]


def test_materials_kind_and_language() -> None:
    event = parse(materials(language="sq"))
    assert (event.kind, event.quantity, event.language) == ("leaflet", 4000, "sq")
    assert problems(materials(language="SQ")) == [
        ("language", "must be a language's two or three lower-case letters, such as sq or pl")
    ]
    assert problems(materials(kind="flyer")) == [("kind", "must be one of: leaflet, poster, brochure, other")]


# ---- corrections and retractions ---------------------------------------------------------------


def test_valid_correction() -> None:
    event = parse(correction())
    assert isinstance(event, EventCorrected)
    assert event.corrects == uuid.UUID(EVENT_ID)
    assert event.event_id == uuid.UUID(OTHER_ID)
    assert isinstance(event.replacement, SessionHeld)
    assert event.replacement == parse(session())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"corrects": "33333333-3333-4333-8333-333333333333"},
            f"replacement.event_id {EVENT_ID} must equal corrects 33333333-3333-4333-8333-333333333333",
        ),
        (
            {"replacement": session(agency="al-korce-regional-committee")},
            "replacement.agency 'al-korce-regional-committee' must equal agency 'al-national-coordinator'",
        ),
        ({"event_id": EVENT_ID}, "a correction needs an event_id of its own, not the corrected event's"),
    ],
)
def test_invalid_correction(overrides: dict[str, Any], message: str) -> None:
    assert problems(correction(**overrides)) == [("(event)", message)]


def test_correction_reports_replacement_problems_under_replacement() -> None:
    bad = session(county="AL-13", participants=[{"audience": "students", "count": -1}])
    assert problems(correction(replacement=bad)) == [
        ("replacement.county", UNKNOWN_AL),
        ("replacement.participants.0.count", "must be at least 0"),
    ]


def test_correction_replacement_must_be_a_fact() -> None:
    assert problems(correction(replacement=retraction(event_id=EVENT_ID, retracts=OTHER_ID))) == [
        (
            "replacement",
            "Input tag 'event_retracted' found using 'event_type' does not match any of the expected tags: "
            "'campaign_defined', 'plan_task_defined', 'session_held', 'materials_distributed', 'team_established'",
        )
    ]
    assert problems(correction(replacement=session(event_type=DROP))) == [
        ("replacement", "Unable to extract tag using discriminator 'event_type'")
    ]


def test_valid_retraction() -> None:
    event = parse(retraction())
    assert isinstance(event, EventRetracted)
    assert (event.retracts, event.reason) == (uuid.UUID(EVENT_ID), "published twice")


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"reason": DROP}, ("reason", "is missing")),
        ({"reason": "   "}, ("reason", "is empty")),
        ({"retracts": OTHER_ID}, ("(event)", "a retraction needs an event_id of its own")),
        ({"retracts": "x"}, ("retracts", "must be an event id: a UUID such as 1b4e28ba-2fa1-11d2-883f-0016d3cca427")),
    ],
)
def test_invalid_retraction(overrides: dict[str, Any], expected: tuple[str, str]) -> None:
    assert problems(retraction(**overrides)) == [expected]


# ---- event_type and schema_version -------------------------------------------------------------


def test_unknown_event_type() -> None:
    assert rejected(session(event_type="session_planned")) == [
        Problem("event_type", f"is not a known event type; one of: {TYPES_LISTED}", '"session_planned"')
    ]
    assert rejected(session(event_type=123)) == [
        Problem("event_type", f"is not a known event type; one of: {TYPES_LISTED}", "123")
    ]


def test_missing_event_type() -> None:
    assert rejected(session(event_type=DROP)) == [Problem("event_type", f"is missing; one of: {TYPES_LISTED}")]


@pytest.mark.parametrize(
    ("factory", "version", "message"),
    [
        (session, 4, "is not a supported version of session_held (supported: 1, 2, 3)"),
        (session, 0, "is not a supported version of session_held (supported: 1, 2, 3)"),
        (session, "2", "is not a supported version of session_held (supported: 1, 2, 3)"),
        (session, None, "is not a supported version of session_held (supported: 1, 2, 3)"),
        (session, True, "is not a supported version of session_held (supported: 1, 2, 3)"),
        (campaign, 2, "is not a supported version of campaign_defined (supported: 1)"),
        (team, 2, "is not a supported version of team_established (supported: 1)"),
        (retraction, 0, "is not a supported version of event_retracted (supported: 1)"),
    ],
)
def test_unsupported_schema_version(factory: Any, version: Any, message: str) -> None:
    assert rejected(factory(schema_version=version)) == [Problem("schema_version", message, json.dumps(version))]


@pytest.mark.parametrize("factory", [session, materials, team, campaign, plan_task, correction, retraction])
def test_schema_version_defaults_to_current(factory: Any) -> None:
    event, published = parse_event_versioned(encode(factory(schema_version=DROP)))
    assert published == event.schema_version
    assert published == (3 if factory is session else 1)


@pytest.mark.parametrize(("factory", "version"), [(campaign, True), (campaign, 1.0), (session, 2.0)])
def test_schema_version_must_be_an_integer_in_bytes_too(factory: Any, version: Any) -> None:
    listed = "1, 2, 3" if factory is session else "1"
    kind = factory()["event_type"]
    expected = [
        Problem("schema_version", f"is not a supported version of {kind} (supported: {listed})", json.dumps(version))
    ]
    with pytest.raises(EventInvalid) as from_dict:
        parse_event(factory(schema_version=version))
    assert from_dict.value.problems == expected  # the dict path already refuses it
    assert rejected(factory(schema_version=version)) == expected


# ---- raw input: size, encoding, JSON, nesting --------------------------------------------------


def test_invalid_json() -> None:
    assert problems(b'{"event_type": "session_held",}') == [
        ("(event)", "is not valid JSON: a field name must be in double quotes at column 31")
    ]
    assert problems(b"") == [
        ("(event)", "is not valid JSON: a value is missing (or a text lacks its double quotes) at column 1")
    ]
    assert problems(b"{") == [("(event)", "is not valid JSON: a field name must be in double quotes at column 2")]


@pytest.mark.parametrize(
    ("raw", "kind"),
    [(b"[1, 2]", "list"), (b'"event"', "str"), (b"42", "int"), (b"null", "NoneType"), (b"true", "bool")],
)
def test_json_must_be_an_object(raw: bytes, kind: str) -> None:
    assert problems(raw) == [("(event)", f"must be a JSON object, not {kind}")]


def test_invalid_utf8_names_the_byte() -> None:
    assert problems(b"\xff{}") == [("(event)", "is not valid UTF-8 (byte 0)")]
    assert problems(b'{"a": "\xc3"}') == [("(event)", "is not valid UTF-8 (byte 7)")]
    assert problems('{"a": "\udc80"}') == [("(event)", "is not valid UTF-8 (byte 7)")]  # a lone surrogate in str


def _padded(size: int) -> bytes:
    raw = encode(session())
    return raw + b" " * (size - len(raw))


def test_payload_up_to_64_kib_accepted() -> None:
    raw = _padded(MAX_EVENT_BYTES)
    assert len(raw) == 65_536
    assert parse_event(raw) == parse(session())


def test_payload_over_64_kib_rejected() -> None:
    assert problems(_padded(MAX_EVENT_BYTES + 1)) == [("(event)", "is 65,537 bytes; the limit is 65,536")]


def test_payload_size_of_str_counted_in_utf8_bytes() -> None:
    text = json.dumps(session(source="ë" * 40_000), ensure_ascii=False)
    assert len(text) < MAX_EVENT_BYTES
    size = len(text.encode("utf-8"))
    assert problems(text) == [("(event)", f"is {size:,} bytes; the limit is 65,536")]


def _nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


def test_nesting_of_eight_levels_reaches_validation() -> None:
    # the object itself is level 1; seven lists inside make eight
    assert problems(session(extra=_nested(7))) == [
        ("extra", "is not a field of this event type; check its spelling against `outreach schema`")
    ]


def test_nesting_deeper_than_eight_levels_rejected() -> None:
    assert problems(session(extra=_nested(8))) == [("(event)", "is nested deeper than 8 levels")]
    assert problems(session(participants=[{"audience": "students", "count": _nested(7)}])) == [
        ("(event)", "is nested deeper than 8 levels")
    ]


def test_nesting_beyond_the_json_parsers_recursion_limit() -> None:
    raw = b'{"a": ' + b"[" * 30_000 + b"]" * 30_000 + b"}"
    assert len(raw) <= MAX_EVENT_BYTES
    assert problems(raw) == [("(event)", "is nested deeper than 8 levels")]


# ---- how problems are reported -----------------------------------------------------------------


@pytest.mark.parametrize(
    "event",
    [
        session(county="AL-13"),
        session(event_id="x", agency="X", participants=[{"audience": "students", "count": -1}]),
        session(municipality="AL-06-maliq", county="AL-01"),
        session(event_type="nope"),
        correction(corrects=OTHER_ID),
    ],
)
def test_dict_input_reports_the_same_problems_as_bytes(event: dict[str, Any]) -> None:
    with pytest.raises(EventInvalid) as from_dict:
        parse_event(event)
    assert from_dict.value.problems == rejected(event)


def test_every_field_problem_is_reported_at_once() -> None:
    found = rejected(session(event_id="x", agency="X", county="PL-MZ", format="lecture", reported_total=-1))
    assert [(p.field, p.value) for p in found] == [
        ("event_id", '"x"'),
        ("agency", '"X"'),
        ("county", '"PL-MZ"'),
        ("format", '"lecture"'),
        ("reported_total", "-1"),
    ]
    assert all(p.line is None for p in found)


def test_long_values_are_shortened_in_problems() -> None:
    [problem] = rejected(session(source="x" * 2001))
    assert problem.field == "source"
    assert problem.message == "is longer than 2000 characters"
    assert problem.value == '"' + "x" * 76 + "..."
    assert len(problem.value) == 80


def test_event_invalid_message_lists_problems() -> None:
    with pytest.raises(EventInvalid) as info:
        parse(session(county="AL-13", agency="X"))
    assert str(info.value) == (
        f'event is invalid (2 problem(s)):\n  agency: {SLUG_PATTERN} (got "X")\n  county: {UNKNOWN_AL} (got "AL-13")'
    )


@pytest.mark.parametrize("version", [True, 1.0])
def test_replacement_schema_version_must_be_an_integer(version: Any) -> None:
    # true == 1 in Python; it must not pass for version 1 and get a v1 replacement upcast
    v1 = session(schema_version=version, participants=DROP, audience="students")
    v1["participants"] = 10
    message = (
        "must be a whole number, not true/false"
        if version is True
        else "must be a whole number such as 12, not a decimal number"
    )
    assert rejected(correction(replacement=v1)) == [
        Problem("replacement.schema_version", message, json.dumps(version)),
        Problem("replacement.participants", "must be a list in square brackets, [ … ]", "10"),
        Problem(
            "replacement.audience",
            "is not a field of this event type; check its spelling against `outreach schema`",
            '"students"',
        ),
    ]


def test_an_open_ended_range_is_refused() -> None:
    assert problems(session(occurred="2017-12-20/")) == [
        ("occurred", "range '2017-12-20/' has no end; write one date, or start/end")
    ]
