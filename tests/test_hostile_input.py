"""Thousands of malformed payloads through a real server: each is rejected with a bounded reason,
the projector keeps going, and the valid events among them are projected exactly."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from typing import Any

import pytest
from nats.aio.client import Client

from consumers.app import run_projector
from outreach.synthetic import generate
from projections.query import run_query
from runtime.settings import Settings
from runtime.stream import ensure_stream
from schemas.parse import MAX_EVENT_BYTES
from tests import oracle

pytestmark = pytest.mark.integration


def over_the_limit(valid: dict[str, Any]) -> bytes:
    """The event one byte over the parser's limit: as large as the stream takes, without headers."""
    padding = MAX_EVENT_BYTES + 1 - len(json.dumps(dict(valid, source="")).encode())
    return json.dumps(dict(valid, source="x" * padding)).encode()


def hostile(rng: random.Random, valid: dict[str, Any]) -> tuple[str, bytes]:
    """One malformed payload (and the subject it is sent on), of a randomly chosen kind."""
    subject = f"outreach.events.{valid['agency']}.{valid['event_type']}"
    kinds: list[Callable[[], bytes]] = [
        lambda: rng.randbytes(rng.randint(1, 200)),
        lambda: b"\xff\xfe" + json.dumps(valid).encode(),
        lambda: json.dumps(valid).encode()[: rng.randint(1, 50)],
        lambda: b"[" * 5000 + b"]" * 5000,
        lambda: ('{"a":' * 3000 + "1" + "}" * 3000).encode(),
        lambda: json.dumps(dict(valid, participants=[{"audience": "students", "count": 10**40}])).encode(),
        lambda: json.dumps(dict(valid, reported_total=1e400)).encode().replace(b"Infinity", b"1e400"),
        lambda: json.dumps(dict(valid, county=["AL-06"])).encode(),
        lambda: json.dumps(dict(valid, event_type="parade_held")).encode(),
        lambda: json.dumps(dict(valid, schema_version=99)).encode(),
        lambda: over_the_limit(valid),
        lambda: json.dumps([valid]).encode(),
        lambda: b"null",
        lambda: json.dumps({k: v for k, v in valid.items() if k != "agency"}).encode(),
        lambda: json.dumps(dict(valid, extra_field=1)).encode(),
        lambda: json.dumps(dict(valid, agency="someone-else")).encode(),
    ]
    return subject, rng.choice(kinds)()


async def test_malformed_payloads_are_all_rejected_and_valid_ones_projected_exactly(
    nc: Client, settings: Settings
) -> None:
    rng = random.Random(1234)
    js = nc.jetstream(publish_async_max_pending=2000)
    await ensure_stream(js, settings.stream, settings.duplicate_window_s)
    valid = [
        item.event
        for item in generate(600, seed=41)
        if item.event["event_type"] != "event_corrected" and item.event["event_type"] != "event_retracted"
    ]
    sent: list[tuple[str, bytes, bool]] = []
    for event in valid:
        sent.append((f"outreach.events.{event['agency']}.{event['event_type']}", json.dumps(event).encode(), True))
        for _ in range(5):
            subject, payload = hostile(rng, event)
            sent.append((subject, payload, False))
    futures = [await js.publish_async(subject, payload) for subject, payload, _ in sent]
    acks = await asyncio.gather(*futures)
    assert [a.seq for a in acks] == list(range(1, len(sent) + 1))

    stats = await run_projector(settings.model_copy(update={"batch_size": 500}), until_caught_up=True)
    bad = sum(1 for *_, ok in sent if not ok)
    assert bad == 5 * len(valid) > 2_500
    assert (stats.messages, stats.accepted, stats.rejected) == (len(sent), len(valid), bad)
    reasons = run_query(
        settings.db, "SELECT max(length(reason)), count(*) FILTER (WHERE reason = '') FROM rejected_events"
    ).rows
    assert reasons[0][0] <= 2_000 and reasons[0][1] == 0
    kinds = run_query(
        settings.db,
        "SELECT split_part(reason, ':', 1) AS kind, count(*) FROM rejected_events GROUP BY kind ORDER BY kind",
    ).rows
    assert {k for k, _ in kinds} == {"invalid", "agency mismatch"}
    got = {
        r[0]: tuple(r[1:])
        for r in run_query(
            settings.db,
            "SELECT county, events, sessions, participants, materials_distributed, teams_established "
            "FROM totals_by_county",
        ).rows
    }
    assert got == oracle.totals_by_county(valid)
