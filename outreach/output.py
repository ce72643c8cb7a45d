"""What the command line prints: query results as a table, CSV or JSON, inert for the tool that
reads them, and progress on standard error."""

from __future__ import annotations

import csv
import json
import time
from datetime import date, datetime
from decimal import Decimal
from typing import Any


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return ";".join(_cell(v) for v in value)
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def write_result(columns: list[str], rows: list[tuple[Any, ...]], fmt: str, out: Any, *, terminal: bool = False) -> int:
    """Print a query result as an aligned table, CSV, or JSON (a list of objects); return how many
    CSV cells were neutralised. Nothing printed is obeyed by the tool that reads it
    (``projections.inert``): a CSV's text cells that a spreadsheet would run get a leading ``'``;
    the table, and a CSV on a ``terminal``, show control characters escaped; JSON escapes them all."""
    from projections.inert import CONTROLS_BEYOND_C0, escape_controls, is_formula, neutralise

    if fmt == "csv":
        shown = escape_controls if terminal else str
        neutralised = 0

        def csv_cell(value: Any) -> str:
            nonlocal neutralised
            text = _cell(value)
            if not _is_number(value) and is_formula(text):
                neutralised += 1
                text = neutralise(text)
            return shown(text)

        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([csv_cell(name) for name in columns])
        for row in rows:
            writer.writerow([csv_cell(v) for v in row])
        return neutralised
    if fmt == "json":
        text = json.dumps(
            [dict(zip(columns, row, strict=True)) for row in rows], default=_cell, ensure_ascii=False, indent=1
        )
        # json escapes C0 controls itself; DEL, C1 and the reordering marks are escaped here, inside
        # strings, which is the only place they can be.
        out.write(CONTROLS_BEYOND_C0.sub(lambda m: f"\\u{ord(m.group()):04x}", text) + "\n")
        return 0
    cells = [[escape_controls(_cell(v)) for v in row] for row in rows]
    names = [escape_controls(name) for name in columns]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(names)]
    numeric = [all(_is_number(row[i]) or row[i] is None for row in rows) and rows != [] for i in range(len(columns))]

    def line(values: list[str]) -> str:
        padded = (v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True))
        return "  ".join(padded).rstrip()

    out.write(line(names) + "\n")
    out.write("  ".join("-" * w for w in widths) + "\n")
    for row in cells:
        out.write(line(row) + "\n")
    out.write(f"({len(rows)} row{'s' if len(rows) != 1 else ''})\n")
    return 0


class ProgressPrinter:
    """A progress bar with rate and ETA on a terminal; a plain line every few seconds otherwise."""

    def __init__(self, out: Any, every: float = 5.0, label: str = "replay") -> None:
        self.out = out
        self.label = label
        self.tty = out.isatty()
        self.every = every
        self.last = 0.0

    def __call__(self, p: Any) -> None:
        now = time.monotonic()
        if not p.end_seq:  # the end is not known: a count and a rate
            if now - self.last >= (0.2 if self.tty else self.every):
                self.last = now
                rate = p.messages / p.seconds if p.seconds > 0 else 0.0
                end = "\r" if self.tty else "\n"
                self.out.write(f"{self.label}: seq {p.applied_seq:,}, {rate:,.0f} msg/s{end}")
                self.out.flush()
            return
        finished = p.applied_seq >= p.end_seq
        if not finished and now - self.last < (0.2 if self.tty else self.every):
            return
        self.last = now
        rate = p.messages / p.seconds if p.seconds > 0 else 0.0
        left = (p.end_seq - p.applied_seq) / rate if rate > 0 else 0.0
        share = p.applied_seq / p.end_seq if p.end_seq else 1.0
        if self.tty:
            bar = "#" * int(share * 30)
            self.out.write(
                f"\r[{bar:<30}] {share:6.1%} seq {p.applied_seq:,}/{p.end_seq:,} "
                f"{rate:,.0f}/s ETA {left:,.0f}s" + ("\n" if finished else "")
            )
        else:
            self.out.write(
                f"{self.label}: {p.applied_seq}/{p.end_seq} ({share:.1%}), {rate:,.0f}/s, ETA {left:,.0f}s\n"
            )
        self.out.flush()
