"""Receipts for one agency, read from the projection: the fate of each of its stream messages.

A message's agency is the agency token of the subject it was published on (the broker lets only
that agency publish there), so a rejected message that no parser could read still has its owner.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

import duckdb

from projections.submission import Submission
from schemas.receipts import MAX_RECEIPTS, InForce, PossibleDuplicate, Receipt, StatusReply, StatusRequest

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
# The submissions whose figures each of one page's events changed (changes_since_submission).
SELECT_CHANGED_SUBMISSIONS = """
WITH changed AS (SELECT submission_id, unnest(events) AS e FROM changes_since_submission)
SELECT DISTINCT c.e.stream_seq, s.*
FROM changed c
JOIN (SELECT submission_id, submitted_by, country, period_start, period_end, plan_id, title, submitted_to, as_of_seq,
             figures_sha256, stream_seq, submitted_at FROM submissions) s USING (submission_id)
WHERE c.e.stream_seq IN (SELECT unnest($seqs::UBIGINT[])) AND c.e.agency = $agency
ORDER BY 1, s.submitted_at
"""
HAS_SUBMISSIONS = "SELECT EXISTS (SELECT 1 FROM fact_versions WHERE event_type = 'report_submitted')"
log = logging.getLogger("outreach.projector")
# The receipts' extras (the submissions an event changed, the pairs an agency is in) are joins over
# every action: each is stopped inside DuckDB after this long, so that no log, however crafted,
# holds up the receipts of every agency (they are answered one at a time).
EXTRAS_SECONDS = 5.0
T = TypeVar("T")
SELECT_DUPLICATES = """
SELECT action_a, action_b, score, reason FROM possible_duplicates
WHERE agency_a = $agency OR agency_b = $agency
LIMIT $limit
"""
# The references of one page's accepted events, read for that page only (the range lets DuckDB skip
# the log's other row groups), not for every event of the agency.
SELECT_REFERENCES = """
SELECT stream_seq, payload->>'reference' FROM event_log
WHERE agency = $agency AND stream_seq BETWEEN $low AND $high
  AND stream_seq IN (SELECT unnest($seqs::UBIGINT[]))
  AND payload->>'reference' IS NOT NULL
"""
# The agency's originals with a reference that no retraction of its own withdrew.
SELECT_IN_FORCE = """
SELECT l.stream_seq, CAST(l.event_id AS VARCHAR), l.event_type, l.payload->>'reference'
FROM event_log l
WHERE l.agency = $agency AND l.refers_to IS NULL AND l.stream_seq > $after_seq
  AND l.payload->>'reference' IS NOT NULL
  AND NOT EXISTS (
      SELECT 1 FROM event_log r
      WHERE r.agency = $agency AND r.event_type = 'event_retracted' AND r.refers_to = l.event_id)
ORDER BY l.stream_seq
LIMIT $limit
"""


def agency_status(cursor: duckdb.DuckDBPyConnection, agency: str, wanted: StatusRequest) -> StatusReply:
    """The receipts of ``agency`` that ``wanted`` asks for."""
    as_of = cursor.execute(SELECT_AS_OF).fetchone()
    as_of_seq = int(as_of[0] or 0) if as_of else 0
    if wanted.in_force:
        found = cursor.execute(
            SELECT_IN_FORCE, {"agency": agency, "after_seq": wanted.after_seq, "limit": wanted.limit + 1}
        ).fetchall()
        return StatusReply(
            agency=agency,
            as_of_seq=as_of_seq,
            in_force=tuple(
                InForce(stream_seq=r[0], event_id=r[1], event_type=r[2], reference=r[3]) for r in found[: wanted.limit]
            ),
            more=len(found) > wanted.limit,
        )
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
    page = rows[: wanted.limit]
    accepted = [r[0] for r in page if r[3] == "accepted"]
    references: dict[int, str] = {}
    if accepted:
        references = dict(
            cursor.execute(
                SELECT_REFERENCES,
                {"agency": agency, "low": min(accepted), "high": max(accepted), "seqs": accepted},
            ).fetchall()
        )
    notes = _bounded(cursor, "submissions changed", lambda: _changed_submissions(cursor, agency, accepted)) or {}
    receipts = tuple(
        Receipt(
            stream_seq=r[0],
            event_id=r[1],
            event_type=r[2],
            fate=r[3],
            reason=r[4],
            stored_at=r[5],
            reference=references.get(r[0]),
            note=notes.get(r[0]),
        )
        for r in page
    )
    duplicates: tuple[PossibleDuplicate, ...] = ()
    refused = None
    if wanted.duplicates:
        found = _bounded(cursor, "possible double reports", lambda: _duplicates(cursor, agency))
        if found is None:
            refused = (
                f"the possible double reports were not found within {EXTRAS_SECONDS:g} s and the projector's "
                "memory; query possible_duplicates"
            )
        duplicates = found or ()
    return StatusReply(
        agency=agency,
        as_of_seq=as_of_seq,
        receipts=receipts,
        possible_duplicates=duplicates,
        possible_duplicates_refused=refused,
        more=len(rows) > wanted.limit,
    )


def _duplicates(cursor: duckdb.DuckDBPyConnection, agency: str) -> tuple[PossibleDuplicate, ...]:
    found = cursor.execute(SELECT_DUPLICATES, {"agency": agency, "limit": MAX_RECEIPTS}).fetchall()
    return tuple(PossibleDuplicate(action_a=r[0], action_b=r[1], score=r[2], reason=r[3]) for r in found)


def _bounded(cursor: duckdb.DuckDBPyConnection, what: str, run: Callable[[], T]) -> T | None:
    """``run()``, stopped inside DuckDB after ``EXTRAS_SECONDS`` or when it runs out of the
    projector's pool: None then, and logged."""
    timer = threading.Timer(EXTRAS_SECONDS, cursor.interrupt)
    timer.start()
    try:
        return run()
    except duckdb.InterruptException:
        log.warning("stopped finding the %s of a receipt after %g s", what, EXTRAS_SECONDS)
        return None
    except duckdb.OutOfMemoryException as exc:
        log.warning("stopped finding the %s of a receipt: %s", what, str(exc).splitlines()[0])
        return None
    finally:
        timer.cancel()


def _changed_submissions(cursor: duckdb.DuckDBPyConnection, agency: str, seqs: list[int]) -> dict[int, str]:
    """For each of these accepted events that changed a submitted figure: "changes <the figures>"."""
    has = cursor.execute(HAS_SUBMISSIONS).fetchone()
    if not seqs or not (has and has[0]):
        return {}
    notes: dict[int, list[str]] = {}
    for row in cursor.execute(SELECT_CHANGED_SUBMISSIONS, {"seqs": seqs, "agency": agency}).fetchall():
        notes.setdefault(int(row[0]), []).append(Submission(*row[1:]).label)
    return {seq: "changes " + "; and ".join(labels) for seq, labels in notes.items()}
