"""Poison mixed into a live stream: while an agency publishes and the projector follows, a faulty
client sends malformed JSON, an unknown schema version, an unknown event type, a correction of an
event nobody published, and reuses event_ids with other content. Every one of them is rejected with
its reason, at its own stream sequence; the valid events end exact and the projector keeps going."""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from outreach.synthetic import generate
from projections.query import run_query
from runtime.connection import connect
from runtime.server import EmbeddedServer
from runtime.settings import Settings
from tests.reliability.harness import (
    STREAM,
    Processes,
    assert_exact,
    create_stream,
    outreach_env,
    published,
    stream_messages,
    wait_for_projection,
    write_jsonl,
)

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

EARLIER, LIVE, LIVE_FIRST = 5_000, 20_000, 15_000
EACH_KIND = 60

# What each kind of poison must be rejected for: the start of its reason.
EXPECTED = {
    "malformed JSON": r"invalid: .*(JSON|EOF|json)",
    "unknown schema version": r"invalid: .*schema_version",
    "unknown event type": r"invalid: .*(event_type|parade_held)",
    "correction of a missing event": (
        r"unknown event: corrects [0-9a-f-]{36}, which agency '[a-z0-9-]+' has not published"
    ),
    "event_id reused with other content": r"conflict: event_id [0-9a-f-]{36} was already used at stream sequence \d+",
}


def poison(rng: random.Random, kind: str, earlier: list[dict[str, Any]]) -> tuple[str, bytes]:
    """One poisoned message of ``kind`` (subject, payload), made from an event already stored."""
    original = rng.choice([e for e in earlier if e["event_type"] == "session_held"])
    subject = f"outreach.events.{original['agency']}.{original['event_type']}"
    if kind == "malformed JSON":
        return subject, json.dumps(original).encode()[: rng.randint(1, 120)]
    if kind == "unknown schema version":
        return subject, json.dumps(dict(original, event_id=str(uuid.uuid4()), schema_version=9)).encode()
    if kind == "unknown event type":
        event = dict(original, event_id=str(uuid.uuid4()), event_type="parade_held")
        return f"outreach.events.{original['agency']}.parade_held", json.dumps(event).encode()
    if kind == "correction of a missing event":
        missing = str(uuid.uuid4())
        event = {
            "event_id": str(uuid.uuid4()),
            "event_type": "event_corrected",
            "schema_version": 1,
            "agency": original["agency"],
            "recorded_at": "2024-06-01T00:00:00Z",
            "corrects": missing,
            "replacement": dict(original, event_id=missing),
            "reason": "figures revised",
        }
        return f"outreach.events.{original['agency']}.event_corrected", json.dumps(event).encode()
    assert kind == "event_id reused with other content"
    other_day = "2017-01-01" if original["occurred"] != "2017-01-01" else "2017-01-02"
    return subject, json.dumps(dict(original, occurred=other_day)).encode()


async def send_poison(url: str, messages: list[tuple[str, str, bytes]], among: range) -> list[tuple[int, str]]:
    """Publish the poison spread over the agency's traffic: message i once the stream holds
    ``among[i]`` messages. Returns (stream sequence, kind) of each."""
    nc = await connect(Settings(nats_url=url), "faulty-client")
    try:
        js = nc.jetstream()
        stored = []
        deadline = time.monotonic() + 120
        for (kind, subject, payload), wait_for in zip(messages, among, strict=False):
            while (await js.stream_info(STREAM)).state.messages < wait_for:
                assert time.monotonic() < deadline, f"the agency's publishing stalled before {wait_for}"
                await asyncio.sleep(0.005)  # poll, leaving the CPU to the agency and the projector
            ack = await js.publish(subject, payload)  # no Nats-Msg-Id: a client that sets none
            stored.append((ack.seq, kind))
        return stored
    finally:
        await nc.close()


def test_poison_among_live_traffic_is_rejected_with_reasons(tmp_path: Path, processes: Processes) -> None:
    rng = random.Random(55)
    events = [s.event for s in generate(EARLIER + LIVE, seed=55)]
    server = processes.server(EmbeddedServer(tmp_path / "nats", port=0))
    create_stream(server.url)
    db = tmp_path / "projection.duckdb"
    env = outreach_env(server.url, db, snapshot_interval_s="0.2", batch_size="500")
    processes.publish(tmp_path / "earlier.jsonl", events[:EARLIER], env)

    # The poison goes out while the agency publishes its first part; the second part follows it, so
    # the poison always sits among valid traffic, however the two clients' speeds compare.
    projector = processes.outreach(["project"], env)
    first_part, second_part = events[EARLIER : EARLIER + LIVE_FIRST], events[EARLIER + LIVE_FIRST :]
    agency = processes.outreach(["publish", str(write_jsonl(tmp_path / "live-1.jsonl", first_part))], env)
    messages = [(kind, *poison(rng, kind, events[:EARLIER])) for kind in EXPECTED for _ in range(EACH_KIND)]
    rng.shuffle(messages)
    step = int(LIVE_FIRST * 0.9) // len(messages)
    stored = asyncio.run(send_poison(server.url, messages, range(EARLIER + step, EARLIER + LIVE_FIRST, step)))
    assert len(stored) == len(messages)
    agency.finish(180)
    assert published(agency) == (LIVE_FIRST, 0)
    processes.publish(tmp_path / "live-2.jsonl", second_part, env)
    total = EARLIER + LIVE + len(messages)
    assert stream_messages(server.url) == total
    assert min(seq for seq, _ in stored) > EARLIER and max(seq for seq, _ in stored) <= total - len(second_part)

    wait_for_projection(projector, db, total, 180)
    assert projector.running  # it never stopped for the poison
    assert projector.stop() == 0, projector.stderr[-2000:]
    rejected = dict(run_query(db, "SELECT stream_seq, reason FROM rejected_events").rows)
    assert sorted(rejected) == sorted(seq for seq, _ in stored)
    for seq, kind in stored:
        assert re.match(EXPECTED[kind], rejected[seq]), (kind, rejected[seq])
    assert run_query(db, "SELECT count(*) FROM rejected_events WHERE payload IS NULL").rows == [(0,)]
    # Everything else as if the poison had never been sent.
    assert_exact(db, events, rejected=len(messages))
