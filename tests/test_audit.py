"""Auditors: verify, tamper evidence, totals as known at a moment, history, export; real server and files."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest
from nats.aio.client import Client
from nats.js.api import StreamConfig

from consumers.app import run_projector
from consumers.export import export_log
from consumers.replay import replay
from consumers.verify import verify
from outreach.synthetic import generate
from producers.publisher import Publisher
from projections.query import run_query
from runtime.settings import Settings
from runtime.stream import ensure_stream
from schemas.parse import parse_event

pytestmark = pytest.mark.integration

COUNTY_TOTALS = "SELECT county, events, sessions, participants, materials_distributed, teams_established FROM {}"


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    return run_query(db, sql).rows


async def publish(nc: Client, items: list[dict[str, Any]] | list[Any]) -> None:
    events = [parse_event(i if isinstance(i, dict) else i.payload) for i in items]
    report = await Publisher(nc.jetstream()).publish(events)
    assert (report.stored, report.failed) == (len(events), [])


def session(agency: str, students: int, occurred: str = "2017-05-01", county: str = "AL-06") -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "session_held",
        "agency": agency,
        "recorded_at": "2025-01-01T00:00:00Z",
        "occurred": occurred,
        "county": county,
        "format": "school_session",
        "participants": [{"audience": "students", "count": students}],
    }


def correction(original: dict[str, Any], students: int) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "event_corrected",
        "agency": original["agency"],
        "recorded_at": "2025-01-02T00:00:00Z",
        "corrects": original["event_id"],
        "reason": "recounted",
        "replacement": dict(original, participants=[{"audience": "students", "count": students}]),
    }


def retraction(original: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "event_retracted",
        "agency": original["agency"],
        "recorded_at": "2025-01-02T00:00:00Z",
        "retracts": original["event_id"],
        "reason": "reported twice",
    }


async def honest_projection(nc: Client, settings: Settings, count: int = 2_000) -> list[Any]:
    await ensure_stream(nc.jetstream(), settings.stream, settings.duplicate_window_s)
    items = list(generate(count, seed=31))
    await publish(nc, items)
    await run_projector(settings, until_caught_up=True)
    return items


async def test_verify_says_ok_for_an_honest_stream_and_projection(nc: Client, settings: Settings) -> None:
    await honest_projection(nc, settings)
    report = await verify(settings, settings.db)
    assert (report.ok, report.last_seq, report.problems) == (True, 2_000, [])


async def test_verify_catches_a_projection_row_changed_by_hand(nc: Client, settings: Settings) -> None:
    await honest_projection(nc, settings)
    con = duckdb.connect(str(settings.db))
    con.execute("UPDATE fact_versions SET participants = participants + 5 WHERE version_seq = 100")
    con.close()
    report = await verify(settings, settings.db)
    assert not report.ok
    assert report.problems[0] == "fact_versions: 1 row(s) only in the live projection, e.g.:"
    assert report.problems[2] == "fact_versions: 1 row(s) only in the projection rebuilt from the stream, e.g.:"
    assert len(report.problems) == 4


async def test_verify_catches_a_message_deleted_from_the_stream(nc: Client, settings: Settings) -> None:
    js = nc.jetstream()
    # A stream that allows deleting, as an operator's mistake or an attacker could make it.
    await js.add_stream(StreamConfig(name=settings.stream, subjects=["outreach.events.>"]))
    await publish(nc, list(generate(300, seed=32)))
    await replay(settings, settings.db)  # the projection, built before the deletion
    assert await js.delete_msg(settings.stream, 120)
    report = await verify(settings, settings.db)
    assert report.problems[0] == "stream sequence(s) 120 are missing from the stream (deleted?)"
    assert report.problems[1].startswith("the stream's digest up to sequence 300 is ")
    assert report.problems[1].endswith("the stream's content is not what the projector saw")
    assert "event_log: 1 row(s) only in the live projection, e.g.:" in report.problems


async def test_verify_catches_a_stream_created_anew_with_other_content(nc: Client, settings: Settings) -> None:
    await honest_projection(nc, settings, count=200)
    js = nc.jetstream()
    await js.delete_stream(settings.stream)
    await ensure_stream(js, settings.stream, settings.duplicate_window_s)
    await publish(nc, list(generate(200, seed=33)))
    report = await verify(settings, settings.db)
    assert report.problems[0].startswith(f"stream {settings.stream} was created at ")
    assert report.problems[0].endswith("the stream was deleted and created anew")
    assert any(p.startswith("the stream's digest up to sequence 200 is ") for p in report.problems)
    assert "event_log: 200 row(s) only in the live projection, e.g.:" in report.problems


def test_verify_on_the_command_line_prints_ok_and_exits_0(tmp_path: Path) -> None:
    demo = subprocess.run(
        [sys.executable, "-m", "outreach", "demo", "--data-dir", str(tmp_path / "d")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert demo.returncode == 0, demo.stderr
    from runtime.server import EmbeddedServer

    with EmbeddedServer(tmp_path / "d" / "nats", port=0) as server:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "outreach",
                "verify",
                "--nats",
                server.url,
                "--db",
                str(tmp_path / "d" / "outreach.duckdb"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("OK: ")
    assert "up to sequence 17" in done.stdout


async def test_totals_as_known_at_a_moment_in_sql_equal_a_replay_as_of_that_moment(
    nc: Client, settings: Settings, tmp_path: Path
) -> None:
    await ensure_stream(nc.jetstream(), settings.stream, settings.duplicate_window_s)
    first = [session("al-a", 10), session("al-a", 20, "2018-02-01"), session("al-b", 5, county="AL-01")]
    await publish(nc, first)
    moment = (await nc.jetstream().get_msg(settings.stream, 3)).time
    assert isinstance(moment, datetime)
    later = [correction(first[0], 12), retraction(first[1]), session("al-b", 7, county="AL-01")]
    await publish(nc, later)
    await run_projector(settings, until_caught_up=True)
    as_of = tmp_path / "as-of.duckdb"
    await replay(settings, as_of, as_of=moment)

    known = f"'{moment.isoformat()}'::TIMESTAMPTZ"
    sql_then = rows(settings.db, COUNTY_TOTALS.format(f"totals_by_county_as_of({known})"))
    assert sql_then == rows(as_of, COUNTY_TOTALS.format("totals_by_county"))
    assert sql_then == [("AL-01", 1, 1, 5, 0, 0), ("AL-06", 2, 2, 30, 0, 0)]
    assert rows(settings.db, COUNTY_TOTALS.format("totals_by_county")) == [
        ("AL-01", 2, 2, 12, 0, 0),
        ("AL-06", 1, 1, 12, 0, 0),
    ]
    # "Participants in 2017 as known then", in SQL on the live file.
    in_2017 = (
        "SELECT county, sum(participants) FROM {} WHERE year(occurred_start) = 2017 GROUP BY county ORDER BY county"
    )
    assert rows(settings.db, in_2017.format(f"actions_as_of({known})")) == [("AL-01", 5), ("AL-06", 10)]
    assert rows(as_of, in_2017.format("actions")) == [("AL-01", 5), ("AL-06", 10)]


async def test_history_and_corrections_are_one_query_away(nc: Client, settings: Settings) -> None:
    await ensure_stream(nc.jetstream(), settings.stream, settings.duplicate_window_s)
    original = session("al-a", 10)
    await publish(nc, [original, correction(original, 14), retraction(original)])
    await run_projector(settings, until_caught_up=True)
    history = rows(
        settings.db,
        "SELECT stream_seq, event_type, agency, reason FROM event_history "
        f"WHERE fact_id = 'al-a/{original['event_id']}'",
    )
    assert history == [
        (1, "session_held", "al-a", None),
        (2, "event_corrected", "al-a", "recounted"),
        (3, "event_retracted", "al-a", "reported twice"),
    ]
    changes = rows(
        settings.db, "SELECT stream_seq, kind, agency, reason, sessions_change, participants_change FROM corrections"
    )
    assert changes == [
        (2, "event_corrected", "al-a", "recounted", 0, 4),
        (3, "event_retracted", "al-a", "reported twice", -1, -14),
    ]


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
async def test_export_log_writes_every_message_with_its_metadata(
    nc: Client, settings: Settings, tmp_path: Path, suffix: str
) -> None:
    await ensure_stream(nc.jetstream(), settings.stream, settings.duplicate_window_s)
    items = list(generate(1_200, seed=34))
    await publish(nc, items)
    await nc.jetstream().publish("outreach.events.al-a.session_held", b"\xff\xfe not utf-8")
    out = tmp_path / f"log{suffix}"
    assert await export_log(settings, out) == 1_201
    reader = "read_parquet" if suffix == ".parquet" else "read_json_auto"
    con = duckdb.connect()
    got = con.execute(
        f"SELECT count(*), min(stream_seq), max(stream_seq), count(DISTINCT subject), "
        f"count(payload_base64) FROM {reader}('{out}')"
    ).fetchone()
    assert got == (1_201, 1, 1_201, 1_201, 1)
    first = con.execute(
        f"SELECT subject, msg_id, payload, payload_sha256 FROM {reader}('{out}') WHERE stream_seq = 1"
    ).fetchone()
    assert first is not None
    assert (first[0], first[1]) == (items[0].subject, None)  # no Nats-Msg-Id: the subject names the event
    assert json.loads(first[2])["event_id"] == items[0].event_id
    import hashlib

    assert first[3] == hashlib.sha256(first[2].encode()).hexdigest()
