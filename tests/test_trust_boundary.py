"""The trust boundary, attacked as an agency holding its own credentials, against a real nats-server
running the configuration `outreach auth` writes (an account per agency), with the stream created
by the admin. Each test is named for the attack and asserts exactly what was stored or refused."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from consumers.app import run_projector
from consumers.replay import replay
from consumers.verify import verify
from outreach import auth
from producers.publisher import Publisher
from producers.receipts import receipts
from projections.query import run_query
from runtime.connection import connect
from runtime.server import EmbeddedServer
from runtime.settings import Settings
from runtime.stream import ensure_stream
from schemas.errors import BrokerError
from schemas.parse import parse_event
from tests.conftest import wait_until

pytestmark = pytest.mark.integration

AGENCIES = ["al-a", "al-b"]


@pytest.fixture
def closed(tmp_path: Path) -> Iterator[tuple[EmbeddedServer, Path]]:
    directory = tmp_path / "auth"
    config = auth.init(directory, AGENCIES)
    with EmbeddedServer(tmp_path / "nats", port=0, config_file=config) as server:
        asyncio.run(_create_stream(directory, server))
        yield server, directory


async def _create_stream(directory: Path, server: EmbeddedServer) -> None:
    nc = await connect(creds(directory, "admin", server), "admin")
    await ensure_stream(nc.jetstream(), "OUTREACH", 3600)
    await nc.close()


def values(directory: Path, user: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in (directory / "credentials" / f"{user}.env").read_text().split())


def creds(directory: Path, user: str, server: EmbeddedServer, db: Path | None = None) -> Settings:
    v = values(directory, user)
    return Settings(
        nats_url=server.url,
        nats_user=v["OUTREACH_NATS_USER"],
        nats_password=v["OUTREACH_NATS_PASSWORD"],
        nats_inbox_prefix=v["OUTREACH_NATS_INBOX_PREFIX"],
        agency=v.get("OUTREACH_AGENCY"),
        db=db or Path("unused.duckdb"),
    )


def env_of(directory: Path, user: str, server: EmbeddedServer, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
    env.update(values(directory, user), OUTREACH_NATS_URL=server.url, **extra)
    return env


async def as_user(directory: Path, user: str, server: EmbeddedServer) -> Client:
    return await connect(creds(directory, user, server), user)


def outreach(*args: str, env: dict[str, str], timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "outreach", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def messages(stderr: str) -> list[str]:
    """What the command told the user, without its progress lines."""
    return [line for line in stderr.splitlines() if not line.startswith("publish: ")]


def session(agency: str, students: int = 9, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "session_held",
        "agency": agency,
        "recorded_at": "2025-01-01T00:00:00Z",
        "occurred": "2024-01-01",
        "county": "AL-06",
        "format": "workshop",
        "participants": [{"audience": "students", "count": students}],
        **fields,
    }


def campaign(agency: str, campaign_id: str, name: str) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "campaign_defined",
        "agency": agency,
        "recorded_at": "2025-01-01T00:00:00Z",
        "campaign_id": campaign_id,
        "name": name,
        "country": "AL",
        "lead_agency": agency,
        "funder": f"funded by {agency}",
    }


def subject(event: dict[str, Any]) -> str:
    return f"outreach.events.{event['agency']}.{event['event_type']}.{event['event_id']}"


async def publish_raw(nc: Client, event: dict[str, Any] | bytes, on: str, **headers: str) -> int:
    """Publish bytes as a careless or hostile client would, bypassing every client-side check."""
    payload = event if isinstance(event, bytes) else json.dumps(event).encode()
    ack = await nc.jetstream().publish(on, payload, headers=headers or None)
    return ack.seq


async def stream_messages(directory: Path, server: EmbeddedServer) -> int:
    nc = await as_user(directory, "admin", server)
    try:
        return (await nc.jetstream().stream_info("OUTREACH")).state.messages
    finally:
        await nc.close()


async def project(directory: Path, server: EmbeddedServer, db: Path) -> Any:
    return await run_projector(creds(directory, "projector", server, db=db), until_caught_up=True)


def live_projector(directory: Path, server: EmbeddedServer, db: Path) -> subprocess.Popen[str]:
    """`outreach project` following the stream, with the projector's credentials."""
    return subprocess.Popen(
        [sys.executable, "-m", "outreach", "project"],
        env=env_of(directory, "projector", server, OUTREACH_DB=str(db)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def rejected(db: Path) -> list[tuple[int, str]]:
    return [(int(r[0]), r[1]) for r in run_query(db, "SELECT stream_seq, reason FROM rejected_events ORDER BY 1").rows]


# ---- 1. one message must not stop the projector -------------------------------------------------

HUGE = "9" * 5_000


async def test_a_5000_digit_quantity_is_rejected_and_the_projector_goes_on(
    closed: tuple[EmbeddedServer, Path], tmp_path: Path
) -> None:
    server, directory = closed
    a = await as_user(directory, "al-a", server)
    poison = {
        "event_id": str(uuid.uuid4()),
        "event_type": "materials_distributed",
        "agency": "al-a",
        "recorded_at": "2025-01-01T00:00:00Z",
        "occurred": "2024-01-01",
        "county": "AL-06",
        "kind": "leaflet",
    }
    raw = json.dumps(poison)[:-1].encode() + f', "quantity": {HUGE}}}'.encode()
    seq = await publish_raw(a, raw, subject(poison))
    good = session("al-a", students=12)
    await publish_raw(a, good, subject(good), **{"Nats-Expected-Last-Subject-Sequence": "0"})
    await a.close()

    db = tmp_path / "p.duckdb"
    stats = await project(directory, server, db)
    assert (stats.accepted, stats.rejected) == (1, 1)
    assert rejected(db) == [(seq, "invalid: (event): has a number of 5,000 digits; no field takes one so large")]
    assert run_query(db, "SELECT participants FROM totals_by_county").rows == [(12,)]
    again = await project(directory, server, db)  # a restart does not meet it again
    assert (again.accepted, again.rejected) == (0, 0)
    auditor = creds(directory, "auditor", server)
    replayed = await replay(auditor, tmp_path / "replayed.duckdb")  # the auditor's replay goes past it too
    assert (replayed.accepted, replayed.rejected) == (1, 1)
    assert (await verify(auditor, db)).problems == []

    # The agency's own tools say it in one line, no traceback.
    path = tmp_path / "huge.jsonl"
    path.write_bytes(raw + b"\n")
    done = outreach("validate", str(path), env=env_of(directory, "al-a", server))
    assert done.returncode == 1
    assert done.stdout == f"{path}: line 1: (event): has a number of 5,000 digits; no field takes one so large\n"
    assert "Traceback" not in done.stderr
    done = outreach("publish", str(path), env=env_of(directory, "al-a", server))
    assert (done.returncode, done.stderr) == (
        1,
        f"error: {path}: 1 of 1 event(s) is invalid (1 problem(s)):\n"
        "  line 1: (event): has a number of 5,000 digits; no field takes one so large\n"
        "nothing was published; fix the lines above, or pass --skip-invalid to publish the valid ones\n",
    )


# ---- 2. lenient JSON ----------------------------------------------------------------------------


async def test_duplicate_keys_and_counts_written_as_text_or_decimals_are_rejected(
    closed: tuple[EmbeddedServer, Path], tmp_path: Path
) -> None:
    server, directory = closed
    a = await as_user(directory, "al-a", server)
    base = session("al-a", students=1)
    dup_count = json.dumps(base).replace('"count": 1', '"count": 1, "count": 500').encode()
    other = session("al-a")
    dup_agency = json.dumps(other).replace('"agency": "al-a"', '"agency": "al-b", "agency": "al-a"').encode()
    as_text = session("al-a", participants=[{"audience": "students", "count": "5"}])
    as_decimal = session("al-a", participants=[{"audience": "students", "count": 5.0}])
    flag_as_text = session("al-a", participants=[{"audience": "students", "count": 5, "estimated": "yes"}])
    seqs = [
        await publish_raw(a, dup_count, subject(base)),
        await publish_raw(a, dup_agency, subject(other)),
        await publish_raw(a, as_text, subject(as_text)),
        await publish_raw(a, as_decimal, subject(as_decimal)),
        await publish_raw(a, flag_as_text, subject(flag_as_text)),
    ]
    good = session("al-a", students=7)
    await publish_raw(a, good, subject(good))
    await a.close()

    db = tmp_path / "p.duckdb"
    stats = await project(directory, server, db)
    assert (stats.accepted, stats.rejected) == (1, 5)
    assert rejected(db) == [
        (seqs[0], 'invalid: "count": is given twice in one object; give each field once'),
        (seqs[1], 'invalid: "agency": is given twice in one object; give each field once'),
        (
            seqs[2],
            'invalid: participants.0.count: must be a whole number such as 12, written without quotes (got "5")',
        ),
        (seqs[3], "invalid: participants.0.count: must be a whole number such as 12, not a decimal number (got 5.0)"),
        (seqs[4], 'invalid: participants.0.estimated: must be true or false, written without quotes (got "yes")'),
    ]
    assert run_query(db, "SELECT participants FROM totals_by_county").rows == [(7,)]


# ---- 3. event_id squatting ----------------------------------------------------------------------


async def test_an_agency_cannot_squat_another_agencys_event_id(
    closed: tuple[EmbeddedServer, Path], tmp_path: Path
) -> None:
    server, directory = closed
    b_event = session("al-b", students=40)
    squat = session("al-a", students=3, event_id=b_event["event_id"])
    a = await as_user(directory, "al-a", server)
    # A's own event under B's id, then a raw one carrying B's id as the broker's message id too.
    assert (await Publisher(a.jetstream()).publish([parse_event(squat)])).stored == 1
    other_squat = session("al-a", students=2)
    await publish_raw(a, other_squat, subject(other_squat), **{"Nats-Msg-Id": b_event["event_id"]})
    # ...and a correction aimed at B's event, which can only ever mean A's own event of that id.
    fix = {
        "event_id": str(uuid.uuid4()),
        "event_type": "event_corrected",
        "agency": "al-a",
        "recorded_at": "2025-01-02T00:00:00Z",
        "corrects": b_event["event_id"],
        "replacement": dict(squat, participants=[{"audience": "students", "count": 4}]),
    }
    assert (await Publisher(a.jetstream()).publish([parse_event(fix)])).stored == 1
    await a.close()

    b = await as_user(directory, "al-b", server)
    report = await Publisher(b.jetstream()).publish([parse_event(b_event)])
    assert (report.stored, report.duplicates, report.failed) == (1, 0, [])
    await b.close()

    db = tmp_path / "p.duckdb"
    stats = await project(directory, server, db)
    assert (stats.accepted, stats.rejected, stats.duplicates) == (4, 0, 0)
    by_agency = run_query(db, "SELECT agency, sum(participants) FROM actions GROUP BY agency ORDER BY agency").rows
    assert by_agency == [("al-a", 6), ("al-b", 40)]  # A's 3 corrected to 4, plus its 2; B's 40 untouched


# ---- 4. hijacking definitions -------------------------------------------------------------------


async def test_an_agency_cannot_redefine_another_agencys_campaign_or_plan_task(
    closed: tuple[EmbeddedServer, Path], tmp_path: Path
) -> None:
    server, directory = closed
    b = await as_user(directory, "al-b", server)
    task = {
        "event_id": str(uuid.uuid4()),
        "event_type": "plan_task_defined",
        "agency": "al-b",
        "recorded_at": "2025-01-01T00:00:00Z",
        "plan_id": "al-nap-2024",
        "plan_title": "Plan",
        "country": "AL",
        "first_year": 2024,
        "last_year": 2026,
        "part": "II",
        "task": "3",
        "title": "Awareness in schools",
    }
    await Publisher(b.jetstream()).publish(
        [parse_event(campaign("al-b", "safe-2024", "B's campaign")), parse_event(task)]
    )
    await b.close()
    a = await as_user(directory, "al-a", server)
    hijack = campaign("al-a", "safe-2024", "Hijacked")
    task_hijack = dict(task, event_id=str(uuid.uuid4()), agency="al-a", title="Hijacked")
    partner_action = session("al-a", students=5, campaign_id="safe-2024", plan_tasks=["al-nap-2024/II/3"])
    report = await Publisher(a.jetstream()).publish(
        [parse_event(hijack), parse_event(task_hijack), parse_event(partner_action)]
    )
    assert report.stored == 3
    await a.close()

    db = tmp_path / "p.duckdb"
    stats = await project(directory, server, db)
    assert (stats.accepted, stats.rejected) == (3, 2)
    assert [reason for _, reason in rejected(db)] == [
        "campaign 'safe-2024' was defined by agency 'al-b'; only that agency may define or redefine it "
        "(any agency may report actions under it)",
        "plan task 'al-nap-2024/II/3' was defined by agency 'al-b'; only that agency may define or redefine it "
        "(any agency may report actions under it)",
    ]
    assert run_query(db, "SELECT campaign_id, name, funder, lead_agency FROM campaigns").rows == [
        ("safe-2024", "B's campaign", "funded by al-b", "al-b")
    ]
    assert run_query(db, "SELECT title, participants FROM totals_by_plan_task").rows == [("Awareness in schools", 5)]
    assert run_query(db, "SELECT name, participants FROM totals_by_campaign").rows == [("B's campaign", 5)]


async def ask_projector(nc: Client, query: str, timeout: float = 30) -> Any:
    """A query's rows, once a starting projector answers."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            reply = await nc.request("outreach.query.OUTREACH", query.encode(), timeout=5)
            answer = json.loads(reply.data)
            assert "rows" in answer, answer
            return answer["rows"]
        except NoRespondersError:
            assert time.monotonic() < deadline, "the projector did not answer"
            await asyncio.sleep(0.1)


# ---- 5. reply subjects --------------------------------------------------------------------------


async def test_reply_subjects_never_write_into_the_stream(closed: tuple[EmbeddedServer, Path], tmp_path: Path) -> None:
    server, directory = closed
    db = tmp_path / "p.duckdb"
    projector = live_projector(directory, server, db)
    try:
        a = await as_user(directory, "al-a", server)
        own = [session("al-a") for _ in range(3)]
        # JetStream acknowledges on the reply subject: aimed at B's subjects, A's own, and the stream's.
        replies = [subject(session("al-b")), subject(session("al-a")), "outreach.events.al-b.session_held"]
        for event, reply in zip(own, replies, strict=True):
            await a.publish(subject(event), json.dumps(event).encode(), reply=reply)
        await a.flush()
        await a.close()
        deadline = time.monotonic() + 10
        while await stream_messages(directory, server) < 3:
            assert time.monotonic() < deadline, "the agency's 3 events were not stored"

        analyst = await as_user(directory, "analyst", server)
        assert await ask_projector(analyst, "SELECT 42 AS answer") == [[42]]  # it is up and answers inboxes
        for _ in range(10):
            await analyst.publish(
                "outreach.query.OUTREACH", b"SELECT repeat('x', 900000)", reply=subject(session("al-b"))
            )
        # Asked after the ten: its answer means they were all handled.
        assert await ask_projector(analyst, "SELECT 43 AS answer") == [[43]]
        await analyst.close()
        assert await stream_messages(directory, server) == 3  # the agency's own events, nothing else
    finally:
        projector.send_signal(signal.SIGTERM)
        projector.communicate(timeout=60)
    assert projector.returncode == 0
    assert run_query(db, "SELECT count(*) FROM event_log WHERE agency = 'al-a'").rows == [(3,)]
    assert run_query(db, "SELECT count(*) FROM rejected_events").rows == [(0,)]


def test_an_agency_corrects_and_retracts_its_file_rows_with_its_own_credentials(
    closed: tuple[EmbeddedServer, Path], tmp_path: Path
) -> None:
    """Everything publishing a file again reads (its own subjects by direct get, its events in force
    from the projector, the origins of its receipts) is within an agency's rights."""
    server, directory = closed
    db = tmp_path / "p.duckdb"
    env = env_of(directory, "al-a", server)
    path = tmp_path / "a.csv"
    header = "reference,agency,recorded_at,county,occurred,event_type,format,participants.students\n"
    body = "{ref},al-a,2025-01-10,AL-06,2024-11-05,session_held,school_session,{n}\n"
    path.write_text(header + body.format(ref="A-1", n=10) + body.format(ref="A-2", n=20))
    projector = live_projector(directory, server, db)
    try:
        done = outreach("publish", "--wait", "60", str(path), env=env)
        assert done.returncode == 0, done.stderr
        path.write_text(header + body.format(ref="A-1", n=12))
        done = outreach("publish", "--retract-missing", "--wait", "60", str(path), env=env)
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[:4] == [
            f"{path}: line 2, A-1: corrected: students 10 → 12",
            f"{path}: A-2 (was line 3): in the stream, not in this file: retracted",
            "2 event(s): 2 stored, 0 duplicate(s) already stored, 0 failed",
            "projector: 2 accepted, 0 duplicate(s), 0 rejected, 0 without a receipt yet",
        ]
        done = outreach("status", "--json", env=env)
        assert done.returncode == 0 and done.stderr.startswith("agency al-a: 4 accepted"), done.stderr
        seen = [json.loads(line) for line in done.stdout.splitlines()]
        assert [(r["event_type"], r["reference"], r["file"], r["row_or_line"]) for r in seen] == [
            ("session_held", "A-1", "a.csv", 2),
            ("session_held", "A-2", "a.csv", 3),
            ("event_corrected", "A-1", "a.csv", 2),
            ("event_retracted", "A-2", "a.csv", 3),
        ]
    finally:
        projector.terminate()
        projector.communicate(timeout=60)


# ---- 6. a changed figure inside the old duplicate window ----------------------------------------


def test_a_changed_figure_republished_is_reported_as_a_conflict(
    closed: tuple[EmbeddedServer, Path], tmp_path: Path
) -> None:
    server, directory = closed
    env = env_of(directory, "al-a", server)
    event = session("al-a", students=10)
    first = tmp_path / "first.jsonl"
    first.write_text(json.dumps(event) + "\n")
    done = outreach("publish", str(first), env=env)
    assert (done.returncode, done.stdout) == (0, "1 event(s): 1 stored, 0 duplicate(s) already stored, 0 failed\n")
    same = outreach("publish", str(first), env=env)
    assert (same.returncode, same.stdout) == (0, "1 event(s): 0 stored, 1 duplicate(s) already stored, 0 failed\n")

    changed = tmp_path / "changed.jsonl"
    changed.write_text(json.dumps(dict(event, participants=[{"audience": "students", "count": 99}])) + "\n")
    done = outreach("publish", str(changed), env=env)
    assert done.returncode == 1
    assert done.stdout == "1 event(s): 0 stored, 0 duplicate(s) already stored, 1 failed\n"
    assert messages(done.stderr) == [
        f"failed: line 1: event {event['event_id']}: conflict: event_id {event['event_id']} is already stored "
        f"(stream sequence 1) with different content; an event is never changed: publish an event_corrected "
        f"that corrects {event['event_id']} with the new figures"
    ]
    assert asyncio.run(stream_messages(directory, server)) == 1


def test_an_event_id_republished_under_another_type_is_a_conflict_and_never_stored(
    closed: tuple[EmbeddedServer, Path], tmp_path: Path
) -> None:
    """The stream checks the event_id on every subject of the agency (a wildcard), so a changed
    event under another type is refused before it is stored, and the publisher reads it back."""
    server, directory = closed
    env = env_of(directory, "al-a", server)
    event = session("al-a", students=10)
    first = tmp_path / "first.jsonl"
    first.write_text(json.dumps(event) + "\n")
    assert outreach("publish", str(first), env=env).returncode == 0
    team = {
        "event_id": event["event_id"],
        "event_type": "team_established",
        "agency": "al-a",
        "recorded_at": "2025-01-01T00:00:00Z",
        "occurred": "2024-01-01",
        "county": "AL-06",
        "team_name": "Korçë team",
    }
    other = session("al-a", students=7)
    changed = tmp_path / "changed.jsonl"
    changed.write_text(json.dumps(team) + "\n" + json.dumps(other) + "\n")
    done = outreach("publish", str(changed), env=env)
    assert done.returncode == 1
    assert done.stdout == "2 event(s): 1 stored, 0 duplicate(s) already stored, 1 failed\n"
    assert messages(done.stderr) == [
        f"failed: line 1: event {event['event_id']}: conflict: event_id {event['event_id']} is already stored "
        f"as a session_held (stream sequence 1), and this is a team_established; an event_id names one event "
        f"for ever: give this one an event_id of its own (and publish an event_retracted of {event['event_id']} "
        f"if that session_held was wrong)"
    ]
    assert asyncio.run(stream_messages(directory, server)) == 2  # the first event and the other one

    async def read_back() -> tuple[bytes, str]:
        a = await as_user(directory, "al-a", server)
        try:
            own = await a.request(f"$JS.API.DIRECT.GET.OUTREACH.outreach.events.al-a.*.{event['event_id']}", b"")
            with pytest.raises(NatsTimeoutError):  # another agency's subjects: no permission, no answer
                await a.request(f"$JS.API.DIRECT.GET.OUTREACH.outreach.events.al-b.*.{event['event_id']}", b"", 2)
            return own.data, own.headers["Nats-Subject"]
        finally:
            await a.close()

    data, stored_on = asyncio.run(read_back())
    assert (json.loads(data), stored_on) == (event, subject(event))


# ---- 7. agencies hear of their rejections, and only of their own ---------------------------------


async def test_an_agency_reads_its_own_receipts_and_never_anothers(
    closed: tuple[EmbeddedServer, Path], tmp_path: Path
) -> None:
    server, directory = closed
    db = tmp_path / "p.duckdb"
    projector = live_projector(directory, server, db)
    try:
        b_event = session("al-b", students=30)
        b_file = tmp_path / "b.jsonl"
        b_file.write_text(json.dumps(b_event) + "\n")
        done = await asyncio.to_thread(
            outreach, "publish", "--wait", "60", str(b_file), env=env_of(directory, "al-b", server)
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[:2] == [
            "1 event(s): 1 stored, 0 duplicate(s) already stored, 0 failed",
            "projector: 1 accepted, 0 duplicate(s), 0 rejected, 0 without a receipt yet",
        ]

        # A corrects B's event: it passes A's own checks, and the projector rejects it.
        fix = {
            "event_id": str(uuid.uuid4()),
            "event_type": "event_corrected",
            "agency": "al-a",
            "recorded_at": "2025-01-02T00:00:00Z",
            "corrects": b_event["event_id"],
            "replacement": dict(b_event, agency="al-a", participants=[{"audience": "students", "count": 1}]),
        }
        own = session("al-a", students=5)
        a_file = tmp_path / "a.jsonl"
        a_file.write_text(json.dumps(own) + "\n" + json.dumps(fix) + "\n")
        a_env = env_of(directory, "al-a", server)
        done = await asyncio.to_thread(outreach, "publish", "--wait", "60", str(a_file), env=a_env)
        assert done.returncode == 1
        lines = done.stdout.splitlines()
        assert lines[:2] == [
            "2 event(s): 2 stored, 0 duplicate(s) already stored, 0 failed",
            "projector: 1 accepted, 0 duplicate(s), 1 rejected, 0 without a receipt yet",
        ]
        # The receipts as a table, each beside the file and line it came from.
        assert lines[2].split() == [
            "stream_seq",
            "fate",
            "event_type",
            "event_id",
            "reference",
            "file",
            "where",
            "reason",
        ]
        assert [line.split()[:6] for line in lines[4:6]] == [
            ["2", "accepted", "session_held", own["event_id"], "a.jsonl", "line"],
            ["3", "rejected", "event_corrected", fix["event_id"], "a.jsonl", "line"],
        ]
        assert lines[6] == "(2 rows)"
        reason = (
            f"unknown event: corrects {b_event['event_id']}, which agency 'al-a' has not published "
            f"(publish the original first; an agency corrects or retracts only its own events)"
        )
        assert messages(done.stderr) == [f"rejected: event {fix['event_id']} (stream sequence 3): {reason}"]

        status = await asyncio.to_thread(outreach, "status", "--json", env=a_env)
        assert status.returncode == 0, status.stderr
        seen = [json.loads(line) for line in status.stdout.splitlines()]
        assert [(r["stream_seq"], r["event_id"], r["fate"], r["reason"]) for r in seen] == [
            (2, own["event_id"], "accepted", None),
            (3, fix["event_id"], "rejected", reason),
        ]
        for narrowed in (["--after-seq", "2"], ["--rejected"], ["--since", "2000-01-01T00:00:00Z", "--rejected"]):
            status = await asyncio.to_thread(outreach, "status", "--json", *narrowed, env=a_env)
            assert status.returncode == 0, status.stderr
            assert [json.loads(line)["stream_seq"] for line in status.stdout.splitlines()] == [3], narrowed
        status = await asyncio.to_thread(outreach, "status", "--json", "--since", "2100-01-01T00:00:00Z", env=a_env)
        assert (status.returncode, status.stdout) == (0, "")

        # A asks for B's receipts: its account has no way there.
        a = await as_user(directory, "al-a", server)
        with pytest.raises(BrokerError) as refused:
            await receipts(a, "al-b")
        assert "no projector answered on outreach.status.al-b" in str(refused.value)
        await a.close()
        b = await as_user(directory, "al-b", server)
        b_receipts, _ = await receipts(b, "al-b")
        assert [(r.event_id, r.fate) for r in b_receipts] == [(b_event["event_id"], "accepted")]
        await b.close()
        # Asking as A for al-b through the command line is the same refusal.
        done = await asyncio.to_thread(outreach, "status", "--agency", "al-b", env=a_env, timeout=60)
        assert done.returncode == 1 and "no projector answered on outreach.status.al-b" in done.stderr
    finally:
        projector.send_signal(signal.SIGTERM)
        projector.communicate(timeout=60)
    assert projector.returncode == 0


async def test_analysts_and_auditors_read_a_copy_beside_the_projector_and_agencies_may_not_ask(
    closed: tuple[EmbeddedServer, Path], tmp_path: Path
) -> None:
    """A copy of the projection, for reading commands that need more than its snapshot: the
    analysts' account imports the service, the auditor asks within the stream's account, and an
    agency is refused by the broker at once."""
    server, directory = closed
    db = tmp_path / "p.duckdb"
    projector = live_projector(directory, server, db)
    try:
        events = tmp_path / "a.jsonl"
        events.write_text(json.dumps(session("al-a")) + "\n" + json.dumps(session("al-a", students=4)) + "\n")
        done = await asyncio.to_thread(
            outreach, "publish", "--wait", "60", str(events), env=env_of(directory, "al-a", server)
        )
        assert done.returncode == 0, done.stderr
        copy = db.with_name("p.copy.duckdb")

        history = tmp_path / "history.csv"
        analyst = env_of(directory, "analyst", server, OUTREACH_DB=str(db))
        done = await asyncio.to_thread(
            outreach, "export", "--view", "event_history", "--out", str(history), env=analyst
        )
        assert done.returncode == 0, done.stderr
        said, as_of = done.stderr.splitlines()
        assert said == (
            f"note: {db} is being written by a running projector: read the copy it wrote, {copy}, as of stream "
            "sequence 2"
        )
        assert as_of.startswith("note: event_history: figures as received by ")
        assert as_of.endswith(" UTC (stream OUTREACH, sequence 2)")
        assert len(history.read_text("utf-8").splitlines()) == 1 + 2

        auditor = env_of(directory, "auditor", server, OUTREACH_DB=str(db))
        done = await asyncio.to_thread(outreach, "verify", env=auditor)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"OK: {copy} equal a fresh fold of stream OUTREACH up to sequence 2")

        agency = env_of(directory, "al-a", server, OUTREACH_DB=str(db))
        done = await asyncio.to_thread(outreach, "export", "--view", "event_history", "--out", str(history), env=agency)
        assert (done.returncode, done.stderr) == (
            1,
            f"error: {db} is locked by a running projector, and these credentials may not ask it on "
            f"outreach.copy.OUTREACH at {server.url}: an analyst's or an auditor's may (`outreach auth`)\n",
        )
    finally:
        projector.send_signal(signal.SIGTERM)
        projector.communicate(timeout=60)
    assert projector.returncode == 0


# ---- 8. an open server says so ------------------------------------------------------------------


def _start_server(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
    return subprocess.Popen(
        [sys.executable, "-m", "outreach", "server", "--port", "0", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _url_of(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    for line in process.stdout:
        if "listening on " in line:
            return line.split("listening on ")[1].split(",")[0]
    raise AssertionError("the server did not say where it listens")


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        except OSError:
            continue  # it ended meanwhile
        if fields.get("PPid", "").strip() == str(pid):
            found.append(int(status.parent.name))
    return found


def test_a_server_stopped_while_it_starts_leaves_no_nats_server_behind(tmp_path: Path) -> None:
    """SIGTERM as soon as nats-server is launched, before the server has said where it listens."""
    server = _start_server(["--data-dir", "data"], tmp_path)
    children: list[int] = []

    def launched() -> bool:
        children[:] = _children(server.pid)
        return bool(children)

    try:
        wait_until(launched, 30, "nats-server launched")
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)
    assert all(not Path(f"/proc/{pid}").exists() for pid in children), "nats-server outlived its `outreach server`"


async def test_an_open_server_warns_and_auth_closes_it_in_one_step(tmp_path: Path) -> None:
    open_server = _start_server(["--data-dir", "open"], tmp_path)
    try:
        _url_of(open_server)
    finally:
        open_server.send_signal(signal.SIGTERM)
        _, err = open_server.communicate(timeout=30)
    assert err.startswith("warning: this server is open: it accepts anonymous clients")
    assert "outreach server --auth ./auth --agency <agency-slug>" in err

    closed_server = _start_server(["--data-dir", "closed", "--auth", "auth", "--agency", "al-a"], tmp_path)
    try:
        url = _url_of(closed_server)
        with pytest.raises(BrokerError) as anonymous:
            await connect(Settings(nats_url=url), "anonymous")
        assert "authorization violation" in str(anonymous.value).lower()
        v = values(tmp_path / "auth", "al-a")
        agency = await connect(
            Settings(
                nats_url=url,
                nats_user=v["OUTREACH_NATS_USER"],
                nats_password=v["OUTREACH_NATS_PASSWORD"],
                nats_inbox_prefix=v["OUTREACH_NATS_INBOX_PREFIX"],
            ),
            "al-a",
        )
        report = await Publisher(agency.jetstream()).publish([parse_event(session("al-a"))])
        assert (report.stored, report.failed) == (1, [])  # the stream was created, as admin, at start
        await agency.close()
    finally:
        closed_server.send_signal(signal.SIGTERM)
        _, err = closed_server.communicate(timeout=30)
    assert "warning" not in err
