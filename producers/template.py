"""``outreach template``: a workbook an agency fills in, and ``outreach validate``/``publish`` read.

A sheet per action type, whose headers are the events' field names, each with a note saying what
it takes; drop-down lists for county, audience, material kind and session format; whole numbers
for counts; and a sheet of the reference codes (counties and municipalities, with their names).
"""

from __future__ import annotations

from pathlib import Path

from openpyxl import Workbook
from openpyxl.comments import Comment
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.datavalidation import DataValidation

from schemas.events import MAX_COUNT, MAX_SESSIONS, Audience, InstitutionType, MaterialKind, SessionFormat
from schemas.reference import regions

ROWS = 2000  # rows of each entry sheet the validations cover
DATES = "2025-03-05 or 05.03.2025 (a day), 2025-03 (a month), 2025 (a year), or two of these with / (a range)"
COMMON = [
    (
        "reference",
        "Your own code for this row, unique in your agency and kept for ever, e.g. KOR-2025-014. Publishing the "
        "workbook again then corrects the row's figures when you edit them, instead of counting it twice.",
    ),
    ("event_id", "Leave empty: the reference makes the row's id."),
    ("agency", "Your agency's short name, as in your credentials, e.g. al-korce-regional-committee."),
    (
        "recorded_at",
        "When you recorded this entry: a date (2025-03-05), a date and time (read in the county's time zone), "
        "or empty (the time you publish).",
    ),
    ("occurred", f"When it happened: {DATES}."),
    ("county", "The county's code: pick it from the list (the sheet codes gives the names)."),
    ("municipality", "Optional: a municipality's code from the sheet codes, or its name."),
    ("venue", "Optional: where, e.g. the school's name."),
    ("campaign_id", "Optional: the campaign's short name, if your agency or another defined it."),
    ("plan_tasks", "Optional: national action plan tasks, separated by ;, e.g. pl-nap-2013-2015/III/4."),
]
SHEETS: dict[str, list[tuple[str, str]]] = {
    "session_held": [
        *COMMON,
        ("format", "The kind of session: pick it from the list."),
        ("title", "Optional: the session's title."),
        ("sessions", "How many sessions this row reports (1 if empty); the participants are those of all of them."),
        *(
            (
                f"participants.{a.value}",
                f"{a.value.replace('_', ' ')}: a whole number, ~N for an estimate, or unknown; empty if none came.",
            )
            for a in Audience
        ),
        ("reported_total", "Optional: the total the report gives, if more than the groups' sum."),
        ("total_estimated", "true if the total is an estimate."),
        ("source", "Optional: where the figures come from (a report, a page)."),
    ],
    "materials_distributed": [
        *COMMON,
        ("kind", "What was handed out: pick it from the list."),
        ("quantity", "How many: a whole number; empty if not known."),
        ("estimated", "true if the quantity is an estimate."),
        ("title", "Optional: the material's title."),
        ("language", "Optional: its language's two or three letters, e.g. sq or pl."),
        ("source", "Optional: where the figures come from."),
    ],
    "team_established": [
        *COMMON,
        ("team_name", "The team's name."),
        ("member_institutions", "Optional: kinds of member institutions, separated by ;."),
        ("source", "Optional: where this comes from."),
    ],
}
WITHDRAWN = (
    "withdrawn",
    "Empty, unless this entry should no longer count: then why (e.g. 'reported twice'). Publishing retracts it.",
)
for _columns in SHEETS.values():
    _columns.append(WITHDRAWN)
LISTS = {
    "format": [f.value for f in SessionFormat],
    "kind": [k.value for k in MaterialKind],
    "total_estimated": ["true", "false"],
    "estimated": ["true", "false"],
}
WHOLE = {"quantity": MAX_COUNT, "reported_total": MAX_COUNT, "sessions": MAX_SESSIONS}


def write_template(out: Path) -> Path:
    """Write the workbook to ``out``; return it."""
    book = Workbook()
    readme = book.active
    readme.title = "read me"
    for row in (
        ["Outreach Ledger: one row per action, on the sheet of its kind."],
        ["Headers are field names; hover over one for what it takes. Leave a cell empty when not known."],
        [f"Dates: {DATES}."],
        ["Check the file with: outreach validate FILE.xlsx; then publish it with: outreach publish FILE.xlsx"],
        [
            "Give every row a reference of its own (first column). To correct a row, edit it and publish the "
            "workbook again; to withdraw one, write why in its withdrawn column. Keep the file's name."
        ],
        ["Institution kinds for teams: " + ", ".join(i.value for i in InstitutionType)],
    ):
        readme.append(row)
    readme.column_dimensions["A"].width = 110
    codes = book.create_sheet("codes")
    codes.append(["county", "country", "name", "name in English", "", "municipality", "of county", "name"])
    reg = regions()
    counties = sorted(reg.counties.values(), key=lambda c: c.code)
    municipalities = sorted(reg.municipalities.values(), key=lambda m: m.code)
    for i in range(max(len(counties), len(municipalities))):
        c = counties[i] if i < len(counties) else None
        m = municipalities[i] if i < len(municipalities) else None
        codes.append(
            [
                c.code if c else None,
                c.country if c else None,
                c.name if c else None,
                c.name_en if c else None,
                None,
                m.code if m else None,
                m.county if m else None,
                m.name if m else None,
            ]
        )
    county_list = f"=codes!$A$2:$A${len(counties) + 1}"
    for name, columns in SHEETS.items():
        sheet = book.create_sheet(name)
        sheet.append([c for c, _ in columns])
        for index, (column, note) in enumerate(columns, start=1):
            cell = sheet.cell(row=1, column=index)
            cell.font = Font(bold=True)
            cell.comment = Comment(note, "outreach")
            letter = get_column_letter(index)
            sheet.column_dimensions[letter].width = max(14, len(column) + 2)
            cells = f"{letter}2:{letter}{ROWS + 1}"
            rule = _rule(column, county_list)
            if rule is not None:
                rule.add(cells)
                sheet.add_data_validation(rule)
        sheet.freeze_panes = "A2"
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    book.save(out)
    return out


def _rule(column: str, county_list: str) -> DataValidation | None:
    if column == "county":
        return _checked(DataValidation(type="list", formula1=county_list), column, "a county code from the list")
    if column in LISTS:
        values = ",".join(LISTS[column])
        return _checked(DataValidation(type="list", formula1=f'"{values}"'), column, f"one of: {values}")
    if column in WHOLE:
        low = "1" if column == "sessions" else "0"
        rule = DataValidation(type="whole", operator="between", formula1=low, formula2=str(WHOLE[column]))
        return _checked(rule, column, f"a whole number from {low} to {WHOLE[column]:,}")
    # Months, years and ranges are no Excel dates, and a count may be ~N or unknown: these cells
    # show the forms they take as they are selected, and `outreach validate` checks them.
    if column in ("occurred", "recorded_at"):
        return _prompt(column, DATES)
    if column.startswith("participants."):
        return _prompt(column, "a whole number such as 25; ~25 for an estimate; unknown if they were not counted")
    return None


def _prompt(column: str, forms: str) -> DataValidation:
    rule = DataValidation(type="custom", formula1="TRUE")
    rule.showInputMessage = True
    rule.promptTitle = column[:32]
    rule.prompt = forms[:255]
    return rule


def _checked(rule: DataValidation, column: str, what: str) -> DataValidation:
    rule.allow_blank = True
    rule.showErrorMessage = True
    rule.errorTitle = column
    rule.error = f"{column} takes {what}"
    return rule
