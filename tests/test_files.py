"""Unit tests of schemas/files.py: JSON Lines and CSV files of events, every problem with its line."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from schemas.errors import FileInvalid, Problem
from schemas.events import Audience, AudienceCount, EventCorrected, Occurred, SessionHeld
from schemas.files import load_events
from schemas.parse import parse_event

EVENT_ID = "11111111-1111-4111-8111-111111111111"
AGENCY = "al-national-coordinator"
RECORDED_AT = "2026-01-01T00:00:00Z"
AUDIENCES = (
    "students, teachers, officials, civil_society, police, border_guard, social_workers, "
    "employment_office_staff, general_public, other"
)
BAD_CELL = "must be a whole number, ~number (estimate) or 'unknown' (got {})"
DROP = object()


def uid(n: int) -> str:
    return f"{n:08d}-0000-4000-8000-000000000000"


def session(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": EVENT_ID,
        "event_type": "session_held",
        "schema_version": 2,
        "agency": AGENCY,
        "recorded_at": RECORDED_AT,
        "county": "AL-06",
        "occurred": "2017-12-21",
        "format": "school_session",
        "participants": [{"audience": "students", "count": 10}],
    }
    event.update(overrides)
    return {k: v for k, v in event.items() if v is not DROP}


def line(event: dict[str, Any]) -> str:
    return json.dumps(event, ensure_ascii=False)


def write_jsonl(tmp_path: Path, lines: list[str], name: str = "events.jsonl") -> Path:
    path = tmp_path / name
    path.write_bytes("\n".join(lines).encode("utf-8") + b"\n")
    return path


def write_csv(tmp_path: Path, rows: list[list[str]], name: str = "events.csv") -> Path:
    """The first row is the header."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    path = tmp_path / name
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return path


CSV_HEADER = ["event_id", "event_type", "agency", "recorded_at", "county", "occurred", "format"]


def csv_row(event_id: str = EVENT_ID, **cells: str) -> list[str]:
    base = {
        "event_id": event_id,
        "event_type": "session_held",
        "agency": AGENCY,
        "recorded_at": RECORDED_AT,
        "county": "AL-06",
        "occurred": "2017-12-21",
        "format": "school_session",
    }
    base.update(cells)
    return list(base.values())


def found(loaded: Any) -> list[tuple[int | None, str]]:
    return [(p.line, p.field) for p in loaded.problems]


# ---- JSON Lines --------------------------------------------------------------------------------


def test_jsonl_reports_every_problem_with_its_line_number(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path,
        [
            line(session(event_id=uid(1))),  # 1 valid
            "{",  # 2 not JSON
            "",  # 3 blank
            line(session(event_id=uid(4), county="AL-13")),  # 4
            line(session(event_id=uid(5), agency="X", format="lecture")),  # 5 two problems
            "[1]",  # 6 not an object
            line(session(event_id=uid(7))),  # 7 valid
            "   ",  # 8 blank
            line(session(event_id=uid(9), event_type=DROP)),  # 9
            line(session(event_id=uid(10), participants=[{"audience": "students", "count": True}])),  # 10
        ],
    )
    loaded = load_events(path)
    assert found(loaded) == [
        (2, "(event)"),
        (4, "county"),
        (5, "agency"),
        (5, "format"),
        (6, "(event)"),
        (9, "event_type"),
        (10, "participants.0.count"),
    ]
    assert loaded.problems[0].message == "is not valid JSON: a field name must be in double quotes at column 2"
    assert loaded.problems[4].message == "must be a JSON object, not list"
    assert loaded.problems[6] == Problem("participants.0.count", "must be a whole number, not true/false", "true", 10)
    assert [(n, str(e.event_id)) for n, e in loaded.events] == [(1, uid(1)), (7, uid(7))]
    assert loaded.lines_total == 8
    assert loaded.path == str(path)


def test_jsonl_raise_if_invalid_lists_every_problem(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, [line(session(event_id=uid(1))), "{", line(session(event_id=uid(3), county="AL-13"))])
    loaded = load_events(path)
    with pytest.raises(FileInvalid) as info:
        loaded.raise_if_invalid()
    error = info.value
    assert error.path == str(path)
    assert error.lines_total == 3
    assert error.problems == loaded.problems
    assert str(error).startswith(
        f"{path}: 2 of 3 event(s) is invalid (2 problem(s)):\n"
        "  line 2: (event): is not valid JSON: a field name must be in double quotes at column 2\n"
        "  line 3: county: unknown county code for Albania; known: AL-01,"
    )


def test_valid_jsonl_has_no_problems(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, [line(session(event_id=uid(n))) for n in (1, 2, 3)])
    loaded = load_events(path)
    loaded.raise_if_invalid()
    assert loaded.problems == []
    assert [n for n, _ in loaded.events] == [1, 2, 3]
    assert loaded.lines_total == 3


def test_jsonl_blank_lines_are_skipped_but_keep_numbering(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, ["", line(session(event_id=uid(1))), "", "  \t", line(session(event_id=uid(2))), ""])
    loaded = load_events(path)
    assert loaded.problems == []
    assert [n for n, _ in loaded.events] == [2, 5]
    assert loaded.lines_total == 2


def test_jsonl_crlf_line_endings(tmp_path: Path) -> None:
    path = tmp_path / "windows.jsonl"
    path.write_bytes(f"{line(session(event_id=uid(1)))}\r\n{line(session(event_id=uid(2)))}\r\n".encode())
    loaded = load_events(path)
    assert loaded.problems == []
    assert [str(e.event_id) for _, e in loaded.events] == [uid(1), uid(2)]


def test_empty_file_has_no_events(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    loaded = load_events(path)
    assert (loaded.events, loaded.problems, loaded.lines_total) == ([], [], 0)


def test_same_event_twice_counts_once(tmp_path: Path) -> None:
    event = session()
    reordered = json.dumps(dict(reversed(list(event.items()))))
    path = write_jsonl(tmp_path, [line(event), line(event), reordered])
    loaded = load_events(path)
    assert loaded.problems == []
    assert [n for n, _ in loaded.events] == [1]
    assert loaded.lines_total == 3


def test_same_event_id_with_different_content_names_the_first_line(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path,
        [
            line(session(event_id=uid(1))),
            line(session()),
            line(session(event_id=uid(3))),
            line(session(participants=[{"audience": "students", "count": 11}])),
            line(session(format="workshop")),
        ],
    )
    loaded = load_events(path)
    message = "is reused with different content (first on line 2)"
    assert loaded.problems == [Problem("event_id", message, EVENT_ID, 4), Problem("event_id", message, EVENT_ID, 5)]
    assert [n for n, _ in loaded.events] == [1, 2, 3]
    assert loaded.events[1][1].participants[0].count == 10


@pytest.mark.parametrize("name", ["events.ndjson", "EVENTS.JSONL"])
def test_other_jsonl_suffixes(tmp_path: Path, name: str) -> None:
    loaded = load_events(write_jsonl(tmp_path, [line(session())], name=name))
    assert loaded.problems == []
    assert len(loaded.events) == 1


def test_a_file_named_xlsx_that_is_no_workbook(tmp_path: Path) -> None:
    path = tmp_path / "events.xlsx"
    path.write_text(line(session()), encoding="utf-8")
    [problem] = load_events(path).problems
    assert (problem.field, problem.message.split(" (")[0]) == ("(file)", "is not a workbook Excel or LibreOffice wrote")


@pytest.mark.parametrize("name", ["events.json", "events.txt", "events"])
def test_unknown_file_suffix(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text(line(session()), encoding="utf-8")
    with pytest.raises(FileInvalid) as info:
        load_events(path)
    assert info.value.problems == [Problem("(file)", "has an unknown format; use .jsonl, .csv or .xlsx")]
    assert info.value.path == str(path)
    assert info.value.lines_total == 0


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.jsonl"
    with pytest.raises(FileInvalid) as info:
        load_events(path)
    assert info.value.problems == [Problem("(file)", "cannot be read: No such file or directory")]
    assert (info.value.path, info.value.lines_total) == (str(path), 0)
    assert str(info.value) == f"{path} is invalid (1 problem(s)):\n  (file): cannot be read: No such file or directory"


def test_file_level_problem_is_not_counted_as_an_invalid_event(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("event_id\nKorçë\n".encode("latin-1"))
    with pytest.raises(FileInvalid) as info:
        load_events(path).raise_if_invalid()
    assert str(info.value) == (
        f"{path} is invalid (1 problem(s)):\n  (file): is not valid UTF-8 (byte 12); save it as UTF-8 CSV"
    )


def test_directory_is_not_readable_as_a_file(tmp_path: Path) -> None:
    path = tmp_path / "folder.csv"
    path.mkdir()
    with pytest.raises(FileInvalid) as info:
        load_events(path)
    assert info.value.problems == [Problem("(file)", "cannot be read: Is a directory")]


# ---- CSV ---------------------------------------------------------------------------------------


def test_csv_header_names_the_fields_and_empty_cells_are_absent(tmp_path: Path) -> None:
    header = [*CSV_HEADER, "municipality", "venue", "title", "reported_total", "participants.students"]
    path = write_csv(
        tmp_path,
        [
            header,
            [*csv_row(uid(1)), "AL-06-maliq", "Shkolla “Sheqeras”", "", "12", "10"],
            [*csv_row(uid(2)), "", "", "  ", "", "10"],
        ],
    )
    loaded = load_events(path)
    assert loaded.problems == []
    [(line1, first), (line2, second)] = loaded.events
    assert (line1, line2) == (2, 3)
    assert isinstance(first, SessionHeld)
    assert (first.municipality, first.venue, first.title, first.reported_total) == (
        "AL-06-maliq",
        "Shkolla “Sheqeras”",
        None,
        12,
    )
    assert (second.municipality, second.venue, second.title, second.reported_total) == (None, None, None, None)
    assert first.occurred == Occurred(start=date(2017, 12, 21))
    assert loaded.lines_total == 2


def test_csv_equals_the_same_event_in_jsonl(tmp_path: Path) -> None:
    path = write_csv(tmp_path, [[*CSV_HEADER, "participants.students"], [*csv_row(), "10"]])
    [(_, event)] = load_events(path).events
    assert event == parse_event(session())


def test_csv_list_fields_split_on_semicolons(tmp_path: Path) -> None:
    header = [*CSV_HEADER, "partners", "plan_tasks"]
    path = write_csv(
        tmp_path,
        [header, [*csv_row(), " al-korce-regional-committee ;iom-albania; ", "pl-nap-2013-2015/III/4;al-nap/II/1"]],
    )
    [(_, event)] = load_events(path).events
    assert event.partners == ("al-korce-regional-committee", "iom-albania")
    assert event.plan_tasks == ("pl-nap-2013-2015/III/4", "al-nap/II/1")


def test_csv_list_fields_of_teams_and_campaigns(tmp_path: Path) -> None:
    header = [
        "event_id",
        "event_type",
        "agency",
        "recorded_at",
        "county",
        "occurred",
        "team_name",
        "member_institutions",
    ]
    row = [uid(1), "team_established", "pl-slaskie-voivodeship-office", RECORDED_AT, "PL-24", "2015-02-09", "Zespół"]
    team_path = write_csv(tmp_path, [header, [*row, "voivodeship_office;police;ngo"]], name="teams.csv")
    [(_, team)] = load_events(team_path).events
    assert team.member_institutions == ("voivodeship_office", "police", "ngo")

    header = ["event_id", "event_type", "agency", "recorded_at", "campaign_id", "name", "country", "lead_agency"]
    row = [uid(2), "campaign_defined", AGENCY, RECORDED_AT, "c", "Fushata", "AL", AGENCY]
    campaign_path = write_csv(tmp_path, [[*header, "target_counties"], [*row, "AL-06; AL-09"]], name="campaigns.csv")
    [(_, campaign)] = load_events(campaign_path).events
    assert campaign.target_counties == ("AL-06", "AL-09")


def test_csv_participants_columns(tmp_path: Path) -> None:
    header = [*CSV_HEADER, "participants.students", "participants.teachers", "participants.officials"]
    path = write_csv(
        tmp_path,
        [
            header,
            [*csv_row(uid(1)), "30", "~7", "unknown"],
            [*csv_row(uid(2)), "~ 12", "", "Unknown"],
            [*csv_row(uid(3)), "0", "", ""],
        ],
    )
    loaded = load_events(path)
    assert loaded.problems == []
    first, second, third = (event for _, event in loaded.events)
    assert first.participants == (
        AudienceCount(audience=Audience.students, count=30, estimated=False),
        AudienceCount(audience=Audience.teachers, count=7, estimated=True),
        AudienceCount(audience=Audience.officials, count=None, estimated=False),
    )
    assert (first.participants_known, first.participants_unknown, first.participants_estimated) == (37, True, True)
    assert second.participants == (
        AudienceCount(audience=Audience.students, count=12, estimated=True),
        AudienceCount(audience=Audience.officials, count=None),
    )
    assert third.participants == (AudienceCount(audience=Audience.students, count=0),)


def test_csv_row_without_participant_cells_has_no_participants(tmp_path: Path) -> None:
    path = write_csv(tmp_path, [[*CSV_HEADER, "participants.students"], [*csv_row(), ""]])
    [(_, event)] = load_events(path).events
    assert event.participants == ()
    assert event.participants_unknown is True


@pytest.mark.parametrize(
    ("cell", "start", "end"),
    [
        ("2017-12-20/2017-12-21", "2017-12-20", "2017-12-21"),
        ('{"start": "2017-12-20", "end": "2017-12-21"}', "2017-12-20", "2017-12-21"),
        ('{"start": "2017-12-20"}', "2017-12-20", None),
        ("2017-12-21", "2017-12-21", None),
    ],
)
def test_csv_occurred_cell(tmp_path: Path, cell: str, start: str, end: str | None) -> None:
    path = write_csv(tmp_path, [CSV_HEADER, csv_row(occurred=cell)])
    [(_, event)] = load_events(path).events
    assert event.occurred == Occurred.model_validate({"start": start, "end": end})


def test_csv_replacement_cell_holds_json(tmp_path: Path) -> None:
    header = ["event_id", "event_type", "agency", "recorded_at", "corrects", "replacement", "reason"]
    row = [uid(2), "event_corrected", AGENCY, RECORDED_AT, EVENT_ID, line(session()), "typo"]
    loaded = load_events(write_csv(tmp_path, [header, row]))
    assert loaded.problems == []
    [(_, event)] = loaded.events
    assert isinstance(event, EventCorrected)
    assert event.replacement == parse_event(session())


def test_csv_participants_cell_holds_json(tmp_path: Path) -> None:
    cell = json.dumps([{"audience": "students", "count": 30}, {"audience": "teachers", "count": 7, "estimated": True}])
    loaded = load_events(write_csv(tmp_path, [[*CSV_HEADER, "participants"], [*csv_row(), cell]]))
    assert loaded.problems == []
    [(_, event)] = loaded.events
    assert event.participants == (
        AudienceCount(audience=Audience.students, count=30),
        AudienceCount(audience=Audience.teachers, count=7, estimated=True),
    )


def test_csv_json_cell_that_is_not_json(tmp_path: Path) -> None:
    path = write_csv(tmp_path, [CSV_HEADER, csv_row(occurred='{"start": }')])
    loaded = load_events(path)
    assert loaded.problems == [
        Problem(
            "occurred",
            "is not valid JSON: a value is missing (or a text lacks its double quotes) at column 11",
            None,
            2,
        )
    ]
    assert loaded.events == []
    assert loaded.lines_total == 1


def test_csv_row_with_too_many_cells(tmp_path: Path) -> None:
    path = write_csv(tmp_path, [CSV_HEADER, csv_row(uid(1)), [*csv_row(uid(2)), "extra"], csv_row(uid(3))])
    loaded = load_events(path)
    assert loaded.problems == [Problem("(row)", "has more cells than the header has columns", None, 3)]
    assert [n for n, _ in loaded.events] == [2, 4]
    assert loaded.lines_total == 3


def test_csv_row_with_too_few_cells_misses_those_fields(tmp_path: Path) -> None:
    path = write_csv(tmp_path, [CSV_HEADER, csv_row()[:-1]])
    assert [(p.line, p.field, p.message) for p in load_events(path).problems] == [(2, "format", "is missing")]


def test_csv_unknown_audience_column(tmp_path: Path) -> None:
    path = write_csv(tmp_path, [[*CSV_HEADER, "participants.kids"], [*csv_row(), "3"]])
    assert load_events(path).problems == [
        Problem("participants.kids", f"unknown audience group; one of: {AUDIENCES}", None, 2)
    ]


def test_csv_unknown_audience_column_with_empty_cell_is_ignored(tmp_path: Path) -> None:
    path = write_csv(tmp_path, [[*CSV_HEADER, "participants.kids"], [*csv_row(), ""]])
    assert load_events(path).problems == []


@pytest.mark.parametrize("cell", ["abc", "3.5", "~", "30 people", "1,000", "n/a", "- 5-"])
def test_csv_participant_cell_must_be_a_number(tmp_path: Path, cell: str) -> None:
    path = write_csv(tmp_path, [[*CSV_HEADER, "participants.students"], [*csv_row(), cell]])
    loaded = load_events(path)
    assert loaded.problems == [Problem("participants.students", BAD_CELL.format(json.dumps(cell)), None, 2)]
    assert loaded.lines_total == 1


@pytest.mark.parametrize(
    ("column", "cell", "bounds"),
    [
        ("participants.students", "-5", "from 0 to 10,000,000 (got -5)"),
        ("participants.students", "~-3", "from 0 to 10,000,000 (got ~-3)"),
        ("participants.students", "\u22125", "from 0 to 10,000,000 (got \u22125)"),
        ("reported_total", "-5", "from 0 to 10,000,000 (got -5)"),
        ("sessions", "-2", "from 1 to 10,000 (got -2)"),
    ],
)
def test_a_negative_count_is_told_it_cannot_be(tmp_path: Path, column: str, cell: str, bounds: str) -> None:
    path = write_csv(tmp_path, [[*CSV_HEADER, column], [*csv_row(), cell]])
    assert load_events(path).problems == [
        Problem(column, f"cannot be negative: must be a whole number {bounds}", None, 2)
    ]


def test_csv_participant_count_over_the_limit(tmp_path: Path) -> None:
    path = write_csv(tmp_path, [[*CSV_HEADER, "participants.students"], [*csv_row(), "10000001"]])
    assert load_events(path).problems == [Problem("participants.0.count", "must be at most 10000000", "10000001", 2)]


def test_csv_participant_cell_with_a_non_ascii_digit(tmp_path: Path) -> None:
    # '²'.isdigit() is True, yet int('²') fails: the cell must be reported, not crash the load
    path = write_csv(tmp_path, [[*CSV_HEADER, "participants.students"], [*csv_row(), "²"]])
    message = BAD_CELL.format(json.dumps("²", ensure_ascii=False))
    assert load_events(path).problems == [Problem("participants.students", message, None, 2)]


def test_csv_bad_reported_total(tmp_path: Path) -> None:
    path = write_csv(tmp_path, [[*CSV_HEADER, "reported_total"], [*csv_row(), "twenty"]])
    assert load_events(path).problems == [
        Problem("reported_total", 'must be a whole number such as 12 (got "twenty")', None, 2)
    ]


def test_csv_participants_both_as_column_and_audience_columns(tmp_path: Path) -> None:
    path = write_csv(tmp_path, [[*CSV_HEADER, "participants", "participants.students"], [*csv_row(), "x", "3"]])
    assert load_events(path).problems == [
        Problem("participants", "is given both as a column and as participants.<audience> columns", None, 2)
    ]


def test_csv_reports_every_problem_with_its_line_number(tmp_path: Path) -> None:
    header = [*CSV_HEADER, "participants.students"]
    path = write_csv(
        tmp_path,
        [
            header,
            [*csv_row(uid(2)), "10"],  # 2 valid
            [*csv_row(uid(3), county="PL-MZ"), "10"],  # 3
            [*csv_row(uid(4)), "many"],  # 4
            [*csv_row(uid(5)), "10", "x"],  # 5
            [*csv_row(uid(6), agency="al_korce", occurred="2017-12-21/2017-12-20"), "10"],  # 6 two problems
            [*csv_row(uid(7)), "~10"],  # 7 valid
            [*csv_row(uid(2)), "11"],  # 8 reuses line 2's event_id
        ],
    )
    loaded = load_events(path)
    # Rows that cannot become an event are reported before rows that fail validation; sort by line.
    by_line = sorted(loaded.problems, key=lambda p: p.line or 0)
    assert [(p.line, p.field) for p in by_line] == [
        (3, "county"),
        (4, "participants.students"),
        (5, "(row)"),
        (6, "occurred"),
        (6, "agency"),
        (8, "event_id"),
    ]
    assert by_line[0].message == "unknown county code; write PL-14 for PL-MZ"
    assert by_line[3].message == "range ends (2017-12-20) before it starts (2017-12-21)"
    assert by_line[5].message == "is reused with different content (first on line 2)"
    assert [n for n, _ in loaded.events] == [2, 7]
    assert loaded.lines_total == 7
    with pytest.raises(FileInvalid, match=r"5 of 7 event\(s\) is invalid \(6 problem\(s\)\)"):
        loaded.raise_if_invalid()


def test_csv_same_row_twice_counts_once(tmp_path: Path) -> None:
    path = write_csv(tmp_path, [CSV_HEADER, csv_row(), csv_row()])
    loaded = load_events(path)
    assert loaded.problems == []
    assert [n for n, _ in loaded.events] == [2]


def test_csv_saved_with_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf" + (",".join(CSV_HEADER) + "\n" + ",".join(csv_row()) + "\n").encode())
    loaded = load_events(path)
    assert loaded.problems == []
    assert str(loaded.events[0][1].event_id) == EVENT_ID


def test_csv_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    text = ",".join(CSV_HEADER) + "\n" + ",".join(csv_row(format="Korçë")) + "\n"
    path.write_bytes(text.encode("latin-1"))
    offset = text.encode("latin-1").index(b"\xe7")
    loaded = load_events(path)
    assert loaded.problems == [Problem("(file)", f"is not valid UTF-8 (byte {offset}); save it as UTF-8 CSV")]
    assert (loaded.events, loaded.lines_total) == ([], 0)


def test_csv_header_only(tmp_path: Path) -> None:
    loaded = load_events(write_csv(tmp_path, [CSV_HEADER]))
    assert (loaded.events, loaded.problems, loaded.lines_total) == ([], [], 0)


def test_jsonl_with_a_byte_order_mark_reads_its_first_line(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + line(session()).encode() + b"\n")
    loaded = load_events(path)
    assert (len(loaded.events), loaded.problems) == (1, [])
