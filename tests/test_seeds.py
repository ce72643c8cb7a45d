"""The seed events shipped in schemas/data/seed_events.jsonl: valid, and saying what the sources say.

The Albanian events come from the national coordinator's report on the December 2017 awareness
meetings in Korçë; the Polish ones from the March 2015 news item on the voivodeship teams.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date
from importlib import resources
from pathlib import Path

import pytest

from schemas.events import (
    Audience,
    AudienceCount,
    CampaignDefined,
    EventBase,
    MaterialsDistributed,
    Occurred,
    PlanTaskDefined,
    SessionHeld,
    TeamEstablished,
)
from schemas.files import LoadedFile, load_events

SEED_IDS = [
    "f92f238b-3f5a-5eae-bf56-dbfb34fda82e",
    "6a8c3205-303c-508e-8283-1a09c05bb17c",
    "a40af0f5-08fc-51f8-9bd8-1851cf496391",
    "c471e584-856d-5b45-8630-2ce2b5cc39b0",
    "d28f01c7-9163-5ccc-a64e-d1c73daf3358",
    "8d2fb08a-bee7-5848-b769-c63d399b89f6",
    "da45b8ae-4de3-5374-8f50-d6a875b24883",
    "6cd067bf-715d-5e72-8bbf-f741691bd99a",
    "1c9cd2d9-25aa-52d9-8013-fae1f8e111cd",
    "23570f5b-7215-51cc-986a-b60891da0774",
    "715a7dfc-6dfc-5e61-85bc-0d0f06c8f059",
    "d78642f4-dd16-5645-bbc0-ff3001a976ca",
    "7b59523c-2647-501f-b0fe-f999847ef982",
    "8e99a036-a358-58a2-ba7b-76923c9a992a",
    "714d3ba7-f7e5-553d-978c-c7f7ee5b283b",
    "3eec7f99-bd38-5e87-a3dd-207178b8c8fe",
    "7bdb8647-6092-554b-9470-323c758f3a00",
]
PLAN_TASK = "pl-nap-2013-2015/III/4"


@pytest.fixture(scope="module")
def seeds() -> Iterator[LoadedFile]:
    with resources.as_file(resources.files("schemas.data").joinpath("seed_events.jsonl")) as path:
        assert Path(path).is_file()
        yield load_events(path)


@pytest.fixture(scope="module")
def events(seeds: LoadedFile) -> list[EventBase]:
    return [event for _, event in seeds.events]


def sessions_in(events: list[EventBase], county: str) -> list[SessionHeld]:
    return [e for e in events if isinstance(e, SessionHeld) and e.county == county]


def test_seed_file_has_no_problems(seeds: LoadedFile) -> None:
    assert seeds.problems == []
    seeds.raise_if_invalid()
    assert seeds.lines_total == 17
    assert [n for n, _ in seeds.events] == list(range(1, 18))


def test_seed_event_ids_are_fixed_and_unique(events: list[EventBase]) -> None:
    assert [str(e.event_id) for e in events] == SEED_IDS
    assert len(set(SEED_IDS)) == 17
    assert all(e.event_id.version == 5 for e in events)  # derived by name, so re-seeding never duplicates


def test_seed_event_types(events: list[EventBase]) -> None:
    assert [e.event_type for e in events] == [
        "campaign_defined",
        *["session_held"] * 6,
        "materials_distributed",
        "plan_task_defined",
        "campaign_defined",
        *["team_established"] * 7,
    ]
    assert all(e.schema_version == (3 if isinstance(e, SessionHeld) else 1) for e in events)


def test_korce_sessions_and_their_participants(events: list[EventBase]) -> None:
    korce = sessions_in(events, "AL-06")
    got = {
        (s.format.value, s.municipality, s.occurred.start.isoformat(), s.participants, s.reported_total) for s in korce
    }
    range_start = "2017-12-20"
    assert got == {
        (
            "workshop",
            "AL-06-korce",
            range_start,
            (
                AudienceCount(audience=Audience.officials, count=None),
                AudienceCount(audience=Audience.social_workers, count=None),
            ),
            24,
        ),
        (
            "civil_society_meeting",
            "AL-06-korce",
            range_start,
            (AudienceCount(audience=Audience.civil_society, count=26),),
            None,
        ),
        (
            "school_session",
            "AL-06-korce",
            range_start,
            (AudienceCount(audience=Audience.students, count=30), AudienceCount(audience=Audience.teachers, count=7)),
            None,
        ),
        (
            "information_meeting",
            "AL-06-korce",
            range_start,
            (AudienceCount(audience=Audience.employment_office_staff, count=None),),
            None,
        ),
        (
            "school_session",
            "AL-06-maliq",
            "2017-12-21",
            (AudienceCount(audience=Audience.students, count=10),),
            None,
        ),
        (
            "public_talks",
            "AL-06-korce",
            range_start,
            (AudienceCount(audience=Audience.general_public, count=None),),
            None,
        ),
    }
    assert len(korce) == 6


def test_korce_participants_known_sum_to_97(events: list[EventBase]) -> None:
    korce = sessions_in(events, "AL-06")
    assert [s.participants_known for s in korce] == [24, 26, 37, 0, 10, 0]
    assert sum(s.participants_known for s in korce) == 97
    assert [s.participants_unknown for s in korce] == [False, False, False, True, False, True]
    assert not any(s.participants_estimated for s in korce)


def test_korce_session_dates(events: list[EventBase]) -> None:
    korce = sessions_in(events, "AL-06")
    two_days = Occurred(start=date(2017, 12, 20), end=date(2017, 12, 21))
    assert [s.occurred for s in korce] == [two_days] * 4 + [Occurred(start=date(2017, 12, 21))] + [two_days]
    maliq = [s for s in korce if s.municipality == "AL-06-maliq"]
    assert len(maliq) == 1
    assert maliq[0].occurred.start == date(2017, 12, 21)
    assert maliq[0].occurred.end is None


def test_korce_sessions_with_unknown_counts(events: list[EventBase]) -> None:
    unknown = [s for s in sessions_in(events, "AL-06") if s.participants_unknown]
    assert [(s.format.value, s.title) for s in unknown] == [
        ("information_meeting", "Takim me punonjësit e Zyrës Rajonale të Punësimit"),
        ("public_talks", "Biseda të lira në bare të qytetit"),
    ]


def test_no_sessions_outside_korce(events: list[EventBase]) -> None:
    assert {e.county for e in events if isinstance(e, SessionHeld)} == {"AL-06"}


def test_leaflets_in_korce(events: list[EventBase]) -> None:
    materials = [e for e in events if isinstance(e, MaterialsDistributed)]
    assert len(materials) == 1
    [leaflets] = materials
    assert (leaflets.county, leaflets.kind.value, leaflets.quantity, leaflets.estimated, leaflets.language) == (
        "AL-06",
        "leaflet",
        4000,
        False,
        "sq",
    )
    assert leaflets.occurred == Occurred(start=date(2017, 12, 20), end=date(2017, 12, 21))
    assert leaflets.agency == "al-national-coordinator"


def test_polish_teams_and_their_establishment_dates(events: list[EventBase]) -> None:
    teams = [e for e in events if isinstance(e, TeamEstablished)]
    got = [(t.county, t.agency, t.occurred.start, t.occurred.end, t.plan_tasks) for t in teams]
    assert got == [
        ("PL-14", "pl-mazowieckie-voivodeship-office", date(2010, 10, 1), date(2010, 10, 31), ()),
        ("PL-08", "pl-lubuskie-voivodeship-office", date(2014, 5, 19), None, (PLAN_TASK,)),
        ("PL-06", "pl-lubelskie-voivodeship-office", date(2014, 10, 7), None, (PLAN_TASK,)),
        ("PL-20", "pl-podlaskie-voivodeship-office", date(2014, 10, 7), None, (PLAN_TASK,)),
        ("PL-32", "pl-zachodniopomorskie-voivodeship-office", date(2014, 11, 24), None, (PLAN_TASK,)),
        ("PL-12", "pl-malopolskie-voivodeship-office", date(2014, 1, 26), None, (PLAN_TASK,)),
        ("PL-24", "pl-slaskie-voivodeship-office", date(2015, 2, 9), None, (PLAN_TASK,)),
    ]
    assert sum(PLAN_TASK in t.plan_tasks for t in teams) == 6


def test_plan_task_defined(events: list[EventBase]) -> None:
    [plan] = [e for e in events if isinstance(e, PlanTaskDefined)]
    assert (plan.plan_id, plan.country, plan.first_year, plan.last_year, plan.part, plan.task) == (
        "pl-nap-2013-2015",
        "PL",
        2013,
        2015,
        "III",
        "4",
    )
    assert plan.task_ref == PLAN_TASK
    assert plan.agency == "pl-national-coordinator"
    assert plan.source is not None
    assert "203-2015" in plan.source  # the source's misprint is kept, with the correction beside it


def test_every_plan_task_reference_is_defined(events: list[EventBase]) -> None:
    defined = {e.task_ref for e in events if isinstance(e, PlanTaskDefined)}
    referenced = {ref for e in events for ref in e.plan_tasks}
    assert referenced == defined == {PLAN_TASK}


def test_campaigns(events: list[EventBase]) -> None:
    campaigns = [e for e in events if isinstance(e, CampaignDefined)]
    assert [(c.campaign_id, c.country, c.lead_agency, c.target_counties) for c in campaigns] == [
        ("al-irregular-migration-prevention", "AL", "al-national-coordinator", ("AL-06",)),
        ("pl-improved-cooperation-structures", "PL", "pl-national-coordinator", ()),
    ]
    korce_ids = {e.campaign_id for e in sessions_in(events, "AL-06")}
    assert korce_ids == {"al-irregular-migration-prevention"}


def test_seed_agencies(events: list[EventBase]) -> None:
    assert [e.agency for e in events] == [
        "al-national-coordinator",
        "al-korce-regional-committee",
        *["al-national-coordinator"] * 6,
        "pl-national-coordinator",
        "pl-national-coordinator",
        "pl-mazowieckie-voivodeship-office",
        "pl-lubuskie-voivodeship-office",
        "pl-lubelskie-voivodeship-office",
        "pl-podlaskie-voivodeship-office",
        "pl-zachodniopomorskie-voivodeship-office",
        "pl-malopolskie-voivodeship-office",
        "pl-slaskie-voivodeship-office",
    ]
    albanian = {e.agency for e in events if e.county == "AL-06" or getattr(e, "country", None) == "AL"}
    assert albanian == {"al-national-coordinator", "al-korce-regional-committee"}


def test_seed_partners_never_include_the_publisher(events: list[EventBase]) -> None:
    for event in events:
        assert event.agency not in event.partners


def test_seed_recorded_at(events: list[EventBase]) -> None:
    assert {e.recorded_at.isoformat() for e in events} == {"2026-11-22T00:00:00+00:00"}


def test_workshop_is_published_by_the_regional_committee(events: list[EventBase]) -> None:
    workshop = next(e for e in events if e.event_id == uuid.UUID(SEED_IDS[1]))
    assert isinstance(workshop, SessionHeld)
    assert (workshop.format.value, workshop.agency, workshop.reported_total) == (
        "workshop",
        "al-korce-regional-committee",
        24,
    )
