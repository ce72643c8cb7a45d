"""Headers and cells as people make them in spreadsheets: a column given twice, a header with a
stray space or byte-order mark, a date and time typed without a zone, an empty recorded_at, a
formula whose value was never stored, a date serial past 9999. Each is read as meant or refused
with a message naming the cell and what to do; a refused file publishes nothing."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from nats.aio.client import Client

import schemas.files
from producers.files import publish_files
from producers.publisher import Publisher
from runtime.settings import Settings
from runtime.stream import ensure_stream
from schemas.errors import Problem
from schemas.files import load_events
from tests.test_files import uid

HEADER = ["event_id", "event_type", "agency", "recorded_at", "county", "occurred", "kind", "quantity"]
ROW = [uid(1), "materials_distributed", "al-korce-committee", "2025-01-10T09:00:00Z", "AL-06", "2024-03-05", "leaflet"]


def outreach(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
    return subprocess.run(
        [sys.executable, "-m", "outreach", *args], env=env, capture_output=True, text=True, timeout=120
    )


def csv_file(tmp_path: Path, header: list[str], row: list[str]) -> Path:
    path = tmp_path / "events.csv"
    path.write_text(",".join(header) + "\n" + ",".join(row) + "\n", encoding="utf-8")
    return path


# ---- duplicate columns --------------------------------------------------------------------------


def test_a_csv_column_given_twice_is_refused_naming_both(tmp_path: Path) -> None:
    """A second quantity column (hidden, or pasted) turned 50 into 100,000 without a word."""
    path = csv_file(tmp_path, [*HEADER, "quantity"], [*ROW, "50", "100000"])
    loaded = load_events(path)
    assert loaded.events == []
    assert loaded.problems == [
        Problem(
            "(header)",
            "columns H and I are both named quantity; a row would be read from one of them only: "
            "delete one, or give each a name of its own",
            line=1,
        )
    ]


@pytest.mark.parametrize(
    ("second", "shown"),
    [("quantity ", '"quantity", "quantity "'), ("\ufeffquantity", '"quantity", "\\ufeffquantity"')],
)
def test_csv_headers_that_differ_only_by_spaces_or_a_byte_order_mark_are_refused(
    tmp_path: Path, second: str, shown: str
) -> None:
    path = csv_file(tmp_path, [*HEADER, second], [*ROW, "50", "100000"])
    loaded = load_events(path)
    assert loaded.events == []
    assert [str(p) for p in loaded.problems] == [
        "line 1: (header): columns H and I are both named quantity once spaces and byte-order marks are removed "
        f"({shown}); a row would be read from one of them only: delete one, or give each a name of its own"
    ]


def test_a_header_with_a_stray_space_alone_is_read_as_its_field(tmp_path: Path) -> None:
    path = csv_file(tmp_path, [*HEADER[:-1], " quantity "], [*ROW, "50"])
    loaded = load_events(path)
    assert loaded.problems == []
    assert loaded.events[0][1].quantity == 50  # type: ignore[attr-defined]


def workbook(tmp_path: Path, header: list[str], rows: list[list[Any]], name: str = "book.xlsx") -> Path:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "materials_distributed"
    sheet.append(header)
    for row in rows:
        sheet.append(row)
    path = tmp_path / name
    book.save(path)
    return path


def test_a_workbook_county_column_given_twice_is_refused_and_nothing_is_published(
    tmp_path: Path, nats_server: Any
) -> None:
    path = workbook(tmp_path, [*HEADER, "county"], [[*ROW, 40, "AL-09"]])
    done = outreach("validate", str(path))
    assert (done.returncode, done.stdout) == (
        1,
        f"{path}: sheet materials_distributed, row 1: (header): columns E and I are both named county; a row "
        "would be read from one of them only: delete one, or give each a name of its own\n",
    )
    done = outreach("publish", str(path), "--nats", nats_server.url)
    assert done.returncode == 1

    async def stored() -> int:
        from runtime.connection import connect

        nc: Client = await connect(Settings(nats_url=nats_server.url), "test")
        try:
            js = nc.jetstream()
            await ensure_stream(js, "OUTREACH", 120)
            return (await js.stream_info("OUTREACH")).state.messages
        finally:
            await nc.close()

    assert asyncio.run(stored()) == 0


# ---- dates and times as people type them ----------------------------------------------------------

TIMED = ["event_type", "agency", "recorded_at", "county", "occurred", "kind", "quantity"]


def timed(county: str, recorded_at: Any) -> list[Any]:
    return ["materials_distributed", "al-korce-committee", recorded_at, county, "2024-03-05", "leaflet", 40]


def test_a_date_and_time_without_a_zone_is_read_in_the_countys_country(tmp_path: Path) -> None:
    rows = [
        timed("AL-06", datetime(2025, 3, 5, 10, 0)),  # winter time in Tirana: +01:00
        timed("AL-06", datetime(2025, 7, 5, 10, 0)),  # summer time: +02:00
        timed("PL-08", datetime(2025, 10, 26, 2, 30)),  # passed twice in Warsaw that night: the first
        timed("PL-08", datetime(2025, 1, 15, 23, 45, 30)),
    ]
    loaded = load_events(workbook(tmp_path, TIMED, rows))
    assert loaded.problems == []
    assert [e.recorded_at.isoformat() for _, e in loaded.events] == [
        "2025-03-05T10:00:00+01:00",
        "2025-07-05T10:00:00+02:00",
        "2025-10-26T02:30:00+02:00",
        "2025-01-15T23:45:30+01:00",
    ]
    assert [e.recorded_at.astimezone(UTC).isoformat() for _, e in loaded.events][:2] == [
        "2025-03-05T09:00:00+00:00",
        "2025-07-05T08:00:00+00:00",
    ]


def test_a_time_the_clocks_skip_or_a_row_without_county_is_told_what_to_do(tmp_path: Path) -> None:
    rows = [timed("PL-08", datetime(2025, 3, 30, 2, 30)), timed("", datetime(2025, 3, 5, 10, 0))]
    loaded = load_events(workbook(tmp_path, TIMED, rows))
    assert loaded.events == []
    assert [str(p) for p in loaded.problems if p.field == "recorded_at"] == [
        "sheet materials_distributed, row 2: recorded_at: cell C2: 2025-03-30 02:30:00 did not happen in "
        "Europe/Warsaw: the clocks went forward that night; type the time as it was on the clock",
        "sheet materials_distributed, row 3: recorded_at: cell C3 holds a date and time without a time zone, "
        "read in the time zone of the county's country; give the row's county, or type the time with its zone, "
        "e.g. 2025-03-05T10:00:00+01:00",
    ]


def test_an_empty_recorded_at_is_the_time_of_publishing_and_the_rows_id_stays(tmp_path: Path) -> None:
    path = workbook(tmp_path, TIMED, [timed("AL-06", None)])
    before = datetime.now(UTC).replace(microsecond=0)
    first = load_events(path)
    after = datetime.now(UTC)
    assert first.problems == []
    event = first.events[0][1]
    assert before <= event.recorded_at <= after
    assert json.loads(first.payloads[0])["recorded_at"].endswith("Z")
    again = load_events(path)
    assert again.events[0][1].event_id == event.event_id  # made from the row without the time filled in


async def test_a_workbook_with_empty_recorded_at_published_again_stores_nothing_twice(
    nc: Client, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first publish is made a year earlier (its clock moved back); the second, now, fills in
    another recorded_at, and is still the event already stored."""
    js = nc.jetstream()
    await ensure_stream(js, settings.stream, settings.duplicate_window_s)
    path = workbook(tmp_path, TIMED, [timed("AL-06", None), timed("AL-09", None)])
    earlier = datetime(2025, 1, 10, 9, 0, tzinfo=UTC)
    monkeypatch.setattr(schemas.files, "_now", lambda: earlier)
    first = await publish_files(Publisher(js), [path])
    assert (first.published.stored, first.published.duplicates, first.published.failed) == (2, 0, [])
    assert json.loads((await js.get_msg(settings.stream, 1)).data)["recorded_at"] == "2025-01-10T09:00:00Z"
    again = await asyncio.to_thread(outreach, "publish", str(path), "--nats", settings.nats_url)
    assert (again.returncode, again.stdout) == (
        0,
        "2 event(s): 0 stored, 2 duplicate(s) already stored, 0 failed\n",
    )
    assert (await js.stream_info(settings.stream)).state.messages == 2


# ---- formulas and serials -----------------------------------------------------------------------


def test_a_formula_without_its_value_and_a_date_serial_past_9999_name_the_cell(tmp_path: Path) -> None:
    """openpyxl writes formulas without computing them: what a script's workbook holds until
    Excel or LibreOffice saves it."""
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "materials_distributed"
    sheet.append(TIMED)
    sheet.append(timed("AL-06", "2025-01-10T09:00:00Z"))
    sheet["G2"] = "=20*2"
    sheet.append(timed("AL-06", "2025-01-10T09:00:00Z"))
    sheet["E3"] = 3_000_000
    sheet["E3"].number_format = "yyyy-mm-dd"
    sheet.append(timed("AL-06", "2025-01-10T09:00:00Z"))
    sheet["G4"] = "#REF!"
    path = tmp_path / "formulas.xlsx"
    book.save(path)
    with pytest.warns(UserWarning, match="outside the limits for dates"):  # openpyxl's own, for E3
        loaded = load_events(path)
    assert loaded.events == []
    assert [str(p) for p in loaded.problems] == [
        "sheet materials_distributed, row 2: quantity: cell G2 holds a formula whose value was never stored (the "
        "file was written by a program that does not compute formulas); open and save the workbook in Excel or "
        "LibreOffice so the formula's value is stored",
        "sheet materials_distributed, row 3: occurred: cell E3 holds a date serial past 9999: type the date as "
        "2025-03-05",
        "sheet materials_distributed, row 4: quantity: cell G4 holds the error #REF!; type the value itself",
    ]
