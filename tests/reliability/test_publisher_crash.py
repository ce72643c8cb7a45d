"""A publisher SIGKILLed with events sent but not yet acknowledged, then run again on the same file:
the stream stores each event once, on a subject of its own, whether the re-run comes within the
stream's duplicate window or after it; the publisher reads the stored ones back and reports them
as duplicates."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from outreach.synthetic import generate
from runtime.server import EmbeddedServer
from tests.reliability.harness import (
    Outreach,
    Processes,
    assert_exact,
    checkpoint,
    create_stream,
    outreach_env,
    published,
    stream_messages,
    unread_bytes,
    wait_for_stream,
    write_jsonl,
)

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

EVENTS = 30_000
UNREAD = 16 * 1024  # bytes the frozen broker holds unread: several whole events, not a part of one


def kill_with_a_window_unread(server: EmbeddedServer, publisher: Outreach) -> int:
    """Freeze the broker, so it can neither store nor acknowledge, and SIGKILL the publisher once
    the broker holds a window it sent but the broker has not read: those events are stored when
    the broker resumes, and never acknowledged. A freeze that caught the broker with acks still to
    send is let go and tried again. Returns the events stored before the freeze that worked."""
    assert server.process is not None
    deadline = time.monotonic() + 120
    while True:
        assert time.monotonic() < deadline, "the publisher sent no new window while the broker was frozen"
        acknowledged = stream_messages(server.url)
        server.process.send_signal(signal.SIGSTOP)
        try:
            attempt = time.monotonic() + 2
            while unread_bytes(server.port or 0) < UNREAD and time.monotonic() < attempt:
                assert publisher.running, publisher.stderr[-2000:]
                time.sleep(0.001)
            if unread_bytes(server.port or 0) >= UNREAD:
                publisher.kill()
                return acknowledged
        finally:
            server.process.send_signal(signal.SIGCONT)


@pytest.mark.parametrize("window_s", [3600.0, 1.0], ids=["within-duplicate-window", "after-duplicate-window"])
def test_publisher_crash_then_rerun_counts_each_event_once(
    tmp_path: Path, processes: Processes, figures: list[str], window_s: float
) -> None:
    events = [s.event for s in generate(EVENTS, seed=44)]
    server = processes.server(EmbeddedServer(tmp_path / "nats", port=0))
    create_stream(server.url, duplicate_window_s=window_s)
    db = tmp_path / "projection.duckdb"
    env = outreach_env(server.url, db, snapshot_interval_s="0")
    source = write_jsonl(tmp_path / "agency.jsonl", events)

    # A long ack timeout: while the broker is frozen, the publisher never re-sends a window, so
    # what the broker holds unread can only be a new window, sent once every earlier ack was in.
    first = processes.outreach(["publish", str(source)], dict(env, OUTREACH_PUBLISH_TIMEOUT_S="600"))
    wait_for_stream(server.url, EVENTS // 3, [first])
    acknowledged = kill_with_a_window_unread(server, first)
    killed_at = time.monotonic()
    assert first.process.returncode == -signal.SIGKILL

    projector = processes.outreach(["project", "--until-caught-up"], env)
    assert projector.finish(120) == 0, projector.stderr[-2000:]
    before = stream_messages(server.url)  # what the crashed run had stored, all projected now
    assert acknowledged < before < EVENTS  # some events were stored after their publisher died
    assert checkpoint(db) == before

    while time.monotonic() < killed_at + 2 * window_s and window_s < 60:
        time.sleep(0.1)  # let the stream's short duplicate window pass: it must not matter

    again = processes.outreach(["publish", str(source)], env)
    assert again.finish(180) == 0, again.stderr[-2000:]
    stored, duplicates = published(again)
    assert (stored, duplicates) == (EVENTS - before, before)
    assert stream_messages(server.url) == EVENTS

    projector = processes.outreach(["project", "--until-caught-up"], env)
    assert projector.finish(120) == 0, projector.stderr[-2000:]
    assert_exact(db, events, duplicates=0)
    figures.append(
        f"publisher ({window_s:.0f} s duplicate window) killed with events in flight: {before} of {EVENTS} "
        f"stored, {before - acknowledged} of them after the last count before the broker froze; "
        f"the re-run stored {stored}, {duplicates} duplicate(s)"
    )
