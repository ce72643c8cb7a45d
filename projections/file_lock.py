"""Opening the projection's file for writing, beside the readers that hold it.

DuckDB's file lock tells a reader from a writer: a read-only connection opens beside readers, never
beside a writer, and its error names the holder's program and PID. The projector waits for readers
(an analyst's `outreach sql --db`, a notebook, a report) for as long as they hold the file, and
refuses at once to open a file another writer holds.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

import duckdb

from schemas.errors import ProjectionError

log = logging.getLogger("outreach.projector")

READERS_POLL_S = 0.1


def connect_for_writing(path: Path, config: dict[str, Any]) -> duckdb.DuckDBPyConnection:
    """Open ``path`` for writing with ``config``. While other processes only read it, wait for as
    long as they do, saying once which process each is, and never fail on them. Another writer (a
    second projector) is an error at once."""
    said: set[str] = set()
    while True:
        try:
            return duckdb.connect(str(path), config=config)
        except duckdb.Error as exc:
            if "lock" not in str(exc).lower():
                raise ProjectionError(f"cannot open {path} for writing: {exc}") from None
            holder = _holder(exc)
            if not _only_readers(path):
                raise ProjectionError(
                    f"cannot open {path} for writing: {holder} holds it open for writing ({exc}). One projector "
                    f"writes a file; stop the other, or give this one a file of its own (--db)"
                ) from None
            if holder not in said:
                log.warning(
                    "%s is open read-only in %s, a reader (a notebook, `outreach sql --db`, a report); waiting for "
                    "it to close the file, for as long as it takes",
                    path,
                    holder,
                )
                said.add(holder)
            time.sleep(READERS_POLL_S)


def _holder(exc: duckdb.Error) -> str:
    """The process DuckDB's lock error names: "Conflicting lock is held in <program> (PID <n>)"."""
    found = re.search(r"held in (.+?) \(PID (\d+)\)", str(exc))
    return f"process {found.group(2)} ({found.group(1)})" if found else "another process"


def _only_readers(path: Path) -> bool:
    """Whether the lock on ``path`` is only readers': a reader can open it beside them, not beside a writer."""
    try:
        duckdb.connect(str(path), read_only=True).close()
    except duckdb.Error as exc:
        return "lock" not in str(exc).lower()
    return True
