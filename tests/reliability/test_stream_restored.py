"""The broker's store restored from an older backup: the stream is the same one (same creation
time) but ends before the projector's checkpoint, and the events published next take sequences the
projector has already passed. It must stop and say so, while running and at start, rather than
miss them silently; its file stays as it was."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from outreach.synthetic import generate
from runtime.server import EmbeddedServer
from tests.reliability.harness import (
    Processes,
    checkpoint,
    create_stream,
    outreach_env,
    stream_messages,
    wait_for_projection,
)

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

BACKED_UP, LATER, AFTER_RESTORE = 2_000, 3_000, 1_000


def test_projector_stops_when_the_stream_comes_back_shorter_than_its_checkpoint(
    tmp_path: Path, processes: Processes
) -> None:
    events = [s.event for s in generate(BACKED_UP + LATER + AFTER_RESTORE, seed=88)]
    backed_up, later, after_restore = (
        events[:BACKED_UP],
        events[BACKED_UP : BACKED_UP + LATER],
        events[BACKED_UP + LATER :],
    )
    store, backup = tmp_path / "nats", tmp_path / "backup"
    server = processes.server(EmbeddedServer(store, port=0))
    port = server.port
    create_stream(server.url)
    db = tmp_path / "projection.duckdb"
    env = outreach_env(server.url, db, snapshot_interval_s="0.2")

    processes.publish(tmp_path / "backed-up.jsonl", backed_up, env)
    server.stop()
    shutil.copytree(store, backup)  # the operator's backup, taken with the server stopped
    server = processes.server(EmbeddedServer(store, port=port))
    processes.publish(tmp_path / "later.jsonl", later, env)

    projector = processes.outreach(["project"], env)
    wait_for_projection(projector, db, BACKED_UP + LATER, 120)

    # The server is lost, and its store restored from the backup; agencies go on publishing.
    server.kill()
    shutil.rmtree(store)
    shutil.copytree(backup, store)
    server = processes.server(EmbeddedServer(store, port=port))
    processes.publish(tmp_path / "after-restore.jsonl", after_restore, env)
    assert stream_messages(server.url) == BACKED_UP + AFTER_RESTORE

    expected = (
        f"stream OUTREACH ends at sequence {BACKED_UP + AFTER_RESTORE}, but {db} has applied up to "
        f"sequence {BACKED_UP + LATER}: the stream lost messages the projection holds"
    )
    assert projector.finish(120) == 1, projector.stderr[-2000:]
    assert expected in projector.stderr, projector.stderr[-2000:]
    assert checkpoint(db) == BACKED_UP + LATER  # nothing of the restored stream was applied

    again = processes.outreach(["project", "--until-caught-up"], env)
    assert again.finish(60) == 1
    assert expected in again.stderr, again.stderr[-2000:]
    assert checkpoint(db) == BACKED_UP + LATER

    verify = processes.outreach(["verify"], env)
    assert verify.finish(120) != 0
    assert (
        f"the stream ends at sequence {BACKED_UP + AFTER_RESTORE}, but the projection applied up to "
        f"{BACKED_UP + LATER}" in verify.stdout + verify.stderr
    ), verify.stdout[-2000:] + verify.stderr[-2000:]
