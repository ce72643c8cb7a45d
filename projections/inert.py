"""What we hand to other tools is inert: a spreadsheet runs no cell, a terminal obeys no escape.

Text in the projection is an agency's text: a campaign name may be ``=HYPERLINK(…)`` or hold
``ESC[2J``. Two rules, applied where text leaves for another tool:

- a cell a spreadsheet would run as a formula (OWASP's CSV-injection rule: text that begins with
  ``=``, ``+``, ``-``, ``@``, a tab or a carriage return) is written with a leading ``'``, which the
  spreadsheet shows as text; numbers are numbers, never text, and stay as they are (``-3`` in a
  numeric column is written ``-3``);
- a control character (C0, DEL, C1, and the Unicode marks that reorder or break lines) printed to
  a terminal is shown escaped, ``\\x1b`` for ESC, so that it is seen, not obeyed.
"""

from __future__ import annotations

import re

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
NEUTRALISED_NOTE = (
    "cells that begin with =, +, -, @, a tab or a carriage return are written with a leading ' so that a "
    "spreadsheet shows them as text instead of running them"
)
# C0 controls, DEL, C1 controls, and the format marks that reorder text or break lines
# (bidirectional overrides and isolates, the line and paragraph separators).
_BEYOND_C0 = "\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
CONTROLS = re.compile(f"[\x00-\x1f{_BEYOND_C0}]")
# The same but C0, which JSON escapes itself (a raw newline in JSON text is between values).
CONTROLS_BEYOND_C0 = re.compile(f"[{_BEYOND_C0}]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def neutralise(text: str) -> str:
    """``text`` as a spreadsheet cell that is never a formula."""
    return "'" + text if text.startswith(FORMULA_START) else text


def is_formula(text: str) -> bool:
    return text.startswith(FORMULA_START)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    """``text`` with every control character shown as an escape (``\\x1b``, ``\\n``, ``\\u202e``)."""
    return CONTROLS.sub(_escape, text)


# The SQL of one column of a CSV for spreadsheets: text that a spreadsheet would run gets a
# leading quote; a column of any other type (numbers, dates, lists, JSON) is as DuckDB writes it.
_TEXT_TYPES = ("VARCHAR",)
NEUTRALISE_SQL = (
    "CASE WHEN left({column}, 1) IN ('=', '+', '-', '@', chr(9), chr(13)) THEN '''' || {column} ELSE {column} END"
)


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def inert_column(name: str, duckdb_type: str, *, as_text: bool = False) -> str:
    """A select-list item for column ``name`` of type ``duckdb_type``, neutralised if it is text;
    ``as_text``: every value cast to VARCHAR, as a CSV shows it."""
    column = quoted(name)
    if duckdb_type.upper() in _TEXT_TYPES:
        return f"{NEUTRALISE_SQL.format(column=column)} AS {column}"
    return f"CAST({column} AS VARCHAR) AS {column}" if as_text else column
