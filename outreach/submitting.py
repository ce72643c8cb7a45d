"""A coordinator's submission: a country's figures for a period, read from the projection, with
their digest, and the ``report_submitted`` event that states them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from projections.query import open_read_only
from projections.submission import figures
from schemas.submission import figures_sha256


@dataclass(frozen=True)
class Figures:
    """A country's figures for a period, as of a stream sequence, and their digest."""

    country: str
    start: date
    end: date
    plan: str | None
    as_of_seq: int
    rows: list[tuple[Any, ...]]
    digest: str


def read_figures(source: Path, country: str, start: date, end: date, plan: str | None) -> Figures:
    """The figures as the projection at ``source`` holds them, as of its checkpoint."""
    con = open_read_only(source)
    try:
        row = con.execute("SELECT max(last_seq) FROM checkpoint").fetchone()
        as_of_seq = int(row[0] or 0) if row else 0
        rows = figures(con, country, start, end, plan, as_of_seq)
    finally:
        con.close()
    digest = figures_sha256(country, start, end, plan, as_of_seq, rows)
    return Figures(country, start, end, plan, as_of_seq, rows, digest)


def submission_event(agency: str, found: Figures, title: str, submitted_to: str | None) -> dict[str, Any]:
    """The ``report_submitted`` event stating ``found``, with a new event_id."""
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "report_submitted",
        "agency": agency,
        "recorded_at": datetime.now(UTC).isoformat(),
        "country": found.country,
        "period_start": found.start.isoformat(),
        "period_end": found.end.isoformat(),
        "plan_id": found.plan,
        "title": title,
        "submitted_to": submitted_to,
        "as_of_seq": found.as_of_seq,
        "figures_sha256": found.digest,
    }
