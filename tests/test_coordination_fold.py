"""The coordination rules as the projector folds them, batch by batch into a real DuckDB file: links
undone by a retraction, appointments that end, and the links the projector refuses."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from consumers.delivery import StreamMessage
from consumers.projector import Projector
from projections.store import ProjectionStore
from tests.oracle import totals_by_county

STORED = datetime(2026, 1, 1, tzinfo=UTC)


class Log:
    """Events folded as a stream would deliver them, one batch per ``fold`` call."""

    def __init__(self, db: Path) -> None:
        self.store = ProjectionStore(db)
        self.projector = Projector(self.store, "OUTREACH", STORED)
        self.seq = 0
        self.events: list[dict[str, Any]] = []

    def fold(self, *events: dict[str, Any]) -> None:
        msgs = []
        for e in events:
            self.seq += 1
            subject = f"outreach.events.{e['agency']}.{e['event_type']}.{e['event_id']}"
            msgs.append(StreamMessage(self.seq, subject, json.dumps(e).encode(), STORED + timedelta(seconds=self.seq)))
            self.events.append(e)
        self.projector.apply(msgs)

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return self.store.con.execute(sql).fetchall()

    def rejected(self) -> list[tuple[int, str]]:
        return self.rows("SELECT stream_seq, reason FROM rejected_events ORDER BY 1")


@pytest.fixture
def log(tmp_path: Path) -> Iterator[Log]:
    folded = Log(tmp_path / "p.duckdb")
    try:
        yield folded
    finally:
        folded.store.close()


def event(agency: str, kind: str, **fields: Any) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "event_type": kind, "agency": agency,
            "recorded_at": "2025-01-01T00:00:00Z", **fields}  # fmt: skip


def session(agency: str, officials: int, county: str = "AL-06") -> dict[str, Any]:
    return event(agency, "session_held", occurred="2017-03-01", county=county, format="workshop",
                 participants=[{"audience": "officials", "count": officials}])  # fmt: skip


def ref(e: dict[str, Any]) -> dict[str, str]:
    return {"agency": e["agency"], "event_id": e["event_id"]}


def link(agency: str, actions: list[dict[str, Any]], counts: dict[str, Any]) -> dict[str, Any]:
    return event(agency, "actions_linked", actions=[ref(a) for a in actions], counts=ref(counts), reason="the same")


def retraction(of: dict[str, Any]) -> dict[str, Any]:
    return event(of["agency"], "event_retracted", retracts=of["event_id"], reason="not the same after all")


def appointment(agency: str, country: str) -> dict[str, Any]:
    return event("admin", "coordinator_appointed", coordinator=agency, country=country)


def counties(log: Log) -> list[tuple[Any, ...]]:
    return log.rows("SELECT county, events, participants FROM totals_by_county ORDER BY county")


def oracle(log: Log) -> list[tuple[Any, ...]]:
    return [(county, t[0], t[2]) for county, t in sorted(totals_by_county(log.events).items())]


def test_a_link_retracted_counts_both_again_and_the_history_shows_both(log: Log) -> None:
    a, b = session("al-a", 30), session("al-b", 28)
    own = link("al-b", [a, b], a)  # B links its own action to A's: B's drops out
    log.fold(a, b)
    log.fold(own)
    assert counties(log) == oracle(log) == [("AL-06", 1, 30)]
    log.fold(retraction(own))
    assert counties(log) == [("AL-06", 2, 58)]
    history = log.rows(
        f"SELECT stream_seq, event_type, agency FROM event_history WHERE fact_id = 'al-b/{b['event_id']}'"
    )
    assert history == [(2, "session_held", "al-b"), (3, "actions_linked", "al-b"), (4, "event_retracted", "al-b")]
    assert log.rows("SELECT count(*) FROM action_links") == [(0,)]
    assert log.rejected() == []


def test_links_the_projector_refuses(log: Log) -> None:
    a, b, c = session("al-a", 30), session("al-b", 28), session("al-c", 5, county="PL-02")
    gone = session("al-b", 7)
    log.fold(appointment("al-nc", "AL"), a, b, c, gone, retraction(gone))
    log.fold(
        link("al-nc", [a, c], a),  # two countries
        link("al-nc", [a, gone], a),  # a retracted action
        link("al-b", [a, b], b),  # A's action out, by B, no coordinator
        link("al-nc", [a, b], b),  # the coordinator may
        link("al-b", [b, a], a),  # B's already linked
    )
    assert log.rejected() == [
        (7, "the actions are in more than one country (AL, PL); link actions of one country"),
        (8, f"al-b/{gone['event_id']} was retracted; a retracted action counts nowhere and needs no link"),
        (
            9,
            f"links al-a's action {a['event_id']} out of the totals: only a coordinator of AL links other agencies' "
            "actions; an agency links its own action to another's, naming the other's as the one that counts",
        ),
        (
            11,
            f"al-b/{b['event_id']} is already linked, by al-nc's actions_linked {log.events[9]['event_id']}; "
            "retract that link first to link it otherwise",
        ),
    ]
    assert counties(log) == [("AL-06", 1, 28), ("PL-02", 1, 5)]


def test_an_appointment_retracted_ends_the_right_to_submit(log: Log) -> None:
    appointed = appointment("al-nc", "AL")
    submitted = event("al-nc", "report_submitted", country="AL", period_start="2017-01-01", period_end="2017-12-31",
                      title="2017", as_of_seq=1, figures_sha256="0" * 64)  # fmt: skip
    log.fold(appointed, session("al-a", 3))
    log.fold(submitted, retraction(appointed))
    log.fold({**submitted, "event_id": str(uuid.uuid4())})
    assert log.rejected() == [
        (
            5,
            "agency 'al-nc' is not a coordinator of AL: only an agency the admin appointed (coordinator_appointed; "
            "`outreach auth add-agency NAME --coordinates AL`) submits its figures",
        )
    ]
    assert log.rows("SELECT count(*) FROM submissions") == [(1,)]
    assert log.rows("SELECT count(*) FROM coordinators") == [(0,)]
