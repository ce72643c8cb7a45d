"""Publish → JetStream → projector → DuckDB, against a real nats-server and a real DuckDB file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb
import pytest
from nats.aio.client import Client
from nats.js.api import StreamConfig
from nats.js.errors import APIError

from consumers.app import run_projector
from outreach.synthetic import generate
from producers.files import publish_files
from producers.publisher import Publisher
from projections.query import run_query
from projections.snapshot import snapshot_path
from runtime.settings import Settings
from runtime.stream import ensure_stream
from schemas.errors import BrokerError, FileInvalid, ProjectionError
from schemas.parse import parse_event
from tests import oracle
from tests.factories import session

pytestmark = pytest.mark.integration

SEEDS = Path(str(resources.files("schemas.data").joinpath("seed_events.jsonl")))
COUNTY_TOTALS = (
    "SELECT county, events, sessions, participants, materials_distributed, teams_established "
    "FROM totals_by_county ORDER BY county"
)


def rows(settings: Settings, sql: str) -> list[tuple[Any, ...]]:
    return run_query(settings.db, sql).rows


async def publisher(nc: Client, settings: Settings) -> Publisher:
    js = nc.jetstream()
    await ensure_stream(js, settings.stream, settings.duplicate_window_s)
    return Publisher(js, window=500)


async def publish_raw(nc: Client, subject: str, payload: bytes | dict[str, Any], msg_id: str | None = None) -> int:
    """Publish bytes exactly as given (bypassing validation), as a misbehaving client could."""
    data = json.dumps(payload).encode() if isinstance(payload, dict) else payload
    headers = {"Nats-Msg-Id": msg_id} if msg_id else None
    ack = await nc.jetstream().publish(subject, data, headers=headers)
    return ack.seq


async def test_seed_reports_end_to_end_and_republish_changes_nothing(nc: Client, settings: Settings) -> None:
    pub = await publisher(nc, settings)
    first = await publish_files(pub, [SEEDS])
    assert (first.published.stored, first.published.duplicates, first.published.failed) == (17, 0, [])

    stats = await run_projector(settings, until_caught_up=True)
    assert (stats.messages, stats.accepted, stats.rejected) == (17, 17, 0)

    korce = rows(
        settings,
        "SELECT events, sessions, participants, sessions_participants_unknown, "
        "materials_distributed, teams_established FROM totals_by_county WHERE county = 'AL-06'",
    )
    assert korce == [(7, 6, 97, 2, 4000, 0)]
    task = rows(settings, "SELECT task_ref, events, teams_established, counties_reached FROM totals_by_plan_task")
    assert task == [("pl-nap-2013-2015/III/4", 6, 6, 6)]
    campaign = rows(
        settings,
        "SELECT campaign_id, sessions, participants, materials_distributed "
        "FROM totals_by_campaign WHERE campaign_id IS NOT NULL",
    )
    assert campaign == [
        ("al-irregular-migration-prevention", 6, 97, 4000),
        ("pl-improved-cooperation-structures", 0, 0, 0),
    ]
    before = rows(settings, COUNTY_TOTALS)
    assert len(before) == 8  # AL-06 and seven voivodeships
    # The snapshot for analysts' own tools holds the same totals, as of the same sequence.
    snapshot = duckdb.connect(str(snapshot_path(settings.db)), read_only=True)
    assert snapshot.execute(COUNTY_TOTALS).fetchall() == before
    assert snapshot.execute("SELECT as_of_seq FROM snapshot_info").fetchall() == [(17,)]
    snapshot.close()

    again = await publish_files(pub, [SEEDS])
    assert (again.published.stored, again.published.duplicates) == (0, 17)
    stats = await run_projector(settings, until_caught_up=True)
    assert stats.messages == 0
    assert rows(settings, COUNTY_TOTALS) == before
    assert rows(settings, "SELECT count(*) FROM event_log") == [(17,)]


async def test_identical_event_stored_twice_by_the_broker_is_counted_once(nc: Client, settings: Settings) -> None:
    # Without a Nats-Msg-Id (or after the duplicate window) the broker stores a repeat; the
    # projector's own event_id check must hold.
    await (await publisher(nc, settings)).publish([parse_event(session(students=12))])
    event = session(students=5)
    subject = "outreach.events.al-a.session_held"
    await publish_raw(nc, subject, event)
    repeat_seq = await publish_raw(nc, subject, event)

    stats = await run_projector(settings, until_caught_up=True)
    assert (stats.accepted, stats.duplicates, stats.rejected) == (2, 1, 0)
    assert rows(settings, "SELECT stream_seq FROM ignored_duplicates") == [(repeat_seq,)]
    assert rows(settings, COUNTY_TOTALS) == [("AL-06", 2, 2, 17, 0, 0)]


async def test_bad_events_are_rejected_with_reasons_and_good_ones_after_them_projected(
    nc: Client, settings: Settings
) -> None:
    await (await publisher(nc, settings)).publish([])  # creates the stream
    good_a = session("al-a", students=30)
    good_b = session("al-b", students=7)
    conflict = dict(good_a, participants=[{"audience": "students", "count": 31}])
    other_agencys_fix = {
        "event_id": str(uuid.uuid4()),
        "event_type": "event_corrected",
        "agency": "al-b",
        "recorded_at": "2025-01-02T00:00:00Z",
        "corrects": good_a["event_id"],
        "replacement": dict(good_a, agency="al-b"),
    }
    unknown_fix = {
        "event_id": str(uuid.uuid4()),
        "event_type": "event_retracted",
        "agency": "al-a",
        "recorded_at": "2025-01-02T00:00:00Z",
        "retracts": str(uuid.uuid4()),
        "reason": "twice",
    }
    sent = [
        ("outreach.events.al-a.session_held", good_a),
        ("outreach.events.al-a.session_held", b"{not json"),
        ("outreach.events.al-a.session_held", dict(session("al-a"), county="AL-13")),
        ("outreach.events.al-a.session_held", session("al-b")),  # spoofed: al-b's event on al-a's subject
        ("outreach.events.al-a.team_established", session("al-a")),  # type does not match subject
        ("outreach.events.al-a.session_held", conflict),
        ("outreach.events.al-b.event_corrected", other_agencys_fix),
        ("outreach.events.al-a.event_retracted", unknown_fix),
        ("outreach.events.al-b.session_held", good_b),
    ]
    seqs = [await publish_raw(nc, subject, payload) for subject, payload in sent]

    stats = await run_projector(settings, until_caught_up=True)
    assert (stats.accepted, stats.rejected) == (2, 7)
    rejected = rows(settings, "SELECT stream_seq, reason FROM rejected_events ORDER BY stream_seq")
    assert [seq for seq, _ in rejected] == seqs[1:8]
    reasons = [reason for _, reason in rejected]
    assert reasons[0].startswith("invalid: (event): is not valid JSON")
    assert reasons[1].startswith("invalid: county: unknown county code for Albania")
    assert reasons[2].startswith("agency mismatch: the event says agency 'al-b' but was published on 'al-a'")
    assert reasons[3] == "event type mismatch: the event is 'session_held', the subject says 'team_established'"
    conflict_reason = f"conflict: event_id {good_a['event_id']} was already used at stream sequence {seqs[0]}"
    assert reasons[4].startswith(conflict_reason)
    assert reasons[5] == (
        f"unknown event: corrects {good_a['event_id']}, which agency 'al-b' has not published "
        f"(publish the original first; an agency corrects or retracts only its own events)"
    )
    assert reasons[6].startswith(f"unknown event: retracts {unknown_fix['retracts']}")
    raw = rows(settings, f"SELECT payload FROM rejected_events WHERE stream_seq = {seqs[1]}")
    assert raw == [(b"{not json",)]
    assert rows(settings, COUNTY_TOTALS) == [("AL-06", 2, 2, 37, 0, 0)]


async def test_corrections_and_retractions_change_the_totals(nc: Client, settings: Settings) -> None:
    pub = await publisher(nc, settings)
    first, second, third = session(students=10), session(students=20), session(students=40, county="AL-01")
    correction = {
        "event_id": str(uuid.uuid4()),
        "event_type": "event_corrected",
        "agency": "al-a",
        "recorded_at": "2025-02-01T00:00:00Z",
        "corrects": first["event_id"],
        "replacement": dict(first, participants=[{"audience": "students", "count": 15}]),
    }
    retraction = {
        "event_id": str(uuid.uuid4()),
        "event_type": "event_retracted",
        "agency": "al-a",
        "recorded_at": "2025-02-01T00:00:00Z",
        "retracts": second["event_id"],
        "reason": "reported twice",
    }
    # Two batches: originals, then corrections of facts already in the database.
    await pub.publish([parse_event(e) for e in (first, second, third)])
    await run_projector(settings, until_caught_up=True)
    assert rows(settings, COUNTY_TOTALS) == [("AL-01", 1, 1, 40, 0, 0), ("AL-06", 2, 2, 30, 0, 0)]

    await pub.publish([parse_event(correction), parse_event(retraction)])
    await run_projector(settings, until_caught_up=True)
    assert rows(settings, COUNTY_TOTALS) == [("AL-01", 1, 1, 40, 0, 0), ("AL-06", 1, 1, 15, 0, 0)]
    versions = rows(
        settings,
        "SELECT fact_id::VARCHAR, version_seq, superseded_seq, retracted, participants "
        "FROM fact_versions ORDER BY version_seq",
    )
    assert versions == [
        (first["event_id"], 1, 4, False, 10),
        (second["event_id"], 2, 5, False, 20),
        (third["event_id"], 3, None, False, 40),
        (first["event_id"], 4, None, False, 15),
        (second["event_id"], 5, None, True, 0),
    ]
    assert rows(settings, "SELECT count(*) FROM event_log") == [(5,)]


async def test_a_file_with_invalid_lines_publishes_nothing_unless_asked(
    nc: Client, settings: Settings, tmp_path: Path
) -> None:
    pub = await publisher(nc, settings)
    path = tmp_path / "events.jsonl"
    lines = [json.dumps(session(students=3)), json.dumps(session(students=-1)), json.dumps(session(students=4))]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(FileInvalid) as caught:
        await publish_files(pub, [path])
    assert [(p.line, p.field) for p in caught.value.problems] == [(2, "participants.0.count")]
    info = await nc.jetstream().stream_info(settings.stream)
    assert info.state.messages == 0

    report = await publish_files(pub, [path], skip_invalid=True)
    assert (report.published.stored, report.published.failed) == (2, [])
    assert [(p.line, p.field) for p in report.files[0].problems] == [(2, "participants.0.count")]


async def test_the_stream_refuses_to_delete_or_purge(nc: Client, settings: Settings) -> None:
    pub = await publisher(nc, settings)
    await pub.publish([parse_event(session())])
    js = nc.jetstream()
    with pytest.raises(APIError) as deleting:
        await js.delete_msg(settings.stream, 1)
    assert deleting.value.description == "message delete not permitted"
    with pytest.raises(APIError) as purging:
        await js.purge_stream(settings.stream)
    assert purging.value.description == "stream purge not permitted"
    info = await js.stream_info(settings.stream)
    assert (info.state.messages, info.config.deny_delete, info.config.deny_purge) == (1, True, True)
    assert info.config.allow_rollup_hdrs is False
    assert info.config.duplicate_window == 24 * 3600


async def test_an_existing_stream_that_allows_deletes_is_refused(nc: Client, settings: Settings) -> None:
    await nc.jetstream().add_stream(StreamConfig(name=settings.stream, subjects=["outreach.events.>"]))
    with pytest.raises(BrokerError) as caught:
        await ensure_stream(nc.jetstream(), settings.stream, settings.duplicate_window_s)
    message = str(caught.value)
    assert message.startswith("stream OUTREACH exists but does not keep history immutable: deny_delete=False")
    assert "deny_purge=False" in message


async def test_a_stream_created_anew_is_not_mixed_into_an_old_projection(nc: Client, settings: Settings) -> None:
    pub = await publisher(nc, settings)
    await pub.publish([parse_event(session())])
    await run_projector(settings, until_caught_up=True)
    await nc.jetstream().delete_stream(settings.stream)
    pub = await publisher(nc, settings)
    await pub.publish([parse_event(session())])
    with pytest.raises(ProjectionError) as caught:
        await run_projector(settings, until_caught_up=True)
    assert "it was deleted and created anew" in str(caught.value)
    assert rows(settings, "SELECT count(*) FROM event_log") == [(1,)]


async def test_projector_killed_mid_backlog_resumes_with_exact_totals(nc: Client, settings: Settings) -> None:
    items = list(generate(30_000, seed=11))
    pub = await publisher(nc, settings)
    report = await pub.publish(parse_event(item.payload) for item in items)
    assert (report.stored, report.failed) == (30_000, [])

    env = dict(os.environ, OUTREACH_NATS_URL=settings.nats_url, OUTREACH_DB=str(settings.db), OUTREACH_BATCH_SIZE="500")
    command = [sys.executable, "-m", "outreach", "-v", "project"]
    kills = 0
    for threshold in (3_000, 12_000):
        with subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True) as proc:
            assert proc.stderr is not None
            for line in proc.stderr:
                if "applied stream sequences up to" in line and int(line.split("up to ")[1].split()[0]) >= threshold:
                    break
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        assert proc.returncode == -signal.SIGKILL
        kills += 1
    assert kills == 2
    applied_before = duckdb.connect(str(settings.db), read_only=True)
    partial = applied_before.execute("SELECT last_seq FROM checkpoint").fetchone()
    applied_before.close()
    assert partial is not None and 12_000 <= partial[0] < 30_000

    done = subprocess.run([*command, "--until-caught-up"], env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr

    expected = oracle.totals_by_county(item.event for item in items)
    got = {r[0]: tuple(r[1:]) for r in rows(settings, COUNTY_TOTALS)}
    assert got == expected
    assert rows(settings, "SELECT count(*), count(DISTINCT event_id), max(stream_seq) FROM event_log") == [
        (30_000, 30_000, 30_000)
    ]
    assert rows(settings, "SELECT count(*) FROM rejected_events") == [(0,)]
    assert rows(settings, "SELECT count(*) FROM ignored_duplicates") == [(0,)]


async def test_a_projector_that_starts_follows_and_stops_logs_no_error_and_no_traceback(
    nc: Client, settings: Settings
) -> None:
    """An operator reads an ERROR line or a traceback as a crash: normal operation shows neither."""
    await ensure_stream(nc.jetstream(), settings.stream, settings.duplicate_window_s)
    items = list(generate(3_000, seed=75))
    await Publisher(nc.jetstream()).publish(parse_event(i.payload) for i in items)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
    env.update(OUTREACH_NATS_URL=settings.nats_url, OUTREACH_DB=str(settings.db), OUTREACH_BATCH_SIZE="500")
    projector = subprocess.Popen(
        [sys.executable, "-m", "outreach", "-v", "project"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (settings.db.exists() and _applied(settings) == 3_000):
            assert time.monotonic() < deadline, "the projector did not apply the backlog"
            assert projector.poll() is None
            time.sleep(0.05)
        more = list(generate(3_100, seed=75))[3_000:]  # followed live, after the backlog
        await Publisher(nc.jetstream()).publish(parse_event(i.payload) for i in more)
        while _applied(settings) != 3_100:
            assert time.monotonic() < deadline, "the projector did not follow the stream"
            time.sleep(0.05)
    finally:
        projector.send_signal(signal.SIGTERM)
        _, err = projector.communicate(timeout=60)
    assert projector.returncode == 0, err[-2000:]
    assert "applied stream sequences up to 3100" in err
    assert [line for line in err.splitlines() if " ERROR " in line or "Traceback" in line] == []


def _applied(settings: Settings) -> int:
    """The checkpoint, read through the projector (the file is locked while it runs)."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "outreach",
            "sql",
            "--db",
            str(settings.db),
            "--nats",
            settings.nats_url,
            "--format",
            "csv",
            "SELECT coalesce(max(last_seq), 0) FROM checkpoint",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        return -1
    return int(done.stdout.splitlines()[1])


async def test_the_actions_of_no_campaign_are_a_row_per_country(nc: Client, settings: Settings) -> None:
    """Albanian and Polish actions of no campaign are never added together; a campaign's actions are
    one row whatever their countries."""
    pub = await publisher(nc, settings)
    events = [
        session(county="AL-06", students=30),
        session(county="AL-09", students=7),
        session(agency="pl-a", county="PL-16", students=12),
        session(county="AL-06", students=5, campaign_id="cross-border"),
        session(agency="pl-a", county="PL-24", students=4, campaign_id="cross-border"),
    ]
    await pub.publish([parse_event(e) for e in events])
    await run_projector(settings, until_caught_up=True)
    columns = "campaign_id, country, events, sessions, participants, counties_reached"
    assert rows(settings, f"SELECT {columns} FROM totals_by_campaign") == [
        ("cross-border", None, 2, 2, 9, 2),  # referred to, never defined: no country of its own
        (None, "AL", 2, 2, 37, 2),
        (None, "PL", 1, 1, 12, 1),
    ]
    # The same rows as the system knows them now; a rebuild from the log compares equal, row by row.
    assert rows(settings, f"SELECT {columns} FROM totals_by_campaign_as_of(now())") == rows(
        settings, f"SELECT {columns} FROM totals_by_campaign"
    )
    from consumers.verify import verify

    assert (await verify(settings, settings.db)).problems == []
