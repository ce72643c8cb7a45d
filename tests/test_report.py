"""The HTML report: its numbers in the markup, in each of its languages, with a map of each
country's counties, a section per campaign, its filters, self-contained, and as a browser renders
and prints it (the numbers, no two labels on top of each other, page numbers and running headers)."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
import sys
import uuid
from datetime import UTC, date, datetime
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import pytest

from consumers.delivery import StreamMessage
from consumers.projector import Projector
from outreach.synthetic import generate
from projections.report import Filters, Heading, _periods, write_report
from projections.report_words import COUNTS, TEXTS
from projections.snapshot import snapshot_path, write_snapshot
from projections.store import ProjectionStore
from schemas.errors import SettingsInvalid
from schemas.reference import regions
from tests.conftest import build_demo
from tests.test_events import campaign, materials, session

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
NBSP = "\xa0"
TASK = "pl-nap-2013-2015/III/4"
TITLE = "Powołanie wojewódzkich zespołów ds. przeciwdziałania handlowi ludźmi"
AL_COUNTIES = [f"AL-{n:02d}" for n in range(1, 13)]
PL_COUNTIES = [f"PL-{n:02d}" for n in range(2, 33, 2)]
PL_TEAMS = ["PL-06", "PL-08", "PL-12", "PL-14", "PL-20", "PL-24", "PL-32"]  # the seed teams' voivodeships
HEADLINES = {  # the seed reports, in English: Albania and Poland each on its own
    "AL": {
        "events": "7",
        "sessions": "6",
        "participants": "97",
        "participants-note": "2 sessions without a participant count are not included",
        "materials-leaflet": "4,000",
        "counties": "1",
        "counties-note": "by actions of any kind",
    },
    "PL": {  # no session held: no sessions or participants card; every team's voivodeship reached
        "events": "7",
        "teams": "7",
        "counties": "7",
        "counties-note": "by actions of any kind",
    },
}
# Every heading of the seed reports' report, by language: countries, maps, tables, charts, campaigns.
HEADINGS = {
    "en": [
        "Albania",
        "Participants counted by county",
        "Counties",
        "Materials distributed by kind",
        "Sessions by month",
        "Poland",
        "Actions by voivodeship",
        "Voivodeships",
        "Actions by year",
        "National action plan tasks",
        "Campaigns",
        "On the prevention of irregular migration (Albania)",
        "Improved cooperation structures to prevent trafficking in human beings (Poland)",
        "Actions under no campaign: Poland (Poland)",
        "Data quality",
        "Possible double reports",
    ],
    "sq": [
        "Shqipëria",
        "Pjesëmarrës të numëruar sipas qarqeve",
        "Qarqet",
        "Materialet e shpërndara sipas llojit",
        "Takimet sipas muajve",
        "Polonia",
        "Veprimtari sipas krahinave",
        "Krahinat",
        "Veprimtaritë sipas viteve",
        "Detyrat e planit kombëtar të veprimit",
        "Fushatat",
        "Mbi parandalimin e migracionit të parregullt (Shqipëria)",
        "Poprawa współpracy w zakresie krajowych struktur, powołanych do walki z handlem ludźmi (Polonia)",
        "Veprimtari jashtë fushatave: Polonia (Polonia)",
        "Cilësia e të dhënave",
        "Raportime të mundshme të dyfishta",
    ],
    "pl": [
        "Albania",
        "Policzeni uczestnicy według obwodów",
        "Obwody",
        "Rozdane materiały według rodzaju",
        "Spotkania według miesięcy",
        "Polska",
        "Działania według województw",
        "Województwa",
        "Działania według lat",
        "Zadania krajowego planu działania",
        "Kampanie",
        "Mbi parandalimin e migracionit të parregullt (Albania)",
        "Poprawa współpracy w zakresie krajowych struktur, powołanych do walki z handlem ludźmi (Polska)",
        "Działania poza kampaniami: Polska (Polska)",
        "Jakość danych",
        "Możliwe podwójne zgłoszenia",
    ],
}
AS_OF = {
    "en": "Figures as received by {day} {month} {year}, {time} UTC",
    "sq": "Shifrat e marra deri më {day} {month} {year}, ora {time} UTC",
    "pl": "Dane według stanu na {day} {month} {year}, godz. {time} UTC",
}
MONTHS = {  # each month as each language writes it in a date (Polish: in the genitive)
    "en": [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ],
    "sq": [
        "janar",
        "shkurt",
        "mars",
        "prill",
        "maj",
        "qershor",
        "korrik",
        "gusht",
        "shtator",
        "tetor",
        "nëntor",
        "dhjetor",
    ],
    "pl": [
        "stycznia",
        "lutego",
        "marca",
        "kwietnia",
        "maja",
        "czerwca",
        "lipca",
        "sierpnia",
        "września",
        "października",
        "listopada",
        "grudnia",
    ],
}
DECEMBER_2017 = {"en": "Dec 2017", "sq": "dhj 2017", "pl": "gru 2017"}  # the time axis' one month
PAGE = {"en": "Page 1 of", "sq": "Faqja 1 nga", "pl": "Strona 1 z"}
BROWSER_FLAGS = [
    "--headless",
    "--no-sandbox",  # the tests may run as root, in a container
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class Page(HTMLParser):
    """What the tests look at: text by element id, every tag's attributes, table rows, titles."""

    def __init__(self, markup: str) -> None:
        super().__init__(convert_charrefs=True)
        self.text_by_id: dict[str, str] = {}
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.rows: dict[str, list[list[str]]] = {}
        self._open_ids: list[tuple[str, str]] = []  # (tag, id) of elements being read
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._row: list[str] | None = None
        self._stack: list[str] = []
        self.feed(markup)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        self.tags.append((tag, found))
        self._stack.append(tag)
        if "id" in found:
            self._open_ids.append((tag, found["id"]))
            self.text_by_id[found["id"]] = ""
        if tag == "table":
            self._table = found.get("id", "")
            self.rows[self._table] = []
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if self._stack and self._stack[-1] == tag:
            self._stack.pop()
        if self._open_ids and self._open_ids[-1][0] == tag:
            self._open_ids.pop()
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table is not None:
            self.rows[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        for _, element_id in self._open_ids:
            self.text_by_id[element_id] += data
        if self._cell is not None:
            self._cell.append(data)

    def find(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        wanted = {k.replace("_", "-"): v for k, v in attrs.items()}
        return [a for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in wanted.items())]


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_demo(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="module")
def reports(db: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("report")
    made = {}
    for lang in ("en", "sq", "pl"):
        made[lang] = folder / f"report-{lang}.html"
        assert write_report(db, made[lang], lang=lang) == lang
    return made


@pytest.fixture(scope="module")
def report(reports: dict[str, Path]) -> Path:
    return reports["en"]


def stored_at(db: Path) -> datetime:
    con = duckdb.connect(str(db), read_only=True)
    try:
        row = con.execute("SELECT last_stored_at FROM checkpoint").fetchone()
    finally:
        con.close()
    assert row is not None
    return row[0].astimezone(UTC)  # type: ignore[no-any-return]


def as_of(lang: str, db: Path) -> str:
    when = stored_at(db)
    month = MONTHS[lang][when.month - 1]
    return AS_OF[lang].format(day=when.day, month=month, year=when.year, time=f"{when:%H:%M}")


def headline(page: Page, country: str) -> dict[str, str]:
    prefix = f"headline-{country}-"
    return {k.removeprefix(prefix): " ".join(v.split()) for k, v in page.text_by_id.items() if k.startswith(prefix)}


def headings(html: str) -> list[str]:
    return [" ".join(re.sub(r"<[^>]+>", "", h).split()) for h in re.findall(r"<h[23][^>]*>(.*?)</h[23]>", html, re.S)]


def visible_text(html: str) -> str:
    """What a reader sees: the markup without its style, tags and tooltips' markup."""
    html = re.sub(r"<style>.*?</style>", " ", html, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def map_of(page: Page, country: str) -> dict[str, str]:
    return {
        a["data-county"]: a["data-value"]
        for a in page.find("path", **{"class": "county"})
        if a["data-county"][:2] == country
    }


def check_numbers(page: Page) -> None:
    """The figures of the seed reports, wherever the English report shows them."""
    for country, figures in HEADLINES.items():
        assert headline(page, country) == figures, country
    # The maps: every county one shape, its value on it (0: no action there); the measure is
    # participants where a country held sessions, else actions.
    assert map_of(page, "AL") == {c: "97" if c == "AL-06" else "0" for c in AL_COUNTIES}
    assert map_of(page, "PL") == {c: "1" if c in PL_TEAMS else "0" for c in PL_COUNTIES}
    labels = {a["data-county"] for a in page.find("text", **{"class": "map-label dark"})}
    assert labels == {"AL-06", *PL_TEAMS}  # the shaded counties take white names
    # The time charts: Albania's six sessions in December 2017; Poland's teams by year, 2010 to 2015.
    bars = [(r["data-period"], r["data-value"]) for r in page.find("rect", **{"class": "bar"})]
    assert bars == [("2017-12", "6"), ("2010-01", "1"), ("2014-01", "5"), ("2015-01", "1")]
    ticks = [a["data-period"] for a in page.find("text", **{"class": "axis tick"})]
    assert ticks == ["2017-12", "2010-01", "2011-01", "2012-01", "2013-01", "2014-01", "2015-01"]
    assert [page.text_by_id[k] for k in ("chart-time-heading-AL", "chart-time-heading-PL")] == [
        "Sessions by month",
        "Actions by year",
    ]
    assert page.rows["counties-AL"] == [
        ["County", "Actions", "Sessions", "Participants counted", "Items distributed"],
        ["AL-06 Korçë", "7", "6", "972 sessions without a participant count are not included", "4,000"],
    ]
    assert page.rows["counties-PL"] == [["Voivodeship", "Actions", "Teams established"]] + [
        [f"{c} {regions().counties[c].name}", "1", "1"] for c in PL_TEAMS
    ]
    assert page.rows["materials-AL"] == [
        ["Kind", "Distributions", "Items distributed", "Distributions of unknown quantity"],
        ["Leaflets", "1", "4,000", "0"],
    ]
    assert "materials-PL" not in page.rows  # Poland distributed nothing: no table of nothing
    # The plan task's six teams, and Mazowieckie's of 2010 under no task: seven, as the headline.
    assert page.rows["plan-tasks-PL"] == [
        ["Task", "Title", "Actions", "Sessions", "Participants counted", "Teams established", "Voivodeships"],
        [TASK, TITLE, "6", "0", "no sessions", "6", "6"],
        ["Under no task", "1", "0", "no sessions", "1", "1"],
    ]
    assert "plan-tasks-AL" not in page.rows  # no task defined for Albania, none named
    assert " ".join(page.text_by_id["quality"].split()) == "2 sessions without a participant count are not included"
    assert [page.text_by_id[f"quality-{k}"] for k in ("corrections", "retractions", "rejected")] == [
        "0 corrections applied",
        "0 actions withdrawn by their agencies",
        "0 reports refused as invalid (in no total)",
    ]


def test_the_markup_holds_the_seed_numbers(report: Path, db: Path) -> None:
    html = report.read_text(encoding="utf-8")
    page = Page(html)
    check_numbers(page)
    assert page.text_by_id["as-of"] == as_of("en", db)
    assert page.text_by_id["title"] == "Outreach actions against trafficking in human beings"
    assert page.text_by_id["filters"] == "Every action received; an action counts in the month it started."
    assert [a["data-country"] for a in page.find("section", **{"class": "country"})] == ["AL", "PL"]
    # Each county's shape has a tooltip; each campaign a section with what defines it.
    assert "<title>Korçë: 97</title>" in html
    assert "<title>Tiranë: no actions</title>" in html
    assert [(a["data-campaign"], a["data-country"]) for a in page.find("div", **{"class": "campaign"})] == [
        ("al-irregular-migration-prevention", "AL"),
        ("pl-improved-cooperation-structures", "PL"),
        ("", "PL"),  # Poland's teams, under no campaign: never added to Albania's actions
    ]
    albania = html.split('id="campaign-al-irregular-migration-prevention"', 1)[1].split("</div>", 1)[0]
    assert re.findall(r"<dt>([^<]+)</dt><dd>([^<]+)</dd>", albania) == [
        ("Lead agency", "al-national-coordinator"),
        (
            "Partners",
            "al-korce-regional-committee, al-ministry-education, al-state-police-border-migration, iom-albania",
        ),
        ("Funded by", "not given"),
        ("Period", "not given"),
    ]
    assert "Its actions, from 20 December 2017 to 21 December 2017" in albania
    poland = html.split('id="campaign-pl-improved-cooperation-structures"', 1)[1].split("</div>", 1)[0]
    assert "<dt>Funded by</dt><dd>Norweski Mechanizm Finansowy 2009-2014, Program PL-15</dd>" in poland
    assert "No action of this campaign in this report." in poland
    assert page.rows["campaign-counties-none-PL"] == page.rows["counties-PL"]
    assert "@page { size: A4;" in html and "@bottom-right { content: " in html


# English labels: none may stay in an Albanian or Polish report. A fragment that is the same in the
# other languages (a proper name) is not one.
def _fragments(text: str) -> list[str]:
    return [f.strip(" .,:;()“”„") for f in re.split(r"\{[a-z_]+\}", text) if len(f.strip(" .,:;()“”„")) > 3]


def _english() -> list[str]:
    """Every English phrase of the report's texts, and every English word of four letters or more
    that no Albanian or Polish text has (Natural Earth, UTC and the like are everyone's)."""
    texts = [by_lang["en"] for by_lang in TEXTS.values()]
    texts += [form for by_lang in COUNTS.values() for form in by_lang["en"].values()]
    theirs = " ".join(
        [by_lang[lang] for by_lang in TEXTS.values() for lang in ("sq", "pl")]
        + [form for by_lang in COUNTS.values() for lang in ("sq", "pl") for form in by_lang[lang].values()]
    )
    phrases = {fragment for text in texts for fragment in _fragments(text) if fragment not in theirs}
    words = {word for text in texts for word in re.findall(r"[A-Za-z]{4,}", text) if word not in theirs}
    return sorted(phrases | words)


ENGLISH = _english()


@pytest.mark.parametrize("lang", ["en", "sq", "pl"])
def test_each_language_has_every_heading_and_no_english_left(reports: dict[str, Path], db: Path, lang: str) -> None:
    html = reports[lang].read_text("utf-8")
    page = Page(html)
    assert f'<html lang="{lang}">' in html
    assert headings(html) == HEADINGS[lang]
    assert page.text_by_id["as-of"] == as_of(lang, db)
    # The maps: every county one shape with its value, and its name and value printed on it.
    assert map_of(page, "AL") == {c: "97" if c == "AL-06" else "0" for c in AL_COUNTIES}
    assert map_of(page, "PL") == {c: "1" if c in PL_TEAMS else "0" for c in PL_COUNTIES}
    names = regions().counties
    labels = re.findall(
        r'data-county="([A-Z]{2}-[0-9]{2})"><tspan[^>]*>([^<]+)</tspan><tspan class="map-value"[^>]*>([^<]+)<', html
    )
    assert [code for code, _, _ in labels] == AL_COUNTIES + PL_COUNTIES
    assert all(name == names[code].name for code, name, _ in labels)
    assert {code: value for code, _, value in labels if value != "–"} == {"AL-06": "97", **dict.fromkeys(PL_TEAMS, "1")}
    # The time axes: every period labelled, the value axis from 0, every bar's value printed.
    ticks = re.findall(r'<text class="axis tick"[^>]*data-period="([0-9-]+)">([^<]+)<', html)
    assert ticks == [("2017-12", DECEMBER_2017[lang]), *((f"{y}-01", str(y)) for y in range(2010, 2016))]
    values = re.findall(r'<text class="axis value-tick"[^>]*>([^<]+)<', html)
    assert values == ["0", "5", "10", "0", "5"]  # Albania's 6 sessions on an axis to 10; Poland's 5 teams to 5
    printed = re.findall(r'<text class="bar-value"[^>]*data-period="([0-9-]+)">([^<]+)<', html)
    assert printed == [("2017-12", "6"), ("2010-01", "1"), ("2014-01", "5"), ("2015-01", "1")]
    # Numbers as the language writes them.
    leaflets = page.text_by_id["headline-AL-materials-leaflet"]
    assert leaflets == {"en": "4,000", "sq": f"4{NBSP}000", "pl": f"4{NBSP}000"}[lang]
    # Printed, every page carries its number in the language.
    numbered = {
        "en": '"Page " counter(page) " of " counter(pages)',
        "sq": '"Faqja " counter(page) " nga " counter(pages)',
        "pl": '"Strona " counter(page) " z " counter(pages)',
    }
    assert numbered[lang] in html
    if lang == "en":
        return
    text = visible_text(html)
    left = [word for word in ENGLISH if re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text)]
    assert left == []
    assert len(ENGLISH) > 150  # the check covers every label and word, not a handful of them


def test_the_language_follows_the_country_unless_given(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    assert write_report(db, out, Filters(country="AL")) == "sq"
    assert write_report(db, out, Filters(country="PL")) == "pl"
    assert write_report(db, out) == "en"  # two countries
    assert write_report(db, out, Filters(country="PL"), lang="en") == "en"
    with pytest.raises(SettingsInvalid, match=r"--lang de: no such language; the report is written in en, sq, pl"):
        write_report(db, out, lang="de")
    with pytest.raises(SettingsInvalid, match=r"--measure people: no such measure; choose one of events, sessions"):
        write_report(db, out, measure="people")


def test_the_title_and_organisation_are_the_users_and_inert(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    hostile = 'Ministria e Brendshme </style><script>alert(1)</script> "\\" }'
    write_report(db, out, lang="sq", heading=Heading(title="Raporti vjetor 2026", organisation=hostile))
    html = out.read_text("utf-8")
    page = Page(html)
    assert page.text_by_id["title"] == "Raporti vjetor 2026"
    assert page.text_by_id["organisation"] == hostile
    assert "<script" not in html and html.count("</style>") == 1
    assert '@top-left { content: "Raporti vjetor 2026";' in html
    css = html.split("<style>", 1)[1].split("</style>", 1)[0]
    right = css.split("@top-right { content: ", 1)[1].split("; font:", 1)[0]
    assert right == r'"Ministria e Brendshme \3c /style\3e \3c script\3e alert(1)\3c /script\3e  \22 \5c \22  }"'


def test_the_map_measure_is_the_users(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    write_report(db, out, Filters(country="AL"), lang="en", measure="events")
    page = Page(out.read_text("utf-8"))
    assert map_of(page, "AL") == {c: "7" if c == "AL-06" else "0" for c in AL_COUNTIES}
    assert page.text_by_id["map-heading-AL"] == "Actions by county"


def test_time_periods_follow_the_span() -> None:
    unit, periods = _periods({date(2025, 3, 1): (1, 2), date(2025, 4, 1): (1, 1)}, 1)
    assert (unit, periods) == ("month", [(date(2025, 3, 1), 2), (date(2025, 4, 1), 1)])
    unit, periods = _periods({date(2017, 12, 1): (1, 6), date(2019, 2, 1): (1, 1)}, 1)  # 15 months
    assert unit == "month" and len(periods) == 15 and periods[0] == (date(2017, 12, 1), 6)
    unit, periods = _periods({date(2023, 2, 1): (3, 0), date(2025, 11, 1): (4, 0)}, 0)  # 34 months: quarters
    assert (unit, len(periods), periods[0], periods[-1]) == (
        "quarter",
        12,
        (date(2023, 1, 1), 3),
        (date(2025, 10, 1), 4),
    )
    unit, periods = _periods({date(2010, 1, 1): (1, 0), date(2014, 6, 1): (5, 0), date(2015, 2, 1): (1, 0)}, 0)
    assert (unit, [v for _, v in periods]) == ("year", [1, 0, 0, 0, 5, 1])
    assert _periods({date(2010, 1, 1): (1, 0)}, 1) == ("month", [])  # no sessions: no chart


def test_the_report_loads_nothing_from_elsewhere(report: Path) -> None:
    html = report.read_text(encoding="utf-8")
    page = Page(html)
    assert "http://" not in html
    assert "https://" not in html
    assert "url(" not in html
    assert "@import" not in html
    assert page.find("script") == []
    assert page.find("link") == []
    assert page.find("img") == []
    assert page.find("iframe") == []
    assert [a for _, a in page.tags if "src" in a or "href" in a] == []
    assert page.find("meta", name="viewport") == [
        {"name": "viewport", "content": "width=device-width, initial-scale=1"}
    ]
    assert "max-width: 60rem" in html


def test_text_from_the_database_is_escaped(db: Path, tmp_path: Path) -> None:
    copy = tmp_path / "hostile.duckdb"
    shutil.copyfile(db, copy)
    con = duckdb.connect(str(copy))
    try:
        con.execute("UPDATE counties SET name = '<script>alert(1)</script> & \"Co\"' WHERE code = 'AL-06'")
        con.execute(
            'UPDATE fact_versions SET payload = json_merge_patch(payload, \'{"title": "</td><img src=x onerror=1>"}\') '
            "WHERE event_type = 'plan_task_defined'"
        )
        con.execute(
            'UPDATE fact_versions SET payload = json_merge_patch(payload, \'{"funder": "<b>x</b>"}\') '
            "WHERE event_type = 'campaign_defined'"
        )
    finally:
        con.close()
    out = tmp_path / "report.html"
    write_report(copy, out, lang="en")
    html = out.read_text(encoding="utf-8")
    assert "<script" not in html
    assert "<img" not in html
    assert "<b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html
    page = Page(html)
    assert page.rows["plan-tasks-PL"][1] == [TASK, "</td><img src=x onerror=1>", "6", "0", "no sessions", "6", "6"]
    assert map_of(page, "AL")["AL-06"] == "97"


def test_an_empty_projection_gives_a_report_of_nothing_yet(tmp_path: Path) -> None:
    db = tmp_path / "empty.duckdb"
    ProjectionStore(db).close()
    out = tmp_path / "report.html"
    assert write_report(db, out) == "en"
    page = Page(out.read_text(encoding="utf-8"))
    assert page.text_by_id["as-of"] == "No action has been received yet."
    assert page.text_by_id["no-actions"] == "No actions yet."
    assert page.find("section", **{"class": "country"}) == []
    assert page.text_by_id["quality"] == "Every session has a participant count and every distribution a quantity."
    assert page.find("rect") == [] and page.find("path") == []
    assert page.rows == {}


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    pytest.skip("no Chromium found: install Debian's chromium package to run the browser test")


def test_a_browser_renders_the_same_numbers(report: Path, tmp_path: Path) -> None:
    chromium = find_chromium()
    dumped = subprocess.run(
        [chromium, *BROWSER_FLAGS, f"--user-data-dir={tmp_path / 'profile-dom'}", "--dump-dom", report.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dumped.returncode == 0, dumped.stderr
    check_numbers(Page(dumped.stdout))


def print_to_pdf(html: Path, pdf: Path, profile: Path) -> None:
    """As a user prints it from Chromium, without the browser's own header and footer."""
    printed = subprocess.run(
        [
            find_chromium(),
            *BROWSER_FLAGS,
            f"--user-data-dir={profile}",
            "--no-pdf-header-footer",
            f"--print-to-pdf={pdf}",
            html.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert printed.returncode == 0, printed.stderr


@pytest.mark.parametrize("lang", ["sq", "pl"])
def test_printed_every_page_has_its_header_and_number_and_none_is_near_empty(
    reports: dict[str, Path], tmp_path: Path, lang: str
) -> None:
    find_chromium()
    if shutil.which("pdftotext") is None:
        pytest.skip("no pdftotext: install Debian's poppler-utils to read the printed report")
    pdf = tmp_path / "report.pdf"
    print_to_pdf(reports[lang], pdf, tmp_path / "profile-pdf")
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    pages = text.split("\f")[:-1]
    title = TEXTS["title"][lang]
    label = {"sq": "Faqja {n} nga {m}", "pl": "Strona {n} z {m}"}[lang]
    assert 3 <= len(pages) <= 6
    for n, content in enumerate(pages, 1):
        lines = [line.strip() for line in content.splitlines() if line.strip()]
        assert lines[0].startswith(title[:40]), (n, lines[0])  # the running header
        assert lines[-1].endswith(label.format(n=n, m=len(pages))), (n, lines[-1])  # the page number
        assert "file://" not in content  # not the browser's own header and footer
        assert len(lines) >= 8, (n, lines)  # no page with a line or two on it


# ---- a mixed Albanian and Polish set, as the ministry's analyst had it -----------------------------

SEEDS = REPO / "schemas" / "data" / "seed_events.jsonl"
STORED = datetime(2026, 11, 23, tzinfo=UTC)  # after every recorded_at below
CAMPAIGN = "al-schools-2025"


def mixed_events() -> list[dict[str, object]]:
    """The seed reports, and in 2025: Dibër's two meetings of about 165 people, a session in Korçë,
    4,500 leaflets and 60 posters in Albania under one campaign; a session in Dolnośląskie under the
    plan task, its students not counted."""
    seeds = [json.loads(line) for line in SEEDS.read_text("utf-8").splitlines() if line.strip()]
    ids = (str(uuid.UUID(int=n)) for n in itertools.count(1))
    al = {"agency": "al-national-coordinator", "recorded_at": "2025-05-01T00:00:00Z", "campaign_id": CAMPAIGN}
    return [
        *seeds,
        campaign(event_id=next(ids), agency=al["agency"], campaign_id=CAMPAIGN, name="Shkollat 2025"),
        session(
            event_id=next(ids),
            **al,
            schema_version=3,
            county="AL-09",
            occurred="2025-03-01/2025-03-31",
            sessions=2,
            participants=[{"audience": "students", "count": None}, {"audience": "teachers", "count": None}],
            reported_total=165,
            total_estimated=True,
        ),
        session(event_id=next(ids), **al, county="AL-06", occurred="2025-04-10"),  # 30 students and 7 teachers
        materials(event_id=next(ids), **al, county="AL-06", occurred="2025-03-12", kind="leaflet", quantity=4500),
        materials(event_id=next(ids), **al, county="AL-09", occurred="2025-04-02", kind="poster", quantity=60),
        session(
            event_id=next(ids),
            agency="pl-dolnoslaskie-voivodeship-office",
            recorded_at="2025-05-01T00:00:00Z",
            county="PL-02",
            occurred="2025-04-15",
            plan_tasks=[TASK],
            participants=[{"audience": "officials", "count": 25}, {"audience": "students", "count": None}],
        ),
    ]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("mixed") / "outreach.duckdb"
    store = ProjectionStore(db)
    try:
        events = mixed_events()
        projector = Projector(store, "OUTREACH", STORED)
        projector.apply(
            [
                StreamMessage(i + 1, f"outreach.events.{e['agency']}.{e['event_type']}", json.dumps(e).encode(), STORED)
                for i, e in enumerate(events)
            ]
        )
        assert (projector.stats.accepted, projector.stats.rejected) == (len(events), 0)
    finally:
        store.close()
    return db


def render(db: Path, out: Path, lang: str = "en", **filters: object) -> Page:
    write_report(db, out, Filters(**filters), lang=lang)  # type: ignore[arg-type]
    return Page(out.read_text("utf-8"))


COUNTIES_NOTE = "by actions of any kind"
MIXED_AL = {
    "events": "11",  # 7 seed actions and 4 of 2025
    "sessions": "9",  # 6 in 2017, Dibër's 2, Korçë's 1
    "participants": "299",  # 97 + about 165 + 37
    "participants-note": "2 sessions without a participant count are not included; "
    "2 sessions with estimated counts are included",
    "materials-leaflet": "8,500",  # leaflets and posters are never added together
    "materials-poster": "60",
    "counties": "2",
    "counties-note": COUNTIES_NOTE,
}
MIXED_PL = {
    "events": "8",
    "sessions": "1",
    "participants": "25",
    "participants-note": "1 session without a participant count is not included",
    "teams": "7",
    "counties": "8",  # the seven teams' voivodeships, and Dolnośląskie's session
    "counties-note": COUNTIES_NOTE,
}
TASK_HEADER = ["Task", "Title", "Actions", "Sessions", "Participants counted", "Teams established", "Voivodeships"]
TASK_NOTE = "251 session without a participant count is not included"  # the figure, and what it leaves out
NO_TASK = ["Under no task", "1", "0", "no sessions", "1", "1"]  # Mazowieckie's team of 2010


def check_mixed(page: Page) -> None:
    assert [a["data-country"] for a in page.find("section", **{"class": "country"})] == ["AL", "PL"]
    assert headline(page, "AL") == MIXED_AL
    assert headline(page, "PL") == MIXED_PL
    assert page.rows["materials-AL"][1:] == [["Leaflets", "2", "8,500", "0"], ["Posters", "1", "60", "0"]]
    assert map_of(page, "AL") == {c: {"AL-09": "165", "AL-06": "134"}.get(c, "0") for c in AL_COUNTIES}
    assert map_of(page, "PL") == {c: "25" if c == "PL-02" else "0" for c in PL_COUNTIES}
    bars = [(r["data-period"], r["data-value"]) for r in page.find("rect", **{"class": "bar"})]
    # Albania's sessions from 2017 to 2025, by year; Poland's one session, in April 2025.
    assert bars == [("2017-01", "6"), ("2025-01", "3"), ("2025-04", "1")]
    assert page.rows["plan-tasks-PL"] == [TASK_HEADER, [TASK, TITLE, "7", "1", TASK_NOTE, "6", "7"], NO_TASK]


def test_countries_and_kinds_of_material_are_never_added_together(mixed: Path, tmp_path: Path) -> None:
    page = render(mixed, tmp_path / "all.html")
    check_mixed(page)
    html = (tmp_path / "all.html").read_text("utf-8")
    text = visible_text(html)
    assert "8,560" not in text and "324" not in text  # leaflets + posters; Albania + Poland
    campaigns = [(a["data-campaign"], a["data-country"]) for a in page.find("div", **{"class": "campaign"})]
    assert campaigns == [
        ("al-irregular-migration-prevention", "AL"),
        (CAMPAIGN, "AL"),
        ("pl-improved-cooperation-structures", "PL"),
        ("", "PL"),  # Poland's teams and its session; Albania has no action outside a campaign
    ]
    assert page.rows[f"campaign-counties-{CAMPAIGN}"] == [
        ["County", "Actions", "Sessions", "Participants counted", "Items distributed"],
        ["AL-09 Dibër", "2", "2", "1652 sessions with estimated counts are included", "60"],
        ["AL-06 Korçë", "2", "1", "37", "4,500"],
    ]


def test_filters_cover_a_country_a_campaign_and_a_period(mixed: Path, tmp_path: Path) -> None:
    page = render(mixed, tmp_path / "pl.html", country="PL")
    assert [a["data-country"] for a in page.find("section", **{"class": "country"})] == ["PL"]
    assert headline(page, "PL") == MIXED_PL
    assert page.text_by_id["filters"] == "The actions in Poland (PL); an action counts in the month it started."
    assert " ".join(page.text_by_id["quality"].split()) == "1 session without a participant count is not included"

    spring = {
        "events": "4",
        "sessions": "3",
        "participants": "202",
        "participants-note": "2 sessions with estimated counts are included",
        "materials-leaflet": "4,500",
        "materials-poster": "60",
        "counties": "2",
        "counties-note": COUNTIES_NOTE,
    }
    page = render(mixed, tmp_path / "2025.html", start=date(2025, 1, 1), end=date(2025, 12, 31))
    assert headline(page, "AL") == spring
    assert headline(page, "PL") == {  # no team in 2025: no teams card
        "events": "1",
        "sessions": "1",
        "participants": "25",
        "participants-note": "1 session without a participant count is not included",
        "counties": "1",
        "counties-note": COUNTIES_NOTE,
    }
    assert page.rows["plan-tasks-PL"] == [TASK_HEADER, [TASK, TITLE, "1", "1", TASK_NOTE, "0", "1"]]
    assert page.text_by_id["filters"] == (
        "The actions that started from 1 January 2025 to 31 December 2025; an action counts in the month it started."
    )
    page = render(mixed, tmp_path / "2013.html", country="PL", end=date(2013, 12, 31))
    assert headline(page, "PL")["teams"] == "1"  # Mazowieckie's, of 2010, under no plan task
    assert page.rows["plan-tasks-PL"] == [TASK_HEADER, [TASK, TITLE, "0", "0", "no sessions", "0", "0"], NO_TASK]

    page = render(mixed, tmp_path / "campaign.html", campaign=CAMPAIGN)
    assert [a["data-country"] for a in page.find("section", **{"class": "country"})] == ["AL"]
    assert headline(page, "AL") == spring
    assert [a["data-campaign"] for a in page.find("div", **{"class": "campaign"})] == [CAMPAIGN]

    page = render(mixed, tmp_path / "april.html", country="AL", start=date(2025, 4, 1))
    assert headline(page, "AL") == {
        "events": "2",
        "sessions": "1",
        "participants": "37",
        "materials-poster": "60",
        "counties": "2",
        "counties-note": COUNTIES_NOTE,
    }

    page = render(mixed, tmp_path / "none.html", country="PL", campaign=CAMPAIGN)
    assert page.text_by_id["no-actions"] == "No action matches these filters."


def test_a_filter_naming_nothing_is_refused(mixed: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    with pytest.raises(SettingsInvalid, match=r"--country XX: no such country; the known ones are AL \(Albania\)"):
        write_report(mixed, out, Filters(country="XX"))
    with pytest.raises(SettingsInvalid, match=f"--campaign nope: {mixed} has no campaign of that id; it has "):
        write_report(mixed, out, Filters(campaign="nope"))
    with pytest.raises(SettingsInvalid, match="--to 2024-12-31 is before --from 2025-01-01"):
        write_report(mixed, out, Filters(start=date(2025, 1, 1), end=date(2024, 12, 31)))
    assert not out.exists()


# Run in the page by the test only: the report itself carries no script. It measures every text of
# every chart and map, and every headline card, as laid out.
MEASURE = """<script>
const charts = [...document.querySelectorAll("svg")].map((svg) => {
  const box = (e) => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
  return {id: svg.id, frame: box(svg), texts: [...svg.querySelectorAll("text")].map((t) => [t.textContent, box(t)])};
});
const cards = [...document.querySelectorAll(".headline li")].map((li) => [li.querySelector(".value").id,
  li.scrollWidth <= li.clientWidth]);
const out = document.createElement("pre");
out.id = "measured";
out.textContent = JSON.stringify({charts, cards});
document.body.appendChild(out);
</script>
"""


def overlap(a: list[float], b: list[float]) -> float:
    """The area two boxes (left, top, right, bottom) share."""
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


@pytest.mark.parametrize("width", [1200, 390])  # a desk, a phone
def test_in_a_browser_no_label_overlaps_another(mixed: Path, tmp_path: Path, width: int) -> None:
    chromium = find_chromium()
    out = tmp_path / "report.html"
    write_report(mixed, out, lang="en")
    measured = tmp_path / "measured.html"
    measured.write_text(out.read_text("utf-8").replace("</body>", MEASURE + "</body>"), "utf-8")
    dumped = subprocess.run(
        [
            chromium,
            *BROWSER_FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--window-size={width},900",
            "--dump-dom",
            measured.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dumped.returncode == 0, dumped.stderr
    page = Page(dumped.stdout)
    check_mixed(page)  # the numbers, as rendered
    found = json.loads(page.text_by_id["measured"])
    assert [c["id"] for c in found["charts"]] == ["map-AL", "chart-time-AL", "map-PL", "chart-time-PL"]
    texts = 0
    for chart in found["charts"]:
        frame = chart["frame"]
        for label, box in chart["texts"]:
            texts += 1
            assert box[2] > box[0] and box[3] > box[1], (chart["id"], label)
            inside = frame[0] - 0.5 <= box[0] and box[2] <= frame[2] + 0.5
            assert inside and frame[1] - 0.5 <= box[1] and box[3] <= frame[3] + 0.5, (chart["id"], label, box, frame)
        for (a, box_a), (b, box_b) in itertools.combinations(chart["texts"], 2):
            assert overlap(box_a, box_b) < 1.0, (chart["id"], a, b, box_a, box_b)
    assert texts >= 50
    assert [card for card, fits in found["cards"] if not fits] == []  # no figure runs out of its card


def test_the_command_takes_the_options_and_the_filters_as_agencies_write_dates(db: Path, tmp_path: Path) -> None:
    def report(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "outreach", "report", "--db", str(db), "--out", str(tmp_path / "r.html")]
        return subprocess.run([*command, *args], capture_output=True, text=True, timeout=60)

    done = report("--country", "pl", "--from", "2014", "--to", "10.2014")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: --to 10.2014: is not a date in a form we read: '10.2014' (accepted: ")
    done = report(
        *(
            "--country",
            "pl",
            "--from",
            "2014",
            "--to",
            "2014-10",
            "--organisation",
            "Ministerstwo",
            "--title",
            "Zespoły",
        )
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"wrote {tmp_path / 'r.html'} (in Polish)")
    page = Page((tmp_path / "r.html").read_text("utf-8"))
    assert (page.text_by_id["title"], page.text_by_id["organisation"]) == ("Zespoły", "Ministerstwo")
    assert page.text_by_id["filters"] == (
        "Działania w kraju: Polska (PL), rozpoczęte od 1 stycznia 2014 do 31 października 2014; działanie liczy się "
        "w miesiącu, w którym się rozpoczęło."
    )
    # Teams set up in January, May and October 2014 (two); November's is outside.
    assert headline(page, "PL") == {
        "events": "4",
        "teams": "4",
        "counties": "4",
        "counties-note": "działania dowolnego rodzaju",
    }
    done = report("--lang", "de")
    assert done.returncode == 2 and "invalid choice: 'de'" in done.stderr
    done = report("--from", "05/03/2025")
    assert (done.returncode, done.stderr.splitlines()[0][:56]) == (
        1,
        "error: --from 05/03/2025: is ambiguous: 05/03/2025 is da",
    )


def test_the_log_quality_counts_every_correction_and_retraction_once(tmp_path: Path) -> None:
    """data_quality counts corrections and retractions apart, each as the corrections view lists it."""
    at = datetime(2026, 1, 1, tzinfo=UTC)
    items = list(generate(2000, seed=21))
    store = ProjectionStore(tmp_path / "p.duckdb")
    Projector(store, "OUTREACH", at).apply(
        [StreamMessage(i + 1, item.subject, item.payload, at) for i, item in enumerate(items)]
    )
    quality = store.con.execute("SELECT corrections, retractions, rejected FROM data_quality").fetchone()
    assert quality == (133, 47, 0)  # as published: every correction and retraction of seed 21 is accepted
    listed = store.con.execute("SELECT kind, count(*) FROM corrections GROUP BY kind ORDER BY kind").fetchall()
    assert listed == [("event_corrected", 133), ("event_retracted", 47)]
    store.close()


def test_a_report_from_the_snapshot_is_the_report_from_the_projection(db: Path, tmp_path: Path) -> None:
    """Beside a running projector the report reads its snapshot: campaigns, partners and all."""
    live = tmp_path / "live.duckdb"
    shutil.copyfile(db, live)
    store = ProjectionStore(live)
    try:
        assert write_snapshot(store.reader(), live) == frozenset()
    finally:
        store.close()
    from_projection, from_snapshot = tmp_path / "projection.html", tmp_path / "snapshot.html"
    write_report(live, from_projection, lang="pl")
    write_report(snapshot_path(live), from_snapshot, lang="pl")
    assert from_snapshot.read_text("utf-8") == from_projection.read_text("utf-8")
    assert "al-korce-regional-committee, al-ministry-education" in from_snapshot.read_text("utf-8")
