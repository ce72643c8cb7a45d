"""A one-file HTML report of a projection, as a ministry publishes it: a title and the issuing
organisation, the date the figures were received by, then a section per country (its headline
figures, a map of its counties, its counties' table, materials by kind, a time chart and the
national action plan's tasks), a section per campaign, and notes on data quality. In English,
Albanian or Polish (``projections.report_words``).

Countries are never added together, and neither are kinds of material: 4,500 leaflets and 60
posters are two figures. Every figure is a sum over the view ``report_cells``, which the snapshot
carries too, so the filters (country, campaign, the days the actions started) apply to every
section alike and a report beside a running projector is exact.

The file is self-contained: inline CSS and inline SVG, no script, no font or image to fetch, so it
opens offline, can be mailed, reads on a phone and prints on A4 with a running header and page
numbers (CSS paged media). Every text from the database, the title and the organisation are
escaped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime
from html import escape
from pathlib import Path
from typing import Any

import duckdb

from projections.query import open_read_only
from projections.report_map import county_map, has_map
from projections.report_words import LANGUAGES, Words, language_for
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
       sum(sessions_estimated), sum(teams), sum(materials), count(DISTINCT county)
FROM cells GROUP BY country ORDER BY country"""
)
MATERIALS = (
    CELLS
    + """SELECT country, material_kind, sum(events), sum(materials), sum(materials_unknown)
FROM cells WHERE event_type = 'materials_distributed'
GROUP BY ALL ORDER BY country, sum(materials) DESC, material_kind"""
)
# One row per campaign (NULL: none) and county; a country's totals by county are their sums.
BY_CAMPAIGN_COUNTY = (
    CELLS
    + """SELECT country, campaign_id, county, sum(events), sum(sessions), sum(participants),
       sum(sessions_uncounted), sum(sessions_estimated), sum(teams), sum(materials), min(started), max(started)
FROM cells GROUP BY ALL ORDER BY ALL"""
)
BY_MONTH = (
    CELLS
    + """SELECT country, CAST(date_trunc('month', started) AS DATE), sum(events), sum(sessions)
FROM cells WHERE started IS NOT NULL GROUP BY ALL ORDER BY ALL"""
)
BY_PLAN_TASK = (
    CELLS
    + """SELECT country, task_ref, sum(events), sum(sessions), sum(participants), sum(teams), count(DISTINCT county),
       sum(sessions_uncounted), sum(sessions_estimated)
FROM (SELECT unnest(plan_tasks) AS task_ref, * EXCLUDE (plan_tasks) FROM cells)
GROUP BY ALL
UNION ALL
SELECT country, NULL, sum(events), sum(sessions), sum(participants), sum(teams), count(DISTINCT county),
       sum(sessions_uncounted), sum(sessions_estimated)
FROM cells WHERE len(plan_tasks) = 0 GROUP BY ALL
ORDER BY country, task_ref NULLS LAST"""
)
QUALITY = CELLS + "SELECT sum(sessions_estimated), sum(sessions_uncounted), sum(materials_unknown) FROM cells"
DEFINED_TASKS = "SELECT task_ref, title, country FROM plan_tasks ORDER BY task_ref"
DEFINED_CAMPAIGNS = (
    "SELECT campaign_id, name, name_en, country, lead_agency, funder, starts, ends FROM campaigns "
    "ORDER BY country, campaign_id"
)
PARTNERS = "SELECT campaign_id, partners FROM campaign_partners"
CAMPAIGNS = "SELECT campaign_id FROM totals_by_campaign WHERE campaign_id IS NOT NULL ORDER BY campaign_id"
HAS = (
    "SELECT count(*) FROM (SELECT view_name AS name FROM duckdb_views() UNION ALL "
    "SELECT table_name FROM duckdb_tables()) WHERE name = ?"
)
LOG_QUALITY = "SELECT corrections, retractions, rejected FROM data_quality"

MEASURES = ("events", "sessions", "participants", "teams", "materials")
KINDS = ("leaflet", "poster", "brochure", "other")

CSS = """
:root { color-scheme: light; --ink: #1d2433; --muted: #5b6475; --bar: #2f6f9f; --line: #d8dde6; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: var(--ink); background: #fff; }
main { max-width: 60rem; margin: 0 auto; padding: 1rem; }
.organisation { margin: 0; font-weight: 600; color: var(--muted); text-transform: uppercase; letter-spacing: .04em;
                font-size: .9rem; }
h1 { font-size: 1.6rem; margin: 0 0 .25rem; line-height: 1.25; }
h2 { font-size: 1.3rem; margin: 2rem 0 .5rem; border-bottom: 2px solid var(--ink); }
h3 { font-size: 1.05rem; margin: 1.4rem 0 .4rem; }
.as-of { margin: 0 0 .25rem; font-weight: 600; }
.filters { color: var(--muted); margin: 0 0 1rem; }
.headline { display: grid; grid-template-columns: repeat(auto-fill, minmax(9.5rem, 1fr)); gap: .6rem;
            list-style: none; padding: 0; margin: 0; }
.headline li { border: 1px solid var(--line); border-radius: .4rem; padding: .5rem .7rem; }
.headline .value { display: block; font-size: 1.5rem; font-weight: 600; font-variant-numeric: tabular-nums;
                   overflow-wrap: anywhere; }
.headline .label { display: block; color: var(--muted); font-size: .9rem; line-height: 1.3; }
.headline .note { display: block; color: var(--muted); font-size: .8rem; line-height: 1.3; margin-top: .2rem; }
svg { width: 100%; height: auto; display: block; }
svg.chart { max-width: 40rem; }
svg.map { max-width: 36rem; max-height: 34rem; }
table.tasks td:first-child { white-space: nowrap; }
svg text { font: 13px system-ui, "DejaVu Sans", sans-serif; fill: var(--ink); }
svg .county { stroke: #8a94a6; stroke-width: 0.7; }
svg .map-label { font-size: 12px; font-weight: 600; paint-order: stroke; stroke: #fff; stroke-width: 3px;
                 stroke-linejoin: round; }
svg .map-label.dark { fill: #fff; stroke: #08306b; }
svg .map-value { font-weight: 400; }
svg .legend { font-size: 12px; }
svg .axis { font-size: 11px; fill: var(--muted); }
svg .bar-value { font-size: 11px; }
.bar { fill: var(--bar); }
.source { color: var(--muted); font-size: .8rem; margin: .2rem 0 0; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-size: .85rem; color: var(--muted); font-weight: 600; }
td.n, th.n { text-align: right; }
tr.no-task td { font-style: italic; }
.cell-note { display: block; color: var(--muted); font-size: .8rem; }
.note { color: var(--muted); font-size: .9rem; }
.campaign dl { display: grid; grid-template-columns: max-content 1fr; gap: .1rem 1rem; margin: 0 0 .5rem; }
.campaign dt { color: var(--muted); }
.campaign dd { margin: 0; }
.campaign .name-en { color: var(--muted); font-weight: 400; }
.quality li { margin: .2rem 0; }
.empty { color: var(--muted); }
section.country { break-before: page; }
section.country:first-of-type { break-before: auto; }

"""

PRINT_CSS = """
@page {{ size: A4; margin: 20mm 15mm 18mm 15mm;
  @top-left {{ content: {header_left}; font: 8pt system-ui, "DejaVu Sans", sans-serif; color: #5b6475; }}
  @top-right {{ content: {header_right}; font: 8pt system-ui, "DejaVu Sans", sans-serif; color: #5b6475; }}
  @bottom-left {{ content: {footer_left}; font: 8pt system-ui, "DejaVu Sans", sans-serif; color: #5b6475; }}
  @bottom-right {{ content: {footer_right}; font: 8pt system-ui, "DejaVu Sans", sans-serif; color: #5b6475; }}
}}
@media print {{
  body {{ font-size: 10pt; }}
  main {{ max-width: none; padding: 0; }}
  h2, h3 {{ break-after: avoid; break-inside: avoid; }}
  svg, tr, .headline, .campaign dl, .quality, p.note {{ break-inside: avoid; }}
  svg.map {{ max-height: 125mm; }}
  .headline {{ grid-template-columns: repeat(auto-fit, minmax(28mm, 1fr)); }}
  .scroll {{ overflow: visible; }}
}}
"""

CHART_WIDTH = 480
CHART_HEIGHT = 190
CHART_LEFT = 40  # room for the value axis' labels
CHART_BOTTOM = 26  # room for the periods' labels
TEXT_WIDTH = 7.0  # the widest a character of the axis' 11px text is drawn
BAR_MAX = 48


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

    def describe(self, words: Words) -> str:
        parts = []
        if self.country:
            parts.append(words.text("filter_country", name=f"{_country_name(self.country, words)} ({self.country})"))
        if self.campaign:
            parts.append(words.text("filter_campaign", name=self.campaign))
        if self.start and self.end:
            parts.append(words.text("filter_between", start=words.day(self.start), end=words.day(self.end)))
        elif self.start:
            parts.append(words.text("filter_from", start=words.day(self.start)))
        elif self.end:
            parts.append(words.text("filter_to", end=words.day(self.end)))
        if not parts:
            return words.text("every_action")
        return words.text("filtered", parts=", ".join(parts))


@dataclass(frozen=True)
class Heading:
    """What the user puts on the report's first lines (``--title``, ``--organisation``)."""

    title: str | None = None
    organisation: str | None = None


@dataclass
class CountyRow:
    code: str
    figures: dict[str, int]  # MEASURES, and sessions_uncounted, sessions_estimated


@dataclass
class Campaign:
    campaign_id: str | None  # None: the actions of a country under no campaign
    country: str
    name: str | None = None
    name_en: str | None = None
    lead: str | None = None
    partners: list[str] = field(default_factory=list)
    funder: str | None = None
    starts: date | None = None
    ends: date | None = None
    first: date | None = None
    last: date | None = None
    counties: list[CountyRow] = field(default_factory=list)


@dataclass
class Country:
    code: str
    headline: dict[str, int]
    materials: list[tuple[str, int, int, int]] = field(default_factory=list)  # kind, distributions, items, unknown
    counties: dict[str, CountyRow] = field(default_factory=dict)
    months: dict[date, tuple[int, int]] = field(default_factory=dict)  # actions, sessions
    plan_tasks: list[tuple[Any, ...]] = field(default_factory=list)


@dataclass(frozen=True)
class _Data:
    as_of_seq: int | None
    as_of_stored_at: datetime | None
    filters: Filters
    countries: list[Country]
    campaigns: list[Campaign]
    quality: dict[str, int]


def write_report(
    db: Path,
    out: Path,
    filters: Filters | None = None,
    *,
    lang: str | None = None,
    heading: Heading | None = None,
    measure: str | None = None,
) -> str:
    """Write the HTML report of the projection ``db`` (or its snapshot) to ``out``; return its
    language: ``lang``, else the language of its one country, else English. ``measure``: the one
    the maps shade (default: participants where a country held sessions, else actions)."""
    filters = filters or Filters()
    if lang is not None and lang not in LANGUAGES:
        raise SettingsInvalid(f"--lang {lang}: no such language; the report is written in {', '.join(LANGUAGES)}")
    if measure is not None and measure not in MEASURES:
        raise SettingsInvalid(f"--measure {measure}: no such measure; choose one of {', '.join(MEASURES)}")
    con = open_read_only(db)
    try:
        _check(con, filters, db)
        data = _read(con, filters)
        words = Words(
            lang or language_for([c.code for c in data.countries] or ([filters.country] if filters.country else []))
        )
        coordination = coordination_section(con, words)  # submissions and possible double reports
    finally:
        con.close()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    page = _render(data, words, heading or Heading(), measure).replace("</main>", coordination + "\n</main>", 1)
    out.write_text(page, encoding="utf-8")
    return words.lang


def has_figures(db: Path) -> bool:
    """Whether ``db`` (a projection, or a snapshot) holds the report's figures."""
    con = open_read_only(db)
    try:
        return bool(con.execute(HAS, ["report_cells"]).fetchone()[0])  # type: ignore[index]
    finally:
        con.close()


def _check(con: duckdb.DuckDBPyConnection, filters: Filters, db: Path) -> None:
    """Refuse a file without the report's view, and a filter that names what does not exist: an
    empty report would read as zero."""
    if not con.execute(HAS, ["report_cells"]).fetchone()[0]:  # type: ignore[index]
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


def _figures(values: tuple[Any, ...]) -> dict[str, int]:
    keys = ("events", "sessions", "participants", "sessions_uncounted", "sessions_estimated", "teams", "materials")
    return {k: int(v or 0) for k, v in zip(keys, values, strict=True)}


def _read(con: duckdb.DuckDBPyConnection, filters: Filters) -> _Data:
    where, params = filters.sql()

    def rows(query: str) -> list[tuple[Any, ...]]:
        return con.execute(query.format(where=where), params).fetchall()

    countries: dict[str, Country] = {}
    for code, events, sessions, participants, uncounted, estimated, teams, materials, counties in rows(HEADLINE):
        headline = _figures((events, sessions, participants, uncounted, estimated, teams, materials))
        countries[code] = Country(code, headline | {"counties": int(counties)})
    for code, kind, distributions, quantity, unknown in rows(MATERIALS):
        countries[code].materials.append((kind or "other", int(distributions), int(quantity), int(unknown)))

    campaigns: dict[tuple[str, str | None], Campaign] = {}
    for code, campaign_id, county, *figures, first, last in rows(BY_CAMPAIGN_COUNTY):
        row = _figures(tuple(figures))
        total = countries[code].counties.setdefault(county, CountyRow(county, dict.fromkeys(row, 0)))
        total.figures = {k: total.figures[k] + v for k, v in row.items()}
        campaign = campaigns.setdefault((code, campaign_id), Campaign(campaign_id, code))
        campaign.counties.append(CountyRow(county, row))
        campaign.first = min(d for d in (campaign.first, first) if d is not None) if first or campaign.first else None
        campaign.last = max(d for d in (campaign.last, last) if d is not None) if last or campaign.last else None
    partners_of = (
        dict(con.execute(PARTNERS).fetchall())
        if con.execute(HAS, ["campaign_partners"]).fetchone()[0]  # type: ignore[index]
        else {}
    )
    if con.execute(HAS, ["campaigns"]).fetchone()[0]:  # type: ignore[index]
        for cid, name, name_en, code, lead, funder, starts, ends in con.execute(DEFINED_CAMPAIGNS).fetchall():
            if filters.campaign not in (None, cid) or filters.country not in (None, code):
                continue
            campaign = campaigns.setdefault((code, cid), Campaign(cid, code))
            campaign.name, campaign.name_en, campaign.lead, campaign.funder = name, name_en, lead, funder
            campaign.partners, campaign.starts, campaign.ends = list(partners_of.get(cid) or []), starts, ends
    for campaign in campaigns.values():
        campaign.counties.sort(key=lambda r: (-r.figures["participants"], -r.figures["events"], r.code))

    for code, month, events, sessions in rows(BY_MONTH):
        countries[code].months[month] = (int(events), int(sessions))
    titles = {ref: (title, country) for ref, title, country in con.execute(DEFINED_TASKS).fetchall()}
    used: dict[str, set[str]] = {}
    for code, ref, *figures in rows(BY_PLAN_TASK):
        title = titles.get(ref, (None, None))[0] if ref is not None else None
        countries[code].plan_tasks.append((ref, title, *(int(f or 0) for f in figures)))
        used.setdefault(code, set()).add(ref)
    for ref, (title, country) in titles.items():  # a task of the country with no action: zeros, not absent
        if country in countries and ref not in used.get(country, set()):
            countries[country].plan_tasks.append((ref, title, 0, 0, 0, 0, 0, 0, 0))
    for country in countries.values():
        country.plan_tasks.sort(key=lambda t: (t[0] is None, str(t[0])))
        if all(t[0] is None for t in country.plan_tasks):  # no task defined nor named: no table
            country.plan_tasks = []
    estimated, uncounted, unknown = rows(QUALITY)[0]
    log = con.execute(LOG_QUALITY).fetchone() or (0, 0, 0)
    quality = {"sessions_estimated": estimated, "sessions_uncounted": uncounted, "materials_unknown": unknown}
    quality |= dict(zip(("corrections", "retractions", "rejected"), log, strict=True))
    mark = con.execute(AS_OF).fetchone()
    ordered = sorted(campaigns.values(), key=lambda c: (c.country, c.campaign_id is None, c.campaign_id or ""))
    return _Data(
        as_of_seq=int(mark[0]) if mark else None,
        as_of_stored_at=mark[1] if mark else None,
        filters=filters,
        countries=list(countries.values()),
        campaigns=ordered,
        quality={k: int(v or 0) for k, v in quality.items()},
    )


COUNTRY_NAMES = {  # each country as each language names it
    "AL": {"en": "Albania", "sq": "Shqipëria", "pl": "Albania"},
    "PL": {"en": "Poland", "sq": "Polonia", "pl": "Polska"},
}


def _country_name(code: str, words: Words) -> str:
    return COUNTRY_NAMES.get(code, {}).get(words.lang) or regions().countries.get(code, code)


def _county_names() -> dict[str, str]:
    """Counties by their own names (Tiranë, śląskie): a ministry's reader knows them so."""
    return {code: county.name for code, county in regions().counties.items()}


def _css_string(text: str) -> str:
    """``text`` as a CSS string that cannot end the string, the rule or the style element."""
    out = []
    for ch in text:
        if ch in '"\\<>' or ord(ch) < 32 or ord(ch) == 127:
            out.append(f"\\{ord(ch):x} ")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _render(data: _Data, words: Words, heading: Heading, measure: str | None) -> str:
    title = heading.title or words.text("title")
    if data.as_of_seq is None or data.as_of_stored_at is None:
        as_of = words.text("as_of_nothing")
        stamp = ""
    else:
        day, time = words.moment(data.as_of_stored_at)
        as_of = words.text("as_of", day=day, time=time)
        stamp = data.as_of_stored_at.isoformat(timespec="seconds")
    if data.countries:
        sections = "\n".join(_section(country, words, measure) for country in data.countries)
        sections += "\n" + _campaigns(data, words)
    elif data.filters == Filters():
        sections = f'<p class="empty" id="no-actions">{escape(words.text("no_actions"))}</p>'
    else:
        sections = f'<p class="empty" id="no-actions">{escape(words.text("no_match"))}</p>'
    page = words.text("page", page="\x00", pages="\x01")
    before, _, rest = page.partition("\x00")
    middle, _, after = rest.partition("\x01")
    page_css = f"{_css_string(before)} counter(page) {_css_string(middle)} counter(pages) {_css_string(after)}"
    print_css = PRINT_CSS.format(
        header_left=_css_string(title),
        header_right=_css_string(heading.organisation or ""),
        footer_left=_css_string(as_of),
        footer_right=page_css,
    )
    organisation = (
        f'<p class="organisation" id="organisation">{escape(heading.organisation)}</p>\n'
        if heading.organisation
        else ""
    )
    return f"""<!DOCTYPE html>
<html lang="{words.lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<style>{CSS}{print_css}</style>
</head>
<body>
<main>
<header>
{organisation}<h1 id="title">{escape(title)}</h1>
<p class="as-of" id="as-of" data-stored-at="{escape(stamp)}" data-seq="{data.as_of_seq or 0}">{escape(as_of)}</p>
<p class="filters" id="filters">{escape(data.filters.describe(words))}</p>
</header>

{sections}

<section class="quality" id="data-quality">
<h2>{escape(words.text("h_quality"))}</h2>
{_quality(data, words)}
</section>
</main>
</body>
</html>
"""


def _has(country: Country) -> dict[str, bool]:
    """Which measures a country has: only those get a card, a column, a chart."""
    h = country.headline
    return {
        "events": True,
        "sessions": h["sessions"] > 0,
        "participants": h["sessions"] > 0,
        "teams": h["teams"] > 0,
        "materials": bool(country.materials),
    }


def _section(country: Country, words: Words, measure: str | None) -> str:
    code, h = escape(country.code), country.headline
    has = _has(country)
    cards = [_card(code, "events", words.number(h["events"]), words.text("card_events"))]
    if has["sessions"]:
        cards.append(_card(code, "sessions", words.number(h["sessions"]), words.text("card_sessions")))
        notes = _participant_notes(h["sessions_uncounted"], h["sessions_estimated"], words)
        cards.append(
            _card(code, "participants", words.number(h["participants"]), words.text("card_participants"), notes)
        )
    for kind, _, quantity, unknown in country.materials:
        notes = [words.count("materials_unknown", unknown)] if unknown else []
        key = kind if kind in KINDS else "other"
        cards.append(_card(code, f"materials-{escape(kind)}", words.number(quantity), words.text(f"card_{key}"), notes))
    if has["teams"]:
        cards.append(_card(code, "teams", words.number(h["teams"]), words.text("card_teams")))
    cards.append(
        _card(
            code,
            "counties",
            words.number(h["counties"]),
            words.text(f"card_counties_{_area(country.code)}"),
            [words.text("card_counties_note")],
        )
    )
    shaded = measure or ("participants" if has["participants"] else "events")
    parts = [
        f'<section class="country" id="country-{code}" data-country="{code}">',
        f"<h2>{escape(_country_name(country.code, words))}</h2>",
        f'<ul class="headline" id="headline-{code}">\n' + "\n".join(cards) + "\n</ul>",
    ]
    if has_map(country.code):
        label = words.text(f"h_map_{_area(country.code)}", measure=words.text(f"m_{shaded}"))
        values = {c: row.figures[shaded] for c, row in country.counties.items() if row.figures[shaded]}
        svg = county_map(
            country.code,
            values,
            _county_names(),
            label,
            words.text("legend_none"),
            words.number,
        )
        parts += [
            f'<h3 id="map-heading-{code}">{escape(label)}</h3>',
            svg,
            f'<p class="source">{escape(words.text("map_source"))}</p>',
        ]
    parts += [
        f"<h3>{escape(words.text(f'h_counties_{_area(country.code)}'))}</h3>",
        _county_table(f"counties-{code}", country.code, list(country.counties.values()), has, words),
    ]
    if has["materials"]:
        parts += [f"<h3>{escape(words.text('h_materials'))}</h3>", _materials_table(country, words)]
    timeline = _timeline(country, has, words)
    if timeline:
        parts += timeline
    if country.plan_tasks:
        parts += [
            f"<h3>{escape(words.text('h_plan_tasks'))}</h3>",
            _plan_task_table(country, words),
            f'<p class="note" id="plan-tasks-note-{code}">{escape(words.text("tasks_note"))}</p>',
        ]
    parts.append("</section>")
    return "\n".join(parts)


def _area(country: str) -> str:
    """Which word a country's counties take: Albania's qarqe, Poland's voivodeships."""
    return "PL" if country == "PL" else "AL"


def _card(code: str, key: str, value: str, label: str, notes: list[str] | None = None) -> str:
    note = f'<span class="note" id="headline-{code}-{key}-note">{escape("; ".join(notes))}</span>' if notes else ""
    return (
        f'<li><span class="value" id="headline-{code}-{key}">{escape(value)}</span>'
        f'<span class="label">{escape(label)}</span>{note}</li>'
    )


def _participant_notes(uncounted: int, estimated: int, words: Words) -> list[str]:
    """What a participants figure leaves out or estimates, said next to it."""
    notes = [words.count("uncounted", uncounted)] if uncounted else []
    return notes + ([words.count("estimated", estimated)] if estimated else [])


def _columns(has: dict[str, bool]) -> list[str]:
    return [m for m in MEASURES if has[m]]


def _county_table(table_id: str, country: str, counties: list[CountyRow], has: dict[str, bool], words: Words) -> str:
    columns = _columns(has)
    names = _county_names()
    head = f"<th>{escape(words.text(f'col_county_{_area(country)}'))}</th>" + "".join(
        f'<th class="n">{escape(words.text(f"m_{m}"))}</th>' for m in columns
    )
    rows = []
    for row in sorted(counties, key=lambda r: (-r.figures["participants"], -r.figures["events"], r.code)):
        f = row.figures
        cells = []
        for m in columns:
            if m == "participants" and not f["sessions"]:
                cells.append(f'<td class="n">{escape(words.text("no_sessions"))}</td>')
                continue
            notes = (
                _participant_notes(f["sessions_uncounted"], f["sessions_estimated"], words)
                if m == "participants"
                else []
            )
            note = f'<span class="cell-note">{escape("; ".join(notes))}</span>' if notes else ""
            cells.append(f'<td class="n">{escape(words.number(f[m]))}{note}</td>')
        rows.append(
            f'<tr data-county="{escape(row.code)}"><td>{escape(row.code)} {escape(names.get(row.code, ""))}</td>'
            + "".join(cells)
            + "</tr>"
        )
    return (
        f'<div class="scroll"><table id="{escape(table_id)}">\n<thead><tr>{head}</tr></thead>\n<tbody>\n'
        + "\n".join(rows)
        + "\n</tbody>\n</table></div>"
    )


def _kind(kind: str) -> str:
    return kind if kind in KINDS else "other"


def _materials_table(country: Country, words: Words) -> str:
    rows = "\n".join(
        f'<tr data-kind="{escape(str(kind))}"><td>{escape(words.text("kind_" + _kind(kind)))}</td>'
        f'<td class="n">{escape(words.number(distributions))}</td><td class="n">{escape(words.number(quantity))}</td>'
        f'<td class="n">{escape(words.number(unknown))}</td></tr>'
        for kind, distributions, quantity, unknown in country.materials
    )
    head = f"<th>{escape(words.text('col_kind'))}</th>" + "".join(
        f'<th class="n">{escape(words.text(key))}</th>' for key in ("col_distributions", "m_materials", "col_unknown")
    )
    return (
        f'<div class="scroll"><table id="materials-{escape(country.code)}">\n<thead><tr>{head}</tr></thead>\n'
        f"<tbody>\n{rows}\n</tbody>\n</table></div>"
    )


def _periods(months: dict[date, tuple[int, int]], which: int) -> tuple[str, list[tuple[date, int]]]:
    """The time chart's periods, every one from the first with a value to the last: months over up
    to 18 months, quarters over up to 4 years, else years."""
    dated = {m: v[which] for m, v in months.items() if v[which]}
    if not dated:
        return "month", []
    first, last = min(dated), max(dated)
    span = (last.year - first.year) * 12 + last.month - first.month + 1
    unit, step = ("month", 1) if span <= 18 else ("quarter", 3) if span <= 48 else ("year", 12)

    def start(d: date) -> date:
        return date(d.year, 1 if step == 12 else (d.month - 1) // step * step + 1, 1)

    totals: dict[date, int] = {}
    for month, value in dated.items():
        totals[start(month)] = totals.get(start(month), 0) + value
    periods, period = [], start(first)
    while period <= start(last):
        periods.append((period, totals.get(period, 0)))
        month = period.month - 1 + step
        period = date(period.year + month // 12, month % 12 + 1, 1)
    return unit, periods


def _nice_top(top: int) -> int:
    """The value axis' top: 1, 2 or 5 times a power of ten, at least ``top``."""
    if top <= 5:
        return max(top, 1)
    power = 10 ** int(math.log10(top))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= top)


def _timeline(country: Country, has: dict[str, bool], words: Words) -> list[str]:
    what = "sessions" if has["sessions"] else "events"
    unit, periods = _periods(country.months, 1 if what == "sessions" else 0)
    if not periods:
        return []
    code = escape(country.code)
    heading = words.text(f"h_time_{what}_{unit}")
    top = _nice_top(max(v for _, v in periods))
    plot_w = CHART_WIDTH - CHART_LEFT - 10
    axis_y = CHART_HEIGHT - CHART_BOTTOM
    plot_h = axis_y - 24  # above the tallest bar: its value
    step = plot_w / len(periods)
    width = min(max(step * 0.7, 2), BAR_MAX)
    parts = []
    for tick in sorted({0, top // 2 if top % 2 == 0 and top > 1 else top, top}):
        y = axis_y - plot_h * tick / top
        parts.append(f'<line x1="{CHART_LEFT}" y1="{y:.1f}" x2="{CHART_WIDTH - 10}" y2="{y:.1f}" stroke="#e3e7ee"/>')
        parts.append(
            f'<text class="axis value-tick" x="{CHART_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{escape(words.number(tick))}</text>"
        )
    parts.append(f'<line x1="{CHART_LEFT}" y1="{axis_y}" x2="{CHART_WIDTH - 10}" y2="{axis_y}" stroke="#8a94a6"/>')
    labels = [
        _period_label(p, unit, i == 0 or p.year != periods[i - 1][0].year, words) for i, (p, _) in enumerate(periods)
    ]
    widest = max(len(label) for label in labels) * TEXT_WIDTH + 6
    every = max(1, math.ceil(widest / step))
    for i, ((period, value), label) in enumerate(zip(periods, labels, strict=True)):
        x = CHART_LEFT + i * step + (step - width) / 2
        centre = x + width / 2
        key = period.isoformat()[:7]
        if value:
            h = plot_h * value / top
            parts.append(
                f'<rect class="bar" x="{x:.1f}" y="{axis_y - h:.1f}" width="{width:.1f}" height="{h:.1f}" '
                f'data-period="{key}" data-value="{value}">'
                f"<title>{escape(label)}: {escape(words.number(value))}</title></rect>"
                f'<text class="bar-value" x="{centre:.1f}" y="{axis_y - h - 4:.1f}" text-anchor="middle" '
                f'data-period="{key}">{escape(words.number(value))}</text>'
            )
        if i % every == 0 or value:
            parts.append(
                f'<text class="axis tick" x="{centre:.1f}" y="{axis_y + 16}" text-anchor="middle" '
                f'data-period="{key}">{escape(label)}</text>'
            )
    svg = (
        f'<svg id="chart-time-{code}" class="chart" viewBox="0 0 {CHART_WIDTH} {CHART_HEIGHT}" role="img" '
        f'aria-label="{escape(heading)}" data-unit="{unit}">\n' + "\n".join(parts) + "\n</svg>"
    )
    return [f'<h3 id="chart-time-heading-{code}">{escape(heading)}</h3>', svg]


def _period_label(period: date, unit: str, first_of_year: bool, words: Words) -> str:
    if unit == "year":
        return str(period.year)
    if unit == "quarter":
        return words.quarter(period)
    return words.month(period, with_year=first_of_year)


def _plan_task_table(country: Country, words: Words) -> str:
    area = _area(country.code)
    counties = "col_counties_PL" if area == "PL" else "col_counties"
    head = "".join(f"<th>{escape(words.text(key))}</th>" for key in ("col_task", "col_title")) + "".join(
        f'<th class="n">{escape(words.text(key))}</th>'
        for key in ("m_events", "m_sessions", "m_participants", "m_teams", counties)
    )
    rows = []
    for ref, title, events, sessions, participants, teams, counties, uncounted, estimated in country.plan_tasks:
        notes = _participant_notes(uncounted, estimated, words)
        note = f'<span class="cell-note">{escape("; ".join(notes))}</span>' if notes else ""
        people = words.number(participants) if sessions else words.text("no_sessions")
        if ref is None:
            first = f'<tr class="no-task" data-task-ref=""><td colspan="2">{escape(words.text("no_task"))}</td>'
        else:
            first = f'<tr data-task-ref="{escape(str(ref))}"><td>{escape(str(ref))}</td><td>{escape(title or "")}</td>'
        rows.append(
            first
            + f'<td class="n">{escape(words.number(events))}</td><td class="n">{escape(words.number(sessions))}</td>'
            f'<td class="n">{escape(people)}{note}</td><td class="n">{escape(words.number(teams))}</td>'
            f'<td class="n">{escape(words.number(counties))}</td></tr>'
        )
    return (
        f'<div class="scroll"><table class="tasks" id="plan-tasks-{escape(country.code)}">\n'
        f"<thead><tr>{head}</tr></thead>\n"
        f"<tbody>\n" + "\n".join(rows) + "\n</tbody>\n</table></div>"
    )


def _campaigns(data: _Data, words: Words) -> str:
    if not data.campaigns:
        return ""
    has_by_country = {c.code: _has(c) for c in data.countries}
    parts = ['<section class="campaigns" id="campaigns">', f"<h2>{escape(words.text('h_campaigns'))}</h2>"]
    for campaign in data.campaigns:
        has = has_by_country.get(campaign.country) or dict.fromkeys(MEASURES, True)
        key = campaign.campaign_id or f"none-{campaign.country}"
        country = _country_name(campaign.country, words)
        if campaign.campaign_id is None:
            title = f"{words.text('h_no_campaign')}: {country}"
            details = ""
        else:
            title = campaign.name or campaign.campaign_id
            if campaign.name_en and campaign.name_en != campaign.name and words.lang == "en":
                title = campaign.name_en
            not_given = words.text("not_given")
            if campaign.starts or campaign.ends:
                period = (
                    f"{words.day(campaign.starts) if campaign.starts else '…'} – "
                    f"{words.day(campaign.ends) if campaign.ends else '…'}"
                )
            else:
                period = not_given
            items = [
                (words.text("lead"), campaign.lead or not_given),
                (words.text("partners"), ", ".join(campaign.partners) or not_given),
                (words.text("funder"), campaign.funder or not_given),
                (words.text("period"), period),
            ]
            details = "<dl>" + "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in items) + "</dl>"
        dated = ""
        if campaign.first and campaign.last:
            span = words.text("actions_dated", start=words.day(campaign.first), end=words.day(campaign.last))
            dated = f'<p class="note">{escape(span)}</p>'
        table = (
            _county_table(f"campaign-counties-{key}", campaign.country, campaign.counties, has, words)
            if campaign.counties
            else f'<p class="empty">{escape(words.text("campaign_no_actions"))}</p>'
        )
        parts.append(
            f'<div class="campaign" id="campaign-{escape(key)}" data-campaign="{escape(campaign.campaign_id or "")}" '
            f'data-country="{escape(campaign.country)}">\n'
            f'<h3>{escape(title)} <span class="name-en">({escape(country)})</span></h3>\n'
            f"{details}\n{dated}\n{table}\n</div>"
        )
    parts.append("</section>")
    return "\n".join(parts)


def _quality(data: _Data, words: Words) -> str:
    q = data.quality
    report = [
        (key, words.count(phrase, q[key]))
        for key, phrase in (
            ("sessions_uncounted", "uncounted"),
            ("sessions_estimated", "estimated"),
            ("materials_unknown", "materials_unknown"),
        )
        if q[key]
    ]
    log = [(key, words.count(key, q[key])) for key in ("corrections", "retractions", "rejected")]
    first = (
        '<ul class="quality" id="quality">\n'
        + "\n".join(f'<li id="quality-{k.replace("_", "-")}">{escape(t)}</li>' for k, t in report)
        + "\n</ul>"
        if report
        else f'<p id="quality">{escape(words.text("quality_none"))}</p>'
    )
    return (
        f"<p>{escape(words.text('quality_report'))}</p>\n{first}\n<p>{escape(words.text('quality_log'))}</p>\n"
        '<ul class="quality" id="quality-log">\n'
        + "\n".join(f'<li id="quality-{k}">{escape(t)}</li>' for k, t in log)
        + "\n</ul>"
    )
