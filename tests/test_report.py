"""The HTML report: its numbers in the markup, self-contained, and as a browser renders it."""

from __future__ import annotations

import itertools
import shutil
import subprocess
from datetime import date
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import pytest

from projections.report import CHART_WIDTH, LABEL_GAP, TEXT_WIDTH, VALUE_ROOM, _plural, _ticks, write_report
from projections.store import ProjectionStore
from tests.conftest import build_demo

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
TASK = "pl-nap-2013-2015/III/4"
TASK_ROW = [TASK, "Powołanie wojewódzkich zespołów ds. przeciwdziałania handlowi ludźmi", "6", "6", "6"]
HEADLINES = {
    "headline-events": "14",
    "headline-sessions": "6",
    "headline-participants": "97",
    "headline-materials": "4,000",
    "headline-teams": "7",
    "headline-counties": "8",
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
    assert page.rows["plan-tasks"] == [
        ["task", "title", "events", "teams established", "counties reached"],
        TASK_ROW,
    ]


def test_the_markup_holds_the_seed_numbers(report: Path, db: Path) -> None:
    html = report.read_text(encoding="utf-8")
    page = Page(html)
    check_numbers(page)
    assert page.text_by_id["as-of"] == f"as of stream sequence 17, stored at {stored_at(db)}"
    # Each county bar has a tooltip and a printed value.
    assert "<title>AL-06 Korçë: 97 participants + 2 sessions uncounted</title>" in html
    assert len(page.find("rect", **{"class": "bar"})) == 1 + 1  # 1 county with sessions, 1 month with sessions
    assert [a["data-county"] for a in page.find("text", **{"class": "value"})] == ["AL-06"]
    assert page.text_by_id["headline-participants-note"] == "+ 2 sessions uncounted"
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
    # Three years: quarters.
    assert [label for _, label in _ticks(months(date(2023, 1, 1), 36))][:3] == ["2023 Q1", "2023 Q3", "2024 Q1"]
    for span in (2, 7, 13, 24, 36, 72, 100, 192, 400):
        ticks = _ticks(months(date(2000, 1, 1), span))
        step = (CHART_WIDTH - VALUE_ROOM) / span
        edges = [(i * step, i * step + len(label) * TEXT_WIDTH) for i, label in ticks]
        assert all(b[0] >= a[1] + LABEL_GAP for a, b in itertools.pairwise(edges)), span


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
    assert page.rows["plan-tasks"][1] == [TASK, "</td><img src=x onerror=1>", "6", "6", "6"]
    assert page.find("rect", **{"class": "bar", "data-county": "AL-06"})[0]["data-value"] == "97"


def test_an_empty_projection_gives_a_report_of_nothing_yet(tmp_path: Path) -> None:
    db = tmp_path / "empty.duckdb"
    ProjectionStore(db).close()
    out = tmp_path / "report.html"
    write_report(db, out)
    page = Page(out.read_text(encoding="utf-8"))
    assert page.text_by_id["as-of"] == "as of nothing yet: no event has been projected"
    assert {k: page.text_by_id[k] for k in HEADLINES} == dict.fromkeys(HEADLINES, "0")
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
