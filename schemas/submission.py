"""The digest of a submission's figures, computed the same way by anyone who recomputes them.

A submission (``report_submitted``) names a scope (country, period, plan) and the stream sequence
its figures are as of. Its figures are the totals of the actions in that scope, by county, by
campaign and by plan task, one row each: ``(dimension, key, events, sessions, participants,
sessions_participants_unknown, sessions_participants_estimated, materials_distributed,
materials_unknown, teams_established, first_activity, last_activity)``. The digest is the sha256
of this canonical JSON, in UTF-8::

    {"as_of_seq":N,"country":"PL","figures":[[row],…],"period_end":"…","period_start":"…","plan_id":null}

rows sorted by dimension then key, dates as ``YYYY-MM-DD``, keys sorted, no spaces, ASCII only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

FIGURE_COLUMNS = (
    "dimension",
    "key",
    "events",
    "sessions",
    "participants",
    "sessions_participants_unknown",
    "sessions_participants_estimated",
    "materials_distributed",
    "materials_unknown",
    "teams_established",
    "first_activity",
    "last_activity",
)
# The figures a change is reported on (the dates are part of the digest, not of the changes).
MEASURES = FIGURE_COLUMNS[2:10]


def _plain(value: Any) -> Any:
    if isinstance(value, date):
        return value.isoformat()
    if value is None or isinstance(value, str):
        return value
    return int(value)


def canonical_figures(
    country: str,
    period_start: date,
    period_end: date,
    plan_id: str | None,
    as_of_seq: int,
    figures: Iterable[Sequence[Any]],
) -> bytes:
    """The canonical JSON of a submission's scope and figures (rows in ``FIGURE_COLUMNS`` order)."""
    rows = sorted(([_plain(v) for v in row] for row in figures), key=lambda r: (r[0], r[1]))
    for row in rows:
        if len(row) != len(FIGURE_COLUMNS):
            raise ValueError(f"a figures row has {len(row)} values, not {len(FIGURE_COLUMNS)}")
    body = {
        "as_of_seq": int(as_of_seq),
        "country": country,
        "figures": rows,
        "period_end": period_end.isoformat(),
        "period_start": period_start.isoformat(),
        "plan_id": plan_id,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def figures_sha256(
    country: str,
    period_start: date,
    period_end: date,
    plan_id: str | None,
    as_of_seq: int,
    figures: Iterable[Sequence[Any]],
) -> str:
    """The sha256 (hex) of ``canonical_figures``: what ``report_submitted.figures_sha256`` states."""
    return hashlib.sha256(canonical_figures(country, period_start, period_end, plan_id, as_of_seq, figures)).hexdigest()
