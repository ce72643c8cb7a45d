"""Files of events as agencies have them: JSON Lines (``.jsonl``), CSV (``.csv``) and a filled
workbook made by ``outreach template`` (``.xlsx``: a sheet per action type, read as CSV rows are).

Every line is validated and every problem is reported at once, with its line number. CSV columns
are the event's field names; see the README for the forms a cell may take.

A row of a CSV file or workbook may give a ``reference``, the agency's own code for the row (e.g.
``KOR-2025-014``): its event_id is then made from (agency, reference), so the row keeps its identity
when its figures are edited, and publishing the file again corrects what changed
(``producers.rows``). A ``withdrawn`` column holding a reason asks for the row's event to be
retracted. A workbook row with neither event_id nor reference gets an id made from its content, as
before references existed: an edited row is then a new event.
"""

from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
import uuid
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from itertools import zip_longest
from pathlib import Path
from typing import Any

from schemas.dates import TIME_ZONES, DateInvalid, date_cell, day_cell, local_moment, moment_cell
from schemas.errors import EventInvalid, FileInvalid, Problem
from schemas.events import MAX_COUNT, MAX_SESSIONS, REFERENCE_PATTERN, SLUG_PATTERN, Audience, EventBase
from schemas.parse import MAX_EVENT_BYTES, decode_json, parse_event
from schemas.reference import regions

LIST_FIELDS = {"plan_tasks", "partners", "target_counties", "member_institutions"}
JSON_FIELDS = {"participants", "replacement", "occurred"}
# Cells are text; events take JSON numbers and true/false. These are converted here, explicitly.
WHOLE_NUMBER_FIELDS = {"quantity", "reported_total", "first_year", "last_year", "schema_version", "sessions"}
# The bounds a count's cell is told of when it is out of them (a participants.<audience> cell: COUNT).
COUNT = (0, MAX_COUNT)
WHOLE_NUMBER_RANGES = {"quantity": COUNT, "reported_total": COUNT, "sessions": (1, MAX_SESSIONS)}
# Lower case by definition: a file's cell is read in any letter case (a spreadsheet's autocorrect
# capitalises a cell's first letter); JSON Lines events stay strict.
LOWER_CASE_FIELDS = {"agency", "campaign_id", "lead_agency", "language"}
FLAG_FIELDS = {"estimated", "total_estimated"}
FLAGS = {"true": True, "false": False}
# Dates in the forms agencies write (schemas.dates), made ISO here.
DATE_FIELDS = {"occurred": date_cell, "starts": day_cell, "ends": day_cell, "recorded_at": moment_cell}
# The event_id of a row with a reference: uuid5 of this namespace and "<agency>\n<reference>".
REFERENCE_NAMESPACE = uuid.UUID("3c4f8e2a-7d15-5b9e-a0c6-5e1f2d3b4a69")
MAX_WITHDRAWN = 2000  # characters of a withdrawn cell's reason, as an event's reason takes


def reference_event_id(agency: str, reference: str) -> uuid.UUID:
    """The event_id of an agency's row with this reference, the same in every file and every year."""
    return uuid.uuid5(REFERENCE_NAMESPACE, f"{agency}\n{reference}")


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
                value = getattr(cell, "value", cell)  # a workbook's cell, or a CSV cell's text
                if isinstance(value, str) and len(value) > MAX_CELL_CHARS:
                    raise _too_large(
                        path,
                        f"{where} {number}: a cell of {len(value):,} characters, over {MAX_CELL_CHARS:,}",
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
    tabular: bool = False  # a CSV file or workbook: its rows with a reference are corrected in place
    # Rows with a withdrawn cell: (line, the row's event, payload, the reason); never published as facts.
    withdrawn: list[tuple[int, EventBase, bytes, str]] = field(default_factory=list)
    unreferenced: list[int] = field(default_factory=list)  # workbook rows whose id was made from their content
    references: set[str] = field(default_factory=set)  # every row's reference, valid rows' or not
    # A workbook row with a reference: line -> the event_id its content gave it before it had one.
    content_ids: dict[int, uuid.UUID] = field(default_factory=dict)

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
    loaded = LoadedFile(str(path), tabular=suffix in (".csv", ".xlsx"))
    sheets: dict[int, str] = {}  # a workbook's rows: line -> sheet (lines are numbered across sheets)
    withdrawn: dict[int, str] = {}  # line -> the withdrawn cell's reason
    if suffix == ".xlsx":
        rows = _xlsx_rows(data, loaded, sheets, withdrawn)
    else:
        rows = _csv_rows(data, loaded, withdrawn) if suffix == ".csv" else _jsonl_rows(data, str(path))
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
        if earlier is not None and loaded.tabular and event.reference is not None:
            message = f"is given to two rows ({where(earlier[0])} has it too); give each row a reference of its own"
            loaded.problems.append(Problem("reference", message, _show(event.reference), at, sheet))
            continue
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
        payload = row if isinstance(row, bytes) else _as_json(row)
        if line in withdrawn:
            loaded.withdrawn.append((line, event, payload, withdrawn[line]))
            continue
        loaded.events.append((line, event))
        loaded.payloads.append(payload)
    loaded.problems.sort(key=lambda p: (p.sheet or "", p.line or 0))
    return loaded


SHEETS = ("session_held", "materials_distributed", "team_established")  # the template's sheets of entries
ROWS_A_SHEET = 10_000_000  # a workbook row's line: sheet index * this + row
EVENT_ID_NAMESPACE = uuid.UUID("6f1d3c0e-8b7a-5e44-9c1d-2a4b6c8d0e1f")


def _xlsx_rows(
    data: bytes, loaded: LoadedFile, sheets: dict[int, str], withdrawn: dict[int, str]
) -> list[tuple[int, bytes | dict[str, Any]]]:
    """The entry sheets of a filled template, row by row, as CSV rows are read. A row without an
    event_id gets one from its reference, or else from its content, so that publishing the same
    workbook again adds nothing. The workbook is read twice: for the values Excel or LibreOffice
    stored, and for the formulas, to tell a formula whose value was never stored from an empty cell."""
    import openpyxl  # only for workbooks

    _xlsx_within_limits(data, loaded.path)
    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        formulas = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=False)
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
    now = _now()
    for name in found:
        index = SHEETS.index(name) + 1
        declared = book[name].max_row  # the size Excel writes in the sheet, if any: refused unread
        if declared and declared - 1 > MAX_ROWS:
            raise _too_large(loaded.path, f"sheet {name} has {declared - 1:,} rows, more than {MAX_ROWS:,}{SPLIT}")
        cells = _within_limits(book[name].iter_rows(), loaded.path, name, first=1)
        written = formulas[name].iter_rows(values_only=True)
        next(written, ())
        header, wrong = checked_header([_header_text(c.value) for c in next(cells, ())])
        if wrong:
            loaded.problems.extend(Problem("(header)", message, None, 1, name) for message in wrong)
            continue
        for number, (row, texts_written) in enumerate(zip_longest(cells, written, fillvalue=()), start=2):
            values = [c.value for c in row]
            filled = {header[i] if i < len(header) else "" for i, v in enumerate(values) if _xlsx_text(v)}
            if not filled or filled == {"agency"}:  # empty, or only the agency `outreach template --agency` fills in
                continue
            line = index * ROWS_A_SHEET + number
            sheets[line] = name
            record: dict[str | None, Any] = {}
            unread: list[CellInvalid] = []
            county = next((_xlsx_text(v) for h, v in zip(header, values, strict=False) if h == "county"), "")
            for column, (cell, formula) in enumerate(zip_longest(row, texts_written)):
                if column >= len(header) or not header[column] or cell is None:
                    continue
                try:
                    ref = f"cell {_column_letter(column)}{number}"
                    record[header[column]] = _xlsx_cell(cell, formula, header[column], ref, county)
                except CellInvalid as exc:
                    unread.append(exc)
            record["event_type"] = name
            obj, problems = csv_record_to_event(record)
            problems = unread + problems
            if "reference" in obj and "event_id" not in obj:  # the id this row had before it had a reference
                loaded.content_ids[line] = _content_id(
                    {k: v for k, v in obj.items() if k not in ("reference", "withdrawn")}
                )
            obj = _identify(obj, problems, line, withdrawn, loaded.references)
            if not obj.get("event_id"):
                obj = {"event_id": str(_content_id(obj)), **obj}
                loaded.unreferenced.append(line)
            obj = recorded_now_if_empty(obj, now)
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
    formulas.close()
    return rows


def _content_id(obj: dict[str, Any]) -> uuid.UUID:
    return uuid.uuid5(EVENT_ID_NAMESPACE, json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str))


def _now() -> datetime:
    """The time of publishing, for a workbook's rows whose ``recorded_at`` is empty."""
    return datetime.now(UTC).replace(microsecond=0)


def recorded_now_if_empty(obj: dict[str, Any], now: datetime) -> dict[str, Any]:
    """A workbook row whose ``recorded_at`` is empty was recorded when it is published: ``now``.
    Called after the row's event_id is made from its content, so that the id does not change
    each time the workbook is published."""
    if "recorded_at" in obj:
        return obj
    return {**obj, "recorded_at": now.isoformat().replace("+00:00", "Z")}


# What openpyxl reads from a cell that holds an error.
ERROR_VALUES = ("#NULL!", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#N/A")


def _xlsx_cell(cell: Any, formula: Any, column: str, ref: str, county: str) -> str:
    """A workbook cell as the text a CSV cell would hold; a date and time without a zone in
    ``recorded_at`` read in the time zone of the county's country. Raises ``CellInvalid`` naming
    the cell for what cannot be read."""
    value = cell.value
    is_formula = isinstance(formula, str) and formula.startswith("=")
    if value is None and is_formula:
        raise CellInvalid(
            column,
            f"{ref} holds a formula whose value was never stored (the file was written by a program that "
            f"does not compute formulas); open and save the workbook in Excel or LibreOffice so the "
            f"formula's value is stored",
        )
    if isinstance(value, str) and value in ERROR_VALUES:
        from openpyxl.styles.numbers import is_date_format

        date_format = is_date_format(getattr(cell, "number_format", None) or "General")
        if not is_formula and value == "#VALUE!" and date_format:
            raise CellInvalid(column, f"{ref} holds a date serial past 9999: type the date as 2025-03-05")
        what = f"the formula in {ref} gives" if is_formula else f"{ref} holds"
        raise CellInvalid(column, f"{what} the error {value}; type the value itself")
    if column == "recorded_at" and isinstance(value, str):  # typed into a cell formatted as text
        value = _typed_moment(value) or value
    if column == "recorded_at" and isinstance(value, datetime) and value.tzinfo is None and value.time() != time():
        country = county[:2]
        if country not in TIME_ZONES or county[2:3] != "-":
            raise CellInvalid(
                column,
                f"{ref} holds a date and time without a time zone, read in the time zone of the county's "
                f"country; give the row's county, or type the time with its zone, e.g. 2025-03-05T10:00:00+01:00",
            )
        try:
            return local_moment(value, country)
        except DateInvalid as exc:
            raise CellInvalid(column, f"{ref}: {exc}") from None
    return _xlsx_text(value)


_TYPED_MOMENT = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[ T](\d{1,2}):(\d{2})(?::(\d{2}))?"  # 2025-03-05 10:00
    r"|(\d{1,2})\.(\d{1,2})\.(\d{4}) (\d{1,2}):(\d{2})(?::(\d{2}))?"  # 05.03.2025 10:00
)


def _typed_moment(text: str) -> datetime | None:
    """A date and time typed as text without a zone, ``2025-03-05 10:00`` or ``05.03.2025 10:00``,
    as a spreadsheet's date and time (read in the county's zone); None for any other text."""
    m = _TYPED_MOMENT.fullmatch(text.strip())
    if m is None:
        return None
    g = m.groups()
    year, month, day, hour, minute, second = g[:6] if g[0] else (g[8], g[7], g[6], *g[9:])
    try:
        return datetime(int(year), int(month), int(day), int(hour), int(minute), int(second or 0))
    except ValueError:
        return None  # not in the calendar: the event's validation says so


def _header_text(value: Any) -> str:
    return "" if value is None else str(value)


def _column_letter(index: int) -> str:
    """A column's letters as a spreadsheet shows them: 0 -> A, 25 -> Z, 26 -> AA."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


def checked_header(raw: list[str]) -> tuple[list[str], list[str]]:
    """A header's field names, without spaces or byte-order marks around them, and what is wrong
    with it: two columns of one name would each hide the other's cells, so both are refused."""
    names = [name.replace("\ufeff", "").strip() for name in raw]
    first: dict[str, int] = {}
    problems = []
    for i, name in enumerate(names):
        if not name:
            continue
        j = first.setdefault(name, i)
        if j == i:
            continue
        a, b = _column_letter(j), _column_letter(i)
        if raw[i] == raw[j]:
            problems.append(
                f"columns {a} and {b} are both named {name}; a row would be read from one of them only: "
                f"delete one, or give each a name of its own"
            )
        else:
            shown = ", ".join(json.dumps(raw[k]) for k in (j, i))
            problems.append(
                f"columns {a} and {b} are both named {name} once spaces and byte-order marks are removed "
                f"({shown}); a row would be read from one of them only: delete one, or give each a name of its own"
            )
    return names, problems


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


def _csv_rows(data: bytes, loaded: LoadedFile, withdrawn: dict[int, str]) -> list[tuple[int, bytes | dict[str, Any]]]:
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark, as Excel writes, is dropped
    except UnicodeDecodeError as exc:
        loaded.problems.append(Problem("(file)", f"is not valid UTF-8 (byte {exc.start}); save it as UTF-8 CSV"))
        return []
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text.split("\n", 1)[0]))
    header, wrong = checked_header(next(reader, []))
    if wrong:
        loaded.problems.extend(Problem("(header)", message, line=1) for message in wrong)
        return []
    rows: list[tuple[int, bytes | dict[str, Any]]] = []
    for cells in _within_limits(reader, loaded.path):
        if not cells:
            continue
        line = reader.line_num
        # As csv.DictReader makes it: cells past the header under None, missing ones absent.
        record: dict[str | None, Any] = dict(zip(header, cells, strict=False))
        if len(cells) > len(header):
            record[None] = cells[len(header) :]
        obj, problems = csv_record_to_event(record)
        obj = _identify(obj, problems, line, withdrawn, loaded.references)
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


def _identify(
    obj: dict[str, Any], problems: list[CellInvalid], line: int, withdrawn: dict[int, str], references: set[str]
) -> dict[str, Any]:
    """A row's ``withdrawn`` cell taken out of its event (into ``withdrawn``), and its event_id made
    from (agency, reference) when it gives a reference; every reference is noted in ``references``,
    so that a row skipped as invalid is never taken for a row deleted from the file."""
    reason = obj.pop("withdrawn", None)
    if reason is not None:
        if len(reason) > MAX_WITHDRAWN:
            problems.append(CellInvalid("withdrawn", f"is {len(reason):,} characters long; at most {MAX_WITHDRAWN:,}"))
        withdrawn[line] = reason
    reference, agency = obj.get("reference"), obj.get("agency")
    if reference is None:
        return obj
    references.add(reference)
    if obj.get("event_id"):
        problems.append(
            CellInvalid("event_id", "give an event_id or a reference, not both: the reference makes the event's id")
        )
        return obj
    if isinstance(agency, str) and re.fullmatch(REFERENCE_PATTERN, reference) and re.fullmatch(SLUG_PATTERN, agency):
        return {"event_id": str(reference_event_id(agency, reference)), **obj}
    return obj  # validating the row names what is wrong with its reference or agency


def _show(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


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
            elif column == "county":
                obj[column] = county_cell(cell)
            elif column in LOWER_CASE_FIELDS:
                obj[column] = cell.lower()
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


_COUNTY_CHOICE = re.compile(r"([A-Z]{2}-[0-9A-Z]{1,3}) (\S.*)")


def county_cell(cell: str) -> str:
    """A county as the template's drop-down shows it, ``AL-06 Korçë``, read as its code ``AL-06``;
    only with the code's own name. Any other cell (a code alone) is left to the event's validation."""
    m = _COUNTY_CHOICE.fullmatch(cell)
    if m is None:
        return cell
    code, name = m.group(1), unicodedata.normalize("NFC", m.group(2).strip())
    county = regions().counties.get(code)
    if county is None:
        raise CellInvalid("county", f"{code} is no county (got {_show(cell)}); pick the county from the list")
    if unicodedata.normalize("NFC", county.name) != name:
        raise CellInvalid(
            "county",
            f"{code} is {county.name}, not {name} (got {_show(cell)}); pick the county from the list, or give "
            f"its code alone",
        )
    return code


def _negative(number: str, bounds: tuple[int, int] | None, cell: str) -> str | None:
    """What a negative count is told: the bounds it must be within, naming the cell's value."""
    if bounds is None or not re.fullmatch(r"[-\u2212]\s*[0-9]{1,12}", number):
        return None
    return f"cannot be negative: must be a whole number from {bounds[0]} to {bounds[1]:,} (got {cell})"


def _whole_number_cell(column: str, cell: str) -> int:
    if not re.fullmatch(r"[0-9]{1,12}", cell):
        shown = json.dumps(cell, ensure_ascii=False)
        negative = _negative(cell, WHOLE_NUMBER_RANGES.get(column), cell)
        raise CellInvalid(column, negative or f"must be a whole number such as 12 (got {shown[:80]})")
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
        raise CellInvalid(
            column,
            _negative(number, COUNT, cell) or f"must be a whole number, ~number (estimate) or 'unknown' (got {shown})",
        )
    return {"audience": audience, "count": int(number), "estimated": estimated}
