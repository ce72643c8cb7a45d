"""The broker SIGKILLed and restarted while agencies publish and the projector follows."""

from __future__ import annotations

from pathlib import Path

import pytest

from outreach.synthetic import generate
from runtime.server import EmbeddedServer
from tests.reliability.harness import (
    Processes,
    assert_exact,
    by_agency_group,
    create_stream,
    outreach_env,
    published,
    stream_messages,
    wait_for_projection,
    wait_for_stream,
)

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

PUBLISHERS = 3
EVENTS = 45_000


def test_broker_killed_while_agencies_publish_and_the_projector_follows(
    tmp_path: Path, processes: Processes, figures: list[str]
) -> None:
    events = [s.event for s in generate(EVENTS, seed=61)]
    server = processes.server(EmbeddedServer(tmp_path / "nats", port=0))
    port = server.port
    create_stream(server.url)
    db = tmp_path / "projection.duckdb"
    env = outreach_env(server.url, db, snapshot_interval_s="0.5", publish_retries="8")
    projector = processes.outreach(["project"], env)
    publishers = processes.publish_files(tmp_path, by_agency_group(events, PUBLISHERS), env)
    wait_for_stream(server.url, EVENTS // 6, publishers)
    server.kill()  # SIGKILL, mid-publishing
    server = processes.server(EmbeddedServer(tmp_path / "nats", port=port))

    for p in publishers:
        p.finish(240)
    reports = [published(p) for p in publishers]
    stored = sum(r[0] for r in reports)
    duplicates = sum(r[1] for r in reports)
    assert stored + duplicates == EVENTS  # an event re-sent after a lost ack is a recognised duplicate
    assert stream_messages(server.url) == EVENTS

    wait_for_projection(projector, db, EVENTS, 180)
    assert projector.stop() == 0, projector.stderr[-2000:]
    assert_exact(db, events)
    figures.append(f"broker killed mid-publishing: {stored} stored, {duplicates} re-sent and recognised as duplicates")
