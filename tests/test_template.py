"""The workbook `outreach template` writes, read back as a spreadsheet program shows it (lists,
formats, widths, notes in the workbook's language), and filled in each language as a person types
into it, then read by `outreach validate`."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.datavalidation import DataValidation

from producers.template import SHEETS, label, write_template
from producers.template_text import WORDS
from schemas.files import load_events

ENTRY_SHEETS = ["session_held", "materials_distributed", "team_established"]
AGENCY = "al-korce-regional-committee"


def outreach(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
    return subprocess.run(
        [sys.executable, "-m", "outreach", *args], env=env, capture_output=True, text=True, timeout=120
    )


def rules(sheet: Any) -> dict[str, DataValidation]:
    """Each column's data validation, by the column's field name."""
    header = [c.value for c in sheet[1]]
    found = {}
    for rule in sheet.data_validations.dataValidation:
        first = str(rule.sqref).split(":")[0]
        found[header[openpyxl.utils.column_index_from_string(first.rstrip("0123456789")) - 1]] = rule
    return found


def fill(sheet: Any, row: int, cells: dict[str, Any]) -> None:
    """Type into cells under their headers, as a person would: into the cell as it is formatted."""
    header = [c.value for c in sheet[1]]
    for column, value in cells.items():
        sheet.cell(row=row, column=header.index(column) + 1).value = value


def test_the_county_list_shows_code_and_name_and_the_codes_sheet_is_readable(tmp_path: Path) -> None:
    book = openpyxl.load_workbook(write_template(tmp_path / "t.xlsx"))
    codes = book["codes"]
    assert [c.value for c in codes[1]] == [
        "county", "name", "name in English", "country", "in the list", None, "municipality", "of county", "name",
    ]  # fmt: skip
    assert [c.value for c in codes[2]] == [
        "AL-01", "Berat", "Berat", "AL", "AL-01 Berat", None, "AL-01-berat", "AL-01", "Berat",
    ]  # fmt: skip
    listed = [r[0] for r in codes.iter_rows(min_row=2, min_col=5, max_col=5, values_only=True) if r[0]]
    assert len(listed) == 28 and listed[5] == "AL-06 Korçë" and listed[-1] == "PL-32 zachodniopomorskie"
    widths = {letter: d.width for letter, d in codes.column_dimensions.items()}
    assert widths == {"A": 8, "B": 21, "C": 21, "D": 9, "E": 27, "F": 4, "G": 22, "H": 11, "I": 16}
    for column in codes.iter_cols():  # nothing is cut off
        letter = column[0].column_letter
        assert all(len(str(c.value)) + 2 <= widths[letter] for c in column if c.value is not None), letter
    for name in ENTRY_SHEETS:
        county = rules(book[name])["county"]
        assert (county.type, county.formula1, str(county.sqref), county.errorStyle) == (
            "list",
            "=codes!$E$2:$E$29",
            "F2:F2001",
            "warning",  # a code alone may be typed: it is read too
        )


def test_date_columns_are_text_and_every_column_is_wide_enough(tmp_path: Path) -> None:
    book = openpyxl.load_workbook(write_template(tmp_path / "t.xlsx"))
    for name in ENTRY_SHEETS:
        sheet = book[name]
        header = [c.value for c in sheet[1]]
        for field in ("recorded_at", "occurred"):
            index = header.index(field) + 1
            letter = get_column_letter(index)
            assert sheet.column_dimensions[letter].number_format == "@"
            formats = {sheet.cell(row=r, column=index).number_format for r in range(2, 2002)}
            assert formats == {"@"}, (name, field)
        assert sheet.cell(row=2, column=header.index("county") + 1).number_format == "General"
        widths = {field: sheet.column_dimensions[get_column_letter(i)].width for i, field in enumerate(header, 1)}
        assert all(width >= len(field) + 2 for field, width in widths.items())
        assert (widths["reference"], widths["agency"], widths["occurred"], widths["county"]) == (16, 34, 24, 30)
    session = [c.value for c in book["session_held"][1]]
    width = book["session_held"].column_dimensions[get_column_letter(session.index("participants.other") + 1)]
    assert width.width == 20  # "participants.other" and its two characters of margin
    assert book["read me"].column_dimensions["A"].width == 106


@pytest.mark.parametrize("lang", ["en", "sq", "pl"])
def test_every_column_is_explained_in_the_workbooks_language_and_its_header_stays_the_field_name(
    tmp_path: Path, lang: str
) -> None:
    book = openpyxl.load_workbook(write_template(tmp_path / "t.xlsx", lang))
    assert book.sheetnames == ["read me", "codes", *ENTRY_SHEETS]
    english, words = WORDS["en"], WORDS[lang]
    for name in ENTRY_SHEETS:
        sheet = book[name]
        assert [c.value for c in sheet[1]] == SHEETS[name]  # the machine header, the same in every language
        by_column = rules(sheet)
        assert sorted(by_column) == sorted(SHEETS[name])  # every column has its message
        for cell in sheet[1]:
            rule = by_column[cell.value]
            title, _, text = cell.comment.text.partition("\n\n")
            assert (rule.promptTitle, rule.prompt.replace("\n", " "), rule.showInputMessage) == (title, text, True)
            assert len(title) <= 32 and len(rule.prompt) <= 255  # nothing cut: the limits of a cell's message
            assert max(len(line) for line in rule.prompt.splitlines()) <= 70  # lines a screen shows
            if lang != "en":
                assert title != label(english, cell.value), (name, cell.value)
    expected = {
        "en": (
            "Outreach Ledger: one row per action, on the sheet of its kind (session_held: sessions; "
            "materials_distributed: materials handed out; team_established: teams set up).",
            "The county: pick it from the list (code and name; the sheet codes lists them). A code alone, such as "
            "AL-06, is read too.",
            "quantity takes a whole number from 0 to 10,000,000",
            "Participants: employment offices",
        ),
        "sq": (
            "Outreach Ledger: një rresht për çdo veprimtari, në fletën e llojit të saj (session_held: takime; "
            "materials_distributed: materiale të shpërndara; team_established: grupe pune të krijuara).",
            "Qarku: zgjidheni nga lista (kodi dhe emri; fleta codes i rendit të gjithë). Lexohet edhe vetëm kodi, "
            "p.sh. AL-06.",
            "quantity pranon një numër të plotë nga 0 deri në 10\u00a0000\u00a0000",
            "Pjesëmarrës: zyrat e punësimit",
        ),
        "pl": (
            "Outreach Ledger: jeden wiersz na każde działanie, w arkuszu jego rodzaju (session_held: spotkania; "
            "materials_distributed: rozdane materiały; team_established: powołane zespoły).",
            "Województwo: proszę wybrać z listy (kod i nazwa; wszystkie są w arkuszu codes). Sam kod, np. PL-16, "
            "również zostanie odczytany.",
            "quantity: liczba całkowita od 0 do 10\u00a0000\u00a0000",
            "Uczestnicy: urzędy pracy",
        ),
    }[lang]
    materials, session = rules(book["materials_distributed"]), rules(book["session_held"])
    assert (
        book["read me"]["A1"].value,
        session["county"].prompt.replace("\n", " "),
        materials["quantity"].error,
        session["participants.employment_office_staff"].promptTitle,
    ) == expected
    assert words.dates in book["read me"]["A3"].value
    assert [c.value for c in book["codes"][1]] == [*words.codes[:5], None, *words.codes[6:]]


def test_the_language_follows_the_agency_and_the_agency_is_pre_filled(tmp_path: Path) -> None:
    out = tmp_path / "pl.xlsx"
    done = outreach("template", "--agency", "PL-Opolskie-Voivodeship-Office", "--out", str(out))
    assert (done.returncode, done.stderr) == (0, "")
    book = openpyxl.load_workbook(out)
    assert book["read me"]["A1"].value.startswith("Outreach Ledger: jeden wiersz na każde działanie")
    for name in ENTRY_SHEETS:
        column = [r[2] for r in book[name].iter_rows(min_row=2, values_only=True)]
        assert column == ["pl-opolskie-voivodeship-office"] * 2000, name
    assert load_events(out).lines_total == 0  # rows with nothing but the agency are empty

    english = tmp_path / "en.xlsx"
    assert outreach("template", "--agency", "iom-albania", "--lang", "en", "--out", str(english)).returncode == 0
    assert openpyxl.load_workbook(english)["read me"]["A1"].value.startswith("Outreach Ledger: one row per action")

    done = outreach("template", "--agency", "Korçë committee", "--out", str(tmp_path / "x.xlsx"))
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        "error: --agency 'korçë committee' is not an agency's short name: lower-case letters, digits and single "
        "hyphens, e.g. al-korce-regional-committee\n"
    )
    assert not (tmp_path / "x.xlsx").exists()


@pytest.mark.parametrize("lang", ["en", "sq", "pl"])
def test_a_template_filled_in_each_language_is_read_as_typed(tmp_path: Path, lang: str) -> None:
    path = tmp_path / f"reporting-{lang}.xlsx"
    assert outreach("template", "--lang", lang, "--agency", AGENCY, "--out", str(path)).returncode == 0
    book = openpyxl.load_workbook(path)
    # As LibreOffice's autocorrect leaves an agency typed over the pre-filled one; a date and time and a
    # month typed into text cells; the county picked from the list.
    fill(book["session_held"], 2, {"reference": "KOR-2025-014", "agency": "Al-korce-regional-committee",
         "recorded_at": "2025-03-05 10:00", "occurred": "2025-03", "county": "AL-06 Korçë",
         "format": "school_session", "participants.students": 25, "participants.teachers": "~4"})  # fmt: skip
    fill(book["materials_distributed"], 2, {"reference": "KOR-2025-015", "recorded_at": "05.03.2025",
         "occurred": "2025", "county": "AL-06", "kind": "leaflet", "quantity": 400})  # fmt: skip
    book.save(path)
    done = outreach("validate", str(path))
    assert (done.returncode, done.stdout, done.stderr) == (0, "", f"{path}: 2 valid event(s), 0 invalid\n")
    loaded = load_events(path)
    (_, session), (_, leaflets) = loaded.events
    assert (session.agency, session.county, session.recorded_at.astimezone(UTC)) == (
        AGENCY,
        "AL-06",
        datetime(2025, 3, 5, 9, 0, tzinfo=UTC),  # 10:00 in Tirana
    )
    assert (session.occurred.start, session.occurred.end) == (date(2025, 3, 1), date(2025, 3, 31))  # type: ignore[attr-defined]
    assert (leaflets.agency, leaflets.county, leaflets.quantity) == (AGENCY, "AL-06", 400)  # type: ignore[attr-defined]
    assert (leaflets.occurred.start, leaflets.occurred.end) == (date(2025, 1, 1), date(2025, 12, 31))  # type: ignore[attr-defined]
    assert loaded.lines_total == 2

    fill(book["session_held"], 3, {"reference": "KOR-2025-016", "occurred": "2025-04", "county": "AL-06 Tiranë",
         "format": "workshop", "participants.students": -5})  # fmt: skip
    fill(book["materials_distributed"], 3, {"reference": "KOR-2025-017", "occurred": "2025-04",
         "county": "XX-06 Korçë", "kind": "poster", "quantity": "-5"})  # fmt: skip
    wrong = tmp_path / f"wrong-{lang}.xlsx"
    book.save(wrong)
    done = outreach("validate", str(wrong))
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        f'{wrong}: sheet materials_distributed, row 3: county: XX-06 is no county (got "XX-06 Korçë"); pick the '
        "county from the list",
        f"{wrong}: sheet materials_distributed, row 3: quantity: cannot be negative: must be a whole number from 0 "
        "to 10,000,000 (got -5)",
        f'{wrong}: sheet session_held, row 3: county: AL-06 is Korçë, not Tiranë (got "AL-06 Tiranë"); pick the '
        "county from the list, or give its code alone",
        f"{wrong}: sheet session_held, row 3: participants.students: cannot be negative: must be a whole number "
        "from 0 to 10,000,000 (got -5)",
    ]


def test_a_workbook_filled_in_before_the_languages_is_read_as_before(tmp_path: Path) -> None:
    """A workbook of the template before this one: county codes from a list of codes, dates as date cells,
    no agency pre-filled; its rows read exactly as they did."""
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "session_held"
    sheet.append(["reference", "agency", "recorded_at", "occurred", "county", "format", "participants.students"])
    sheet.append(["A-1", AGENCY, datetime(2025, 1, 10, 9, 30), datetime(2024, 12, 5), "AL-09", "workshop", 25])
    path = tmp_path / "old.xlsx"
    book.save(path)
    loaded = load_events(path)
    assert loaded.problems == []
    ((_, event),) = loaded.events
    assert (event.county, event.recorded_at.isoformat(), event.occurred.start) == (  # type: ignore[attr-defined]
        "AL-09",
        "2025-01-10T09:30:00+01:00",
        date(2024, 12, 5),
    )
