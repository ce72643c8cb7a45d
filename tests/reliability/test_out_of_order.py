"""Out-of-order arrival: each agency publishes its actions newest first, so older dates arrive after
newer ones, and its corrections and retractions last, interleaved with the other agencies'
traffic. Totals by county and by month end exact."""

from __future__ import annotations

import itertools
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from outreach.synthetic import generate
from projections.query import run_query
from runtime.server import EmbeddedServer
from tests import oracle
from tests.reliability.harness import (
    Processes,
    assert_exact,
    by_agency_group,
    create_stream,
    outreach_env,
    published,
    wait_for_projection,
)

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

EVENTS = 20_000
PUBLISHERS = 4
LATER = ("event_corrected", "event_retracted")


def newest_first(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Actions by the date they happened, newest first; corrections and retractions after them,
    in the order they were made (a fact's second correction after its first)."""
    actions = [e for e in events if e["event_type"] not in LATER]
    actions.sort(key=lambda e: e.get("occurred") or "9999", reverse=True)
    return actions + [e for e in events if e["event_type"] in LATER]


def test_older_dates_and_corrections_arriving_late_end_exact(tmp_path: Path, processes: Processes) -> None:
    events = [s.event for s in generate(EVENTS, seed=77)]
    server = processes.server(EmbeddedServer(tmp_path / "nats", port=0))
    create_stream(server.url)
    db = tmp_path / "projection.duckdb"
    env = outreach_env(server.url, db, snapshot_interval_s="0.2", batch_size="700")
    projector = processes.outreach(["project"], env)
    files = [newest_first(group) for group in by_agency_group(events, PUBLISHERS)]
    publishers = processes.publish_files(tmp_path, files, env)
    for p in publishers:
        p.finish(180)
    assert sum(published(p)[0] for p in publishers) == EVENTS
    wait_for_projection(projector, db, EVENTS, 180)
    assert projector.stop() == 0, projector.stderr[-2000:]

    # Older actions did arrive after newer ones, and corrections after other agencies' events.
    log = run_query(db, "SELECT agency, event_type, occurred_start FROM event_log ORDER BY stream_seq").rows
    dates = [d for _, kind, d in log if d is not None and kind not in LATER]
    assert sum(later < earlier for earlier, later in itertools.pairwise(dates)) > EVENTS // 3
    kinds = [(agency, kind in LATER) for agency, kind, _ in log]
    interleaved = sum(late and not next_late and a != b for (a, late), (b, next_late) in itertools.pairwise(kinds))
    assert interleaved > 0

    in_stream_order = [e for f in files for e in f]  # each agency's order is kept; agencies do not mix
    assert_exact(db, in_stream_order)
    by_month = run_query(
        db,
        "SELECT month, county, events, sessions, participants, materials_distributed, teams_established "
        "FROM totals_by_month",
    ).rows
    got = {(m.isoformat(), county): tuple(rest) for m, county, *rest in by_month if isinstance(m, date)}
    assert len(got) == len(by_month)
    assert got == oracle.totals_by_month(in_stream_order)
