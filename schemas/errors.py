"""The one error tree of Outreach Ledger.

Every error that reaches a user says what was wrong, where, and what to do::

    OutreachError
    ├── EventInvalid        one event broke the contract (field, value, message)
    │   └── FileInvalid     a file of events has invalid lines (line, field, message), all of them
    ├── SettingsInvalid     a setting or command-line option is wrong
    ├── BrokerError         NATS is unreachable, refused us, or the stream is not as required
    │   └── PublishFailed   some events were not acknowledged after every retry
    ├── ProjectionError     the DuckDB projection could not be read or written
    └── QueryRefused        an analyst's query tried to write or reach outside, ran too long, or was too large

Everything below ``OutreachError`` is caught by the command line, printed without a traceback,
and turned into exit status 1 (2 for usage errors).
"""

from __future__ import annotations

from dataclasses import dataclass


class OutreachError(Exception):
    """Base of every error this project raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one event: where (line, field), the value, and the message."""

    field: str
    message: str
    value: str | None = None
    line: int | None = None
    sheet: str | None = None  # a workbook's sheet; ``line`` is then its row

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        if self.sheet is not None:
            where = f"sheet {self.sheet}, row {self.line}: "
        got = f" (got {self.value})" if self.value is not None else ""
        return f"{where}{self.field}: {self.message}{got}"


class EventInvalid(OutreachError):
    """An event does not satisfy its contract. ``problems`` lists every problem found."""

    def __init__(self, problems: list[Problem], *, context: str = "event") -> None:
        self.problems = problems
        shown = "\n".join(f"  {p}" for p in problems[:50])
        more = f"\n  … and {len(problems) - 50} more" if len(problems) > 50 else ""
        super().__init__(f"{context} is invalid ({len(problems)} problem(s)):\n{shown}{more}")


class FileInvalid(EventInvalid):
    """A file of events has invalid lines; every invalid line is listed, not only the first."""

    def __init__(self, path: str, problems: list[Problem], lines_total: int) -> None:
        self.path = path
        self.lines_total = lines_total
        bad = len({(p.sheet, p.line) for p in problems if p.line is not None})
        context = f"{path}: {bad} of {lines_total} event(s)" if bad else path
        super().__init__(problems, context=context)


class SettingsInvalid(OutreachError):
    """A setting, option or environment variable is wrong."""


class BrokerError(OutreachError):
    """NATS could not be reached, refused an operation, or its stream is misconfigured."""


class PublishFailed(BrokerError):
    """Some events were not acknowledged by JetStream after every retry."""


class ProjectionError(OutreachError):
    """The DuckDB projection could not be opened, read or written."""


class QueryRefused(OutreachError):
    """An analyst's query was refused or stopped: it tried to change the database or reach outside
    it, ran past its time limit, or returned more than a reply may hold."""
