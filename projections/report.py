"""A one-file HTML report of a projection: headline totals, charts, plan tasks and data quality.

The file is self-contained: inline CSS and inline SVG, no script, no font or image to fetch, so it
opens offline, can be mailed, and reads on a phone. Every text from the database is escaped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from html import escape
from pathlib import Path
from typing import Any

import duckdb

from projections.query import open_read_only

AS_OF = "SELECT last_seq, last_stored_at FROM checkpoint ORDER BY updated_at DESC LIMIT 1"
HEADLINE = "SELECT * FROM headline_totals"
BY_COUNTY = """
SELECT county, county_name, participants, sessions, sessions_participants_unknown, sessions_participants_estimated
FROM totals_by_county ORDER BY participants DESC, sessions DESC, county
"""
# Every month from the first session's to the last's, so that quiet months show as gaps (a team
# set up years before would otherwise stretch the axis).
BY_MONTH = """
WITH m AS (SELECT month, sum(sessions) AS sessions FROM totals_by_month GROUP BY month HAVING sum(sessions) > 0)
SELECT CAST(g.month AS DATE) AS month, CAST(coalesce(m.sessions, 0) AS BIGINT) AS sessions
FROM (SELECT min(month) AS lo, max(month) AS hi FROM m) span,
     range(span.lo, span.hi + INTERVAL 1 MONTH, INTERVAL 1 MONTH) g(month)
LEFT JOIN m ON m.month = CAST(g.month AS DATE)
ORDER BY month
"""
PLAN_TASKS = """
SELECT task_ref, title, events, teams_established, counties_reached FROM totals_by_plan_task ORDER BY task_ref
"""
QUALITY = "SELECT * FROM data_quality"
HEADLINES = (
    ("events", "action"),
    ("sessions", "session"),
    ("participants", "participant known"),
    ("materials", "material distributed"),
    ("teams", "team established"),
    ("counties", "county reached"),
)
PLURALS = {
    "action": "actions",
    "session": "sessions",
    "participant": "participants",
    "participant known": "participants known",
    "material distributed": "materials distributed",
    "team established": "teams established",
    "county reached": "counties reached",
}
MARK_ROOM = 170  # right of a county's value: what it leaves out
QUALITY_NOTES = (
    ("sessions_estimated", "sessions with estimated participant counts"),
    ("sessions_uncounted", "sessions with uncounted participants (not in the participants total)"),
    ("materials_unknown", "distributions of materials with unknown quantity"),
    ("corrections", "corrections applied"),
    ("retractions", "retractions applied"),
    ("rejected", "events rejected by the projector (not in any total)"),
)

CSS = """
:root { color-scheme: light; --ink: #1d2433; --muted: #5b6475; --bar: #2f6f9f; --line: #d8dde6; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
       background: #fff; }
main { max-width: 60rem; margin: 0 auto; padding: 1rem; }
h1 { font-size: 1.6rem; margin: 0 0 .25rem; }
h2 { font-size: 1.2rem; margin: 2rem 0 .5rem; border-bottom: 1px solid var(--line); }
.as-of { color: var(--muted); margin: 0 0 1rem; }
.headline { display: grid; grid-template-columns: repeat(auto-fit, minmax(9rem, 1fr)); gap: .75rem;
            list-style: none; padding: 0; margin: 0; }
.headline li { border: 1px solid var(--line); border-radius: .5rem; padding: .6rem .8rem; }
.headline .value { display: block; font-size: 1.6rem; font-weight: 600; font-variant-numeric: tabular-nums; }
.headline .label { color: var(--muted); font-size: .9rem; }
/* Drawn narrow, so that on a phone the labels stay legible; not wider than 40rem on a desk. */
svg { width: 100%; max-width: 40rem; height: auto; display: block; }
svg text { font: 14px system-ui, sans-serif; fill: var(--ink); }
.bar { fill: var(--bar); }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: .4rem .5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
td.n, th.n { text-align: right; }
.quality li { margin: .2rem 0; }
.quality .value { font-weight: 600; font-variant-numeric: tabular-nums; }
.empty { color: var(--muted); }
.headline .note { display: block; color: var(--muted); font-size: .85rem; }
svg text.none { fill: var(--muted); font-style: italic; }
/* Printed, or saved as PDF from the browser: A4 pages, no chart or table cut in two. */
@page { size: A4; margin: 15mm; }
@media print {
  body { font-size: 11pt; }
  main { max-width: none; padding: 0; }
  h2 { break-after: avoid; }
  svg, table, .headline li, .quality { break-inside: avoid; }
  .scroll { overflow: visible; }
}
"""

BAR_ROW = 42  # per county in the county chart, in the charts' units (text is 14)
VALUE_ROOM = 50  # right of the longest bar: its value
CHART_WIDTH = 480
TIMELINE_HEIGHT = 170


@dataclass(frozen=True)
class _Data:
    as_of_seq: int | None
    as_of_stored_at: datetime | None
    headline: dict[str, int]
    counties: list[tuple[Any, ...]]
    months: list[tuple[date, int]]
    plan_tasks: list[tuple[Any, ...]]
    quality: dict[str, int]


def write_report(db: Path, out: Path) -> None:
    """Write the HTML report of the projection ``db`` to ``out``."""
    con = open_read_only(db)
    try:
        data = _read(con)
    finally:
        con.close()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(_render(data), encoding="utf-8")


def _read(con: duckdb.DuckDBPyConnection) -> _Data:
    mark = con.execute(AS_OF).fetchone()
    cursor = con.execute(HEADLINE)
    headline = dict(zip([d[0] for d in cursor.description or []], cursor.fetchone() or (), strict=True))
    cursor = con.execute(QUALITY)
    quality = dict(zip([d[0] for d in cursor.description or []], cursor.fetchone() or (), strict=True))
    return _Data(
        as_of_seq=int(mark[0]) if mark else None,
        as_of_stored_at=mark[1] if mark else None,
        headline={k: int(v) for k, v in headline.items()},
        counties=con.execute(BY_COUNTY).fetchall(),
        months=[(r[0], int(r[1])) for r in con.execute(BY_MONTH).fetchall()],
        plan_tasks=con.execute(PLAN_TASKS).fetchall(),
        quality={k: int(v) for k, v in quality.items()},
    )


def _n(value: int) -> str:
    return f"{value:,}"


def _plural(value: int, noun: str) -> str:
    """``1 session``, ``2 sessions``."""
    return f"{value:,} {noun}" if value == 1 else f"{value:,} {PLURALS.get(noun, noun + 's')}"


def _marks(uncounted: int, estimated: int) -> str:
    """What a participants figure leaves out or estimates, said next to it."""
    marks = f" + {_plural(uncounted, 'session')} uncounted" if uncounted else ""
    return marks + (f", {estimated} estimated" if estimated else "")


def _render(data: _Data) -> str:
    if data.as_of_seq is None:
        as_of = "as of nothing yet: no event has been projected"
    else:
        stored = data.as_of_stored_at
        when = stored.astimezone(UTC).isoformat(timespec="seconds") if stored else "an unknown time"
        as_of = (
            f'as of stream sequence {data.as_of_seq}, stored at <time datetime="{escape(when)}">{escape(when)}</time>'
        )
    notes = {"participants": _marks(data.quality["sessions_uncounted"], data.quality["sessions_estimated"]).strip(" ,")}
    headline = "\n".join(
        f'<li><span class="value" id="headline-{key}">{_n(data.headline[key])}</span>'
        f'<span class="label">{escape(_plural(data.headline[key], label).split(" ", 1)[1])}</span>'
        + (f'<span class="note" id="headline-{key}-note">{escape(notes[key])}</span>' if notes.get(key) else "")
        + "</li>"
        for key, label in HEADLINES
    )
    quality = "\n".join(
        f'<li><span class="value" id="quality-{key.replace("_", "-")}">{_n(data.quality[key])}</span> '
        f"{escape(label)}</li>"
        for key, label in QUALITY_NOTES
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Outreach Ledger report</title>
<style>{CSS}</style>
</head>
<body>
<main>
<h1>Outreach Ledger: outreach actions</h1>
<p class="as-of" id="as-of">{as_of}</p>

<h2>Headline totals</h2>
<ul class="headline">
{headline}
</ul>

<h2>Participants by county</h2>
{_county_chart(data.counties)}

<h2>Sessions by month</h2>
{_timeline(data.months)}

<h2>National action plan tasks</h2>
{_plan_task_table(data.plan_tasks)}

<h2>Data quality</h2>
<ul class="quality" id="quality">
{quality}
</ul>
</main>
</body>
</html>
"""


def _county_chart(counties: list[tuple[Any, ...]]) -> str:
    if not counties:
        return '<p class="empty">No actions yet.</p>'
    top = max(int(c[2]) for c in counties) or 1
    room = CHART_WIDTH - VALUE_ROOM - MARK_ROOM
    rows = []
    for i, (county, name, value, sessions, uncounted, estimated) in enumerate(counties):
        y = i * BAR_ROW
        label = f"{county} {name}" if name else county
        # The name above its bar, so that long names have the whole width.
        rows.append(f'<text x="0" y="{y + 15}">{escape(label)}</text>')
        if not sessions:  # no session held there: not "0 people reached"
            rows.append(f'<text class="none" x="0" y="{y + 33}" data-county="{escape(county)}">no sessions</text>')
            continue
        width = round(room * int(value) / top, 1)
        marks = _marks(int(uncounted), int(estimated))
        rows.append(
            f'<rect class="bar" x="0" y="{y + 20}" width="{width}" height="16" '
            f'data-county="{escape(county)}" data-value="{value}">'
            f"<title>{escape(label)}: {_plural(int(value), 'participant')}{escape(marks)}</title></rect>"
            f'<text class="value" x="{width + 6}" y="{y + 33}" data-county="{escape(county)}">'
            f"{_n(int(value))}{escape(marks)}</text>"
        )
    body = "\n".join(rows)
    return (
        f'<svg id="chart-county" viewBox="0 0 {CHART_WIDTH} {BAR_ROW * len(counties)}" role="img" '
        f'aria-label="Participants by county">\n{body}\n</svg>'
    )


TEXT_WIDTH = 8.0  # the widest a character of the charts' 14px text is drawn, in the charts' units
LABEL_GAP = 10  # at least this between two axis labels


def _ticks(months: list[tuple[date, int]]) -> list[tuple[int, str]]:
    """Which months carry an axis label, and the label: every month over two years or less,
    every quarter over six years or less, else every year; a label that would come closer to the
    one before than LABEL_GAP is left out, so no two labels overlap."""
    span = len(months)
    step = (CHART_WIDTH - VALUE_ROOM) / span
    ticks: list[tuple[int, str]] = []
    end = -LABEL_GAP
    for i, (month, _) in enumerate(months):
        if span <= 24:
            label = month.strftime("%b %Y") if i == 0 or month.month == 1 else month.strftime("%b")
        elif span <= 72:
            if (month.month - 1) % 3 and i:
                continue
            label = f"{month.year} Q{(month.month - 1) // 3 + 1}"
        else:
            if month.month != 1 and i:
                continue
            label = str(month.year)
        x = i * step
        if x < end + LABEL_GAP:
            continue
        ticks.append((i, label))
        end = x + len(label) * TEXT_WIDTH
    return ticks


def _timeline(months: list[tuple[date, int]]) -> str:
    if not months:
        return '<p class="empty">No sessions yet.</p>'
    top = max(v for _, v in months) or 1
    axis = TIMELINE_HEIGHT - 30  # below it: the labels
    plot = axis - 20  # above the bars: their values
    step = (CHART_WIDTH - VALUE_ROOM) / len(months)  # the rest: room for the last labels
    parts = [f'<line x1="0" y1="{axis}" x2="{CHART_WIDTH}" y2="{axis}" stroke="#999"/>']
    for i, label in _ticks(months):
        parts.append(f'<text class="tick" x="{round(i * step, 2)}" y="{TIMELINE_HEIGHT - 10}">{escape(label)}</text>')
    for i, (month, value) in enumerate(months):
        if not value:
            continue
        x = round(i * step, 2)
        key = month.strftime("%Y-%m")
        h = round(plot * value / top, 1)
        width = max(round(step * 0.8, 2), 1)
        parts.append(
            f'<rect class="bar" x="{x}" y="{axis - h}" width="{width}" height="{h}" '
            f'data-month="{key}" data-value="{value}"><title>{key}: {_plural(value, "session")}</title></rect>'
        )
        if width >= len(_n(value)) * TEXT_WIDTH or len(months) <= 24:  # a value only where it has room
            parts.append(
                f'<text x="{round(x + width / 2, 2)}" y="{axis - h - 5}" text-anchor="middle">{_n(value)}</text>'
            )
    body = "\n".join(parts)
    return (
        f'<svg id="chart-month" viewBox="0 0 {CHART_WIDTH} {TIMELINE_HEIGHT}" role="img" '
        f'aria-label="Sessions by month">\n{body}\n</svg>'
    )


def _plan_task_table(tasks: list[tuple[Any, ...]]) -> str:
    if not tasks:
        return '<p class="empty">No plan tasks defined or referred to yet.</p>'
    rows = "\n".join(
        f'<tr data-task-ref="{escape(str(ref))}"><td>{escape(str(ref))}</td><td>{escape(title or "")}</td>'
        f'<td class="n">{_n(events)}</td><td class="n">{_n(teams)}</td><td class="n">{_n(counties)}</td></tr>'
        for ref, title, events, teams, counties in tasks
    )
    return f"""<div class="scroll"><table id="plan-tasks">
<thead><tr><th>task</th><th>title</th><th class="n">events</th><th class="n">teams established</th>\
<th class="n">counties reached</th></tr></thead>
<tbody>
{rows}
</tbody>
</table></div>"""
