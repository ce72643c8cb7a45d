"""The broker killed and restarted while agencies publish and the projector follows: real processes,
exact totals at the end."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from outreach.broker import connect
from outreach.server import EmbeddedServer
from outreach.settings import Settings
from outreach.stream import ensure_stream
from outreach.synthetic import generate
from projections.query import run_query
from projections.snapshot import snapshot_path
from tests import oracle

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

PUBLISHERS = 3
EVENTS = 45_000


def outreach_env(url: str, db: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
    return dict(
        env,
        OUTREACH_NATS_URL=url,
        OUTREACH_DB=str(db),
        OUTREACH_SNAPSHOT_INTERVAL_S="0.5",
        OUTREACH_PUBLISH_RETRIES="8",
    )


def stream_messages(url: str) -> int:
    async def count() -> int:
        nc = await connect(Settings(nats_url=url), "reliability-probe")
        try:
            return (await nc.jetstream().stream_info("OUTREACH")).state.messages
        finally:
            await nc.close()

    try:
        return asyncio.run(count())
    except Exception:
        return -1  # the server is down or restarting


def snapshot_seq(db: Path) -> int:
    try:
        con = duckdb.connect(str(snapshot_path(db)), read_only=True)
    except duckdb.Error:
        return 0
    try:
        row = con.execute("SELECT as_of_seq FROM snapshot_info").fetchone()
        return int(row[0]) if row else 0
    finally:
        con.close()


def test_broker_killed_while_agencies_publish_and_the_projector_follows(tmp_path: Path) -> None:
    items = list(generate(EVENTS, seed=61))
    agencies = sorted({i.event["agency"] for i in items})
    files = []
    for n in range(PUBLISHERS):  # each publisher owns a third of the agencies, as agencies do
        mine = set(agencies[n::PUBLISHERS])
        path = tmp_path / f"publisher-{n}.jsonl"
        path.write_text("".join(json.dumps(i.event) + "\n" for i in items if i.event["agency"] in mine))
        files.append(path)
    db = tmp_path / "live.duckdb"
    server = EmbeddedServer(tmp_path / "nats", port=0).start()
    port = server.port
    env = outreach_env(server.url, db)

    async def create_stream() -> None:
        nc = await connect(Settings(nats_url=server.url), "admin")
        await ensure_stream(nc.jetstream(), "OUTREACH", 3600)
        await nc.close()

    asyncio.run(create_stream())
    projector = subprocess.Popen(
        [sys.executable, "-m", "outreach", "project"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    publishers = [
        subprocess.Popen(
            [sys.executable, "-m", "outreach", "publish", str(f)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for f in files
    ]
    try:
        deadline = time.monotonic() + 120
        while stream_messages(server.url) < EVENTS // 6:
            assert time.monotonic() < deadline, "publishing did not start"
            assert all(p.poll() is None for p in publishers), "a publisher ended before the broker was killed"
        server.kill()  # SIGKILL, mid-publishing
        server = EmbeddedServer(tmp_path / "nats", port=port).start()

        reports = [p.communicate(timeout=240) for p in publishers]
        for p, (out, err) in zip(publishers, reports, strict=True):
            assert p.returncode == 0, err[-2000:]
            assert out.endswith(" 0 failed\n"), out
        stored = sum(int(out.split(" stored")[0].split(": ")[1]) for out, _ in reports)
        duplicates = sum(int(out.split(" duplicate(s)")[0].split(", ")[-1]) for out, _ in reports)
        assert stored + duplicates == EVENTS  # an event re-sent after a lost ack is a recognised duplicate
        assert stream_messages(server.url) == EVENTS

        deadline = time.monotonic() + 180
        while snapshot_seq(db) < EVENTS:
            assert time.monotonic() < deadline, f"the projector stopped at {snapshot_seq(db)}"
            assert projector.poll() is None, projector.stderr.read() if projector.stderr else ""
    finally:
        projector.send_signal(signal.SIGTERM)
        projector.communicate(timeout=60)
        for p in publishers:
            if p.poll() is None:
                p.kill()
                p.communicate()
        server.stop()
    assert projector.returncode == 0
    got = {
        r[0]: tuple(r[1:])
        for r in run_query(
            db,
            "SELECT county, events, sessions, participants, "
            "materials_distributed, teams_established FROM totals_by_county",
        ).rows
    }
    assert got == oracle.totals_by_county(i.event for i in items)
    logged = run_query(db, "SELECT count(*), count(DISTINCT event_id) FROM event_log").rows
    assert logged == [(EVENTS, EVENTS)]
    assert run_query(db, "SELECT count(*) FROM rejected_events").rows == [(0,)]
    print(f"broker killed mid-publishing: {stored} stored, {duplicates} re-sent and recognised as duplicates")
