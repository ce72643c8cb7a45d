"""``outreach template``: a workbook an agency fills in, and ``outreach validate``/``publish`` read.

A sheet per action type, whose first row holds the events' field names (the header the reader
reads, in every language); each column's label and what it takes are in the workbook's language, in
the header's note and in the message shown when one of its cells is selected. Drop-down lists for
the county (shown as "AL-06 Korçë", read back as its code), session format, material kind and the
estimate flags; whole numbers for counts; date columns formatted as text, so that ``2025-03`` stays
a month; and a sheet of the reference codes (counties and municipalities, with their names).
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

from openpyxl import Workbook
from openpyxl.comments import Comment
from openpyxl.styles import Alignment, Font
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.datavalidation import DataValidation
from openpyxl.worksheet.worksheet import Worksheet

from producers.template_text import WORDS, Words
from schemas.errors import SettingsInvalid
from schemas.events import MAX_COUNT, MAX_SESSIONS, SLUG_PATTERN, Audience, InstitutionType, MaterialKind, SessionFormat
from schemas.files import DATE_FIELDS
from schemas.reference import regions

ROWS = 2000  # rows of each entry sheet the validations, formats and a pre-filled agency cover
COMMON = [
    "reference",
    "event_id",
    "agency",
    "recorded_at",
    "occurred",
    "county",
    "municipality",
    "venue",
    "campaign_id",
    "plan_tasks",
]
SHEETS: dict[str, list[str]] = {
    "session_held": [
        *COMMON,
        "format",
        "title",
        "sessions",
        *(f"participants.{a.value}" for a in Audience),
        "reported_total",
        "total_estimated",
        "source",
        "withdrawn",
    ],
    "materials_distributed": [*COMMON, "kind", "quantity", "estimated", "title", "language", "source", "withdrawn"],
    "team_established": [*COMMON, "team_name", "member_institutions", "source", "withdrawn"],
}
LISTS = {
    "format": [f.value for f in SessionFormat],
    "kind": [k.value for k in MaterialKind],
    "total_estimated": ["true", "false"],
    "estimated": ["true", "false"],
}
WHOLE = {"quantity": (0, MAX_COUNT), "reported_total": (0, MAX_COUNT), "sessions": (1, MAX_SESSIONS)}
PROMPT_WIDTH = 70  # characters of a line of a cell's message
README_WIDTH = 100  # characters of the read me sheet's lines
TEXT = "@"  # the number format that keeps what is typed as text
# Column widths in characters, wide enough for what the column usually holds.
WIDTHS = {
    "reference": 16,
    "event_id": 14,  # left empty: the reference makes it
    "agency": 34,
    "recorded_at": 20,
    "occurred": 24,
    "county": 30,
    "municipality": 24,
    "venue": 30,
    "campaign_id": 26,
    "plan_tasks": 26,
    "format": 24,
    "title": 30,
    "team_name": 34,
    "member_institutions": 34,
    "source": 30,
    "withdrawn": 30,
}


def write_template(out: Path, lang: str = "en", agency: str | None = None) -> Path:
    """Write the workbook to ``out`` in ``lang`` (en, sq, pl), its agency cells pre-filled with
    ``agency`` when given; return it."""
    if lang not in WORDS:
        raise SettingsInvalid(f"--lang {lang!r}: the template is written in en, sq or pl")
    if agency is not None:
        agency = agency.strip().lower()
        if not re.fullmatch(SLUG_PATTERN, agency) or len(agency) > 64:
            raise SettingsInvalid(
                f"--agency {agency!r} is not an agency's short name: lower-case letters, digits and single hyphens, "
                "e.g. al-korce-regional-committee"
            )
    words = WORDS[lang]
    book = Workbook()
    _readme(book.active, words)
    county_list = _codes(book.create_sheet("codes"), words)
    for name, columns in SHEETS.items():
        _entries(book.create_sheet(name), name, columns, words, county_list, agency)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    book.save(out)
    return out


def label(words: Words, column: str) -> str:
    """A column's label in the workbook's language."""
    if column.startswith("participants."):
        return words.participants.format(group=words.audiences[column.removeprefix("participants.")])
    return words.labels[column]


def note(words: Words, sheet: str, column: str) -> str:
    """What a column takes, in the workbook's language."""
    if column.startswith("participants."):
        return words.participants_note.format(group=words.audiences[column.removeprefix("participants.")])
    text = words.notes_by_sheet.get(sheet, {}).get(column) or words.notes[column]
    return text.format(dates=words.dates)


def _readme(sheet: Worksheet, words: Words) -> None:
    sheet.title = "read me"
    lines = [line.format(dates=words.dates) for line in words.readme]
    lines.append(words.institutions + ", ".join(i.value for i in InstitutionType))
    for line in lines:
        sheet.append([line])
    sheet["A1"].font = Font(bold=True)
    for number, line in enumerate(lines, start=1):
        sheet.cell(row=number, column=1).alignment = Alignment(wrap_text=True, vertical="top")
        # Spreadsheets do not grow a row for wrapped text they did not lay out themselves.
        sheet.row_dimensions[number].height = 15 * (len(line) // README_WIDTH + 1) + 3
    sheet.column_dimensions["A"].width = README_WIDTH + 6
    _printed(sheet)


def _codes(sheet: Worksheet, words: Words) -> str:
    """The sheet of county and municipality codes; returns the range the county drop-down lists."""
    sheet.append(words.codes)
    reg = regions()
    counties = sorted(reg.counties.values(), key=lambda c: c.code)
    municipalities = sorted(reg.municipalities.values(), key=lambda m: m.code)
    for i in range(max(len(counties), len(municipalities))):
        c = counties[i] if i < len(counties) else None
        m = municipalities[i] if i < len(municipalities) else None
        sheet.append(
            [
                c.code if c else None,
                c.name if c else None,
                c.name_en if c else None,
                c.country if c else None,
                f"{c.code} {c.name}" if c else None,
                None,
                m.code if m else None,
                m.county if m else None,
                m.name if m else None,
            ]
        )
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for index, column in enumerate(sheet.iter_cols(values_only=True), start=1):
        longest = max((len(str(v)) for v in column if v is not None), default=0)
        sheet.column_dimensions[get_column_letter(index)].width = max(4, min(60, longest + 2))
    sheet.freeze_panes = "A2"
    _printed(sheet)
    return f"=codes!$E$2:$E${len(counties) + 1}"


def _entries(
    sheet: Worksheet, name: str, columns: list[str], words: Words, county_list: str, agency: str | None
) -> None:
    sheet.append(columns)
    for index, column in enumerate(columns, start=1):
        cell = sheet.cell(row=1, column=index)
        cell.font = Font(bold=True)
        comment = Comment(f"{label(words, column)}\n\n{note(words, name, column)}", "outreach")
        comment.width, comment.height = 300, 160
        cell.comment = comment
        letter = get_column_letter(index)
        sheet.column_dimensions[letter].width = max(WIDTHS.get(column, 14), len(column) + 2)
        if column in DATE_FIELDS:  # what is typed stays text: 2025-03 a month, not 1 March
            sheet.column_dimensions[letter].number_format = TEXT
            for row in range(2, ROWS + 2):
                sheet.cell(row=row, column=index).number_format = TEXT
        if column == "agency" and agency is not None:
            for row in range(2, ROWS + 2):
                sheet.cell(row=row, column=index, value=agency)
        rule = _rule(column, county_list, words)
        rule.showInputMessage = True
        rule.promptTitle = label(words, column)[:32]
        rule.prompt = _lines(note(words, name, column))
        rule.add(f"{letter}2:{letter}{ROWS + 1}")
        sheet.add_data_validation(rule)
    sheet.freeze_panes = "A2"
    _printed(sheet, one_page_wide=False)  # too many columns to fit a page's width


def _printed(sheet: Worksheet, one_page_wide: bool = True) -> None:
    """Printed landscape, with the header row on every page; one page wide if it fits."""
    sheet.page_setup.orientation = "landscape"
    sheet.page_setup.paperSize = sheet.PAPERSIZE_A4
    if one_page_wide:
        sheet.page_setup.fitToWidth = 1
        sheet.page_setup.fitToHeight = 0
        sheet.sheet_properties.pageSetUpPr.fitToPage = True
    sheet.print_title_rows = "1:1"


def _lines(text: str) -> str:
    """A cell's message in lines: spreadsheets show it on one line, past the screen's edge, unless
    it has line breaks. Words (dates, slugs) are never broken."""
    return textwrap.fill(text, PROMPT_WIDTH, break_long_words=False, break_on_hyphens=False)


def _rule(column: str, county_list: str, words: Words) -> DataValidation:
    if column == "county":
        # A code alone is read too: typing one is warned of, not refused.
        rule = _checked(DataValidation(type="list", formula1=county_list), column, note(words, "", column))
        rule.errorStyle = "warning"
        return rule
    if column in LISTS:
        values = ",".join(LISTS[column])
        what = words.one_of.format(column=column, values=", ".join(LISTS[column]))
        return _checked(DataValidation(type="list", formula1=f'"{values}"'), column, what)
    if column in WHOLE:
        low, high = WHOLE[column]
        rule = DataValidation(type="whole", operator="between", formula1=str(low), formula2=str(high))
        return _checked(rule, column, words.whole.format(column=column, low=low, high=words.number(high)))
    # Months, years and ranges are no spreadsheet dates, and a count may be ~N or unknown: any text is
    # let in, its column's message shown as a cell is selected, and `outreach validate` checks it.
    return DataValidation(type="custom", formula1="TRUE", allow_blank=True)


def _checked(rule: DataValidation, column: str, what: str) -> DataValidation:
    rule.allow_blank = True
    rule.showErrorMessage = True
    rule.errorTitle = column[:32]
    rule.error = what[:255]
    return rule
