"""A three-server JetStream cluster keeps the stream on every server (three replicas): the server
leading the stream is SIGKILLed while agencies publish and the projector follows, and restarted
later. This is the scale-out path: when one machine is not enough, the log runs on a cluster."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from outreach.synthetic import generate
from tests.reliability.harness import (
    STREAM,
    Cluster,
    Processes,
    assert_exact,
    by_agency_group,
    checkpoint,
    create_stream,
    outreach_env,
    published,
    run,
    stream_messages,
    wait_for_projection,
    wait_for_stream,
)

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

EVENTS = 30_000
PUBLISHERS = 3


def replicas_current(url: str) -> bool:
    """Whether every replica of the stream has caught up with its leader."""
    from runtime.connection import connect
    from runtime.settings import Settings

    async def current() -> bool:
        nc = await connect(Settings(nats_url=url), "reliability-probe")
        try:
            info = await nc.jetstream().stream_info(STREAM)
            replicas = info.cluster.replicas or [] if info.cluster else []
            return len(replicas) == 2 and all(r.current and not r.offline for r in replicas)
        finally:
            await nc.close()

    try:
        return bool(run(current()))
    except Exception:
        return False


def test_stream_leader_killed_in_a_three_server_cluster(
    tmp_path: Path, processes: Processes, figures: list[str]
) -> None:
    events = [s.event for s in generate(EVENTS, seed=33)]
    cluster = Cluster(tmp_path, processes).start()
    create_stream(cluster.url, replicas=3)
    db = tmp_path / "projection.duckdb"
    env = outreach_env(cluster.url, db, snapshot_interval_s="0.5", publish_retries="8")
    projector = processes.outreach(["project"], env)
    publishers = processes.publish_files(tmp_path, by_agency_group(events, PUBLISHERS), env)
    wait_for_stream(cluster.url, EVENTS // 4, publishers)
    deadline = time.monotonic() + 120
    leader = cluster.stream_leader()
    cluster.servers[leader].kill()  # SIGKILL: the stream elects a new leader among the two left
    # Publishing goes on with two servers of three; the third comes back halfway (or at the end).
    while stream_messages(cluster.url) < EVENTS // 2 and any(p.running for p in publishers):
        assert time.monotonic() < deadline, f"publishing stalled after server n{leader} was killed"
    cluster.servers[leader].start()

    for p in publishers:
        p.finish(240)
    reports = [published(p) for p in publishers]
    assert sum(stored + duplicates for stored, duplicates in reports) == EVENTS
    assert stream_messages(cluster.url) == EVENTS

    deadline = time.monotonic() + 120
    while not replicas_current(cluster.url):  # the restarted server caught up with the log
        assert time.monotonic() < deadline, "the restarted server's replica did not catch up"
        time.sleep(0.1)
    # The projector followed the stream through all this; once it has applied everything, stop it.
    wait_for_projection(projector, db, EVENTS, 120)
    assert projector.stop() == 0, projector.stderr[-2000:]
    assert checkpoint(db) == EVENTS
    assert_exact(db, events)
    resent = sum(duplicates for _, duplicates in reports)
    restarts = projector.stderr.count("reading again")
    figures.append(
        f"cluster: stream leader n{leader} killed and restarted; {resent} re-sends recognised as duplicates; "
        f"projector consumer restarted {restarts} time(s)"
    )
