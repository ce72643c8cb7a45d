"""Who a figure belongs to, as the projection shows it: a campaign's lead is the agency that defined
it, and a fact's history holds its own agency's events only. Real nats-server, real DuckDB file."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from nats.aio.client import Client

from consumers.app import run_projector
from projections.query import run_query
from runtime.settings import Settings
from runtime.stream import ensure_stream
from schemas.errors import EventInvalid
from schemas.parse import parse_event
from tests.test_audit import correction, retraction, session

pytestmark = pytest.mark.integration

LEAD_REFUSED = (
    "lead_agency: names another agency than al-b, which defines the campaign: a campaign's lead is the agency "
    "that defines it; let al-a define it, or give lead_agency al-b and list al-a in partners"
)


def campaign(agency: str, lead: str, name: str) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "campaign_defined",
        "agency": agency,
        "recorded_at": "2025-01-01T00:00:00Z",
        "campaign_id": "al-future-campaign",
        "name": name,
        "country": "AL",
        "lead_agency": lead,
    }


async def publish_raw(nc: Client, events: list[dict[str, Any]]) -> None:
    """As a client that skips every check would: straight onto each event's subject."""
    js = nc.jetstream()
    for e in events:
        await js.publish(f"outreach.events.{e['agency']}.{e['event_type']}.{e['event_id']}", json.dumps(e).encode())


def test_a_campaign_defined_in_another_agencys_name_is_refused_before_publishing() -> None:
    with pytest.raises(EventInvalid) as refused:
        parse_event(json.dumps(campaign("al-b", "al-a", "B's")).encode())
    assert [f"{p.field}: {p.message}" for p in refused.value.problems] == [LEAD_REFUSED]
    partners = dict(campaign("al-b", "al-b", "B's"), partners=["al-a"])
    assert parse_event(json.dumps(partners).encode()).lead_agency == "al-b"  # type: ignore[attr-defined]


async def test_a_campaign_defined_first_in_another_agencys_name_does_not_take_it(
    nc: Client, settings: Settings
) -> None:
    """B defined al-future-campaign first with lead_agency al-a: A's own definition was then
    rejected, and totals_by_campaign showed B's name with A as lead."""
    await ensure_stream(nc.jetstream(), settings.stream, settings.duplicate_window_s)
    action = dict(session("al-c", 12), campaign_id="al-future-campaign")
    await publish_raw(
        nc, [campaign("al-b", "al-a", "B's name for it"), campaign("al-a", "al-a", "A's campaign"), action]
    )
    stats = await run_projector(settings, until_caught_up=True)
    assert (stats.accepted, stats.rejected) == (2, 1)
    assert run_query(settings.db, "SELECT stream_seq, reason FROM rejected_events").rows == [
        (1, f'invalid: {LEAD_REFUSED} (got "al-a")')
    ]
    assert run_query(
        settings.db,
        "SELECT campaign_id, name, lead_agency, defined_by, events, participants FROM totals_by_campaign",
    ).rows == [("al-future-campaign", "A's campaign", "al-a", "al-a", 1, 12)]


async def test_a_facts_history_never_lists_another_agencys_events_of_the_same_event_id(
    nc: Client, settings: Settings
) -> None:
    """B publishes its own events under A's event_id ("b corrects a"), and a retraction of an
    event B never had: none of it is A's history, and what was refused stays in rejected_events."""
    await ensure_stream(nc.jetstream(), settings.stream, settings.duplicate_window_s)
    a = session("al-a", 10)
    b = dict(session("al-b", 3), event_id=a["event_id"])
    b_fix = dict(correction(b, 30), reason="b corrects a")
    b_unknown = dict(retraction(dict(a, event_id=str(uuid.uuid4()), agency="al-b")), reason="b retracts nothing")
    await publish_raw(nc, [a, b, correction(a, 14), b_fix, b_unknown, retraction(a)])
    await run_projector(settings, until_caught_up=True)

    def rows(sql: str) -> list[tuple[Any, ...]]:
        return run_query(settings.db, sql).rows

    history = "SELECT fact_id, stream_seq, event_type, agency, reason FROM event_history WHERE fact_id = '{}'"
    assert rows(history.format(f"al-a/{a['event_id']}")) == [
        (f"al-a/{a['event_id']}", 1, "session_held", "al-a", None),
        (f"al-a/{a['event_id']}", 3, "event_corrected", "al-a", "recounted"),
        (f"al-a/{a['event_id']}", 6, "event_retracted", "al-a", "reported twice"),
    ]
    assert rows(history.format(f"al-b/{a['event_id']}")) == [
        (f"al-b/{a['event_id']}", 2, "session_held", "al-b", None),
        (f"al-b/{a['event_id']}", 4, "event_corrected", "al-b", "b corrects a"),
    ]
    assert rows(history.format(a["event_id"])) == []  # the event_id alone names no fact
    changes = "SELECT stream_seq, kind, agency, reason, participants_change FROM corrections WHERE fact_id = '{}'"
    assert rows(changes.format(f"al-a/{a['event_id']}")) == [
        (3, "event_corrected", "al-a", "recounted", 4),
        (6, "event_retracted", "al-a", "reported twice", -14),
    ]
    assert rows(changes.format(f"al-b/{a['event_id']}")) == [(4, "event_corrected", "al-b", "b corrects a", 27)]
    assert rows("SELECT stream_seq, event_id FROM rejected_events") == [(5, b_unknown["event_id"])]
    assert rows("SELECT agency, participants FROM actions ORDER BY agency") == [("al-b", 30)]
