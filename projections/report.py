"""A one-file HTML report of a projection: a section per country (its headline totals, participants
by county, materials by kind, sessions by month and national action plan tasks), then notes on
data quality.

Countries are never added together, and neither are kinds of material: 4,500 leaflets and 60
posters are two figures. Every figure is a sum over the view ``report_cells``, which the snapshot
carries too, so the filters (country, campaign, the days the actions started) apply to every
section alike and a report beside a running projector is exact.

The file is self-contained: inline CSS and inline SVG, no script, no font or image to fetch, so it
opens offline, can be mailed, reads on a phone and prints on A4. Every text from the database is
escaped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from html import escape
from pathlib import Path
from typing import Any

import duckdb

from projections.query import open_read_only
from projections.snapshot import SNAPSHOT_CELLS_MAX, is_snapshot
from projections.submission import coordination_section
from schemas.errors import ProjectionError, SettingsInvalid
from schemas.reference import regions

AS_OF = "SELECT last_seq, last_stored_at FROM checkpoint ORDER BY updated_at DESC LIMIT 1"
# {where} is Filters.sql()'s condition, made of fixed clauses; the values are parameters.
CELLS = "WITH cells AS (SELECT * FROM report_cells WHERE {where})\n"
HEADLINE = (
    CELLS
    + """SELECT country, sum(events), sum(sessions), sum(participants), sum(sessions_uncounted),
       sum(sessions_estimated), sum(teams),
       count(DISTINCT county) FILTER (WHERE event_type IN ('session_held', 'materials_distributed'))
FROM cells GROUP BY country ORDER BY country"""
)
MATERIALS = (
    CELLS
    + """SELECT country, material_kind, sum(events), sum(materials), sum(materials_unknown)
FROM cells WHERE event_type = 'materials_distributed'
GROUP BY ALL ORDER BY country, sum(materials) DESC, material_kind"""
)
BY_COUNTY = (
    CELLS
    + """SELECT c.country, c.county, k.name, sum(c.participants), sum(c.sessions), sum(c.sessions_uncounted),
       sum(c.sessions_estimated)
FROM cells c LEFT JOIN counties k ON k.code = c.county
GROUP BY ALL ORDER BY c.country, sum(c.participants) DESC, sum(c.sessions) DESC, c.county"""
)
BY_MONTH = (
    CELLS
    + """SELECT country, CAST(date_trunc('month', started) AS DATE), sum(sessions)
FROM cells WHERE sessions > 0 GROUP BY ALL ORDER BY ALL"""
)
BY_PLAN_TASK = (
    CELLS
    + """SELECT country, task_ref, sum(events), sum(sessions), sum(participants), sum(teams), count(DISTINCT county),
       sum(sessions_uncounted), sum(sessions_estimated)
FROM (SELECT unnest(plan_tasks) AS task_ref, * EXCLUDE (plan_tasks) FROM cells)
GROUP BY ALL ORDER BY ALL"""
)
QUALITY = CELLS + "SELECT sum(sessions_estimated), sum(sessions_uncounted), sum(materials_unknown) FROM cells"
DEFINED_TASKS = "SELECT task_ref, title, country FROM plan_tasks ORDER BY task_ref"
CAMPAIGNS = "SELECT campaign_id FROM totals_by_campaign WHERE campaign_id IS NOT NULL ORDER BY campaign_id"
HAS_CELLS = (
    "SELECT count(*) FROM (SELECT view_name AS name FROM duckdb_views() UNION ALL "
    "SELECT table_name FROM duckdb_tables()) WHERE name = 'report_cells'"
)
LOG_QUALITY = "SELECT corrections, retractions, rejected FROM data_quality"

HEADLINES = (
    ("events", "action"),
    ("sessions", "session"),
    ("participants", "participant known"),
    ("teams", "team established"),
    ("counties", "county reached"),
)
PLURALS = {
    "action": "actions",
    "session": "sessions",
    "participant": "participants",
    "participant known": "participants known",
    "team established": "teams established",
    "county reached": "counties reached",
    "distribution": "distributions",
}
KINDS = {  # a material kind, one and many
    "leaflet": ("leaflet", "leaflets"),
    "poster": ("poster", "posters"),
    "brochure": ("brochure", "brochures"),
    "other": ("other material", "other materials"),
}
FILTER_QUALITY = (  # a figure's key, what it counts (made plural by _plural), and the rest of its words
    ("sessions_estimated", "session", "with estimated participant counts"),
    ("sessions_uncounted", "session", "with uncounted participants (not in the participants totals)"),
    ("materials_unknown", "distribution", "of materials with unknown quantity"),
)
LOG_NOTES = (
    ("corrections", "correction", "applied"),
    ("retractions", "retraction", "applied"),
    ("rejected", "event", "rejected by the projector (not in any total)"),
)
NO_SESSIONS = "no sessions"  # where a participants figure would read 0 although no session was held

CSS = """
:root { color-scheme: light; --ink: #1d2433; --muted: #5b6475; --bar: #2f6f9f; --line: #d8dde6; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
       background: #fff; }
main { max-width: 60rem; margin: 0 auto; padding: 1rem; }
h1 { font-size: 1.6rem; margin: 0 0 .25rem; }
h2 { font-size: 1.2rem; margin: 2rem 0 .5rem; border-bottom: 1px solid var(--line); }
.as-of { color: var(--muted); margin: 0 0 1rem; }
.headline { display: grid; grid-template-columns: repeat(auto-fit, minmax(11rem, 1fr)); gap: .75rem;
            list-style: none; padding: 0; margin: 0; }
.headline li { border: 1px solid var(--line); border-radius: .5rem; padding: .6rem .8rem; }
.headline .value { display: block; font-size: 1.5rem; font-weight: 600; font-variant-numeric: tabular-nums;
                   overflow-wrap: anywhere; }
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
.cell-note { display: block; color: var(--muted); font-size: .85rem; }
.headline .note { display: block; color: var(--muted); font-size: .85rem; }
svg text.none { fill: var(--muted); font-style: italic; }
svg text.mark { fill: var(--muted); }
h3 { font-size: 1rem; margin: 1.25rem 0 .4rem; }
.filters { color: var(--muted); margin: 0 0 1rem; }
section.country { break-before: page; }
section.country:first-of-type { break-before: auto; }
/* Printed, or saved as PDF from the browser: A4 pages, no chart or table cut in two. */
@page { size: A4; margin: 15mm; }
@media print {
  body { font-size: 11pt; }
  main { max-width: none; padding: 0; }
  h2, h3 { break-after: avoid; }
  svg, table, .headline li, .quality { break-inside: avoid; }
  .scroll { overflow: visible; }
}
"""

BAR_ROW = 42  # per county in the county chart, in the charts' units (text is 14)
MARK_ROW = 18  # per note under a county's bar
VALUE_GAP = 6  # between a bar and its value
CHART_WIDTH = 480
TIMELINE_HEIGHT = 170
TIMELINE_RIGHT = 50  # right of the last month: room for its label
BAR_MAX = 40  # the widest a month's bar is drawn
# The widest a character of the charts' 14px text is drawn, in the charts' units: DejaVu Sans,
# which Debian's browsers fall back to, draws a digit 8.9 wide.
TEXT_WIDTH = 9.0
LABEL_GAP = 10  # at least this between two axis labels


@dataclass(frozen=True)
class Filters:
    """Which actions a report covers: those of one country, of one campaign, and that started
    from ``start`` to ``end``, both days included. None is no limit."""

    country: str | None = None
    campaign: str | None = None
    start: date | None = None
    end: date | None = None

    def sql(self) -> tuple[str, list[Any]]:
        """The condition on ``report_cells``, and its parameters."""
        clauses, params = ["TRUE"], []
        for clause, value in (
            ("country = ?", self.country),
            ("campaign_id = ?", self.campaign),
            ("started >= ?", self.start),
            ("started <= ?", self.end),
        ):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        return " AND ".join(clauses), params

    def describe(self) -> str:
        parts = []
        if self.country:
            parts.append(f"in {regions().countries.get(self.country, self.country)} ({self.country})")
        if self.campaign:
            parts.append(f"of campaign {self.campaign}")
        if self.start and self.end:
            parts.append(f"that started from {self.start.isoformat()} to {self.end.isoformat()}")
        elif self.start:
            parts.append(f"that started on {self.start.isoformat()} or later")
        elif self.end:
            parts.append(f"that started on {self.end.isoformat()} or earlier")
        if not parts:
            return "Every action in the projection; an action counts in the month it started."
        return f"The actions {', '.join(parts)}; an action counts in the month it started."


@dataclass
class Country:
    code: str
    name: str
    headline: dict[str, int]
    materials: list[tuple[str, int, int, int]] = field(default_factory=list)  # kind, distributions, quantity, unknown
    counties: list[tuple[Any, ...]] = field(default_factory=list)
    months: list[tuple[date, int]] = field(default_factory=list)
    plan_tasks: list[tuple[Any, ...]] = field(default_factory=list)


@dataclass(frozen=True)
class _Data:
    as_of_seq: int | None
    as_of_stored_at: datetime | None
    filters: Filters
    countries: list[Country]
    quality: dict[str, int]


def write_report(db: Path, out: Path, filters: Filters | None = None) -> None:
    """Write the HTML report of the projection ``db`` (or its snapshot) to ``out``."""
    filters = filters or Filters()
    con = open_read_only(db)
    try:
        _check(con, filters, db)
        data = _read(con, filters)
        coordination = coordination_section(con)  # submissions and possible double reports
    finally:
        con.close()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(_render(data).replace("</main>", coordination + "\n</main>", 1), encoding="utf-8")


def has_figures(db: Path) -> bool:
    """Whether ``db`` (a projection, or a snapshot) holds the report's figures."""
    con = open_read_only(db)
    try:
        return bool(con.execute(HAS_CELLS).fetchone()[0])  # type: ignore[index]
    finally:
        con.close()


def _check(con: duckdb.DuckDBPyConnection, filters: Filters, db: Path) -> None:
    """Refuse a file without the report's view, and a filter that names what does not exist: an
    empty report would read as zero."""
    if not con.execute(HAS_CELLS).fetchone()[0]:  # type: ignore[index]
        if is_snapshot(con):
            raise ProjectionError(
                f"{db} is a snapshot without the report's figures: the projection has more than "
                f"{SNAPSHOT_CELLS_MAX:,} of them (actions by county, campaign, day and kind), too many to copy "
                f"every few seconds. Give the projection's own file: beside a running projector, `outreach report` "
                f"asks it for a whole copy"
            )
        raise ProjectionError(
            f"{db} has no view report_cells: it was made by an older version. The views are created when "
            f"the projector opens the file: run `outreach project` on it, or rebuild it with `outreach replay`"
        )
    known = regions().countries
    if filters.country is not None and filters.country not in known:
        names = ", ".join(f"{code} ({name})" for code, name in sorted(known.items()))
        raise SettingsInvalid(f"--country {filters.country}: no such country; the known ones are {names}")
    if filters.campaign is not None:
        campaigns = [r[0] for r in con.execute(CAMPAIGNS).fetchall()]
        if filters.campaign not in campaigns:
            shown = ", ".join(campaigns[:20]) + (f" and {len(campaigns) - 20} more" if len(campaigns) > 20 else "")
            raise SettingsInvalid(
                f"--campaign {filters.campaign}: {db} has no campaign of that id"
                + (f"; it has {shown}" if campaigns else "; it has none yet")
            )
    if filters.start and filters.end and filters.end < filters.start:
        raise SettingsInvalid(f"--to {filters.end.isoformat()} is before --from {filters.start.isoformat()}")


def _read(con: duckdb.DuckDBPyConnection, filters: Filters) -> _Data:
    where, params = filters.sql()

    def rows(query: str) -> list[tuple[Any, ...]]:
        return con.execute(query.format(where=where), params).fetchall()

    names = regions().countries
    countries: dict[str, Country] = {}
    for code, *figures in rows(HEADLINE):
        keys = ("events", "sessions", "participants", "sessions_uncounted", "sessions_estimated", "teams", "counties")
        headline = {k: int(v or 0) for k, v in zip(keys, figures, strict=True)}
        countries[code] = Country(code, names.get(code, code), headline)
    for code, kind, distributions, quantity, unknown in rows(MATERIALS):
        countries[code].materials.append((kind, int(distributions), int(quantity), int(unknown)))
    for code, *county in rows(BY_COUNTY):
        countries[code].counties.append(tuple(county))
    by_month: dict[str, dict[date, int]] = {}
    for code, month, sessions in rows(BY_MONTH):
        by_month.setdefault(code, {})[month] = int(sessions)
    for code, sessions in by_month.items():
        countries[code].months = _every_month(sessions)
    titles = {ref: (title, country) for ref, title, country in con.execute(DEFINED_TASKS).fetchall()}
    used: dict[str, set[str]] = {}
    for code, ref, *figures in rows(BY_PLAN_TASK):
        countries[code].plan_tasks.append((ref, titles.get(ref, (None, None))[0], *(int(f) for f in figures)))
        used.setdefault(code, set()).add(ref)
    for ref, (title, country) in titles.items():  # a task of the country with no action: zeros, not absent
        if country in countries and ref not in used.get(country, set()):
            countries[country].plan_tasks.append((ref, title, 0, 0, 0, 0, 0, 0, 0))
    for country in countries.values():
        country.plan_tasks.sort(key=lambda t: str(t[0]))
    estimated, uncounted, unknown = rows(QUALITY)[0]
    log = con.execute(LOG_QUALITY).fetchone() or (0, 0, 0)
    quality = {"sessions_estimated": estimated, "sessions_uncounted": uncounted, "materials_unknown": unknown}
    quality |= dict(zip(("corrections", "retractions", "rejected"), log, strict=True))
    mark = con.execute(AS_OF).fetchone()
    return _Data(
        as_of_seq=int(mark[0]) if mark else None,
        as_of_stored_at=mark[1] if mark else None,
        filters=filters,
        countries=list(countries.values()),
        quality={k: int(v or 0) for k, v in quality.items()},
    )


def _every_month(sessions: dict[date, int]) -> list[tuple[date, int]]:
    """Every month from the first with sessions to the last, so that quiet months show as gaps. Over
    more than two years the axis is labelled by quarters or years, so it starts in January: the first
    bar then stands after its own year's label, not before the next year's."""
    first, last = min(sessions), max(sessions)
    if (last.year - first.year) * 12 + last.month - first.month + 1 > 24:
        first = date(first.year, 1, 1)
    months, month = [], first
    while month <= last:
        months.append((month, sessions.get(month, 0)))
        month = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    return months


def _n(value: int) -> str:
    return f"{value:,}"


def _plural(value: int, noun: str) -> str:
    """``1 session``, ``2 sessions``."""
    return f"{value:,} {noun}" if value == 1 else f"{value:,} {PLURALS.get(noun, noun + 's')}"


def _noun(value: int, noun: str) -> str:
    """``session`` or ``sessions``, as ``value`` takes it (the number itself is shown apart)."""
    return _plural(value, noun).split(" ", 1)[1]


def _kind(kind: str | None, value: int) -> str:
    one, many = KINDS.get(kind or "other", (str(kind), f"{kind}s"))
    return one if value == 1 else many


def _marks(uncounted: int, estimated: int) -> list[str]:
    """What a participants figure leaves out or estimates, to be said next to it."""
    marks = [f"+ {_plural(uncounted, 'session')} uncounted"] if uncounted else []
    return marks + ([f"{_plural(estimated, 'session')} estimated"] if estimated else [])


def _render(data: _Data) -> str:
    if data.as_of_seq is None:
        as_of = "as of nothing yet: no event has been projected"
    else:
        stored = data.as_of_stored_at
        when = stored.astimezone(UTC).isoformat(timespec="seconds") if stored else "an unknown time"
        as_of = (
            f'as of stream sequence {data.as_of_seq}, stored at <time datetime="{escape(when)}">{escape(when)}</time>'
        )
    if data.countries:
        sections = "\n".join(_section(country) for country in data.countries)
    elif data.filters == Filters():
        sections = '<p class="empty" id="no-actions">No actions yet.</p>'
    else:
        sections = '<p class="empty" id="no-actions">No action matches these filters.</p>'
    quality = "\n".join(
        f'<li><span class="value" id="quality-{key.replace("_", "-")}">{_n(data.quality[key])}</span> '
        f"{escape(_noun(data.quality[key], noun))} {escape(rest)}</li>"
        for key, noun, rest in FILTER_QUALITY
    )
    log = "\n".join(
        f'<li><span class="value" id="quality-{key}">{_n(data.quality[key])}</span> '
        f"{escape(_noun(data.quality[key], noun))} {escape(rest)}</li>"
        for key, noun, rest in LOG_NOTES
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
<p class="filters" id="filters">{escape(data.filters.describe())}</p>

{sections}

<h2>Data quality</h2>
<p>Of the actions in this report:</p>
<ul class="quality" id="quality">
{quality}
</ul>
<p>Of the whole log:</p>
<ul class="quality" id="quality-log">
{log}
</ul>
</main>
</body>
</html>
"""


def _section(country: Country) -> str:
    code, h = escape(country.code), country.headline
    cards = []
    for key, label in HEADLINES:
        note = ""
        if key == "participants" and (marks := _marks(h["sessions_uncounted"], h["sessions_estimated"])):
            note = f'<span class="note" id="headline-{code}-participants-note">{escape("; ".join(marks))}</span>'
        if key == "counties":
            note = '<span class="note">by sessions or materials</span>'
        value = _n(h[key])
        if key == "participants" and not h["sessions"]:  # nobody was counted because no session was held
            value = "—"
            note = f'<span class="note" id="headline-{code}-participants-note">{NO_SESSIONS} held</span>'
        cards.append(
            f'<li><span class="value" id="headline-{code}-{key}">{value}</span>'
            f'<span class="label">{escape(_noun(h[key], label))}</span>{note}</li>'
        )
        if key == "participants":  # each kind of material its own figure, next to the people reached
            for kind, _, quantity, unknown in country.materials:
                unknown_note = (
                    f'<span class="note">+ {_plural(unknown, "distribution")} of unknown quantity</span>'
                    if unknown
                    else ""
                )
                cards.append(
                    f'<li><span class="value" id="headline-{code}-materials-{escape(str(kind))}">{_n(quantity)}</span>'
                    f'<span class="label">{escape(_kind(kind, quantity))} distributed</span>{unknown_note}</li>'
                )
    return f"""<section class="country" id="country-{code}" data-country="{code}">
<h2>{escape(country.name)} ({code})</h2>
<ul class="headline">
{chr(10).join(cards)}
</ul>

<h3>Participants by county</h3>
{_county_chart(country)}

<h3>Materials distributed by kind</h3>
{_materials_table(country)}

<h3>Sessions by month</h3>
{_timeline(country)}

<h3>National action plan tasks</h3>
{_plan_task_table(country)}
</section>"""


def _county_chart(country: Country) -> str:
    counties = country.counties
    top = max(int(c[2]) for c in counties) or 1
    room = CHART_WIDTH - len(_n(top)) * TEXT_WIDTH - VALUE_GAP
    rows, y = [], 0
    for county, name, value, sessions, uncounted, estimated in counties:
        label = f"{county} {name}" if name else county
        key = escape(county)
        # The name above its bar, so that long names have the whole width.
        rows.append(f'<text x="0" y="{y + 15}">{escape(label)}</text>')
        if not sessions:  # no session held there: not "0 people reached"
            rows.append(f'<text class="none" x="0" y="{y + 33}" data-county="{key}">{NO_SESSIONS}</text>')
            y += BAR_ROW
            continue
        width = round(room * int(value) / top, 1)
        marks = _marks(int(uncounted), int(estimated))
        told = f" ({'; '.join(marks)})" if marks else ""
        rows.append(
            f'<rect class="bar" x="0" y="{y + 20}" width="{width}" height="16" '
            f'data-county="{key}" data-value="{value}">'
            f"<title>{escape(label)}: {_plural(int(value), 'participant')}{escape(told)}</title></rect>"
            f'<text class="value" x="{width + VALUE_GAP}" y="{y + 33}" data-county="{key}">{_n(int(value))}</text>'
        )
        y += BAR_ROW
        for mark in marks:  # under the bar, each on its line: the room right of a bar is the value's
            rows.append(f'<text class="mark" x="0" y="{y + 8}" data-county="{key}">{escape(mark)}</text>')
            y += MARK_ROW
    body = "\n".join(rows)
    return (
        f'<svg id="chart-county-{escape(country.code)}" class="chart" viewBox="0 0 {CHART_WIDTH} {y}" role="img" '
        f'aria-label="Participants by county, {escape(country.name)}">\n{body}\n</svg>'
    )


def _materials_table(country: Country) -> str:
    if not country.materials:
        return f'<p class="empty" id="materials-{escape(country.code)}">No materials distributed.</p>'
    rows = "\n".join(
        f'<tr data-kind="{escape(str(kind))}"><td>{escape(_kind(kind, 2))}</td><td class="n">{_n(distributions)}</td>'
        f'<td class="n">{_n(quantity)}</td><td class="n">{_n(unknown)}</td></tr>'
        for kind, distributions, quantity, unknown in country.materials
    )
    return f"""<div class="scroll"><table id="materials-{escape(country.code)}">
<thead><tr><th>kind</th><th class="n">distributions</th><th class="n">items distributed</th>\
<th class="n">distributions of unknown quantity</th></tr></thead>
<tbody>
{rows}
</tbody>
</table></div>"""


def _ticks(months: list[tuple[date, int]]) -> list[tuple[int, str]]:
    """Which months carry an axis label, and the label, at a regular step: months over two years
    or less, quarters over six years or less, else years; every 2nd, 3rd... of them where one each
    would not fit, so that no two labels come closer than LABEL_GAP and none runs past the chart."""
    span = len(months)
    step = (CHART_WIDTH - TIMELINE_RIGHT) / span
    first = 0 if span <= 24 else 1 if span <= 72 else 2
    for unit, strides in TICK_UNITS[first:]:
        aligned = [i for i, (month, _) in enumerate(months) if (month.month - 1) % unit == 0]
        for stride in strides:
            ticks = _labels(months, aligned[::stride], unit)
            widest = max((len(label) for _, label in ticks), default=0) * TEXT_WIDTH
            if stride * unit * step >= widest + LABEL_GAP or not ticks:
                return [(i, label) for i, label in ticks if i * step + len(label) * TEXT_WIDTH <= CHART_WIDTH]
    return []


TICK_UNITS = ((1, (1, 2, 3, 6)), (3, (1, 2)), (12, (1, 2, 5, 10, 20, 50, 100)))  # months a unit, strides


def _labels(months: list[tuple[date, int]], where: list[int], unit: int) -> list[tuple[int, str]]:
    labels, year = [], None
    for i in where:
        month = months[i][0]
        if unit == 12:
            labels.append((i, str(month.year)))
        elif unit == 3:
            labels.append((i, f"{month.year} Q{(month.month - 1) // 3 + 1}"))
        else:  # the year with the first month and wherever it changes
            labels.append((i, month.strftime("%b") if month.year == year else month.strftime("%b %Y")))
        year = month.year
    return labels


def _timeline(country: Country) -> str:
    months = country.months
    if not months:
        return f'<p class="empty" id="chart-month-{escape(country.code)}">No sessions.</p>'
    top = max(v for _, v in months) or 1
    axis = TIMELINE_HEIGHT - 30  # below it: the labels
    plot = axis - 20  # above the bars: their values
    step = (CHART_WIDTH - TIMELINE_RIGHT) / len(months)
    parts = [f'<line x1="0" y1="{axis}" x2="{CHART_WIDTH}" y2="{axis}" stroke="#999"/>']
    for i, label in _ticks(months):
        parts.append(f'<text class="tick" x="{round(i * step, 2)}" y="{TIMELINE_HEIGHT - 10}">{escape(label)}</text>')
    for i, (month, value) in enumerate(months):
        if not value:
            continue
        x = round(i * step, 2)
        key = month.strftime("%Y-%m")
        h = round(plot * value / top, 1)
        width = min(max(round(step * 0.8, 2), 1), BAR_MAX)  # one month of a short span: not a slab
        parts.append(
            f'<rect class="bar" x="{x}" y="{axis - h}" width="{width}" height="{h}" '
            f'data-month="{key}" data-value="{value}"><title>{key}: {_plural(value, "session")}</title></rect>'
        )
        if len(_n(value)) * TEXT_WIDTH <= step:  # a value only where it has room; else in its tooltip
            parts.append(
                f'<text x="{round(x + width / 2, 2)}" y="{axis - h - 5}" text-anchor="middle">{_n(value)}</text>'
            )
    body = "\n".join(parts)
    return (
        f'<svg id="chart-month-{escape(country.code)}" class="chart" viewBox="0 0 {CHART_WIDTH} {TIMELINE_HEIGHT}" '
        f'role="img" aria-label="Sessions by month, {escape(country.name)}">\n{body}\n</svg>'
    )


def _cell_marks(uncounted: int, estimated: int) -> str:
    marks = _marks(uncounted, estimated)
    return f'<span class="cell-note">{escape("; ".join(marks))}</span>' if marks else ""


def _plan_task_table(country: Country) -> str:
    if not country.plan_tasks:
        return f'<p class="empty" id="plan-tasks-{escape(country.code)}">No plan tasks defined or referred to.</p>'
    rows = "\n".join(
        f'<tr data-task-ref="{escape(str(ref))}"><td>{escape(str(ref))}</td><td>{escape(title or "")}</td>'
        f'<td class="n">{_n(events)}</td><td class="n">{_n(sessions)}</td>'
        f'<td class="n">{_n(participants) if sessions else NO_SESSIONS}{_cell_marks(uncounted, estimated)}</td>'
        f'<td class="n">{_n(teams)}</td><td class="n">{_n(counties)}</td></tr>'
        for ref, title, events, sessions, participants, teams, counties, uncounted, estimated in country.plan_tasks
    )
    return f"""<div class="scroll"><table id="plan-tasks-{escape(country.code)}">
<thead><tr><th>task</th><th>title</th><th class="n">actions</th><th class="n">sessions</th>\
<th class="n">participants known</th><th class="n">teams established</th><th class="n">counties</th></tr></thead>
<tbody>
{rows}
</tbody>
</table></div>"""
