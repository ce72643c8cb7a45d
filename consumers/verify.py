"""``outreach verify``: rebuild from the stream and compare with the live projection.

What it checks, and so what it proves:

- the stream was not recreated since the projection began (its creation time is the one the
  projection recorded);
- no message the projection counted has since disappeared from the stream (a gap in the stream
  sequences), and the stream still ends where the projection's checkpoint says;
- the stream's running digest (sequence, subject, message id and payload hash of every message,
  chained) up to the checkpoint equals the one the projector stored: what is in the stream now is
  what the projector saw;
- every row of every projection table equals the row a fresh fold of the stream produces: nobody
  changed the projection by hand, and the fold is deterministic.

Beside a running projector, which holds the projection's write lock, its snapshot is verified
instead: its checkpoint and digest as above, and every totals cell against the fold up to the
snapshot's sequence (a snapshot holds the totals, not the tables).

What it does not prove: that the stream holds what agencies meant to say (only agencies' own
signatures could), or anything against someone who can rewrite both the stream and the
projection's stored digests; keep a copy of the digests (`checkpoint_log`) elsewhere for that.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from consumers.replay import replay
from projections.compare import compare, compare_totals
from projections.query import open_read_only
from projections.snapshot import is_snapshot
from projections.submission import Submission, figures, submission
from runtime.connection import connect
from runtime.settings import Settings
from runtime.stream import read_stream_info
from schemas.submission import figures_sha256


@dataclass
class VerifyReport:
    last_seq: int = 0
    problems: list[str] = field(default_factory=list)
    snapshot: bool = False  # what was verified is a snapshot: its totals, not its tables

    @property
    def ok(self) -> bool:
        return not self.problems


async def verify(settings: Settings, live: Path) -> VerifyReport:
    """Rebuild the stream up to the live checkpoint in a temporary file and compare."""
    report = VerifyReport()
    con = open_read_only(live)
    try:
        report.snapshot = is_snapshot(con)
        row = con.execute(
            "SELECT last_seq, stream_created, digest FROM checkpoint WHERE stream = ?", [settings.stream]
        ).fetchone()
    finally:
        con.close()
    if row is None:
        report.problems.append(f"{live} has no checkpoint for stream {settings.stream}: nothing was projected")
        return report
    report.last_seq, created, digest = int(row[0]), row[1], row[2]

    nc = await connect(settings, "outreach-verify")
    try:
        info = await read_stream_info(nc.jetstream(), settings.stream)
    finally:
        await nc.close()
    if info.created != created:
        report.problems.append(
            f"stream {settings.stream} was created at {info.created}, but the projection was built from a "
            f"stream created at {created}: the stream was deleted and created anew"
        )
    if info.state.last_seq < report.last_seq:
        report.problems.append(
            f"the stream ends at sequence {info.state.last_seq}, but the projection applied up to {report.last_seq}"
        )

    with tempfile.TemporaryDirectory(prefix="outreach-verify-") as tmp:
        rebuilt = Path(tmp) / "rebuilt.duckdb"
        await replay(settings, rebuilt, until_seq=report.last_seq, for_analysts=False)
        con = open_read_only(rebuilt)
        try:
            gaps = con.execute("SELECT first_missing, last_missing FROM stream_gaps ORDER BY 1").fetchall()
            end = con.execute("SELECT last_seq, digest FROM checkpoint").fetchone()
        finally:
            con.close()
        for first, last in gaps:
            span = f"{first}" if first == last else f"{first} to {last}"
            report.problems.append(f"stream sequence(s) {span} are missing from the stream (deleted?)")
        rebuilt_seq, rebuilt_digest = (int(end[0]), end[1]) if end else (0, None)
        if rebuilt_seq == report.last_seq and rebuilt_digest != digest:
            report.problems.append(
                f"the stream's digest up to sequence {report.last_seq} is {rebuilt_digest}, but the projector "
                f"recorded {digest}: the stream's content is not what the projector saw"
            )
        report.problems.extend(compare_totals(live, rebuilt) if report.snapshot else compare(live, rebuilt))
    return report


@dataclass(frozen=True)
class SubmissionCheck:
    submission: Submission
    recomputed_sha256: str

    @property
    def matches(self) -> bool:
        return self.recomputed_sha256 == self.submission.figures_sha256


async def verify_submission(settings: Settings, submission_id: str) -> SubmissionCheck:
    """Recompute a submission's digest from the log alone: replay the stream to find the
    submission, replay it again up to the sequence the submission is as of, and hash the figures
    of its scope there (schemas/submission.py)."""
    with tempfile.TemporaryDirectory(prefix="outreach-verify-") as tmp:
        whole = Path(tmp) / "whole.duckdb"
        await replay(settings, whole)
        con = open_read_only(whole)
        try:
            s = submission(con, submission_id)
        finally:
            con.close()
        then = Path(tmp) / "then.duckdb"
        await replay(settings, then, until_seq=s.as_of_seq)
        con = open_read_only(then)
        try:
            rows = figures(con, s.country, s.period_start, s.period_end, s.plan_id, None)
        finally:
            con.close()
    return SubmissionCheck(s, figures_sha256(s.country, s.period_start, s.period_end, s.plan_id, s.as_of_seq, rows))
