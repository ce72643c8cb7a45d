"""Analysts' queries stopped before they take the projector past its memory bound.

DuckDB's ``memory_limit`` bounds its buffer pool, not every value a query builds: an aggregate's
state (``string_agg``, ``list``, ``histogram``), a list function's result (``range(300000000)``,
``list_resize``), a ``printf`` width, a ``concat`` of thousands of 64 KiB columns, a string doubled
by ``||`` in a recursive CTE are allocated beside the pool, unbounded. No check of a query's text
closes that (an operator is no function a macro can shadow, and every release adds functions), so
the bound is the process's, in two parts:

- The kernel's limit of the data segment (``RLIMIT_DATA``, set by ``outreach project``: see
  ``runtime.memory``) refuses any single allocation that would pass it. A query whose value is
  built in one allocation (``len(range(300000000))``, 2.4 GB at once) fails there, before a byte
  of it is touched, as an out-of-memory error for that query alone.
- This guard reads the process's resident memory every ``INTERVAL_S`` while queries run, and
  interrupts every query running once it passes ``stop_at_mib``: values built a piece at a time
  (an aggregate's state, a recursive CTE) are stopped there, and each query is told why. The
  writer, which is never interrupted, keeps the room between that and the kernel's limit.

The data segment counts address space the process reserved and never touched (thread stacks,
allocators' arenas), so its limit is set well above what is resident; the guard is what keeps the
resident memory, the figure that matters, near ``stop_at_mib``. The limit stays where it was set:
DuckDB's allocator is told to give back the address space of what a query freed
(``runtime.memory.tune_allocators``), so no query leaves the rest of the process less room under
it than it found.
"""

from __future__ import annotations

import contextlib
import os
import resource
import threading
import time
from collections.abc import Iterator

import duckdb

INTERVAL_S = 0.01
MIB = 1024 * 1024
_PAGE = os.sysconf("SC_PAGE_SIZE")


def resident_mib() -> float:
    """This process's resident memory now, in MiB (Linux: the second field of /proc/self/statm)."""
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * _PAGE / MIB


def data_limit_mib() -> int | None:
    """The kernel's limit of this process's data segment, in MiB; None when there is none."""
    soft, _ = resource.getrlimit(resource.RLIMIT_DATA)
    return None if soft == resource.RLIM_INFINITY else soft // MIB


class Watch:
    """One query under the guard: ``stopped`` once the guard interrupted it, ``reason`` why."""

    def __init__(self) -> None:
        self._stopped = threading.Event()
        self.reason = ""

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()


class MemoryGuard:
    """Interrupts the queries it watches while the process's resident memory is past ``stop_at_mib``
    (never, when it is None), and all of them on request (``stop_all``)."""

    def __init__(self, stop_at_mib: int | None) -> None:
        self.stop_at_mib = stop_at_mib
        self._watched: dict[duckdb.DuckDBPyConnection, Watch] = {}
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def watching(self, con: duckdb.DuckDBPyConnection) -> Iterator[Watch]:
        """Watch ``con`` while the block runs a query on it."""
        watch = Watch()
        with self._changed:
            self._watched[con] = watch
            if self._thread is None and self.stop_at_mib is not None:
                self._thread = threading.Thread(target=self._run, name="outreach-memory-guard", daemon=True)
                self._thread.start()
            self._changed.notify()
        try:
            yield watch
        finally:
            with self._changed:
                self._watched.pop(con, None)

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: bool(self._watched))
            if self.stop_at_mib is not None and resident_mib() > self.stop_at_mib:
                self.stop_all(self.refusal())
            time.sleep(INTERVAL_S)

    def stop_all(self, reason: str) -> int:
        """Interrupt every query watched now, each told ``reason`` (or the reason it was first
        stopped for); return how many were not stopped before. One already stopped is interrupted
        again: an interrupt that came before DuckDB started its query is lost."""
        stopped = 0
        with self._changed:
            for con, watch in self._watched.items():
                if not watch.stopped:
                    watch.reason = reason
                    watch._stopped.set()
                    stopped += 1
                with contextlib.suppress(duckdb.Error):  # it ended, and closed, just now
                    con.interrupt()
        return stopped

    def refusal(self) -> str:
        """What a query stopped for the process's resident memory is told."""
        return (
            f"the query was stopped: the projector's memory passed {self.stop_at_mib or 0:,} MiB, the most analysts' "
            f"queries may take it to; narrow it with WHERE or LIMIT, or use `outreach export`"
        )
