"""Agencies' own habits: CSV as Excel saves it in their locale, dates as they write them, and
messages in plain words that name the field, the value and what would be accepted."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any

import openpyxl
import openpyxl.utils
import pytest
from nats.aio.client import Client

from consumers.app import run_projector
from producers.publisher import Publisher
from projections.query import run_query
from runtime.server import EmbeddedServer
from runtime.settings import Settings
from runtime.stream import ensure_stream
from schemas.dates import DateInvalid, date_cell
from schemas.errors import BrokerError, EventInvalid
from schemas.files import load_events
from schemas.parse import parse_event
from tests.test_events import materials, session
from tests.test_files import uid

HEADER = ["event_id", "event_type", "agency", "recorded_at", "county", "occurred", "kind", "quantity"]


def row(n: int, **cells: str) -> list[str]:
    base = {
        "event_id": uid(n),
        "event_type": "materials_distributed",
        "agency": "al-korce-committee",
        "recorded_at": "2025-01-10T09:00:00Z",
        "county": "AL-06",
        "occurred": "2024-03-05",
        "kind": "leaflet",
        "quantity": "40",
    }
    base.update(cells)
    return list(base.values())


def write(tmp_path: Path, rows: list[list[str]], delimiter: str, bom: bool = False) -> Path:
    text = "\n".join(delimiter.join(cells) for cells in rows) + "\n"
    path = tmp_path / "events.csv"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


@pytest.mark.parametrize(("delimiter", "bom"), [(";", True), (";", False), ("\t", True), (",", True)])
def test_csv_as_excel_saves_it_in_any_locale(tmp_path: Path, delimiter: str, bom: bool) -> None:
    path = write(tmp_path, [HEADER, row(1), row(2, quantity="60", occurred="05.03.2024")], delimiter, bom)
    loaded = load_events(path)
    assert loaded.problems == []
    assert [(n, e.quantity, e.occurred.start) for n, e in loaded.events] == [  # type: ignore[attr-defined]
        (2, 40, date(2024, 3, 5)),
        (3, 60, date(2024, 3, 5)),
    ]


def test_every_problem_of_a_csv_line_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, [HEADER, row(1, county="AL-99", quantity="-3")], ";")
    problems = [(p.line, p.field, p.message, p.value) for p in load_events(path).problems]
    assert problems == [
        (2, "quantity", "cannot be negative: must be a whole number from 0 to 10,000,000 (got -3)", None),
        (
            2,
            "county",
            "unknown county code for Albania; known: AL-01, AL-02, AL-03, AL-04, AL-05, AL-06, AL-07, AL-08, "
            "AL-09, AL-10, AL-11, AL-12",
            '"AL-99"',
        ),
    ]


@pytest.mark.parametrize(
    ("cell", "start", "end"),
    [
        ("2025-03-05", date(2025, 3, 5), None),
        ("05.03.2025", date(2025, 3, 5), None),
        ("5.3.2025", date(2025, 3, 5), None),
        ("2014-09", date(2014, 9, 1), date(2014, 9, 30)),
        ("2024-02", date(2024, 2, 1), date(2024, 2, 29)),
        ("2014", date(2014, 1, 1), date(2014, 12, 31)),
        ("2014-09/2014-11", date(2014, 9, 1), date(2014, 11, 30)),
        ("01.09.2014 - 15.09.2014", date(2014, 9, 1), date(2014, 9, 15)),
        ("01.09.2014 \u2013 15.09.2014", date(2014, 9, 1), date(2014, 9, 15)),  # an en dash, as word processors write
        ("2014-09\u20132014-11", date(2014, 9, 1), date(2014, 11, 30)),
        ("2013/2015", date(2013, 1, 1), date(2015, 12, 31)),
    ],
)
def test_a_date_cell_in_each_accepted_form(tmp_path: Path, cell: str, start: date, end: date | None) -> None:
    path = write(tmp_path, [HEADER, row(1, occurred=cell)], ";")
    loaded = load_events(path)
    assert loaded.problems == []
    occurred = loaded.events[0][1].occurred
    assert occurred is not None and (occurred.start, occurred.end) == (start, end)


@pytest.mark.parametrize(
    ("cell", "begins"),
    [
        ("05/03/2025", "is ambiguous: 05/03/2025 is day/month in some countries and month/day in others"),
        ("3/5", "is ambiguous: 3/5 is day/month"),
        ("05/03/2025 - 07/03/2025", "is ambiguous: 05/03/2025 - 07/03/2025 is day/month"),
        ("2025-03-05/05.03.2025/1", "is not a date in a form we read: '05.03.2025/1'"),  # not ambiguous: wrong
        ("2025-02-30", "is not a date in the calendar: 2025-02-30"),
        ("March 2025", "is not a date in a form we read: 'March 2025'"),
        ("2025-03/2025-02", "range ends (2025-02-28) before it starts (2025-03-01)"),
    ],
)
def test_a_date_cell_refused_says_which_forms_are_accepted(cell: str, begins: str) -> None:
    with pytest.raises(DateInvalid) as refused:
        date_cell(cell)
    assert str(refused.value).startswith(begins)
    if "before it starts" not in begins:
        assert str(refused.value).endswith(
            "(accepted: 2025-03-05 or 05.03.2025 (a day), 2025-03 (the whole month), 2025 (the whole year), "
            "or a range of two of these, e.g. 2025-03-01/2025-03-15)"
        )


def problems_of(event: dict[str, object]) -> list[tuple[str, str]]:
    with pytest.raises(EventInvalid) as invalid:
        parse_event(event)
    return [(p.field, p.message) for p in invalid.value.problems]


def test_a_county_given_by_name_is_told_its_code() -> None:
    assert problems_of(session(county="Korçë")) == [
        ("county", "must be the county's code, not its name: Korçë is AL-06")
    ]
    assert problems_of(session(county="korce")) == [
        ("county", "must be the county's code, not its name: korce is AL-06")
    ]
    assert problems_of(session(county="Dibër")) == [
        ("county", "must be the county's code, not its name: Dibër is AL-09")
    ]


def test_values_of_the_wrong_kind_are_told_in_plain_words() -> None:
    """What would be accepted, never pydantic's "Input should be a valid …"."""
    assert problems_of(session(county="Korça")) == [  # the definite form, as Albanian often writes it
        ("county", "must be the county's code, not its name: Korça is AL-06")
    ]
    assert problems_of(session(county="Shkodra")) == [
        ("county", "must be the county's code, not its name: Shkodra is AL-10")
    ]
    a_date = 'must be a date written as text, such as "2025-03-05", or a range, "2025-03-01/2025-03-15"'
    assert problems_of(session(occurred=5)) == [("occurred", a_date)]
    assert problems_of(session(occurred=["2024-01-01"])) == [("occurred", a_date)]
    assert problems_of(session(occurred="2100-01-01")) == [("occurred", "2100-01-01 is in the future")]
    assert problems_of(session(plan_tasks="pl-nap-2013-2015/III/4")) == [
        ("plan_tasks", "must be a list in square brackets, [ … ]")
    ]
    assert problems_of(materials(estimated="yes")) == [("estimated", "must be true or false, written without quotes")]
    assert problems_of(session(participants=["pupils"])) == [("participants.0", "must be an object in braces, { … }")]


def test_no_message_holds_a_regular_expression() -> None:
    bad = [
        session(county="Somewhere"),
        session(agency="Al Korce"),
        session(campaign_id="Big Campaign"),
        session(plan_tasks=["task four"]),
        session(partners=["IOM Albania"]),
        session(occurred="12/03/2025"),
        session(recorded_at="yesterday"),
        session(event_id="not-an-id"),
        materials(language="Albanian"),
    ]
    messages = [message for event in bad for _, message in problems_of(event)]
    assert len(messages) >= len(bad)
    for message in messages:
        assert not any(sign in message for sign in ("^", "$", "[A-Z]", "[a-z", "pattern")), message
    assert (
        "must be a short name in lower-case letters and digits joined by single dashes, such as al-national-coordinator"
    ) in messages


def test_bad_json_is_told_in_plain_words(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"event_type": "session_held", "agency": "al-a}\n', encoding="utf-8")
    [problem] = load_events(path).problems
    assert problem.message == "is not valid JSON: a text in double quotes is not closed at column 42"


def test_validate_never_speaks_of_publishing(tmp_path: Path) -> None:
    path = tmp_path / "events.txt"
    path.write_text("hello\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "outreach", "validate", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "has an unknown format; use .jsonl, .csv or .xlsx" in done.stderr
    assert "publish" not in done.stderr and "--skip-invalid" not in done.stderr


def test_a_data_directory_serves_one_server_and_a_busy_port_is_one_clear_line(tmp_path: Path) -> None:
    first = EmbeddedServer(tmp_path / "store", port=0).start()
    try:
        with pytest.raises(BrokerError) as held:
            EmbeddedServer(tmp_path / "store", port=0).start()
        assert str(held.value) == (
            f"the data directory {tmp_path / 'store'} is in use by another running nats-server (started by "
            f"process {os.getpid()}); stop it, or give this one a directory of its own with --data-dir"
        )
        with pytest.raises(BrokerError) as busy:
            EmbeddedServer(tmp_path / "other", port=first.port or 0).start()
        assert str(busy.value) == (
            f"port {first.port} on 127.0.0.1 is in use by another program (another nats-server?); stop it, "
            f"or choose another port with --port"
        )
        assert "\n" not in str(busy.value)
    finally:
        first.kill()  # as a crash would: the kernel drops the lock with the process
    again = EmbeddedServer(tmp_path / "store", port=0).start()
    again.stop()


# ---- aggregate entries: several sessions in one ----------------------------------------------------

DIBER = {  # "2 meetings, about 165 pupils, teachers and social workers"
    "event_type": "session_held",
    "schema_version": 3,
    "agency": "al-diber-committee",
    "recorded_at": "2025-01-10T09:00:00Z",
    "occurred": "2024-11-01/2024-11-30",
    "county": "AL-09",
    "format": "school_session",
    "sessions": 2,
    "participants": [
        {"audience": "students", "count": None},
        {"audience": "teachers", "count": None},
        {"audience": "social_workers", "count": None},
    ],
    "reported_total": 165,
    "total_estimated": True,
}


def test_an_entry_of_several_sessions_and_a_v2_entry_of_one() -> None:
    entry = parse_event({**DIBER, "event_id": uid(1)})
    assert (entry.schema_version, entry.sessions, entry.participants_known) == (3, 2, 165)  # type: ignore[attr-defined]
    v2 = parse_event(session(schema_version=2, event_id=uid(2)))
    assert (v2.schema_version, v2.sessions) == (3, 1)  # type: ignore[attr-defined]
    assert problems_of({**DIBER, "event_id": uid(3), "sessions": 0}) == [("sessions", "must be at least 1")]
    assert problems_of({**DIBER, "event_id": uid(4), "sessions": "2"}) == [
        ("sessions", "must be a whole number such as 12, written without quotes")
    ]
    assert problems_of({**DIBER, "event_id": uid(5), "schema_version": 2}) == [
        ("sessions", "is a field of session_held version 3, not 2; give schema_version 3")
    ]


async def test_the_totals_count_every_session_of_an_entry(nc: Client, settings: Settings) -> None:
    js = nc.jetstream()
    await ensure_stream(js, settings.stream, settings.duplicate_window_s)
    events = [
        parse_event({**DIBER, "event_id": uid(1)}),
        parse_event({**session(), "county": "AL-09", "event_id": uid(2)}),  # one session, 30 students, 7 teachers
    ]
    assert (await Publisher(js).publish(events)).stored == 2
    await run_projector(settings, until_caught_up=True)
    rows = run_query(
        settings.db,
        "SELECT events, sessions, participants, sessions_participants_unknown, sessions_participants_estimated "
        "FROM totals_by_county WHERE county = 'AL-09'",
    ).rows
    assert rows == [(2, 3, 165 + 37, 0, 2)]
    audiences = run_query(
        settings.db,
        "SELECT audience, sessions, participants, sessions_uncounted FROM totals_by_audience "
        "WHERE county = 'AL-09' ORDER BY audience",
    ).rows
    assert audiences == [("social_workers", 2, 0, 2), ("students", 3, 30, 2), ("teachers", 3, 7, 2)]


# ---- the workbook template ---------------------------------------------------------------------


def fill(book: Any, sheet: str, row: int, cells: dict[str, Any]) -> None:
    """Type into cells under their headers, as a person would."""
    header = [c.value for c in book[sheet][1]]
    for column, value in cells.items():
        book[sheet].cell(row=row, column=header.index(column) + 1, value=value)


async def test_the_template_filled_in_validates_and_publishes_to_exact_totals(
    nc: Client, settings: Settings, tmp_path: Path
) -> None:
    template = tmp_path / "reporting.xlsx"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}

    def outreach(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "outreach", *args], env=env, capture_output=True, text=True, timeout=120
        )

    await ensure_stream(nc.jetstream(), settings.stream, settings.duplicate_window_s)
    assert outreach("template", "--out", str(template)).returncode == 0
    book = openpyxl.load_workbook(template)
    assert book.sheetnames == ["read me", "codes", "session_held", "materials_distributed", "team_established"]
    rules = {str(v.sqref).split(":")[0]: v.formula1 for v in book["session_held"].data_validations.dataValidation}
    header = [c.value for c in book["session_held"][1]]
    county = openpyxl.utils.get_column_letter(header.index("county") + 1)
    assert rules[f"{county}2"] == "=codes!$E$2:$E$29"  # 12 Albanian counties, 16 Polish voivodeships
    by_column = {
        header[openpyxl.utils.column_index_from_string(str(v.sqref).split(":")[0][:-1]) - 1]: v
        for v in book["session_held"].data_validations.dataValidation
    }
    assert (by_column["sessions"].type, by_column["sessions"].formula1, by_column["sessions"].formula2) == (
        "whole",
        "1",
        "10000",
    )
    assert by_column["format"].type == "list" and "school_session" in by_column["format"].formula1
    assert by_column["occurred"].prompt.startswith("When it happened: 2025-03-05 or 05.03.2025 (a day), 2025-03 (a")
    assert by_column["participants.students"].prompt.replace("\n", " ") == (
        "Participants, students: a whole number, ~N for an estimate, or unknown if they were not counted; empty if "
        "none came."
    )
    codes = {row[0]: row[1] for row in book["codes"].iter_rows(min_row=2, values_only=True) if row[0]}
    assert codes["AL-06"] == "Korçë" and len(codes) == 28

    agency = {"agency": "al-diber-committee", "recorded_at": datetime(2025, 1, 10)}
    fill(book, "session_held", 2, {**agency, "occurred": "2024-11", "county": "AL-09", "format": "school_session",
         "sessions": 2, "participants.students": "unknown", "participants.teachers": "unknown",
         "participants.social_workers": "unknown", "reported_total": 165, "total_estimated": "true"})  # fmt: skip
    fill(book, "session_held", 3, {**agency, "occurred": datetime(2024, 12, 5), "county": "AL-09",
         "format": "workshop", "participants.students": 25, "participants.teachers": "~4"})  # fmt: skip
    fill(book, "materials_distributed", 2, {**agency, "occurred": "05.12.2024", "county": "AL-09",
         "kind": "leaflet", "quantity": 400})  # fmt: skip
    filled = tmp_path / "filled.xlsx"
    book.save(filled)

    done = outreach("validate", str(filled))
    unreferenced = (  # rows filled as before the reference column: still valid, and warned of
        f"warning: {filled}: 3 row(s) without a reference (sheet session_held, row 2, sheet session_held, row 3, "
        "sheet materials_distributed, row 2): their ids come from their content, so a row edited and published "
        "again will be counted twice; give every row a reference\n"
    )
    assert (done.returncode, done.stdout, done.stderr) == (
        0,
        "",
        f"{unreferenced}{filled}: 3 valid event(s), 0 invalid\n",
    )

    # A mistake is told by sheet, row and column.
    fill(book, "session_held", 4, {**agency, "occurred": "05/12/2024", "county": "Dibër", "format": "workshop"})
    wrong = tmp_path / "wrong.xlsx"
    book.save(wrong)
    done = outreach("validate", str(wrong))
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        f"{wrong}: sheet session_held, row 4: occurred: is ambiguous: 05/12/2024 is day/month in some countries "
        "and month/day in others; write 2025-03-05 or 05.03.2025 (accepted: 2025-03-05 or 05.03.2025 (a day), "
        "2025-03 (the whole month), 2025 (the whole year), or a range of two of these, e.g. 2025-03-01/2025-03-15)",
        f"{wrong}: sheet session_held, row 4: county: must be the county's code, not its name: Dibër is AL-09 "
        '(got "Dibër")',
    ]

    done = outreach("publish", str(filled), "--nats", settings.nats_url)
    assert done.returncode == 0, done.stderr
    again = outreach("publish", str(filled), "--nats", settings.nats_url)  # the ids come from the rows
    assert again.returncode == 0 and "0 stored, 3 duplicate(s) already stored" in again.stdout, again.stdout
    await run_projector(settings, until_caught_up=True)
    rows = run_query(
        settings.db,
        "SELECT events, sessions, participants, sessions_participants_estimated, materials_distributed "
        "FROM totals_by_county WHERE county = 'AL-09'",
    ).rows
    assert rows == [(3, 3, 165 + 29, 3, 400)]
