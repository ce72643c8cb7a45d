"""Receipts for one agency, read from the projection: the fate of each of its stream messages.

A message's agency is the agency token of the subject it was published on (the broker lets only
that agency publish there), so a rejected message that no parser could read still has its owner.
"""

from __future__ import annotations

import duckdb
from pydantic import ValidationError

from schemas.receipts import Receipt, StatusReply, StatusRequest

SELECT_RECEIPTS = """
WITH fates AS (
    SELECT stream_seq, CAST(event_id AS VARCHAR) AS event_id, event_type, 'accepted' AS fate,
           NULL AS reason, stored_at
    FROM event_log WHERE agency = $agency
    UNION ALL
    SELECT d.stream_seq, CAST(d.event_id AS VARCHAR), NULL, 'duplicate', NULL, d.stored_at
    FROM ignored_duplicates d WHERE d.agency = $agency
    UNION ALL
    SELECT stream_seq, event_id, nullif(split_part(subject, '.', 4), ''), 'rejected', reason, stored_at
    FROM rejected_events
    WHERE starts_with(subject, 'outreach.events.') AND split_part(subject, '.', 3) = $agency
)
SELECT stream_seq, event_id, event_type, fate, reason, stored_at FROM fates
WHERE stream_seq > $after_seq
  AND ($since IS NULL OR stored_at >= $since)
  AND ($all_ids OR event_id IN (SELECT unnest($event_ids::VARCHAR[])))
ORDER BY stream_seq
LIMIT $limit
"""
SELECT_AS_OF = "SELECT max(last_seq) FROM checkpoint"


def agency_status(cursor: duckdb.DuckDBPyConnection, agency: str, request: bytes) -> StatusReply:
    """The receipts of ``agency`` that ``request`` (a JSON ``StatusRequest``) asks for."""
    try:
        wanted = StatusRequest.model_validate_json(request or b"{}")
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(request)'}: {e['msg']}" for e in exc.errors())
        return StatusReply(agency=agency, error=f"invalid status request: {problems[:500]}")
    as_of = cursor.execute(SELECT_AS_OF).fetchone()
    rows = cursor.execute(
        SELECT_RECEIPTS,
        {
            "agency": agency,
            "after_seq": wanted.after_seq,
            "since": wanted.since,
            "all_ids": wanted.event_ids is None,
            "event_ids": list(wanted.event_ids or ()),
            "limit": wanted.limit + 1,
        },
    ).fetchall()
    receipts = tuple(
        Receipt(stream_seq=r[0], event_id=r[1], event_type=r[2], fate=r[3], reason=r[4], stored_at=r[5])
        for r in rows[: wanted.limit]
    )
    return StatusReply(
        agency=agency,
        as_of_seq=int(as_of[0] or 0) if as_of else 0,
        receipts=receipts,
        more=len(rows) > wanted.limit,
    )
