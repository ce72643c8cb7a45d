"""Submissions in reports: a submission's figures as submitted, checked against their digest, the
changes since, and the likely double reports of the data-quality notes. Rendered as HTML that is
inert in any browser (every value escaped, no script)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from html import escape
from pathlib import Path
from typing import Any

import duckdb

from projections.query import open_read_only
from projections.report_words import Words
from schemas.errors import ProjectionError
from schemas.submission import FIGURE_COLUMNS, figures_sha256

SELECT_FIGURES = f"SELECT {', '.join(FIGURE_COLUMNS)} FROM submission_figures_at(?, ?, ?, ?, ?)"
SELECT_SUBMISSION = """
SELECT submission_id, submitted_by, country, period_start, period_end, plan_id, title, submitted_to, as_of_seq,
       figures_sha256, stream_seq, submitted_at
FROM submissions WHERE submission_id = ?
"""
SELECT_CHANGES = """
SELECT dimension, key, measure, submitted, current, change, agencies, last_changed_at,
       [e.stream_seq FOR e IN events] AS seqs
FROM changes_since_submission WHERE submission_id = ?
ORDER BY dimension, key, measure
"""
SELECT_DUPLICATES = """
SELECT action_a, action_b, county, event_type, kind, start_a, score, reason FROM possible_duplicates LIMIT ?
"""
MAX_DUPLICATES_SHOWN = 100


@dataclass(frozen=True)
class Submission:
    submission_id: uuid.UUID
    submitted_by: str
    country: str
    period_start: date
    period_end: date
    plan_id: str | None
    title: str
    submitted_to: str | None
    as_of_seq: int
    figures_sha256: str
    stream_seq: int
    submitted_at: datetime

    @property
    def label(self) -> str:
        """How a receipt or a report names it: "the 2014 figures submitted on 2015-03-01"."""
        first, last = self.period_start, self.period_end
        whole_year = (first.month, first.day, last.month, last.day) == (1, 1, 12, 31) and first.year == last.year
        period = str(first.year) if whole_year else f"{first} to {last}"
        return f"the {self.country} {period} figures submitted on {self.submitted_at.date()}"


def figures(
    con: duckdb.DuckDBPyConnection, country: str, start: date, end: date, plan: str | None, seq: int | None
) -> list[tuple[Any, ...]]:
    """The figures of a scope after stream sequence ``seq`` (None: now), in ``FIGURE_COLUMNS`` order."""
    return con.execute(SELECT_FIGURES, [country, start, end, plan, seq]).fetchall()


def submission(con: duckdb.DuckDBPyConnection, submission_id: str) -> Submission:
    try:
        wanted = uuid.UUID(submission_id)
    except ValueError:
        raise ProjectionError(f"submission {submission_id!r} is not a submission ID (an event_id, a UUID)") from None
    row = con.execute(SELECT_SUBMISSION, [wanted]).fetchone()
    if row is None:
        raise ProjectionError(
            f"no submission {submission_id} in the projection; list them with "
            f'`outreach sql "SELECT * FROM submissions"`'
        )
    return Submission(*row)


def recomputed_sha256(con: duckdb.DuckDBPyConnection, s: Submission) -> str:
    """The digest of the submission's figures as this projection computes them from its log."""
    rows = figures(con, s.country, s.period_start, s.period_end, s.plan_id, s.as_of_seq)
    return figures_sha256(s.country, s.period_start, s.period_end, s.plan_id, s.as_of_seq, rows)


def write_submission_report(db: Path, out: Path, submission_id: str) -> Submission:
    """Write the page of one submission: its figures as submitted, whatever came later, the
    digest stated and the one recomputed from the projection, and the changes since."""
    con = open_read_only(db)
    try:
        s = submission(con, submission_id)
        rows = figures(con, s.country, s.period_start, s.period_end, s.plan_id, s.as_of_seq)
        digest = figures_sha256(s.country, s.period_start, s.period_end, s.plan_id, s.as_of_seq, rows)
        changes = con.execute(SELECT_CHANGES, [s.submission_id]).fetchall()
    finally:
        con.close()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(_page(s, rows, digest, changes), encoding="utf-8")
    return s


def has_coordination(db: Path) -> bool:
    """Whether ``db`` (a projection, or a snapshot) holds what the report's section on submissions
    and possible double reports reads (a snapshot holds them while they are few)."""
    con = open_read_only(db)
    try:
        found = con.execute(
            "SELECT count(DISTINCT name) FROM (SELECT table_name AS name FROM duckdb_tables() "
            "UNION ALL SELECT view_name FROM duckdb_views()) "
            "WHERE name IN ('submissions', 'changes_since_submission', 'possible_duplicates')"
        ).fetchone()
    finally:
        con.close()
    return bool(found and found[0] == 3)


def coordination_section(con: duckdb.DuckDBPyConnection, words: Words) -> str:
    """The report's section on submissions (each with its changes since) and likely double
    reports, in the report's language; empty for a projection without these views (a snapshot)."""
    try:
        subs = [
            Submission(*r) for r in con.execute(SELECT_SUBMISSION.replace("WHERE submission_id = ?", "")).fetchall()
        ]
        pairs = con.execute(SELECT_DUPLICATES, [MAX_DUPLICATES_SHOWN + 1]).fetchall()
    except duckdb.CatalogException:
        return ""
    parts = []
    if subs:
        parts.append(f'<h2>{escape(words.text("submissions"))}</h2>\n<ul class="submissions" id="submissions">')
        for s in subs:
            changes = con.execute(SELECT_CHANGES, [s.submission_id]).fetchall()
            said = words.count("figures_changed", len(changes)) if changes else words.text("nothing_changed")
            item = words.text(
                "submission_item",
                title=s.title,
                country=s.country,
                period=_period(s, words),
                by=s.submitted_by,
                day=words.day(s.submitted_at.date()),
                id=s.submission_id,
                seq=words.number(s.as_of_seq),
                said=said,
            )
            parts.append(f"<li>{escape(item)}{_changes_table(changes, words) if changes else ''}</li>")
        parts.append("</ul>")
    parts.append(_duplicates(pairs, words))
    return "\n".join(parts)


def _period(s: Submission, words: Words) -> str:
    first, last = s.period_start, s.period_end
    if (first.month, first.day, last.month, last.day) == (1, 1, 12, 31) and first.year == last.year:
        return str(first.year)
    return f"{words.day(first)} – {words.day(last)}"


def _duplicates(pairs: list[tuple[Any, ...]], words: Words) -> str:
    heading = f"<h2>{escape(words.text('duplicates'))}</h2>"
    if not pairs:
        return f'{heading}\n<p id="possible-duplicates">{escape(words.text("duplicates_none"))}</p>'
    shown = pairs[:MAX_DUPLICATES_SHOWN]
    more = f"<p>{escape(words.text('duplicates_more'))}</p>" if len(pairs) > len(shown) else ""
    head = "".join(f"<th>{escape(words.text(k))}</th>" for k in ("dup_action", "dup_action", "dup_county", "dup_day"))
    head += f"<th>{escape(words.text('dup_score'))}</th>"
    body = "\n".join(
        "<tr>"
        + "".join(f"<td>{escape(str(v))}</td>" for v in (r[0], r[1], r[2], words.day(r[5]) if r[5] else "—"))
        + f"<td>{escape(words.number(r[6]))}</td></tr>"
        for r in shown
    )
    return (
        f"{heading}\n<p>{escape(words.text('duplicates_intro'))}</p>\n"
        f'<table id="possible-duplicates"><tr>{head}</tr>\n{body}\n</table>{more}'
    )


def _changes_table(changes: list[tuple[Any, ...]], words: Words) -> str:
    body = "\n".join(
        "<tr>"
        + "".join(
            f"<td>{escape(str(v))}</td>"
            for v in (
                words.text(f"dim_{c[0]}"),
                words.text("no_campaign_key") if c[1] == "(no campaign)" else c[1],
                words.text(f"fig_{c[2]}"),
                c[3],
                c[4],
                f"{c[5]:+d}",
                ", ".join(c[6] or []),
                ", ".join(map(str, c[8] or [])),
            )
        )
        + "</tr>"
        for c in changes
    )
    head = "".join(
        f"<th>{escape(words.text(k))}</th>"
        for k in ("ch_by", "ch_figure", "ch_measure", "ch_submitted", "ch_now", "ch_change", "ch_agencies", "ch_seqs")
    )
    return f'<table class="changes"><tr>{head}</tr>\n' + body + "\n</table>"


def _page(s: Submission, rows: list[tuple[Any, ...]], digest: str, changes: list[tuple[Any, ...]]) -> str:
    matches = digest == s.figures_sha256
    check = (
        "the figures below, recomputed from the log, have this digest"
        if matches
        else f"the figures below, recomputed from the log, have the digest {digest}, NOT the one submitted"
    )
    head = "".join(f"<th>{escape(c)}</th>" for c in FIGURE_COLUMNS)
    body = "\n".join("<tr>" + "".join(f"<td>{escape(str(v))}</td>" for v in r) + "</tr>" for r in rows)
    plan = f", plan {escape(s.plan_id)}" if s.plan_id else ""
    return f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Submission {escape(str(s.submission_id))}</title></head>
<body>
<main>
<h1>{escape(s.title)}</h1>
<p id="scope">{escape(s.country)}, actions that started {s.period_start} to {s.period_end}{plan}; submitted by
{escape(s.submitted_by)}{(" to " + escape(s.submitted_to)) if s.submitted_to else ""} on {s.submitted_at.date()}
(submission {escape(str(s.submission_id))}), as of stream sequence {s.as_of_seq}.</p>
<p id="digest">Digest (sha256) submitted: <code>{escape(s.figures_sha256)}</code>; {escape(check)}.</p>
<h2>Figures as submitted</h2>
<table id="figures"><tr>{head}</tr>
{body}
</table>
<h2>Changes since the submission</h2>
{_changes_table(changes, Words("en")) if changes else '<p id="no-changes">No figure has changed since.</p>'}
</main>
</body>
</html>
"""
