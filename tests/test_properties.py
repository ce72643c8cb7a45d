"""Property: for random histories from several agencies, the live projection, a replay and a pure
in-memory model of the rules agree, on a real nats-server and real DuckDB files."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nats.js.errors import NotFoundError

from consumers.app import run_projector
from consumers.replay import replay
from projections.query import run_query
from runtime.connection import connect
from runtime.server import EmbeddedServer
from runtime.settings import Settings
from runtime.stream import ensure_stream

pytestmark = pytest.mark.integration

AGENCIES = ["al-a", "al-b", "pl-c"]
COUNTIES = ["AL-01", "AL-06", "PL-14"]

# An operation: a new session (agency, county, students), or a correction or retraction by an
# agency (possibly not the publisher: then it must be rejected) of the n-th session so far.
new = st.tuples(st.just("new"), st.sampled_from(AGENCIES), st.sampled_from(COUNTIES), st.integers(0, 500))
fix = st.tuples(st.just("correct"), st.sampled_from(AGENCIES), st.integers(0, 40), st.integers(0, 500))
drop = st.tuples(st.just("retract"), st.sampled_from(AGENCIES), st.integers(0, 40), st.just(0))
histories = st.lists(st.one_of(new, new, fix, drop), min_size=1, max_size=40)


def build(history: list[tuple[str, str, Any, int]]) -> list[dict[str, Any]]:
    """Events for a history; references to sessions that do not exist yet point at a fresh id."""
    events: list[dict[str, Any]] = []
    sessions: list[dict[str, Any]] = []
    for kind, agency, where, number in history:
        envelope = {"event_id": str(uuid.uuid4()), "agency": agency, "recorded_at": "2025-01-01T00:00:00Z"}
        if kind == "new":
            event = {
                **envelope,
                "event_type": "session_held",
                "occurred": "2020-01-01",
                "county": where,
                "format": "workshop",
                "participants": [{"audience": "students", "count": number}],
            }
            sessions.append(event)
        else:
            target = (
                sessions[where]
                if where < len(sessions)
                else {**envelope, "event_id": str(uuid.uuid4()), "agency": agency, "county": "AL-06"}
            )
            if kind == "correct":
                replacement = {
                    "event_id": target["event_id"],
                    "event_type": "session_held",
                    "agency": agency,
                    "recorded_at": "2025-01-01T00:00:00Z",
                    "occurred": "2020-01-01",
                    "county": target["county"],
                    "format": "workshop",
                    "participants": [{"audience": "students", "count": number}],
                }
                event = {
                    **envelope,
                    "event_type": "event_corrected",
                    "corrects": target["event_id"],
                    "replacement": replacement,
                }
            else:
                event = {
                    **envelope,
                    "event_type": "event_retracted",
                    "retracts": target["event_id"],
                    "reason": "withdrawn",
                }
        events.append(event)
    return events


def model(events: list[dict[str, Any]]) -> tuple[dict[str, tuple[int, int]], int]:
    """The rules, written plainly: county -> (sessions, participants), and how many are rejected."""
    current: dict[str, dict[str, Any]] = {}
    owner: dict[str, str] = {}
    retracted: set[str] = set()
    rejected = 0
    for e in events:
        if e["event_type"] == "session_held":
            current[e["event_id"]] = e
            owner[e["event_id"]] = e["agency"]
            continue
        target = e.get("corrects") or e.get("retracts")
        if target not in owner or owner[target] != e["agency"] or target in retracted:
            rejected += 1
        elif e["event_type"] == "event_corrected":
            current[target] = e["replacement"]
        else:
            retracted.add(target)
            del current[target]
    totals: dict[str, tuple[int, int]] = {}
    for fact in current.values():
        sessions, people = totals.get(fact["county"], (0, 0))
        totals[fact["county"]] = (sessions + 1, people + fact["participants"][0]["count"])
    return totals, rejected


def county_totals(db: Path) -> dict[str, tuple[int, int]]:
    result = run_query(db, "SELECT county, sessions, participants FROM totals_by_county")
    return {r[0]: (r[1], r[2]) for r in result.rows}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with EmbeddedServer(tmp_path_factory.mktemp("nats"), port=0) as running:
        yield running


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=histories)
def test_live_projection_replay_and_model_agree(
    server: EmbeddedServer, tmp_path: Path, history: list[tuple[str, str, Any, int]]
) -> None:
    run = next(COUNTER)
    events = build(history)
    live = Settings(nats_url=server.url, db=tmp_path / f"live-{run}.duckdb", stream="OUTREACH", batch_size=7)
    asyncio.run(_publish_fresh_stream(live, events))
    asyncio.run(run_projector(live, until_caught_up=True))
    rebuilt = tmp_path / f"replay-{run}.duckdb"
    asyncio.run(replay(live.model_copy(update={"batch_size": 5}), rebuilt))

    expected, rejected = model(events)
    assert county_totals(live.db) == expected
    assert county_totals(rebuilt) == expected
    assert run_query(live.db, "SELECT count(*) FROM rejected_events").rows == [(rejected,)]
    assert run_query(rebuilt, "SELECT count(*) FROM rejected_events").rows == [(rejected,)]


COUNTER = itertools.count()


async def _publish_fresh_stream(settings: Settings, events: list[dict[str, Any]]) -> None:
    nc = await connect(settings, "property-test")
    try:
        js = nc.jetstream()
        with contextlib.suppress(NotFoundError):  # the first example has no stream yet
            await js.delete_stream(settings.stream)
        await ensure_stream(js, settings.stream, settings.duplicate_window_s)
        for event in events:  # one by one: the order of the history is the order of the stream
            await js.publish(
                f"outreach.events.{event['agency']}.{event['event_type']}",
                json.dumps(event).encode(),
                headers={"Nats-Msg-Id": event["event_id"]},
            )
    finally:
        await nc.close()
