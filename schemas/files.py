"""Files of events as agencies have them: JSON Lines (``.jsonl``), CSV (``.csv``) and a filled
workbook made by ``outreach template`` (``.xlsx``: a sheet per action type, read as CSV rows are).

Every line is validated and every problem is reported at once, with its line number. CSV columns
are the event's field names; see the README for the forms a cell may take.
"""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from schemas.dates import DateInvalid, date_cell, day_cell, moment_cell
from schemas.errors import EventInvalid, FileInvalid, Problem
from schemas.events import Audience, EventBase
from schemas.parse import MAX_EVENT_BYTES, decode_json, parse_event

LIST_FIELDS = {"plan_tasks", "partners", "target_counties", "member_institutions"}
JSON_FIELDS = {"participants", "replacement", "occurred"}
# Cells are text; events take JSON numbers and true/false. These are converted here, explicitly.
WHOLE_NUMBER_FIELDS = {"quantity", "reported_total", "first_year", "last_year", "schema_version", "sessions"}
FLAG_FIELDS = {"estimated", "total_estimated"}
FLAGS = {"true": True, "false": False}
# Dates in the forms agencies write (schemas.dates), made ISO here.
DATE_FIELDS = {"occurred": date_cell, "starts": day_cell, "ends": day_cell, "recorded_at": moment_cell}


# What one file may hold, refused before it is read whole: its bytes, its rows (in a file, or in
# a sheet), a cell's characters (no event is larger), and a workbook's parts unpacked (the
# shared strings are read whole by openpyxl; a sheet is streamed).
MAX_FILE_BYTES = 128 * 1024 * 1024
MAX_ROWS = 100_000
MAX_CELL_CHARS = MAX_EVENT_BYTES
MAX_XLSX_PART_BYTES = 256 * 1024 * 1024
MAX_XLSX_SHARED_STRINGS_BYTES = 32 * 1024 * 1024


def _too_large(path: str, message: str) -> FileInvalid:
    return FileInvalid(path, [Problem("(file)", message)], 0)


SPLIT = "; split it into smaller files"


def _within_limits(rows: Iterable[Any], path: str, sheet: str | None = None, first: int = 2) -> Iterator[Any]:
    """``rows`` (CSV records from line ``first``, a sheet's rows of cells from row ``first``) until one
    breaks a limit: past ``MAX_ROWS`` rows, or at a cell of more than ``MAX_CELL_CHARS``, the file is
    refused there, before the rest is read."""
    where = f"sheet {sheet}, row" if sheet else "line"
    number = first - 1
    try:
        for row in rows:
            number += 1
            if number - first >= MAX_ROWS:
                raise _too_large(path, f"has more than {MAX_ROWS:,} rows, the most one file or sheet may hold{SPLIT}")
            for cell in row.values() if isinstance(row, dict) else row:
                if isinstance(cell, str) and len(cell) > MAX_CELL_CHARS:
                    raise _too_large(
                        path,
                        f"{where} {number}: a cell of {len(cell):,} characters, over {MAX_CELL_CHARS:,}",
                    )
            yield row
    except csv.Error as exc:  # a cell past csv.field_size_limit, which is MAX_CELL_CHARS
        raise _too_large(path, f"{where} {number + 1}: {exc}") from None


def _xlsx_within_limits(data: bytes, path: str) -> None:
    """A workbook is a zip: its parts' unpacked sizes, as the zip states them, are checked before
    openpyxl unpacks any (a 196 KB workbook can unpack to a 200 MB string)."""
    try:
        parts = zipfile.ZipFile(io.BytesIO(data)).infolist()
    except (zipfile.BadZipFile, OSError):
        return  # not a zip: openpyxl says what it is not
    for part in parts:
        limit = MAX_XLSX_SHARED_STRINGS_BYTES if part.filename.endswith("sharedStrings.xml") else MAX_XLSX_PART_BYTES
        if part.file_size > limit:
            raise _too_large(
                path,
                f"unpacks {part.filename} to {part.file_size:,} bytes, over the {limit:,} a workbook may{SPLIT}",
            )


csv.field_size_limit(MAX_CELL_CHARS)


class CellInvalid(Exception):
    """A CSV cell that cannot become part of an event."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass
class LoadedFile:
    """The valid events of a file, each with its line number, and the problems of the others."""

    path: str
    events: list[tuple[int, EventBase]] = field(default_factory=list)
    # What is published for each event, in the same order: the line's bytes as the agency wrote
    # them (JSON Lines), or the row as a JSON object (CSV); never a re-serialisation of the model,
    # which would change an old version's payload into the current one.
    payloads: list[bytes] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    lines_total: int = 0

    def raise_if_invalid(self) -> None:
        if self.problems:
            raise FileInvalid(self.path, self.problems, self.lines_total)


def load_events(path: str | Path) -> LoadedFile:
    """Read and validate a ``.jsonl``/``.ndjson`` or ``.csv`` file; never raises for bad lines."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".ndjson", ".csv", ".xlsx"):
        raise FileInvalid(str(path), [Problem("(file)", "has an unknown format; use .jsonl, .csv or .xlsx")], 0)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise _too_large(str(path), f"is {size:,} bytes, more than the {MAX_FILE_BYTES:,} one file may be{SPLIT}")
        data = path.read_bytes()
    except OSError as exc:
        raise FileInvalid(str(path), [Problem("(file)", f"cannot be read: {exc.strerror}")], 0) from None
    loaded = LoadedFile(str(path))
    sheets: dict[int, str] = {}  # a workbook's rows: line -> sheet (lines are numbered across sheets)
    if suffix == ".xlsx":
        rows = _xlsx_rows(data, loaded, sheets)
    else:
        rows = _csv_rows(data, loaded) if suffix == ".csv" else _jsonl_rows(data, str(path))
    seen: dict[Any, tuple[int, EventBase]] = {}
    for line, row in rows:
        loaded.lines_total += 1
        sheet, at = (sheets[line], line % ROWS_A_SHEET) if line in sheets else (None, line)
        try:
            event = parse_event(row)
        except EventInvalid as exc:
            loaded.problems.extend(Problem(p.field, p.message, p.value, at, sheet) for p in exc.problems)
            continue
        earlier = seen.get(event.event_id)
        if earlier is not None:
            if earlier[1] != event:
                message = f"is reused with different content (first on line {earlier[0]})"
                loaded.problems.append(Problem("event_id", message, str(event.event_id), at, sheet))
            elif sheet is not None:
                first = earlier[0] % ROWS_A_SHEET
                message = f"is the same as row {first}: give each entry something of its own (a venue, a title)"
                loaded.problems.append(Problem("(row)", message, None, at, sheet))
            continue  # the same event twice in one file is published once
        seen[event.event_id] = (line, event)
        loaded.events.append((line, event))
        loaded.payloads.append(row if isinstance(row, bytes) else _as_json(row))
    loaded.problems.sort(key=lambda p: (p.sheet or "", p.line or 0))
    return loaded


SHEETS = ("session_held", "materials_distributed", "team_established")  # the template's sheets of entries
ROWS_A_SHEET = 10_000_000  # a workbook row's line: sheet index * this + row
EVENT_ID_NAMESPACE = uuid.UUID("6f1d3c0e-8b7a-5e44-9c1d-2a4b6c8d0e1f")


def _xlsx_rows(data: bytes, loaded: LoadedFile, sheets: dict[int, str]) -> list[tuple[int, bytes | dict[str, Any]]]:
    """The entry sheets of a filled template, row by row, as CSV rows are read. A row without an
    event_id gets one made from its content, so publishing the same workbook again adds nothing."""
    import openpyxl  # only for workbooks

    _xlsx_within_limits(data, loaded.path)
    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:
        loaded.problems.append(
            Problem("(file)", f"is not a workbook Excel or LibreOffice wrote ({type(exc).__name__})")
        )
        return []
    rows: list[tuple[int, bytes | dict[str, Any]]] = []
    found = [name for name in SHEETS if name in book.sheetnames]
    if not found:
        loaded.problems.append(
            Problem("(file)", f"has none of the sheets {', '.join(SHEETS)}: fill in `outreach template`")
        )
    for name in found:
        index = SHEETS.index(name) + 1
        declared = book[name].max_row  # the size Excel writes in the sheet, if any: refused unread
        if declared and declared - 1 > MAX_ROWS:
            raise _too_large(loaded.path, f"sheet {name} has {declared - 1:,} rows, more than {MAX_ROWS:,}{SPLIT}")
        cells = _within_limits(book[name].iter_rows(values_only=True), loaded.path, name, first=1)
        header = [str(c).strip() if c is not None else "" for c in next(cells, ())]
        for number, values in enumerate(cells, start=2):
            texts = [_xlsx_text(v) for v in values]
            if not any(texts):
                continue
            line = index * ROWS_A_SHEET + number
            sheets[line] = name
            record: dict[str | None, Any] = {h: t for h, t in zip(header, texts, strict=False) if h}
            record["event_type"] = name
            obj, problems = csv_record_to_event(record)
            if not obj.get("event_id"):
                content = json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str)
                obj = {"event_id": str(uuid.uuid5(EVENT_ID_NAMESPACE, content)), **obj}
            if not problems:
                rows.append((line, obj))
                continue
            loaded.lines_total += 1
            loaded.problems.extend(Problem(p.field, p.message, None, number, name) for p in problems)
            bad = {p.field for p in problems}
            try:
                parse_event(obj)
            except EventInvalid as exc:
                loaded.problems.extend(
                    Problem(p.field, p.message, p.value, number, name)
                    for p in exc.problems
                    if p.field.split(".")[0] not in bad and p.field != "(event)"
                )
    book.close()
    return rows


def where(line: int) -> str:
    """A line of a file as its reader says it: ``line 7``, or a workbook's ``sheet session_held, row 7``."""
    if line >= ROWS_A_SHEET:
        return f"sheet {SHEETS[line // ROWS_A_SHEET - 1]}, row {line % ROWS_A_SHEET}"
    return f"line {line}"


def _xlsx_text(value: Any) -> str:
    """A cell as the text a CSV cell would hold: numbers without ".0", dates as ISO days."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time() else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value).strip()


def _as_json(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def _jsonl_rows(data: bytes, path: str) -> list[tuple[int, bytes | dict[str, Any]]]:
    rows: list[tuple[int, bytes | dict[str, Any]]] = []
    data = data.removeprefix(b"\xef\xbb\xbf")  # a byte-order mark, as some editors write
    for number, line in enumerate(data.split(b"\n"), start=1):
        if line.strip():
            if len(rows) >= MAX_ROWS:
                raise _too_large(path, f"has more than {MAX_ROWS:,} lines of events, the most one file may hold{SPLIT}")
            rows.append((number, line.rstrip(b"\r")))
    return rows


DELIMITERS = (",", ";", "\t")


def _delimiter(header: str) -> str:
    """The header line's delimiter: Excel saves CSV with ';' where ',' is the decimal mark (Poland,
    Albania), others with ',' or a tab. The header holds field names only, so its most frequent
    delimiter is the one."""
    counts = {d: header.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def _csv_rows(data: bytes, loaded: LoadedFile) -> list[tuple[int, bytes | dict[str, Any]]]:
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark, as Excel writes, is dropped
    except UnicodeDecodeError as exc:
        loaded.problems.append(Problem("(file)", f"is not valid UTF-8 (byte {exc.start}); save it as UTF-8 CSV"))
        return []
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=_delimiter(text.split("\n", 1)[0]))
    rows: list[tuple[int, bytes | dict[str, Any]]] = []
    for record in _within_limits(reader, loaded.path):
        line = reader.line_num
        obj, problems = csv_record_to_event(record)
        if not problems:
            rows.append((line, obj))
            continue
        # Every problem of the line: the cells' own, and what validating the rest finds.
        loaded.lines_total += 1
        loaded.problems.extend(Problem(p.field, p.message, line=line) for p in problems)
        bad = {p.field for p in problems}
        try:
            parse_event(obj)
        except EventInvalid as exc:
            loaded.problems.extend(
                Problem(p.field, p.message, p.value, line)
                for p in exc.problems
                if p.field.split(".")[0] not in bad and p.field != "(event)"
            )
    return rows


def csv_record_to_event(record: dict[str | None, Any]) -> tuple[dict[str, Any], list[CellInvalid]]:
    """One CSV row to an event object, and the problems of its cells: empty cells are absent,
    lists split on ';' (or ','), dates in the forms of ``schemas.dates``, JSON where needed.

    ``participants.<audience>`` columns hold a number, ``~N`` for an estimate, or ``unknown``.
    """
    problems: list[CellInvalid] = []
    if None in record:
        problems.append(CellInvalid("(row)", "has more cells than the header has columns"))
    obj: dict[str, Any] = {}
    participants = []
    for column, cell in record.items():
        if column is None:
            continue
        cell = (cell or "").strip() if isinstance(cell, str) else ""
        if not cell:
            continue
        try:
            if column.startswith("participants."):
                participants.append(_audience_cell(column, cell))
            elif column in LIST_FIELDS:
                separator = ";" if ";" in cell else ","
                obj[column] = [part.strip() for part in cell.split(separator) if part.strip()]
            elif column in JSON_FIELDS and cell[0] in "[{":
                obj[column] = _json_cell(column, cell)
            elif column in DATE_FIELDS:
                obj[column] = DATE_FIELDS[column](cell)
            elif column in WHOLE_NUMBER_FIELDS:
                obj[column] = _whole_number_cell(column, cell)
            elif column in FLAG_FIELDS:
                if cell.lower() not in FLAGS:
                    raise CellInvalid(column, f"must be true or false (got {json.dumps(cell, ensure_ascii=False)})")
                obj[column] = FLAGS[cell.lower()]
            else:
                obj[column] = cell
        except CellInvalid as exc:
            problems.append(exc)
        except DateInvalid as exc:
            problems.append(CellInvalid(column, str(exc)))
    if participants:
        if "participants" in obj:
            problems.append(
                CellInvalid("participants", "is given both as a column and as participants.<audience> columns")
            )
        else:
            obj["participants"] = participants
    return obj, problems


def _json_cell(column: str, cell: str) -> Any:
    try:
        return decode_json(cell.encode(), allow=(dict, list))
    except EventInvalid as exc:
        raise CellInvalid(column, exc.problems[0].message.replace("(event)", "the cell")) from None


def _whole_number_cell(column: str, cell: str) -> int:
    if not re.fullmatch(r"[0-9]{1,12}", cell):
        shown = json.dumps(cell, ensure_ascii=False)
        raise CellInvalid(column, f"must be a whole number such as 12 (got {shown[:80]})")
    return int(cell)


def _audience_cell(column: str, cell: str) -> dict[str, Any]:
    audience = column.removeprefix("participants.")
    if audience not in Audience.__members__:
        raise CellInvalid(column, f"unknown audience group; one of: {', '.join(Audience.__members__)}")
    if cell.lower() == "unknown":
        return {"audience": audience, "count": None}
    estimated = cell.startswith("~")
    number = cell.removeprefix("~").strip()
    if not re.fullmatch(r"[0-9]{1,12}", number):
        shown = json.dumps(cell, ensure_ascii=False)
        raise CellInvalid(column, f"must be a whole number, ~number (estimate) or 'unknown' (got {shown})")
    return {"audience": audience, "count": int(number), "estimated": estimated}
