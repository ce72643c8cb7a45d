"""Coordinators against a real nats-server running the configuration `outreach auth` writes: the same
Korçë session reported by two agencies is found and counted once, a submission stays reproducible,
and a change after it shows. Who may submit and link is refused by the broker and by the projector."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nats.errors import TimeoutError as NatsTimeoutError

from consumers.replay import replay
from outreach import auth
from producers.publisher import Publisher
from projections.query import run_query
from runtime.server import EmbeddedServer
from schemas.parse import parse_event
from tests.oracle import totals_by_county
from tests.test_trust_boundary import (
    _create_stream,
    as_user,
    creds,
    env_of,
    live_projector,
    outreach,
    project,
    publish_raw,
    rejected,
    stream_messages,
    subject,
)

pytestmark = pytest.mark.integration

IOM, COMMITTEE, COORDINATOR, POLAND = "al-iom", "al-korce-committee", "al-national-coordinator", "pl-coordinator"


@pytest.fixture
def coordinated(tmp_path: Path) -> Iterator[tuple[EmbeddedServer, Path]]:
    """Three Albanian agencies, of which the national coordinator's office coordinates AL, and a
    Polish coordinator; the server runs the configuration written with both coordinators."""
    directory = tmp_path / "auth"
    auth.init(directory, [IOM, COMMITTEE, COORDINATOR, POLAND])
    auth.add_agency(directory, COORDINATOR, ("AL",))
    config = auth.add_agency(directory, POLAND, ("PL",))
    with EmbeddedServer(tmp_path / "nats", port=0, config_file=config) as server:
        asyncio.run(_create_stream(directory, server))
        yield server, directory


def korce_session(agency: str, officials: int, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "session_held",
        "agency": agency,
        "recorded_at": "2017-03-02T09:00:00Z",
        "occurred": "2017-03-01",
        "county": "AL-06",
        "venue": "Prefektura e Korçës",
        "format": "information_meeting",
        "participants": [{"audience": "officials", "count": officials}],
        **fields,
    }


def link(agency: str, actions: list[dict[str, Any]], counts: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "actions_linked",
        "agency": agency,
        "recorded_at": "2017-03-10T09:00:00Z",
        "actions": [{"agency": a["agency"], "event_id": a["event_id"]} for a in actions],
        "counts": {"agency": counts["agency"], "event_id": counts["event_id"]},
        "reason": "one meeting, organised by the committee with IOM",
    }


def submission(agency: str, country: str, as_of_seq: int) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "report_submitted",
        "agency": agency,
        "recorded_at": "2018-03-01T09:00:00Z",
        "country": country,
        "period_start": "2017-01-01",
        "period_end": "2017-12-31",
        "title": "Annual report 2017",
        "as_of_seq": as_of_seq,
        "figures_sha256": "0" * 64,
    }


async def publish(directory: Path, server: EmbeddedServer, user: str, *events: dict[str, Any]) -> Any:
    nc = await as_user(directory, user, server)
    try:
        return await Publisher(nc.jetstream(), ack_timeout=2.0, retries=0).publish([parse_event(e) for e in events])
    finally:
        await nc.close()


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    return run_query(db, sql).rows


async def test_a_session_reported_twice_is_counted_once_and_a_submission_stays_reproducible(
    coordinated: tuple[EmbeddedServer, Path], tmp_path: Path
) -> None:
    server, directory = coordinated
    # The admin's appointment goes into the log with the command that made the coordinator.
    done = outreach(
        "auth",
        "add-agency",
        COORDINATOR,
        "--dir",
        str(directory),
        "--coordinates",
        "AL",
        "--nats",
        server.url,
        env=env_of(directory, "admin", server),
    )
    assert done.returncode == 0, done.stderr
    assert "appointment of al-national-coordinator as a coordinator of AL: published" in done.stdout
    done = outreach(
        "auth", "add-agency", COORDINATOR, "--dir", str(directory), "--coordinates", "AL", "--nats", server.url,
        env=env_of(directory, "admin", server),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "appointment of al-national-coordinator as a coordinator of AL: already in the log" in done.stdout

    committee = korce_session(COMMITTEE, 30)
    iom = korce_session(IOM, 28, municipality="Korçë")
    other = korce_session(IOM, 12, occurred="2017-05-04", county="AL-05", venue="Gjirokastër")
    published = [committee, iom, other]
    db = tmp_path / "p.duckdb"
    with running_projector(directory, server, db):
        assert publish_file(tmp_path, directory, server, COMMITTEE, committee).returncode == 0
        assert publish_file(tmp_path, directory, server, IOM, iom, other).returncode == 0
        # Each agency involved sees the pair in its status.
        for agency in (IOM, COMMITTEE):
            done = outreach("status", env=env_of(directory, agency, server))
            assert done.returncode == 0, done.stderr
            assert done.stderr.splitlines()[-1] == (
                f"possible double report: {IOM}/{iom['event_id']} and {COMMITTEE}/{committee['event_id']} "
                f"(score 85): same county AL-06; both session_held information_meeting; same day 2017-03-01; "
                f"same venue"
            )

    pairs = rows(db, "SELECT action_a, action_b, score, reason FROM possible_duplicates")
    assert pairs == [
        (
            f"{IOM}/{iom['event_id']}",
            f"{COMMITTEE}/{committee['event_id']}",
            85,
            "same county AL-06; both session_held information_meeting; same day 2017-03-01; same venue",
        )
    ]
    assert rows(db, "SELECT county, events, participants FROM totals_by_county WHERE county = 'AL-06'") == [
        ("AL-06", 2, 58)
    ]

    # The coordinator links them: the committee's counts, IOM's drops out of every total.
    linked = link(COORDINATOR, [committee, iom], committee)
    assert (await publish(directory, server, COORDINATOR, linked)).stored == 1
    published.append(linked)
    await project(directory, server, db)
    oracle = totals_by_county(published)
    assert oracle["AL-06"] == (1, 1, 30, 0, 0)
    assert rows(
        db,
        "SELECT county, events, sessions, participants, materials_distributed, teams_established "
        "FROM totals_by_county ORDER BY county",
    ) == [(county, *figures) for county, figures in sorted(oracle.items())]
    assert rows(db, "SELECT count(*) FROM possible_duplicates") == [(0,)]
    history = rows(
        db,
        f"SELECT event_type, agency, reason FROM event_history "
        f"WHERE fact_id = '{IOM}/{iom['event_id']}' ORDER BY stream_seq",
    )
    assert history == [("session_held", IOM, None), ("actions_linked", COORDINATOR, linked["reason"])]

    # The coordinator submits 2017.
    env = env_of(directory, COORDINATOR, server, OUTREACH_DB=str(db))
    done = outreach("submit", "--country", "AL", "--period", "2017", "--title", "Annual report 2017", env=env)
    assert done.returncode == 0, done.stderr
    submission_id = done.stdout.split("submitted: submission ")[1].split()[0]
    digest = done.stdout.split("figures_sha256 ")[1].split()[0]
    await project(directory, server, db)
    assert rows(
        db, "SELECT CAST(submission_id AS VARCHAR), submitted_by, as_of_seq, figures_sha256 FROM submissions"
    ) == [(submission_id, COORDINATOR, 5, digest)]

    # A correction after it: the committee recounts, 35 officials.
    fix = {
        "event_id": str(uuid.uuid4()),
        "event_type": "event_corrected",
        "agency": COMMITTEE,
        "recorded_at": "2018-04-01T09:00:00Z",
        "corrects": committee["event_id"],
        "replacement": {**committee, "participants": [{"audience": "officials", "count": 35}]},
        "reason": "recount of the attendance list",
    }
    with running_projector(directory, server, db):
        done = publish_file(tmp_path, directory, server, COMMITTEE, fix)
    assert done.returncode == 0, done.stderr
    # The committee's receipt says what its correction changed; accepted all the same.
    (receipt,) = [line for line in done.stdout.splitlines() if fix["event_id"] in line]
    assert receipt.split()[:3] == ["7", "accepted", "event_corrected"]
    assert receipt.endswith(f"changes the AL 2017 figures submitted on {receipt_day(db)}")
    published.append(fix)
    assert totals_by_county(published)["AL-06"] == (1, 1, 35, 0, 0)
    changes = (
        "SELECT dimension, key, measure, submitted, current, agencies, [e.event_id FOR e IN events] "
        "FROM changes_since_submission ORDER BY dimension, key, measure"
    )
    expected = [
        # one figure, participants, under each total the session is summed in (its campaign: with the 12 of AL-05)
        ("campaign", "(no campaign)", "participants", 42, 47, [COMMITTEE], [uuid.UUID(fix["event_id"])]),
        ("county", "AL-06", "participants", 30, 35, [COMMITTEE], [uuid.UUID(fix["event_id"])]),
    ]
    assert rows(db, changes) == expected

    # The report shows the figures as submitted; verify recomputes the digest from the log.
    page = tmp_path / "submission.html"
    done = outreach(
        "report",
        "--submission",
        submission_id,
        "--out",
        str(page),
        env=env_of(directory, "analyst", server, OUTREACH_DB=str(db)),
    )
    assert done.returncode == 0, done.stderr
    html = page.read_text()
    assert "<tr><td>county</td><td>AL-06</td><td>1</td><td>1</td><td>30</td>" in html
    assert f"<code>{digest}</code>; the figures below, recomputed from the log, have this digest" in html
    assert "<td>participants counted</td><td>30</td><td>35</td><td>+5</td>" in html
    done = outreach("verify", "--submission", submission_id, env=env_of(directory, "auditor", server))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"have the digest submitted, {digest}" in done.stdout

    # A replay of the log reaches the same.
    again = tmp_path / "replayed.duckdb"
    await replay(creds(directory, "auditor", server), again)
    assert rows(again, changes) == expected
    totals = "SELECT * FROM totals_by_county ORDER BY county"
    assert rows(again, totals) == rows(db, totals)
    assert rejected(again) == rejected(db) == []


@contextlib.contextmanager
def running_projector(directory: Path, server: EmbeddedServer, db: Path) -> Iterator[None]:
    projector = live_projector(directory, server, db)
    try:
        yield
    finally:
        projector.terminate()
        projector.communicate(timeout=60)


def publish_file(
    tmp_path: Path, directory: Path, server: EmbeddedServer, agency: str, *events: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    """`outreach publish --wait` as the agency: its receipts on stdout."""
    path = tmp_path / f"{agency}-{uuid.uuid4()}.jsonl"
    path.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events), "utf-8")
    return outreach("publish", "--wait", "60", str(path), env=env_of(directory, agency, server))


def receipt_day(db: Path) -> str:
    return str(rows(db, "SELECT CAST(submitted_at AS DATE) FROM submissions")[0][0])


async def test_submissions_and_links_of_others_are_refused_by_the_broker_and_the_projector(
    coordinated: tuple[EmbeddedServer, Path], tmp_path: Path
) -> None:
    server, directory = coordinated
    (appoint,) = auth.appointments(directory, COORDINATOR)
    assert (await publish(directory, server, "admin", appoint)).stored == 1
    committee, iom = korce_session(COMMITTEE, 30), korce_session(IOM, 28)
    await publish(directory, server, COMMITTEE, committee)
    await publish(directory, server, IOM, iom)
    before = await stream_messages(directory, server)
    assert before == 3

    # The broker: an agency that coordinates nothing may not publish a submission, nor anyone an appointment.
    report = await publish(directory, server, IOM, submission(IOM, "AL", 3))
    assert (report.stored, len(report.failed)) == (0, 1)
    nc = await as_user(directory, COMMITTEE, server)
    try:
        appointing = {**auth.appointment(COMMITTEE, "AL"), "agency": COMMITTEE}
        with pytest.raises((NatsTimeoutError, TimeoutError)):  # no permission: never acknowledged
            await asyncio.wait_for(publish_raw(nc, appointing, subject(appointing)), 3)
    finally:
        await nc.close()
    assert await stream_messages(directory, server) == before

    # The projector: what the broker cannot see. Poland's coordinator submits Albania's figures;
    # the committee links IOM's action out of the totals; the coordinator links an action that
    # does not exist; and links one already linked.
    steps = [
        (POLAND, submission(POLAND, "AL", 3)),
        (COMMITTEE, link(COMMITTEE, [committee, iom], committee)),
        (COORDINATOR, link(COORDINATOR, [committee, {**iom, "event_id": str(uuid.uuid4())}], committee)),
        (COMMITTEE, link(COMMITTEE, [committee, iom], iom)),  # its own out, IOM's counts: allowed
        (COORDINATOR, link(COORDINATOR, [committee, iom], committee)),  # already linked
    ]
    for user, event in steps:
        assert (await publish(directory, server, user, event)).stored == 1
    db = tmp_path / "p.duckdb"
    await project(directory, server, db)
    assert rejected(db) == [
        (
            4,
            "agency 'pl-coordinator' is not a coordinator of AL: only an agency the admin appointed "
            "(coordinator_appointed; `outreach auth add-agency NAME --coordinates AL`) submits its figures",
        ),
        (
            5,
            f"links al-iom's action {iom['event_id']} out of the totals: only a coordinator of AL links other "
            "agencies' actions; an agency links its own action to another's, naming the other's as the one that counts",
        ),
        (
            6,
            f"unknown action: {IOM}/{steps[2][1]['actions'][1]['event_id']} is not in the log; link only actions "
            "that were published",
        ),
        (
            8,
            f"{COMMITTEE}/{committee['event_id']} is already linked, by {COMMITTEE}'s actions_linked "
            f"{steps[3][1]['event_id']}; retract that link first to link it otherwise",
        ),
    ]
    assert rows(db, "SELECT county, events, participants FROM totals_by_county") == [("AL-06", 1, 28)]
    assert rows(db, "SELECT agency, country FROM coordinators") == [(COORDINATOR, "AL")]
