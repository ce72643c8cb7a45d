"""Files of events as agencies have them: JSON Lines (``.jsonl``) and CSV (``.csv``).

Every line is validated and every problem is reported at once, with its line number. CSV columns
are the event's field names; see the README for the forms a cell may take.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas.dates import DateInvalid, date_cell, day_cell
from schemas.errors import EventInvalid, FileInvalid, Problem
from schemas.events import Audience, EventBase
from schemas.parse import decode_json, parse_event

LIST_FIELDS = {"plan_tasks", "partners", "target_counties", "member_institutions"}
JSON_FIELDS = {"participants", "replacement", "occurred"}
# Cells are text; events take JSON numbers and true/false. These are converted here, explicitly.
WHOLE_NUMBER_FIELDS = {"quantity", "reported_total", "first_year", "last_year", "schema_version"}
FLAG_FIELDS = {"estimated", "total_estimated"}
FLAGS = {"true": True, "false": False}
# Dates in the forms agencies write (schemas.dates), made ISO here.
DATE_FIELDS = {"occurred": date_cell, "starts": day_cell, "ends": day_cell}


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
    if suffix not in (".jsonl", ".ndjson", ".csv"):
        raise FileInvalid(str(path), [Problem("(file)", "has an unknown format; use .jsonl or .csv")], 0)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FileInvalid(str(path), [Problem("(file)", f"cannot be read: {exc.strerror}")], 0) from None
    loaded = LoadedFile(str(path))
    rows = _csv_rows(data, loaded) if suffix == ".csv" else _jsonl_rows(data)
    seen: dict[Any, tuple[int, EventBase]] = {}
    for line, row in rows:
        loaded.lines_total += 1
        try:
            event = parse_event(row)
        except EventInvalid as exc:
            loaded.problems.extend(Problem(p.field, p.message, p.value, line) for p in exc.problems)
            continue
        earlier = seen.get(event.event_id)
        if earlier is not None:
            if earlier[1] != event:
                message = f"is reused with different content (first on line {earlier[0]})"
                loaded.problems.append(Problem("event_id", message, str(event.event_id), line))
            continue  # the same event twice in one file is published once
        seen[event.event_id] = (line, event)
        loaded.events.append((line, event))
        loaded.payloads.append(row if isinstance(row, bytes) else _as_json(row))
    loaded.problems.sort(key=lambda p: p.line or 0)
    return loaded


def _as_json(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def _jsonl_rows(data: bytes) -> list[tuple[int, bytes | dict[str, Any]]]:
    rows: list[tuple[int, bytes | dict[str, Any]]] = []
    data = data.removeprefix(b"\xef\xbb\xbf")  # a byte-order mark, as some editors write
    for number, line in enumerate(data.split(b"\n"), start=1):
        if line.strip():
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
    for record in reader:
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
