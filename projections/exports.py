"""Analysts' exports: one view of a projection to CSV, Parquet, Excel (xlsx) or HXL-tagged CSV.

Only the views in ``EXPORTABLE`` can be exported, and the database is only ever read. xlsx and
HXL are written by Python from a connection opened with :func:`projections.query.open_read_only`;
CSV and Parquet by DuckDB's COPY, on a connection with the same settings except that it may write
one file, the export (open_read_only's may write none). Every file holds nothing but the data (a header row,
and for HXL the row of hashtags): no notes. A file is written under a temporary name next to
``out`` and renamed when complete, so a failed export leaves no half-written file.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb

from projections.inert import inert_column
from projections.query import READ_ONLY_CONFIG, open_read_only
from projections.snapshot import SNAPSHOT_VIEWS, is_snapshot
from schemas.errors import ProjectionError, QueryRefused, SettingsInvalid

FORMATS = ("csv", "parquet", "xlsx", "hxl")
EXPORTABLE = (
    "totals_by_county",
    "totals_by_campaign",
    "totals_by_plan_task",
    "totals_by_month",
    "totals_by_audience",
    "totals_by_quarter",
    "totals_by_year",
    "totals_by_agency",
    "totals_by_campaign_county",
    "campaign_coverage",
    "facts",
    "actions",
    "campaigns",
    "plan_tasks",
    "corrections",
    "event_history",
)

# HXL hashtags (https://hxlstandard.org) by column name; other columns get an empty tag.
# Every column any exportable view has, tagged with an HXL 1.1 hashtag and attributes
# (https://hxlstandard.org/standard/1-1final/dictionary/): a column without a tag cannot be read by
# HXL tools, so a view with a column missing here fails its export's test.
HXL_TAGS = {
    "actions": "#indicator+actions",
    "agency": "#org",
    "audience": "#population+type",
    "audiences": "#population+list",
    "campaign_id": "#activity+code",
    "counties_reached": "#indicator+counties",
    "country": "#country+code",
    "county": "#adm1+code",
    "county_after": "#adm1+code+after",
    "county_before": "#adm1+code+before",
    "county_name": "#adm1+name",
    "county_name_en": "#adm1+name+i_en",
    "defined_by": "#org+code+definer",
    "ends": "#date+end",
    "event_id": "#meta+id",
    "event_type": "#meta+type",
    "events": "#indicator+events",
    "fact_id": "#meta+id+fact",
    "first_activity": "#date+start",
    "first_year": "#date+year+start",
    "funder": "#org+funder",
    "kind": "#item+type",
    "last_activity": "#date+end",
    "last_year": "#date+year+end",
    "lead_agency": "#org+lead",
    "material_kind": "#item+type",
    "materials": "#output+num+materials",
    "materials_change": "#output+num+materials+change",
    "materials_distributed": "#indicator+materials",
    "materials_unknown": "#indicator+materials+unknown",
    "month": "#date",
    "municipality": "#adm2+code",
    "name": "#activity+name",
    "name_en": "#activity+name+i_en",
    "occurred_end": "#date+end",
    "occurred_start": "#date+start",
    "part": "#meta+plan+part",
    "participants": "#reached",
    "participants_change": "#reached+num+change",
    "participants_estimated": "#reached+estimated",
    "participants_unknown": "#reached+unknown",
    "payload": "#meta+payload",
    "plan_id": "#meta+plan+code",
    "plan_tasks": "#meta+plan+task+list",
    "plan_title": "#meta+plan+name",
    "quarter": "#date",
    "reason": "#description+reason",
    "recorded_at": "#date+recorded",
    "retracted": "#status+retracted",
    "session_format": "#activity+type",
    "sessions": "#indicator+sessions",
    "sessions_change": "#output+num+sessions+change",
    "sessions_estimated": "#indicator+sessions+estimated",
    "sessions_participants_estimated": "#indicator+sessions+estimated",
    "sessions_participants_unknown": "#indicator+sessions+unknown",
    "sessions_uncounted": "#indicator+sessions+unknown",
    "starts": "#date+start",
    "stored_at": "#date+stored",
    "stream_seq": "#meta+seq",
    "task": "#meta+plan+task",
    "task_ref": "#meta+plan+task+code",
    "teams": "#output+num+teams",
    "teams_change": "#output+num+teams+change",
    "teams_established": "#indicator+teams",
    "title": "#description+title",
    "venue": "#loc+name",
    "version_seq": "#meta+seq+version",
    "version_stored_at": "#date+stored+version",
    "year": "#date+year",
}

# The view name is an identifier from EXPORTABLE, never user text: it cannot be a parameter.
SELECT_VIEW = 'SELECT * FROM "{view}"'
COUNT_VIEW = 'SELECT count(*) FROM "{view}"'
# Every value as DuckDB writes it in a CSV, so HXL and CSV exports of a view read the same; text a
# spreadsheet would run neutralised (projections.inert), as in a CSV for Excel.
SELECT_VIEW_AS = 'SELECT {columns} FROM "{view}"'
DESCRIBE_VIEW = 'SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM "{view}")'
COPY_OPTIONS = {"csv": "FORMAT csv, HEADER true", "parquet": "FORMAT parquet, COMPRESSION zstd"}
COPY_VIEW = "COPY ({select}) TO ? ({options})"
# Separators a CSV may take: a comma, or a semicolon as Excel expects where the comma is the decimal
# mark (Albania, Poland), or a tab. Only these are ever formatted into COPY's options.
SEPARATORS = (",", ";", "\t")
# What a file's figures are as of: the projection's checkpoint (a snapshot and a copy keep it too).
AS_OF = "SELECT stream, last_seq, last_stored_at FROM checkpoint ORDER BY updated_at DESC LIMIT 1"
# A view in a projection; a table of the same name in its snapshot.
HAS_VIEW = """
SELECT count(*) FROM (SELECT view_name AS name FROM duckdb_views() WHERE NOT internal
                      UNION ALL SELECT table_name FROM duckdb_tables()) WHERE name = ?
"""
# The analysts' lockdown of open_read_only, with one exception: the file COPY writes. DuckDB takes
# allowed_paths only before external access is disabled, and no setting after the lock.
ALLOW_PATH = "SET allowed_paths = ?"
LOCK_AFTER_ALLOWING = ("SET enable_external_access = false", "SET lock_configuration = true")

XLSX_MAX_ROWS = 1_048_575  # Excel's 1,048,576 rows, less the header
XLSX_WIDTH_SAMPLE = 1_000  # rows looked at to size the columns
XLSX_MAX_WIDTH = 60
FETCH_ROWS = 10_000


# The formats a file name's extension may hold; the first is the one a bare name means.
EXTENSIONS = {".csv": ("csv", "hxl"), ".parquet": ("parquet",), ".xlsx": ("xlsx",)}
BOM = b"\xef\xbb\xbf"


def format_for(out: Path, given: str | None) -> str:
    """The format to write ``out`` in: ``given``, or the one its extension names; a mismatch is refused."""
    allowed = EXTENSIONS.get(Path(out).suffix.lower())
    if given is None:
        if allowed is None:
            raise SettingsInvalid(
                f"cannot tell the format from the name {Path(out).name}: give --format ({', '.join(FORMATS)}), "
                f"or end the name in {', '.join(EXTENSIONS)}"
            )
        return allowed[0]
    if allowed is not None and given not in allowed:
        raise SettingsInvalid(
            f"--format {given} does not match {Path(out).name}, which names a {allowed[0]} file: change the "
            f"format or the file name, so that the file opens as what it is"
        )
    return given


@dataclass(frozen=True)
class AsOf:
    """What an export's figures are as of: the stream, the last sequence applied and its storage time."""

    stream: str | None = None
    seq: int = 0
    stored_at: datetime | None = None

    def sentence(self, view: str) -> str:
        if self.stored_at is None:
            return f"{view}: no event applied yet"
        return (
            f"{view}: figures as received by {self.stored_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC "
            f"(stream {self.stream}, sequence {self.seq:,})"
        )


def export_view(
    db: Path, view: str, fmt: str, out: Path, *, excel: bool = False, sep: str = ",", note: bool = False
) -> tuple[int, AsOf]:
    """Write ``view`` of the projection ``db`` to ``out`` as csv, parquet, xlsx or hxl; return the rows
    written and what they are as of. ``excel``: a CSV starts with a byte-order mark, so that Excel
    reads it as UTF-8, and its text cells are neutralised as HXL's always are (``projections.inert``);
    a plain CSV and Parquet hold the text as it is, for data tools. ``sep``: a CSV's separator (``SEPARATORS``). Every
    format says what it is as of: an xlsx in a sheet ``about``, a Parquet file in its key-value
    metadata, a CSV in a first line starting with ``#`` where ``note`` asks for it (a CSV has no
    place for it that every reader skips)."""
    if sep not in SEPARATORS:
        raise SettingsInvalid(f"--sep {sep!r}: a CSV is separated by a comma, a semicolon or a tab (\\t)")
    if fmt not in ("csv", "hxl") and (sep != "," or note):
        raise SettingsInvalid(f"--sep and --note are for CSV files; a {fmt} file takes neither: leave them out")
    if fmt not in FORMATS:
        raise SettingsInvalid(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if view not in EXPORTABLE:
        raise QueryRefused(f"{view!r} cannot be exported; the views that can: {', '.join(EXPORTABLE)}")
    if excel and fmt not in ("csv", "hxl"):
        raise SettingsInvalid(
            f"--excel marks a CSV for Excel (a byte-order mark); a {fmt} file needs none: leave --excel out"
        )
    out = Path(out).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    probe = open_read_only(db)
    try:
        _require_view(probe, db, view)
        as_of = _as_of(probe)
    finally:
        probe.close()
    try:
        if fmt in COPY_OPTIONS:
            rows = _copy(Path(db), view, fmt, partial, inert=excel, sep=sep, as_of=as_of)
        else:
            con = open_read_only(db)
            try:
                rows = _write_xlsx(con, view, partial, as_of) if fmt == "xlsx" else _write_hxl(con, view, partial, sep)
            finally:
                con.close()
        head = (BOM if excel else b"") + (f"# {as_of.sentence(view)}\n".encode() if note else b"")
        if head:
            _prefix(partial, head)
        os.replace(partial, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    return rows, as_of


def _as_of(con: duckdb.DuckDBPyConnection) -> AsOf:
    try:
        row = con.execute(AS_OF).fetchone()
    except duckdb.CatalogException:
        return AsOf()
    return AsOf(row[0], int(row[1]), row[2]) if row else AsOf()


def _prefix(path: Path, head: bytes) -> None:
    marked = path.with_name(path.name + ".head")
    with path.open("rb") as source, marked.open("wb") as target:
        target.write(head)
        shutil.copyfileobj(source, target)
    os.replace(marked, path)


def _require_view(con: duckdb.DuckDBPyConnection, db: Path, view: str) -> None:
    found = con.execute(HAS_VIEW, [view]).fetchone()
    if (not found or not found[0]) and is_snapshot(con):
        raise ProjectionError(
            f"{db} is a snapshot, which holds the totals views only ({', '.join(SNAPSHOT_VIEWS)}), not {view}: "
            f"give the projection's own file: beside a running projector, `outreach export` asks it for a "
            f"whole copy"
        )
    if not found or not found[0]:
        raise ProjectionError(
            f"{db} has no view {view}: it was made by an older version. The views are created when the "
            f"projector opens the file: run `outreach project` on it, or rebuild it with `outreach replay`"
        )


def _select(con: duckdb.DuckDBPyConnection, view: str, *, inert: bool, as_text: bool = False) -> str:
    """The SELECT of a whole view; ``inert``: its text neutralised for spreadsheets."""
    if not inert:
        return SELECT_VIEW.format(view=view)
    described = con.execute(DESCRIBE_VIEW.format(view=view)).fetchall()
    columns = ", ".join(inert_column(name, kind, as_text=as_text) for name, kind in described)
    return SELECT_VIEW_AS.format(columns=columns, view=view)


def _copy(db: Path, view: str, fmt: str, target: Path, *, inert: bool, sep: str, as_of: AsOf) -> int:
    # open_read_only's connection may write no file at all, so COPY runs on a second connection
    # with the same settings that may write exactly one: ``target``. export_view opened it with
    # open_read_only first, for its checks and messages (no such file, locked by a running projector).
    options = COPY_OPTIONS[fmt]
    if fmt == "csv":
        options += f", DELIMITER '{sep}'"  # one of SEPARATORS, never user text
    else:
        metadata = {"view": view, "stream": as_of.stream or "", "as_of_seq": str(as_of.seq)}
        metadata["as_of_stored_at"] = as_of.stored_at.isoformat() if as_of.stored_at else ""
        options += ", KV_METADATA {" + ", ".join(f"{k}: {_sql_text(v)}" for k, v in metadata.items()) + "}"
    config = {k: v for k, v in READ_ONLY_CONFIG.items() if k not in ("enable_external_access", "lock_configuration")}
    try:
        con = duckdb.connect(str(db), read_only=True, config=config)
    except duckdb.Error as exc:
        raise ProjectionError(f"cannot open {db} for reading: {exc}") from None
    try:
        con.execute(ALLOW_PATH, [[str(target)]])
        for setting in LOCK_AFTER_ALLOWING:
            con.execute(setting)
        select = _select(con, view, inert=inert)
        done = con.execute(COPY_VIEW.format(select=select, options=options), [str(target)]).fetchone()
    except duckdb.Error as exc:
        raise ProjectionError(f"exporting {view} from {db} to {fmt} failed: {exc}") from None
    finally:
        con.close()
    return int(done[0]) if done else 0


def _sql_text(value: str) -> str:
    """A SQL string literal (COPY's options take no parameters)."""
    return "'" + value.replace("'", "''") + "'"


def _batches(cursor: duckdb.DuckDBPyConnection) -> Iterator[list[tuple[Any, ...]]]:
    while rows := cursor.fetchmany(FETCH_ROWS):
        yield rows


def _write_hxl(con: duckdb.DuckDBPyConnection, view: str, target: Path, sep: str) -> int:
    cursor = con.execute(_select(con, view, inert=True, as_text=True))
    columns = [d[0] for d in cursor.description or []]
    written = 0
    with target.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter=sep)
        writer.writerow(columns)
        writer.writerow([HXL_TAGS.get(name, "") for name in columns])
        for rows in _batches(cursor):
            writer.writerows(rows)
            written += len(rows)
    return written


def _write_xlsx(con: duckdb.DuckDBPyConnection, view: str, target: Path, as_of: AsOf) -> int:
    from openpyxl import Workbook  # imported here: only xlsx exports need it
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    total = con.execute(COUNT_VIEW.format(view=view)).fetchone()
    if total and total[0] > XLSX_MAX_ROWS:
        raise SettingsInvalid(
            f"{view} has {total[0]:,} rows, more than an Excel sheet holds ({XLSX_MAX_ROWS:,}): "
            f"export it as csv or parquet"
        )
    cursor = con.execute(SELECT_VIEW.format(view=view))
    columns = [d[0] for d in cursor.description or []]
    wb = Workbook(write_only=True)
    ws = wb.create_sheet(title=view[:31])
    # A write-only sheet takes its column widths and frozen pane before any row.
    first = cursor.fetchmany(XLSX_WIDTH_SAMPLE)
    cells = [[_xlsx_value(v) for v in row] for row in first]
    for i, name in enumerate(columns):
        longest = max([len(name)] + [len(_shown(row[i][0])) for row in cells])
        ws.column_dimensions[get_column_letter(i + 1)].width = min(longest + 2, XLSX_MAX_WIDTH)
    ws.freeze_panes = "A2"
    bold = Font(bold=True)
    header = []
    for name in columns:
        cell = WriteOnlyCell(ws, value=name)
        cell.font = bold
        header.append(cell)
    ws.append(header)

    def write(row: list[tuple[Any, str | None]]) -> None:
        out = []
        for value, number_format in row:
            cell = WriteOnlyCell(ws, value=value)
            if isinstance(value, str):
                cell.data_type = "s"  # text, even when it starts with "=": never a formula
            if number_format:
                cell.number_format = number_format
            out.append(cell)
        ws.append(out)

    for row in cells:
        write(row)
    written = len(cells)
    for rows in _batches(cursor):
        for raw in rows:
            write([_xlsx_value(v) for v in raw])
        written += len(rows)
    about = wb.create_sheet(title="about")
    about.column_dimensions["A"].width = 18
    about.column_dimensions["B"].width = 60
    for label, value in (
        ("view", view),
        ("as of", as_of.sentence(view)),
        ("stream", as_of.stream or ""),
        ("stream sequence", as_of.seq),
        (
            "stored at (UTC)",
            as_of.stored_at.astimezone(UTC).replace(tzinfo=None, microsecond=0) if as_of.stored_at else "",
        ),
        ("rows", written),
    ):
        cell = WriteOnlyCell(about, value=value)
        if isinstance(value, str):
            cell.data_type = "s"
        if isinstance(value, datetime):
            cell.number_format = "yyyy-mm-dd hh:mm:ss"
        about.append([WriteOnlyCell(about, value=label), cell])
    wb.save(target)
    return written


def _xlsx_value(value: Any) -> tuple[Any, str | None]:
    """A value Excel can hold, and its number format; timestamps become UTC without a zone."""
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    if value is None or isinstance(value, bool | int | float):
        return value, None
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value, "yyyy-mm-dd hh:mm:ss"
    if isinstance(value, date):
        return value, "yyyy-mm-dd"
    if isinstance(value, list | dict):
        value = json.dumps(value, ensure_ascii=False, default=str)
    # Control characters cannot be stored in the sheet's XML; they show as U+FFFD.
    return ILLEGAL_CHARACTERS_RE.sub("\ufffd", str(value)), None


def _shown(value: Any) -> str:
    if isinstance(value, datetime):
        return "0000-00-00 00:00:00"
    if isinstance(value, date):
        return "0000-00-00"
    return "" if value is None else str(value)
