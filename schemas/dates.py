"""Dates as agencies write them in CSV cells and spreadsheets, made into the ISO form events carry.

Accepted, alone or as a range ``A/B`` (or ``A - B``, or with an en or em dash between) of two of them:

- ``2025-03-05`` and ``05.03.2025``: one day;
- ``2025-03``: the whole month (its first to its last day);
- ``2025``: the whole year.

``05/03/2025`` is refused: it is 5 March in Albania and Poland and 3 May elsewhere. An event on the
wire (JSON) carries ISO days only: ``2025-03-05`` or ``2025-03-01/2025-03-31``.
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

FORMS = (
    "accepted: 2025-03-05 or 05.03.2025 (a day), 2025-03 (the whole month), 2025 (the whole year), "
    "or a range of two of these, e.g. 2025-03-01/2025-03-15"
)


# Day and month in either order: 05/03/2025, 3/5, 5/3/25.
_AMBIGUOUS = re.compile(r"\d{1,2}/\d{1,2}(?:/\d{2,4})?")
_DASHES = re.compile(r"\s+-\s+|\s*[\u2013\u2014]\s*")  # " - ", or an en or em dash


class DateInvalid(ValueError):
    """A date cell in none of the accepted forms; the message says which forms are."""


def date_cell(text: str) -> str:
    """One date, or a range of them, as ISO: ``2025-03`` -> ``2025-03-01/2025-03-31``."""
    first, last = span(text)
    if _halves(text.strip())[1] is None and first == last:
        return first.isoformat()
    return f"{first.isoformat()}/{last.isoformat()}"


def span(text: str) -> tuple[date, date]:
    """The first and last day a date, or a range of them, covers: ``2025-03`` -> 1 and 31 March."""
    text = text.strip()
    if any(_AMBIGUOUS.fullmatch(piece.strip()) for piece in [text, *_DASHES.split(text)]):
        raise DateInvalid(
            f"is ambiguous: {text} is day/month in some countries and month/day in others; write "
            f"2025-03-05 or 05.03.2025 ({FORMS})"
        )
    start_text, end_text = _halves(text)
    first, last = _span(start_text)
    if end_text is None:
        return first, last
    end = _span(end_text)[1]
    if end < first:
        raise DateInvalid(f"range ends ({end.isoformat()}) before it starts ({first.isoformat()})")
    return first, end


def day_cell(text: str) -> str:
    """One day (a campaign's start or end): ``05.03.2025`` -> ``2025-03-05``."""
    first, last = _span(text.strip())
    if first != last:
        raise DateInvalid(f"must be one day, such as 2025-03-05 or 05.03.2025 (got {text.strip()})")
    return first.isoformat()


def moment_cell(text: str) -> str:
    """When an entry was recorded: a time as given (``2025-03-05T10:00:00Z``), or a day, taken as
    its start in UTC (``05.03.2025`` -> ``2025-03-05T00:00:00Z``)."""
    text = text.strip()
    if "T" in text or ":" in text:
        return text  # a time: the event's own validation judges it
    return f"{day_cell(text)}T00:00:00Z"


# A spreadsheet's date and time has no zone: it is read in the time zone of the county's country.
TIME_ZONES = {"AL": "Europe/Tirane", "PL": "Europe/Warsaw"}


def local_moment(value: datetime, country: str) -> str:
    """A date and time as typed in a spreadsheet (no zone), read in ``country``'s time zone, as
    ISO with its offset then: 10:00 on 5 March 2025 in Poland is ``2025-03-05T10:00:00+01:00``,
    on 5 July ``…+02:00``. A time the clocks skip (02:30 on the night summer time begins) is
    refused; one they pass twice (02:30 on the night it ends) is the first of the two."""
    zone = ZoneInfo(TIME_ZONES[country])
    moment = value.replace(tzinfo=zone)
    if moment.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != value:
        raise DateInvalid(
            f"{value.isoformat(sep=' ')} did not happen in {zone.key}: the clocks went forward that night; "
            f"type the time as it was on the clock"
        )
    return moment.isoformat()


def _halves(text: str) -> tuple[str, str | None]:
    if "/" in text:
        start, _, end = text.partition("/")
        return start.strip(), end.strip()
    dash = _DASHES.search(text)
    if dash:
        return text[: dash.start()].strip(), text[dash.end() :].strip()
    return text, None


def _span(text: str) -> tuple[date, date]:
    """The first and last day a form covers."""
    if not text or not all(c in "0123456789-." for c in text):
        raise DateInvalid(f"is not a date in a form we read: {text!r} ({FORMS})")
    try:
        if len(text) == 10 and text[4] == "-" and text[7] == "-":
            day = date(int(text[:4]), int(text[5:7]), int(text[8:]))
            return day, day
        parts = text.split(".")
        if len(parts) == 3 and len(parts[2]) == 4 and all(1 <= len(p) <= 2 for p in parts[:2]):
            day = date(int(parts[2]), int(parts[1]), int(parts[0]))  # 05.03.2025, or 5.3.2025
            return day, day
        if len(text) == 7 and text[4] == "-":
            year, month = int(text[:4]), int(text[5:])
            return date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1])
        if len(text) == 4 and text.isdigit():
            year = int(text)
            return date(year, 1, 1), date(year, 12, 31)
    except ValueError:
        raise DateInvalid(f"is not a date in the calendar: {text} ({FORMS})") from None
    raise DateInvalid(f"is not a date in a form we read: {text!r} ({FORMS})")
