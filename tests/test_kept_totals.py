"""The totals the projector keeps in each batch's transaction (``totals_cells``, projections/totals.py)
are at every checkpoint exactly what the actions in force add up to (``totals_cells_as_of(NULL)``),
through corrections, retractions and links, in batches of any size, in a real DuckDB file; the
totals views read from them give the rows their ``_as_of(NULL)`` macros compute from every action."""

from __future__ import annotations

import itertools
import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.delivery import StreamMessage
from consumers.projector import Projector
from outreach.synthetic import generate
from projections.store import ProjectionStore
from schemas.errors import ProjectionError

STORED = datetime(2026, 1, 1, tzinfo=UTC)
KEPT_VIEWS = ("totals_by_county", "totals_by_campaign", "totals_by_plan_task", "totals_by_campaign_county")


def differences(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Rows in one and not the other, both ways: the kept cells against the cells computed from the
    actions, and each view read from them against its ``_as_of(NULL)``."""
    counting = "SELECT * FROM totals_cells WHERE events > 0 OR list_max(starts) > 0 OR list_max(lasts) > 0"
    pairs = {"totals_cells": (counting, "SELECT * FROM totals_cells_as_of(NULL)")}
    pairs |= {view: (f"SELECT * FROM {view}", f"SELECT * FROM {view}_as_of(NULL)") for view in KEPT_VIEWS}
    found = {}
    for name, (kept, computed) in pairs.items():
        one = con.execute(f"SELECT count(*) FROM ({kept} EXCEPT ALL {computed})").fetchone()
        other = con.execute(f"SELECT count(*) FROM ({computed} EXCEPT ALL {kept})").fetchone()
        assert one is not None and other is not None
        found[name] = one[0] + other[0]
    return found


NONE = {name: 0 for name in ("totals_cells", *KEPT_VIEWS)}


class Stream:
    """Events applied as the stream would deliver them, a batch per ``apply``."""

    def __init__(self, db: Path) -> None:
        self.store = ProjectionStore(db)
        self.projector = Projector(self.store, "OUTREACH", STORED)
        self.seq = 0

    def apply(self, payloads: list[tuple[str, bytes]]) -> None:
        msgs = []
        for subject, data in payloads:
            self.seq += 1
            msgs.append(StreamMessage(self.seq, subject, data, STORED + timedelta(seconds=self.seq)))
        self.projector.apply(msgs)

    def events(self, *events: dict[str, Any]) -> None:
        self.apply([(subject_of(e), json.dumps(e).encode()) for e in events])

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return self.store.con.execute(sql).fetchall()


def subject_of(e: dict[str, Any]) -> str:
    return f"outreach.events.{e['agency']}.{e['event_type']}.{e['event_id']}"


def event(agency: str, kind: str, rng: random.Random | None = None, **fields: Any) -> dict[str, Any]:
    event_id = uuid.UUID(int=rng.getrandbits(128), version=4) if rng is not None else uuid.uuid4()
    return {"event_id": str(event_id), "event_type": kind, "agency": agency,
            "recorded_at": "2025-01-01T00:00:00Z", **fields}  # fmt: skip


def session(agency: str, occurred: str, officials: int, campaign: str | None = "campaign-01") -> dict[str, Any]:
    return event(agency, "session_held", occurred=occurred, county="AL-06", format="workshop",
                 campaign_id=campaign, participants=[{"audience": "officials", "count": officials}])  # fmt: skip


def ref(e: dict[str, Any]) -> dict[str, str]:
    return {"agency": e["agency"], "event_id": e["event_id"]}


def with_links(seed: int, n: int) -> list[tuple[str, bytes]]:
    """A synthetic history (corrections and retractions of actions in every campaign, plan task,
    county and month) with links of an agency's own recent actions, some retracted later: links of
    actions retracted or linked already are refused, as they would be."""
    rng = random.Random(seed)
    out: list[tuple[str, bytes]] = []
    recent: dict[str, list[dict[str, Any]]] = {}
    links: list[dict[str, Any]] = []
    for item in generate(n, seed=seed):
        out.append((item.subject, item.payload))
        e = item.event
        if e["event_type"] in ("session_held", "materials_distributed", "team_established"):
            recent.setdefault(e["agency"], []).append(e)
        mine = recent.get(e["agency"], [])[-6:]
        if len(mine) >= 2 and rng.random() < 0.08:
            members = rng.sample(mine, rng.randint(2, min(3, len(mine))))
            link = event(e["agency"], "actions_linked", rng, actions=[ref(m) for m in members],
                         counts=ref(rng.choice(members)), reason="the same")  # fmt: skip
            links.append(link)
            out.append((subject_of(link), json.dumps(link).encode()))
        if links and rng.random() < 0.03:
            undone = links.pop(rng.randrange(len(links)))
            retraction = event(
                undone["agency"], "event_retracted", rng, retracts=undone["event_id"], reason="not the same"
            )
            out.append((subject_of(retraction), json.dumps(retraction).encode()))
    return out


@settings(max_examples=10, deadline=None)
@given(
    seed=st.integers(0, 10_000), n=st.integers(50, 800), batches=st.lists(st.integers(1, 300), min_size=1, max_size=8)
)
def test_the_kept_totals_are_what_the_actions_in_force_add_up_to_after_every_batch(
    tmp_path_factory: Any, seed: int, n: int, batches: list[int]
) -> None:
    history = with_links(seed, n)
    stream = Stream(tmp_path_factory.mktemp("kept") / "p.duckdb")
    try:
        sizes = iter(batches * (len(history) // sum(batches) + 1))
        checked = set(itertools.accumulate(batches[:8]))  # the first batches, and the last
        start = 0
        while start < len(history):
            size = next(sizes)
            stream.apply(history[start : start + size])
            start += size
            if start in checked or start >= len(history):
                assert differences(stream.store.con) == NONE
        assert stream.projector.last_seq == len(history)
        linked = stream.rows("SELECT count(*) FROM linked_away_as_of(NULL)")[0][0]
        assert sorted(stream.store.totals.linked_away.elements()) == sorted(
            (r[0], r[1]) for r in stream.rows("SELECT agency, fact_id FROM linked_away_as_of(NULL)")
        )
        assert len(list(stream.store.totals.linked_away.elements())) == linked
    finally:
        stream.store.close()


def campaign_row(stream: Stream) -> tuple[Any, ...]:
    return stream.rows(
        "SELECT events, participants, first_activity, last_activity, counties_reached FROM totals_by_campaign "
        "WHERE campaign_id = 'campaign-01'"
    )[0]


def test_first_and_last_day_follow_corrections_retractions_and_links(tmp_path: Path) -> None:
    stream = Stream(tmp_path / "p.duckdb")
    try:
        a = session("al-a", "2017-03-31/2017-04-02", 10)  # ends in the next month
        b = session("al-a", "2017-03-15", 20)
        c = session("al-a", "2017-06-01", 40)
        stream.events(a, b, c)
        assert campaign_row(stream) == (3, 70, datetime(2017, 3, 15).date(), datetime(2017, 6, 1).date(), 1)
        assert stream.rows("SELECT month, events, first_activity, last_activity FROM totals_cells ORDER BY month") == [
            (datetime(2017, 3, 1).date(), 2, datetime(2017, 3, 15).date(), datetime(2017, 3, 15).date()),
            (datetime(2017, 4, 1).date(), 0, None, datetime(2017, 4, 2).date()),  # a's last day only
            (datetime(2017, 6, 1).date(), 1, datetime(2017, 6, 1).date(), datetime(2017, 6, 1).date()),
        ]
        stream.events(event("al-a", "event_retracted", retracts=b["event_id"], reason="reported twice"))
        assert campaign_row(stream) == (2, 50, datetime(2017, 3, 31).date(), datetime(2017, 6, 1).date(), 1)
        moved = {**c, "occurred": "2017-02-01", "participants": [{"audience": "officials", "count": 45}]}
        stream.events(event("al-a", "event_corrected", corrects=c["event_id"], replacement=moved, reason="date"))
        assert campaign_row(stream) == (2, 55, datetime(2017, 2, 1).date(), datetime(2017, 4, 2).date(), 1)
        link = event("al-a", "actions_linked", actions=[ref(a), ref(c)], counts=ref(c), reason="the same")
        stream.events(link)  # a is linked away: only c counts
        assert campaign_row(stream) == (1, 45, datetime(2017, 2, 1).date(), datetime(2017, 2, 1).date(), 1)
        stream.events(event("al-a", "event_retracted", retracts=link["event_id"], reason="not the same"))
        assert campaign_row(stream) == (2, 55, datetime(2017, 2, 1).date(), datetime(2017, 4, 2).date(), 1)
        # February (c), March (a), April (a's last day); June counted c before its correction: nothing now.
        assert stream.rows("SELECT month, events, list_sum(starts), list_sum(lasts) FROM totals_cells ORDER BY 1") == [
            (datetime(2017, 2, 1).date(), 1, 1, 1),
            (datetime(2017, 3, 1).date(), 1, 1, 0),
            (datetime(2017, 4, 1).date(), 0, 0, 1),
            (datetime(2017, 6, 1).date(), 0, 0, 0),
        ]
        assert differences(stream.store.con) == NONE
    finally:
        stream.store.close()


def test_a_file_made_before_the_totals_were_kept_gets_them_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "p.duckdb"
    stream = Stream(path)
    stream.apply([(item.subject, item.payload) for item in generate(600, seed=5)])
    before = stream.rows("SELECT * FROM totals_by_campaign")
    stream.store.close()
    with duckdb.connect(str(path)) as con:  # as a file an earlier version made: no totals_cells
        con.execute("DROP VIEW totals_by_county; DROP VIEW totals_by_campaign; DROP VIEW totals_by_plan_task")
        con.execute("DROP VIEW totals_by_campaign_county; DROP TABLE totals_cells")
    reopened = ProjectionStore(path)
    try:
        assert reopened.con.execute("SELECT * FROM totals_by_campaign").fetchall() == before
        assert reopened.con.execute("SELECT sum(events) FROM totals_cells WHERE scope = 'campaign'").fetchone() == (
            reopened.con.execute("SELECT count(*) FROM actions").fetchone()
        )
        assert differences(reopened.con) == NONE
    finally:
        reopened.close()


def test_a_batch_that_would_take_the_kept_totals_below_zero_is_refused_whole_and_says_so(tmp_path: Path) -> None:
    stream = Stream(tmp_path / "p.duckdb")
    try:
        a = session("al-a", "2017-03-15", 20)
        stream.events(a)
        # The kept totals no longer match the actions: taking a back would leave -1 actions.
        stream.store.con.execute("UPDATE totals_cells SET events = 0")
        with pytest.raises(ProjectionError) as refused:
            stream.events(event("al-a", "event_retracted", retracts=a["event_id"], reason="reported twice"))
        assert "the kept totals of campaign campaign-01, AL-06, 2017-03-01 would go below zero" in str(refused.value)
        assert "was refused; nothing of it was kept" in str(refused.value)
        assert "Replay the stream into a new file (`outreach replay --db NEW`)" in str(refused.value)
        assert stream.rows("SELECT last_seq FROM checkpoint") == [(1,)]
        assert stream.rows("SELECT count(*) FROM event_log") == [(1,)]
        assert stream.rows("SELECT events FROM totals_cells") == [(0,)]
    finally:
        stream.store.close()


def test_a_superseded_version_is_updated_where_it_is_not_deleted_and_written_again(tmp_path: Path) -> None:
    """DuckDB carries out an UPDATE that returns rows as a delete and an insert: the writer's does
    not return any, so a corrected version keeps its row (its rowid), and nothing is written again."""
    stream = Stream(tmp_path / "p.duckdb")
    try:
        a, b = session("al-a", "2017-03-15", 20), session("al-a", "2017-03-16", 30)
        stream.events(a, b)
        assert stream.rows("SELECT rowid, superseded_seq FROM fact_versions ORDER BY rowid") == [(0, None), (1, None)]
        moved = {**a, "participants": [{"audience": "officials", "count": 25}]}
        stream.events(event("al-a", "event_corrected", corrects=a["event_id"], replacement=moved, reason="count"))
        assert stream.rows("SELECT rowid, superseded_seq FROM fact_versions ORDER BY rowid") == [
            (0, 3),
            (1, None),
            (2, None),
        ]
        assert campaign_row(stream)[:2] == (2, 55)
    finally:
        stream.store.close()
