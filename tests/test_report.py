"""The HTML report: its numbers in the markup, a section per country, its filters, self-contained,
and as a browser renders it (the numbers, and no two labels on top of each other)."""

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

from consumers.fold import StreamMessage
from consumers.projector import Projector
from outreach.synthetic import generate
from projections.report import (
    CHART_WIDTH,
    LABEL_GAP,
    TEXT_WIDTH,
    TIMELINE_RIGHT,
    Filters,
    _plural,
    _ticks,
    write_report,
)
from projections.store import ProjectionStore
from schemas.errors import SettingsInvalid
from tests.conftest import build_demo
from tests.test_events import campaign, materials, session

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
TASK = "pl-nap-2013-2015/III/4"
TITLE = "Powołanie wojewódzkich zespołów ds. przeciwdziałania handlowi ludźmi"
TASK_ROW = [TASK, TITLE, "6", "0", "no sessions", "6", "6"]  # teams only: nobody to count
TASK_HEADER = ["task", "title", "actions", "sessions", "participants known", "teams established", "counties"]
HEADLINES = {  # the seed reports: Albania and Poland each on its own
    "headline-AL-events": "7",
    "headline-AL-sessions": "6",
    "headline-AL-participants": "97",
    "headline-AL-materials-leaflet": "4,000",
    "headline-AL-teams": "0",
    "headline-AL-counties": "1",
    "headline-PL-events": "7",
    "headline-PL-sessions": "0",
    "headline-PL-participants": "—",  # not 0: no session was held
    "headline-PL-participants-note": "no sessions held",
    "headline-PL-teams": "7",
    "headline-PL-counties": "0",  # teams set up there: no county reached by sessions or materials
}
QUALITY = {
    "quality-sessions-estimated": "0",
    "quality-sessions-uncounted": "2",
    "quality-materials-unknown": "0",
    "quality-corrections": "0",
    "quality-retractions": "0",
    "quality-rejected": "0",
}
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
def report(db: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "report.html"
    write_report(db, out)
    return out


def stored_at(db: Path) -> str:
    con = duckdb.connect(str(db), read_only=True)
    try:
        row = con.execute(
            "SELECT strftime(last_stored_at AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S') FROM checkpoint"
        ).fetchone()
    finally:
        con.close()
    assert row is not None
    return f"{row[0]}+00:00"


def check_numbers(page: Page) -> None:
    """The figures of the seed reports, wherever the report shows them."""
    for element_id, value in HEADLINES.items():
        assert page.text_by_id[element_id].strip() == value, element_id
    for element_id, value in QUALITY.items():
        assert page.text_by_id[element_id].strip() == value, element_id
    bars = page.find("rect", **{"class": "bar", "data-county": "AL-06"})
    assert [b["data-value"] for b in bars] == ["97"]
    assert page.find("rect", **{"class": "bar"}, data_value="0") == []  # no bar of 0 people reached
    none = [a["data-county"] for a in page.find("text", **{"class": "none"})]
    assert none == ["PL-06", "PL-08", "PL-12", "PL-14", "PL-20", "PL-24", "PL-32"]  # the teams: "no sessions"
    months = [(r["data-month"], r["data-value"]) for r in page.find("rect", **{"class": "bar"}) if "data-month" in r]
    assert months == [("2017-12", "6")]  # sessions by month: all six in December 2017
    assert page.rows["plan-tasks-PL"] == [TASK_HEADER, TASK_ROW]
    assert page.rows["materials-AL"] == [
        ["kind", "distributions", "items distributed", "distributions of unknown quantity"],
        ["leaflets", "1", "4,000", "0"],
    ]
    assert page.text_by_id["chart-month-PL"] == "No sessions."
    assert page.text_by_id["materials-PL"] == "No materials distributed."


def test_the_markup_holds_the_seed_numbers(report: Path, db: Path) -> None:
    html = report.read_text(encoding="utf-8")
    page = Page(html)
    check_numbers(page)
    assert page.text_by_id["as-of"] == f"as of stream sequence 17, stored at {stored_at(db)}"
    assert page.text_by_id["filters"] == "Every action in the projection; an action counts in the month it started."
    assert [a["data-country"] for a in page.find("section")] == ["AL", "PL"]
    # Each county bar has a tooltip and a printed value, and what it leaves out under it.
    assert "<title>AL-06 Korçë: 97 participants (+ 2 sessions uncounted)</title>" in html
    assert len(page.find("rect", **{"class": "bar"})) == 1 + 1  # 1 county with sessions, 1 month with sessions
    assert [a["data-county"] for a in page.find("text", **{"class": "value"})] == ["AL-06"]
    assert [a["data-county"] for a in page.find("text", **{"class": "mark"})] == ["AL-06"]
    assert page.text_by_id["headline-AL-participants-note"] == "+ 2 sessions uncounted"
    assert "@page { size: A4;" in html


def test_plurals_and_the_time_axis() -> None:
    assert (_plural(1, "session"), _plural(2, "session"), _plural(1, "county reached")) == (
        "1 session",
        "2 sessions",
        "1 county reached",
    )
    assert _plural(12, "county reached") == "12 counties reached"

    def months(first: date, count: int) -> list[tuple[date, int]]:
        return [
            (date(first.year + (first.month - 1 + i) // 12, (first.month - 1 + i) % 12 + 1, 1), 1) for i in range(count)
        ]

    # Sixteen years (a team in 2010, sessions in 2025 would have been this): years, none overlapping.
    long = _ticks(months(date(2010, 1, 1), 16 * 12))
    assert [label for _, label in long] == [str(y) for y in range(2010, 2026, 2)]  # every other one has room
    # Two months: each labelled, the first with its year.
    assert [label for _, label in _ticks(months(date(2025, 3, 1), 2))] == ["Mar 2025", "Apr"]
    # A year and a month: every quarter's first month, the year where it changes.
    assert [label for _, label in _ticks(months(date(2000, 1, 1), 13))] == ["Jan 2000", "Apr", "Jul", "Oct", "Jan 2001"]
    # Three years: quarters would not fit, so years; four centuries: every fifth year.
    assert [label for _, label in _ticks(months(date(2023, 1, 1), 36))] == ["2023", "2024", "2025"]
    assert [label for _, label in _ticks(months(date(2000, 1, 1), 400))][:3] == ["2000", "2005", "2010"]
    for span in (2, 7, 13, 24, 36, 72, 100, 192, 400):
        ticks = _ticks(months(date(2000, 1, 1), span))
        step = (CHART_WIDTH - TIMELINE_RIGHT) / span
        edges = [(i * step, i * step + len(label) * TEXT_WIDTH) for i, label in ticks]
        assert all(b[0] >= a[1] + LABEL_GAP for a, b in itertools.pairwise(edges)), span
        assert all(end <= CHART_WIDTH for _, end in edges), span


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
    finally:
        con.close()
    out = tmp_path / "report.html"
    write_report(copy, out)
    html = out.read_text(encoding="utf-8")
    assert "<script" not in html
    assert "<img" not in html
    assert "AL-06 &lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;Co&quot;: 97 participants" in html
    page = Page(html)
    assert page.rows["plan-tasks-PL"][1] == [TASK, "</td><img src=x onerror=1>", "6", "0", "no sessions", "6", "6"]
    assert page.find("rect", **{"class": "bar", "data-county": "AL-06"})[0]["data-value"] == "97"


def test_an_empty_projection_gives_a_report_of_nothing_yet(tmp_path: Path) -> None:
    db = tmp_path / "empty.duckdb"
    ProjectionStore(db).close()
    out = tmp_path / "report.html"
    write_report(db, out)
    page = Page(out.read_text(encoding="utf-8"))
    assert page.text_by_id["as-of"] == "as of nothing yet: no event has been projected"
    assert page.text_by_id["no-actions"] == "No actions yet."
    assert page.find("section") == []
    assert {k: page.text_by_id[k] for k in QUALITY} == dict.fromkeys(QUALITY, "0")
    assert page.find("rect") == []
    assert page.rows == {}


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    pytest.skip("no Chromium found: install Debian's chromium package to run the browser test")


def test_a_browser_renders_the_same_numbers(report: Path, tmp_path: Path) -> None:
    chromium = find_chromium()
    url = report.as_uri()
    dumped = subprocess.run(
        [chromium, *BROWSER_FLAGS, f"--user-data-dir={tmp_path / 'profile-dom'}", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dumped.returncode == 0, dumped.stderr
    check_numbers(Page(dumped.stdout))

    artifacts = REPO / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    png = artifacts / "report.png"
    png.unlink(missing_ok=True)
    shot = subprocess.run(
        [
            chromium,
            *BROWSER_FLAGS,
            f"--user-data-dir={tmp_path / 'profile-shot'}",
            f"--screenshot={png}",
            "--window-size=1200,1600",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.returncode == 0, shot.stderr
    assert png.stat().st_size > 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


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


def render(db: Path, out: Path, **filters: object) -> Page:
    write_report(db, out, Filters(**filters))  # type: ignore[arg-type]
    return Page(out.read_text("utf-8"))


def headline(page: Page, country: str) -> dict[str, str]:
    prefix = f"headline-{country}-"
    return {k.removeprefix(prefix): v for k, v in page.text_by_id.items() if k.startswith(prefix)}


MIXED_AL = {
    "events": "11",  # 7 seed actions and 4 of 2025
    "sessions": "9",  # 6 in 2017, Dibër's 2, Korçë's 1
    "participants": "299",  # 97 + about 165 + 37
    "participants-note": "+ 2 sessions uncounted; 2 sessions estimated",
    "materials-leaflet": "8,500",  # leaflets and posters are never added together
    "materials-poster": "60",
    "teams": "0",
    "counties": "2",
}
MIXED_PL = {
    "events": "8",
    "sessions": "1",
    "participants": "25",
    "participants-note": "+ 1 session uncounted",
    "teams": "7",
    "counties": "1",
}
TASK_NOTE = "25+ 1 session uncounted"  # the figure, and under it what it leaves out


def check_mixed(page: Page) -> None:
    assert [a["data-country"] for a in page.find("section")] == ["AL", "PL"]
    assert headline(page, "AL") == MIXED_AL
    assert headline(page, "PL") == MIXED_PL
    assert page.rows["materials-AL"][1:] == [["leaflets", "2", "8,500", "0"], ["posters", "1", "60", "0"]]
    bars = {(r["data-county"], r["data-value"]) for r in page.find("rect", **{"class": "bar"}) if "data-county" in r}
    assert bars == {("AL-09", "165"), ("AL-06", "134"), ("PL-02", "25")}
    marks = [(a["data-county"]) for a in page.find("text", **{"class": "mark"})]
    assert marks == ["AL-09", "AL-06", "PL-02"]  # Dibër: estimated; Korçë: 2 sessions uncounted in 2017; PL-02
    months = [(r["data-month"], r["data-value"]) for r in page.find("rect", **{"class": "bar"}) if "data-month" in r]
    assert months == [("2017-12", "6"), ("2025-03", "2"), ("2025-04", "1"), ("2025-04", "1")]
    assert page.rows["plan-tasks-PL"] == [TASK_HEADER, [TASK, TITLE, "7", "1", TASK_NOTE, "6", "7"]]


def test_countries_and_kinds_of_material_are_never_added_together(mixed: Path, tmp_path: Path) -> None:
    page = render(mixed, tmp_path / "all.html")
    check_mixed(page)
    html = (tmp_path / "all.html").read_text("utf-8")
    assert "8,560" not in html and "324" not in html  # leaflets + posters; Albania + Poland
    # Poland's sessions by month run over its one month of sessions, not from its 2010 team.
    assert page.find("rect", data_month="2025-04", data_value="1") != []
    tick = [t for t in page.tags if t[0] == "text" and t[1].get("class") == "tick"]
    assert len(tick) >= 2
    # Albania's axis runs from January 2017, so December 2017's bar stands under 2017, not before 2018.
    chart = html.split('<svg id="chart-month-AL"', 1)[1].split("</svg>", 1)[0]
    ticks = [(float(x), label) for x, label in re.findall(r'<text class="tick" x="([0-9.]+)"[^>]*>([^<]+)<', chart)]
    bar = float(re.search(r'<rect class="bar" x="([0-9.]+)"[^>]*data-month="2017-12"', chart).group(1))  # type: ignore[union-attr]
    assert ticks[0] == (0.0, "2017")
    assert [label for x, label in ticks if x <= bar][-1] == "2017"


def test_filters_cover_a_country_a_campaign_and_a_period(mixed: Path, tmp_path: Path) -> None:
    page = render(mixed, tmp_path / "pl.html", country="PL")
    assert [a["data-country"] for a in page.find("section")] == ["PL"]
    assert headline(page, "PL") == MIXED_PL
    assert page.text_by_id["filters"] == "The actions in Poland (PL); an action counts in the month it started."
    assert " ".join(page.text_by_id["quality"].split()) == (  # one of them: "1 session", not "1 sessions"
        "0 sessions with estimated participant counts "
        "1 session with uncounted participants (not in the participants totals) "
        "0 distributions of materials with unknown quantity"
    )

    spring = {
        "events": "4",
        "sessions": "3",
        "participants": "202",
        "participants-note": "2 sessions estimated",
        "materials-leaflet": "4,500",
        "materials-poster": "60",
        "teams": "0",
        "counties": "2",
    }
    page = render(mixed, tmp_path / "2025.html", start=date(2025, 1, 1), end=date(2025, 12, 31))
    assert headline(page, "AL") == spring
    assert headline(page, "PL") == {**MIXED_PL, "events": "1", "teams": "0"}
    assert page.rows["plan-tasks-PL"] == [TASK_HEADER, [TASK, TITLE, "1", "1", TASK_NOTE, "0", "1"]]
    assert page.text_by_id["filters"] == (
        "The actions that started from 2025-01-01 to 2025-12-31; an action counts in the month it started."
    )
    ticks = [label for _, label in _ticks([(date(2025, 3, 1), 2), (date(2025, 4, 1), 1)])]
    assert ticks == ["Mar 2025", "Apr"]

    page = render(mixed, tmp_path / "2016.html", end=date(2016, 12, 31))
    assert [a["data-country"] for a in page.find("section")] == ["PL"]
    assert page.rows["plan-tasks-PL"] == [TASK_HEADER, TASK_ROW]
    page = render(mixed, tmp_path / "2013.html", country="PL", end=date(2013, 12, 31))
    assert headline(page, "PL")["teams"] == "1"  # Mazowieckie's, of 2010, under no plan task
    assert page.rows["plan-tasks-PL"] == [TASK_HEADER, [TASK, TITLE, "0", "0", "no sessions", "0", "0"]]  # defined

    page = render(mixed, tmp_path / "campaign.html", campaign=CAMPAIGN)
    assert [a["data-country"] for a in page.find("section")] == ["AL"]
    assert headline(page, "AL") == spring

    page = render(mixed, tmp_path / "april.html", country="AL", start=date(2025, 4, 1))
    assert headline(page, "AL") == {
        "events": "2",
        "sessions": "1",
        "participants": "37",
        "materials-poster": "60",
        "teams": "0",
        "counties": "2",
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
# every chart, and every headline card, as laid out.
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
    write_report(mixed, out)
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
    assert [c["id"] for c in found["charts"]] == [
        "chart-county-AL",
        "chart-month-AL",
        "chart-county-PL",
        "chart-month-PL",
    ]
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
    assert texts >= 20
    assert [card for card, fits in found["cards"] if not fits] == []  # no figure runs out of its card


def test_the_command_takes_the_filters_as_agencies_write_dates(db: Path, tmp_path: Path) -> None:
    def report(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "outreach", "report", "--db", str(db), "--out", str(tmp_path / "r.html")]
        return subprocess.run([*command, *args], capture_output=True, text=True, timeout=60)

    done = report("--country", "pl", "--from", "2014", "--to", "10.2014")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: --to 10.2014: is not a date in a form we read: '10.2014' (accepted: ")
    done = report("--country", "pl", "--from", "2014", "--to", "2014-10")
    assert done.returncode == 0, done.stderr
    page = Page((tmp_path / "r.html").read_text("utf-8"))
    assert page.text_by_id["filters"] == (
        "The actions in Poland (PL), that started from 2014-01-01 to 2014-10-31; an action counts in the month "
        "it started."
    )
    # Teams set up in January, May and October 2014 (two); November's is outside.
    assert headline(page, "PL") == {
        "events": "4",
        "sessions": "0",
        "participants": "—",
        "participants-note": "no sessions held",
        "teams": "4",
        "counties": "0",
    }
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
