"""Auditors: the same log folds to the same totals in any year, from the bytes the agency published;
the checkpoint only moves forward, in the database itself; verify names the cell that differs."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from nats.aio.client import Client

import schemas.events
from consumers.app import run_projector
from consumers.delivery import StreamMessage
from consumers.projector import Projector
from consumers.replay import replay
from consumers.verify import verify
from outreach.synthetic import generate
from projections.compare import compare
from projections.query import run_query
from projections.store import CheckpointNotAdvanced, ProjectionStore
from runtime.settings import Settings
from runtime.stream import ensure_stream
from schemas.errors import EventInvalid
from schemas.files import load_events
from schemas.parse import parse_event

AT = datetime(2026, 1, 1, tzinfo=UTC)


def session(county: str, students: int, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "session_held",
        "agency": "al-a",
        "recorded_at": "2025-01-01T00:00:00Z",
        "occurred": "2017-05-01",
        "county": county,
        "format": "school_session",
        "participants": [{"audience": "students", "count": students}],
        **fields,
    }


def subject(event: dict[str, Any]) -> str:
    return f"outreach.events.{event['agency']}.{event['event_type']}.{event['event_id']}"


async def publish_raw(nc: Client, events: list[dict[str, Any]]) -> None:
    """As an agency whose clock is wrong would: no client-side check stands in the way."""
    for event in events:
        await nc.jetstream().publish(subject(event), json.dumps(event).encode())


# ---- 1. no wall clock in the fold ---------------------------------------------------------------


@pytest.mark.integration
async def test_a_replay_years_later_splits_accepted_from_rejected_as_the_live_projector_did(
    nc: Client, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await ensure_stream(nc.jetstream(), settings.stream, settings.duplicate_window_s)
    now = datetime.now(UTC)
    ahead = session("AL-06", 11, recorded_at=(now + timedelta(hours=1)).isoformat())  # the agency's clock is ahead
    on_time = session("AL-06", 12, recorded_at=(now - timedelta(minutes=1)).isoformat())
    early = session("AL-06", 13, occurred=(now + timedelta(days=3)).date().isoformat())
    await publish_raw(nc, [ahead, on_time, early])
    stats = await run_projector(settings, until_caught_up=True)
    assert (stats.accepted, stats.rejected) == (1, 2)
    reasons = run_query(settings.db, "SELECT event_id, reason FROM rejected_events ORDER BY stream_seq").rows
    assert [r[0] for r in reasons] == [ahead["event_id"], early["event_id"]]
    assert reasons[0][1].startswith("invalid: recorded_at: is later than when the stream stored the event (")
    assert reasons[1][1].startswith(f"invalid: occurred: {early['occurred']} is after the day the stream")

    # Years later: this machine's clock, which producers check against, has moved on...
    monkeypatch.setattr(schemas.events, "wall_clock", lambda: now + timedelta(days=5 * 365))
    assert parse_event(json.dumps(ahead)).event_id == uuid.UUID(ahead["event_id"])  # a producer would take it now
    # ...and the fold of the very same log does not.
    replayed = tmp_path / "replayed.duckdb"
    again = await replay(settings, replayed)
    assert (again.accepted, again.rejected) == (1, 2)
    assert compare(settings.db, replayed) == []
    report = await verify(settings, settings.db)
    assert (report.ok, report.problems) == (True, [])


def test_producers_judge_the_future_by_their_own_clock() -> None:
    tomorrow_plus = (datetime.now(UTC) + timedelta(days=3)).date().isoformat()
    with pytest.raises(EventInvalid) as caught:
        parse_event(session("AL-06", 1, occurred=tomorrow_plus))
    assert str(caught.value.problems[0]) == f'occurred: {tomorrow_plus} is in the future (got "{tomorrow_plus}")'


# ---- 2. the bytes as published ------------------------------------------------------------------


def v1_session(students: int) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "session_held",
        "schema_version": 1,
        "agency": "al-a",
        "recorded_at": "2025-01-01T00:00:00+01:00",
        "occurred": "2017-12-21",
        "county": "AL-06",
        "format": "school_session",
        "audience": "students",
        "participants": students,
        "estimated": False,
    }


def outreach(*args: str, url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
    env.update(OUTREACH_NATS_URL=url, OUTREACH_DB=str(cwd / "outreach.duckdb"))
    return subprocess.run(
        [sys.executable, "-m", "outreach", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


@pytest.mark.integration
@pytest.mark.e2e
async def test_a_v1_file_is_published_and_logged_byte_for_byte(nc: Client, settings: Settings, tmp_path: Path) -> None:
    await ensure_stream(nc.jetstream(), settings.stream, settings.duplicate_window_s)
    # Written as an agency's own tool would: its own spacing, key order and escapes.
    lines = [
        json.dumps(v1_session(10)),
        json.dumps(v1_session(7), indent=None, separators=(", ", " : ")),
        json.dumps(v1_session(3), ensure_ascii=True, sort_keys=True),
    ]
    path = tmp_path / "old-tool.jsonl"
    path.write_text("\n".join(lines) + "\n")
    url = settings.nats_url
    assert outreach("publish", str(path), url=url, cwd=tmp_path).returncode == 0
    assert outreach("project", "--until-caught-up", url=url, cwd=tmp_path).returncode == 0
    done = outreach("export-log", "--out", "log.jsonl", url=url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    exported = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [e["payload_sha256"] for e in exported] == [hashlib.sha256(line.encode()).hexdigest() for line in lines]
    db = tmp_path / "outreach.duckdb"
    assert run_query(db, "SELECT schema_version, content_hash FROM event_log ORDER BY stream_seq").rows == [
        (1, hashlib.sha256(line.encode()).hexdigest()) for line in lines
    ]
    assert run_query(db, "SELECT participants FROM totals_by_county").rows == [(20,)]  # upcast when folded


def test_a_csv_may_carry_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "sessions.csv"
    path.write_text(
        "event_id,event_type,schema_version,agency,recorded_at,occurred,county,format,participants.students\n"
        f"{uuid.uuid4()},session_held,2,al-a,2025-01-01T00:00:00Z,2017-12-21,AL-06,workshop,12\n"
    )
    loaded = load_events(path)
    assert loaded.problems == []
    assert [e.schema_version for _, e in loaded.events] == [3]  # read as the current version
    assert json.loads(loaded.payloads[0])["schema_version"] == 2  # published as given: a JSON integer


# ---- 4. the checkpoint only moves forward, in the database ----------------------------------------


def test_two_writers_on_one_file_cannot_apply_a_batch_twice(tmp_path: Path) -> None:
    path = tmp_path / "p.duckdb"
    items = list(generate(30, seed=71))
    msgs = [StreamMessage(i + 1, item.subject, item.payload, AT) for i, item in enumerate(items)]
    first, second = ProjectionStore(path), ProjectionStore(path)  # both start from an empty checkpoint
    try:
        writer_a, writer_b = Projector(first, "OUTREACH", AT), Projector(second, "OUTREACH", AT)
        assert writer_a.apply(msgs[:20]) == 20
        # Behind, level with, and past the stored checkpoint: each folded after sequence 0, and
        # the last would count events 1-20 a second time.
        for batch in (msgs[:10], msgs[:20], msgs[:25]):
            with pytest.raises(CheckpointNotAdvanced) as caught:
                writer_b.apply(batch)
            assert str(caught.value) == (
                f"refused to apply the batch ending at stream sequence {len(batch)} to {path}: it follows stream "
                f"sequence 0, but the file's checkpoint is at 20, and a checkpoint moves only forward from where its "
                f"writer left it. Another projector writes this file, or the batch was applied before; nothing of "
                f"it was kept."
            )
        assert writer_a.apply(msgs[20:]) == 10
    finally:
        first.close()
        second.close()
    con = duckdb.connect(str(path), read_only=True)
    counts = con.execute(
        "SELECT (SELECT count(*) FROM event_log), (SELECT count(*) FROM ignored_duplicates), "
        "(SELECT count(*) FROM checkpoint_log), (SELECT last_seq FROM checkpoint)"
    ).fetchone()
    con.close()
    assert counts == (30, 0, 2, 30)


# ---- 5. verify names the cell -------------------------------------------------------------------


@pytest.mark.integration
async def test_verify_names_the_view_key_column_values_and_events_of_a_changed_cell(
    nc: Client, settings: Settings
) -> None:
    await ensure_stream(nc.jetstream(), settings.stream, settings.duplicate_window_s)
    events = [session("AL-10", 20), session("AL-10", 23), session("AL-06", 7)]
    for event in events:
        await nc.jetstream().publish(subject(event), json.dumps(event).encode())
    await run_projector(settings, until_caught_up=True)
    con = duckdb.connect(str(settings.db))
    con.execute("UPDATE fact_versions SET participants = participants + 100 WHERE version_seq = 1")
    con.close()
    report = await verify(settings, settings.db)
    assert report.problems[:3] == [
        "totals_by_county AL-10 participants: projection 143, fold of the log 43; "
        "events behind it: stream sequences 1, 2",
        "totals_by_campaign (none) AL participants: projection 150, fold of the log 50; "
        "events behind it: stream sequences 1, 2, 3",
        "totals_by_month 2017-05-01 AL-10 participants: projection 143, fold of the log 43; "
        "events behind it: stream sequences 1, 2",
    ]
    assert report.problems[3] == "fact_versions: 1 row(s) only in the live projection, e.g.:"
    assert len(report.problems) == 7
