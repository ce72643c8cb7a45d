"""Exports of the analysts' views, each read back with its own ecosystem's reader; the slice views."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import openpyxl
import pytest

from projections.exports import BOM, EXPORTABLE, FORMATS, export_view
from projections.query import run_query
from schemas.errors import ProjectionError, QueryRefused, SettingsInvalid
from tests.conftest import build_demo

pytestmark = pytest.mark.e2e

SLICES = ("totals_by_quarter", "totals_by_year", "totals_by_agency", "totals_by_campaign_county", "campaign_coverage")
COUNTY_COLUMNS = [
    "county",
    "county_name",
    "county_name_en",
    "country",
    "events",
    "sessions",
    "participants",
    "sessions_participants_unknown",
    "sessions_participants_estimated",
    "materials_distributed",
    "materials_unknown",
    "teams_established",
    "first_activity",
    "last_activity",
]
COUNTY_HXL = [
    "#adm1+code",
    "#adm1+name",
    "#adm1+name+i_en",
    "#country+code",
    "#indicator+events",
    "#indicator+sessions",
    "#reached",
    "#indicator+sessions+unknown",
    "#indicator+sessions+estimated",
    "#indicator+materials",
    "#indicator+materials+unknown",
    "#indicator+teams",
    "#date+start",
    "#date+end",
]
AL_06_CSV = ["AL-06", "Korçë", "Korçë", "AL", "7", "6", "97", "2", "0", "4000", "0", "0", "2017-12-20", "2017-12-21"]
CAMPAIGN = "al-irregular-migration-prevention"


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_demo(tmp_path_factory.mktemp("demo"))


def edited_copy(db: Path, directory: Path, *statements: str) -> Path:
    """A copy of the projection with ``statements`` applied (the module's database stays as built)."""
    copy = directory / "edited.duckdb"
    shutil.copyfile(db, copy)
    con = duckdb.connect(str(copy))
    try:
        for statement in statements:
            con.execute(statement)
    finally:
        con.close()
    return copy


def rows_of(db: Path, sql: str) -> list[tuple[object, ...]]:
    return run_query(db, sql).rows


# --- the four formats -------------------------------------------------------------------------


def test_csv_is_utf8_with_a_header_and_nothing_else(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "counties.csv"
    out.write_text("an older file\n")
    assert export_view(db, "totals_by_county", "csv", out)[0] == 8
    with out.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == COUNTY_COLUMNS
    assert len(rows) == 1 + 8
    assert rows[1] == AL_06_CSV
    assert [r[0] for r in rows[1:]] == ["AL-06", "PL-06", "PL-08", "PL-12", "PL-14", "PL-20", "PL-24", "PL-32"]
    assert rows[4][:2] == ["PL-12", "małopolskie"]
    assert [p.name for p in tmp_path.iterdir()] == ["counties.csv"]  # no partial file left behind


def test_hxl_has_the_hashtag_row_under_the_header(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "counties-hxl.csv"
    assert export_view(db, "totals_by_county", "hxl", out)[0] == 8
    with out.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == COUNTY_COLUMNS
    assert rows[1] == COUNTY_HXL
    assert rows[2] == AL_06_CSV
    assert len(rows) == 2 + 8


def test_hxl_tags_of_the_slices(db: Path, tmp_path: Path) -> None:
    tags = {}
    for view in ("totals_by_year", "totals_by_quarter", "totals_by_agency", "totals_by_campaign_county"):
        out = tmp_path / f"{view}.csv"
        export_view(db, view, "hxl", out)
        with out.open(encoding="utf-8", newline="") as f:
            header, hashtags = next(csv.reader(f)), next(csv.reader(f))
        tags[view] = dict(zip(header, hashtags, strict=True))
    assert tags["totals_by_year"]["year"] == "#date+year"
    assert tags["totals_by_year"]["county"] == "#adm1+code"
    assert tags["totals_by_quarter"]["quarter"] == "#date"
    assert tags["totals_by_agency"]["agency"] == "#org"
    assert tags["totals_by_campaign_county"]["campaign_id"] == "#activity+code"
    assert tags["totals_by_agency"]["participants"] == "#reached"


def test_parquet_reads_back_with_duckdb(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "counties.parquet"
    assert export_view(db, "totals_by_county", "parquet", out)[0] == 8
    con = duckdb.connect()
    try:
        cursor = con.execute("SELECT * FROM read_parquet(?) WHERE county = 'AL-06'", [str(out)])
        columns = [d[0] for d in cursor.description or []]
        row = dict(zip(columns, cursor.fetchone() or (), strict=True))
        total = con.execute("SELECT count(*), sum(teams_established) FROM read_parquet(?)", [str(out)]).fetchone()
    finally:
        con.close()
    assert columns == COUNTY_COLUMNS
    assert row["participants"] == 97
    assert row["materials_distributed"] == 4000
    assert row["first_activity"] == date(2017, 12, 20)
    assert row["county_name"] == "Korçë"
    assert total == (8, 7)


def test_xlsx_reads_back_with_openpyxl_typed(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "counties.xlsx"
    assert export_view(db, "totals_by_county", "xlsx", out)[0] == 8
    wb = openpyxl.load_workbook(out)
    assert wb.sheetnames == ["totals_by_county", "about"]
    ws = wb["totals_by_county"]
    assert ws.freeze_panes == "A2"
    assert ws.max_row == 1 + 8
    assert [c.value for c in ws[1]] == COUNTY_COLUMNS
    assert all(c.font.bold for c in ws[1])
    al06 = {name: cell for name, cell in zip(COUNTY_COLUMNS, ws[2], strict=True)}
    assert al06["county"].value == "AL-06"
    assert al06["county_name"].value == "Korçë"
    assert al06["participants"].value == 97
    assert type(al06["participants"].value) is int
    assert al06["materials_distributed"].value == 4000
    assert al06["first_activity"].is_date
    assert al06["first_activity"].value == datetime(2017, 12, 20)
    assert al06["first_activity"].number_format == "yyyy-mm-dd"
    assert al06["last_activity"].value == datetime(2017, 12, 21)
    # widths fit the longest of header and values: "sessions_participants_estimated" (31) + 2
    assert ws.column_dimensions["I"].width == 33
    assert ws.column_dimensions["B"].width == len("zachodniopomorskie") + 2


def test_xlsx_keeps_text_as_text(db: Path, tmp_path: Path) -> None:
    formula = '=HYPERLINK("https://example.org","click")'
    edited = edited_copy(
        db, tmp_path, f"UPDATE counties SET name = '{formula}', name_en = 'a' || chr(1) || 'b' WHERE code = 'AL-06'"
    )
    out = tmp_path / "counties.xlsx"
    export_view(edited, "totals_by_county", "xlsx", out)
    ws = openpyxl.load_workbook(out)["totals_by_county"]
    assert ws["B2"].value == formula
    assert ws["B2"].data_type == "s"
    assert ws["C2"].value == "a\ufffdb"  # a control character Excel cannot hold


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_exportable_view_in_every_format(db: Path, tmp_path: Path, fmt: str) -> None:
    for view in EXPORTABLE:
        expected = rows_of(db, f"SELECT count(*) FROM {view}")[0][0]
        out = tmp_path / f"{view}.{fmt}"
        assert export_view(db, view, fmt, out)[0] == expected, view
        assert out.stat().st_size > 0
        if fmt == "xlsx":
            assert openpyxl.load_workbook(out)[view].max_row == 1 + expected
        elif fmt == "parquet":
            con = duckdb.connect()
            try:
                assert con.execute("SELECT count(*) FROM read_parquet(?)", [str(out)]).fetchone() == (expected,)
            finally:
                con.close()
        else:
            with out.open(encoding="utf-8", newline="") as f:
                assert len(list(csv.reader(f))) == expected + (2 if fmt == "hxl" else 1)
    assert rows_of(db, "SELECT count(*) FROM facts")[0][0] == 17


def test_a_view_outside_the_allow_list_is_refused(db: Path, tmp_path: Path) -> None:
    for view in ("checkpoint", "rejected_events", 'totals_by_county"; DROP TABLE event_log; --'):
        out = tmp_path / "x.csv"
        with pytest.raises(QueryRefused) as refused:
            export_view(db, view, "csv", out)
        assert str(refused.value) == (
            f"{view!r} cannot be exported; the views that can: totals_by_county, totals_by_campaign, "
            "totals_by_plan_task, totals_by_month, totals_by_audience, totals_by_quarter, totals_by_year, "
            "totals_by_agency, totals_by_campaign_county, campaign_coverage, facts, actions, campaigns, plan_tasks, "
            "corrections, event_history"
        )
        assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_format_or_a_missing_database_is_said_plainly(db: Path, tmp_path: Path) -> None:
    with pytest.raises(SettingsInvalid, match=r"unknown export format 'json': choose one of csv, parquet, xlsx, hxl"):
        export_view(db, "totals_by_county", "json", tmp_path / "x.json")
    with pytest.raises(ProjectionError, match="no projection database at"):
        export_view(tmp_path / "none.duckdb", "totals_by_county", "csv", tmp_path / "x.csv")
    assert [p.name for p in tmp_path.iterdir()] == []


# --- the slice views, with the seeds' numbers ---------------------------------------------------


def by_key(db: Path, view: str, keys: int, columns: str) -> dict[tuple[object, ...], tuple[object, ...]]:
    rows = rows_of(db, f"SELECT * EXCLUDE (first_activity, last_activity) FROM {view}")
    assert columns == ",".join(run_query(db, f"SELECT * FROM {view} LIMIT 0").columns[:keys])
    return {tuple(r[:keys]): tuple(r[keys:]) for r in rows}


# events, sessions, participants, unknown, estimated, materials, materials unknown, teams
AL_06_TOTALS = (7, 6, 97, 2, 0, 4000, 0, 0)
ONE_TEAM = (1, 0, 0, 0, 0, 0, 0, 1)


def test_totals_by_year(db: Path) -> None:
    rows = by_key(db, "totals_by_year", 2, "year,county")
    assert rows == {
        (2010, "PL-14"): ONE_TEAM,
        (2014, "PL-06"): ONE_TEAM,
        (2014, "PL-08"): ONE_TEAM,
        (2014, "PL-12"): ONE_TEAM,
        (2014, "PL-20"): ONE_TEAM,
        (2014, "PL-32"): ONE_TEAM,
        (2015, "PL-24"): ONE_TEAM,
        (2017, "AL-06"): AL_06_TOTALS,
    }
    assert rows_of(db, "SELECT typeof(year) FROM totals_by_year LIMIT 1") == [("INTEGER",)]


def test_totals_by_quarter(db: Path) -> None:
    rows = by_key(db, "totals_by_quarter", 2, "quarter,county")
    assert rows == {
        (date(2010, 10, 1), "PL-14"): ONE_TEAM,
        (date(2014, 1, 1), "PL-12"): ONE_TEAM,
        (date(2014, 4, 1), "PL-08"): ONE_TEAM,
        (date(2014, 10, 1), "PL-06"): ONE_TEAM,
        (date(2014, 10, 1), "PL-20"): ONE_TEAM,
        (date(2014, 10, 1), "PL-32"): ONE_TEAM,
        (date(2015, 1, 1), "PL-24"): ONE_TEAM,
        (date(2017, 10, 1), "AL-06"): AL_06_TOTALS,
    }


def test_totals_by_agency(db: Path) -> None:
    rows = by_key(db, "totals_by_agency", 1, "agency")
    assert rows[("al-korce-regional-committee",)] == (1, 1, 24, 0, 0, 0, 0, 0)
    assert rows[("al-national-coordinator",)] == (6, 5, 73, 2, 0, 4000, 0, 0)
    voivodeships = {k[0]: v for k, v in rows.items() if k[0].startswith("pl-")}
    assert len(voivodeships) == 7
    assert set(voivodeships.values()) == {ONE_TEAM}
    assert len(rows) == 9


def test_totals_by_campaign_county(db: Path) -> None:
    rows = by_key(db, "totals_by_campaign_county", 2, "campaign_id,county")
    assert rows[(CAMPAIGN, "AL-06")] == AL_06_TOTALS
    no_campaign = {k[1]: v for k, v in rows.items() if k[0] is None}
    assert sorted(no_campaign) == ["PL-06", "PL-08", "PL-12", "PL-14", "PL-20", "PL-24", "PL-32"]
    assert set(no_campaign.values()) == {ONE_TEAM}
    assert len(rows) == 8
    assert rows_of(db, "SELECT campaign_id FROM totals_by_campaign_county")[-1] == (None,)  # NULLS LAST


def test_campaign_coverage(db: Path) -> None:
    result = run_query(db, "SELECT * FROM campaign_coverage")
    assert result.columns == ["campaign_id", "county", "county_name", "year", "actions"]
    # The Polish campaign names no target county and has no action yet: no row.
    assert result.rows == [(CAMPAIGN, "AL-06", "Korçë", 2017, 7)]


def test_campaign_coverage_shows_a_target_county_without_actions_as_0(db: Path, tmp_path: Path) -> None:
    edited = edited_copy(
        db,
        tmp_path,
        'UPDATE fact_versions SET payload = json_merge_patch(payload, \'{"target_counties": ["AL-06", "AL-08"]}\') '
        f"WHERE event_type = 'campaign_defined' AND payload ->> 'campaign_id' = '{CAMPAIGN}'",
    )
    assert rows_of(edited, "SELECT * FROM campaign_coverage") == [
        (CAMPAIGN, "AL-06", "Korçë", 2017, 7),
        (CAMPAIGN, "AL-08", "Lezhë", 2017, 0),
    ]


@pytest.mark.parametrize("view", SLICES)
def test_each_slice_has_its_as_of_macro(db: Path, view: str) -> None:
    now = rows_of(db, f"SELECT * FROM {view}")
    assert now
    assert rows_of(db, f"SELECT * FROM {view}_as_of(NULL)") == now
    assert rows_of(db, f"SELECT * FROM {view}_as_of(now())") == now
    assert rows_of(db, f"SELECT * FROM {view}_as_of(TIMESTAMPTZ '2000-01-01 00:00:00+00')") == []


# HXL 1.1's hashtags (https://hxlstandard.org/standard/1-1final/dictionary/).
HXL_HASHTAGS = {
    "#access", "#activity", "#adm1", "#adm2", "#adm3", "#adm4", "#adm5", "#affected", "#beneficiary",
    "#capacity", "#cause", "#channel", "#contact", "#country", "#crisis", "#currency", "#date", "#delivery",
    "#description", "#event", "#frequency", "#geo", "#group", "#impact", "#indicator", "#inneed", "#item",
    "#loc", "#meta", "#modality", "#need", "#operations", "#org", "#output", "#population", "#position",
    "#priority", "#reached", "#region", "#respondee", "#risk", "#sector", "#service", "#severity",
    "#status", "#subsector", "#targeted", "#value",
}  # fmt: skip


def test_every_column_of_every_exportable_view_has_an_hxl_1_1_hashtag(db: Path, tmp_path: Path) -> None:
    for view in EXPORTABLE:
        out = tmp_path / f"{view}.csv"
        export_view(db, view, "hxl", out)
        with out.open(encoding="utf-8", newline="") as f:
            header, hashtags = next(csv.reader(f)), next(csv.reader(f))
        for column, tag in zip(header, hashtags, strict=True):
            hashtag, *attributes = tag.split("+")
            assert hashtag in HXL_HASHTAGS, (view, column, tag)
            assert all(a and a.replace("_", "").isalnum() and a.islower() for a in attributes), (view, column, tag)


def outreach_export(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
    return subprocess.run(
        [sys.executable, "-m", "outreach", "export", "--db", str(db), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_format_follows_the_file_name_and_a_mismatch_is_refused(db: Path, tmp_path: Path) -> None:
    book = tmp_path / "counties.xlsx"
    done = outreach_export(db, "--out", str(book))
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"wrote 8 row(s) of totals_by_county to {book} (xlsx)\n"
    assert book.read_bytes()[:2] == b"PK"  # a zip: what an .xlsx is
    table = tmp_path / "counties.parquet"
    assert outreach_export(db, "--out", str(table)).returncode == 0
    assert table.read_bytes()[:4] == b"PAR1"

    wrong = tmp_path / "guess.xlsx"
    done = outreach_export(db, "--format", "csv", "--out", str(wrong))
    assert done.returncode == 1
    assert "--format csv does not match guess.xlsx, which names a xlsx file" in done.stderr
    assert not wrong.exists()
    done = outreach_export(db, "--out", str(tmp_path / "counties.txt"))
    assert done.returncode == 1
    assert "cannot tell the format from the name counties.txt: give --format" in done.stderr


def test_a_csv_for_excel_starts_with_a_byte_order_mark(db: Path, tmp_path: Path) -> None:
    plain, excel = tmp_path / "plain.csv", tmp_path / "excel.csv"
    assert outreach_export(db, "--out", str(plain)).returncode == 0
    assert outreach_export(db, "--out", str(excel), "--excel").returncode == 0
    assert excel.read_bytes() == BOM + plain.read_bytes()
    assert "Korçë" in excel.read_bytes().decode("utf-8-sig")
    hxl = tmp_path / "excel-hxl.csv"
    assert outreach_export(db, "--format", "hxl", "--out", str(hxl), "--excel").returncode == 0
    assert hxl.read_bytes().startswith(BOM + b"county,")
    for name in ("x.parquet", "x.xlsx"):  # a byte-order mark is for CSV: elsewhere --excel is refused
        done = outreach_export(db, "--out", str(tmp_path / name), "--excel")
        fmt = name.split(".")[1]
        assert (done.returncode, done.stderr) == (
            1,
            f"error: --excel marks a CSV for Excel (a byte-order mark); a {fmt} file needs none: leave --excel out\n",
        )
        assert not (tmp_path / name).exists()


def test_sql_writes_booleans_as_true_and_false(db: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "outreach",
            "sql",
            "--db",
            str(db),
            "--format",
            "csv",
            "SELECT true AS yes, false AS no",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout == "yes,no\ntrue,false\n"


# --- separators and what an export is as of ---------------------------------------------------


def checkpoint_of(db: Path) -> tuple[int, datetime]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        row = con.execute("SELECT last_seq, last_stored_at FROM checkpoint").fetchone()
    finally:
        con.close()
    assert row is not None
    return int(row[0]), row[1]


def test_a_csv_for_excel_in_poland_is_separated_by_semicolons_and_says_what_it_is_as_of(
    db: Path, tmp_path: Path
) -> None:
    seq, stored = checkpoint_of(db)
    assert seq == 17  # the demo's 17 events
    out = tmp_path / "counties.csv"
    rows, as_of = export_view(db, "totals_by_county", "csv", out, excel=True, sep=";", note=True)
    assert (rows, as_of.seq, as_of.stream) == (8, 17, "OUTREACH")
    data = out.read_bytes()
    when = stored.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    first = f"# totals_by_county: figures as received by {when} UTC (stream OUTREACH, sequence 17)\n"
    assert data.startswith(BOM + first.encode())
    lines = data[len(BOM) + len(first.encode()) :].decode().splitlines()
    assert lines[0] == ";".join(COUNTY_COLUMNS)
    assert len(lines) == 1 + 8
    assert lines[1].split(";")[:2] == ["AL-06", "Korçë"]


def test_the_separator_and_the_note_are_for_csv_only(db: Path, tmp_path: Path) -> None:
    with pytest.raises(SettingsInvalid, match=r"--sep and --note are for CSV files; a xlsx file takes neither"):
        export_view(db, "totals_by_county", "xlsx", tmp_path / "x.xlsx", sep=";")
    with pytest.raises(SettingsInvalid, match=r"--sep '\|': a CSV is separated by a comma, a semicolon or a tab"):
        export_view(db, "totals_by_county", "csv", tmp_path / "x.csv", sep="|")


def test_an_hxl_export_takes_the_separator_too(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "counties-hxl.csv"
    export_view(db, "totals_by_county", "hxl", out, sep="\t")
    lines = out.read_text("utf-8").splitlines()
    assert lines[0].split("\t") == COUNTY_COLUMNS
    assert lines[1].split("\t") == COUNTY_HXL


def test_xlsx_and_parquet_say_what_they_are_as_of(db: Path, tmp_path: Path) -> None:
    seq, stored = checkpoint_of(db)
    book = tmp_path / "counties.xlsx"
    export_view(db, "totals_by_county", "xlsx", book)
    about = {row[0]: row[1] for row in openpyxl.load_workbook(book)["about"].iter_rows(values_only=True)}
    assert about["view"] == "totals_by_county"
    assert about["stream"] == "OUTREACH"
    assert about["stream sequence"] == seq == 17
    assert about["stored at (UTC)"] == stored.astimezone(UTC).replace(tzinfo=None, microsecond=0)
    assert about["rows"] == 8
    table = tmp_path / "counties.parquet"
    export_view(db, "totals_by_county", "parquet", table)
    con = duckdb.connect()
    try:
        kv = dict(con.execute("SELECT key, value FROM parquet_kv_metadata(?)", [str(table)]).fetchall())
    finally:
        con.close()
    assert kv[b"view"] == b"totals_by_county"
    assert kv[b"as_of_seq"] == b"17"
    assert kv[b"as_of_stored_at"] == stored.isoformat().encode()


def test_export_with_lang_pl_separates_by_semicolons(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "counties.csv"
    done = subprocess.run(
        [sys.executable, "-m", "outreach", "export", "--db", str(db), "--out", str(out), "--excel", "--lang", "pl"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert out.read_text("utf-8-sig").splitlines()[0] == ";".join(COUNTY_COLUMNS)
    assert "note: totals_by_county: figures as received by " in done.stderr
    assert "(stream OUTREACH, sequence 17)" in done.stderr
