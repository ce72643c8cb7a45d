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
resident memory, the figure that matters, near ``stop_at_mib``. DuckDB's allocator (jemalloc) keeps
the address space of what a query freed, for its own reuse, never for Python's: after a query that
built a value of 1 GB, the rest of the process would find no room under the limit, and the writer
would fail for want of room while nothing is resident. So once a query ends the guard keeps
``room_mib`` free for the rest of the process, raising the limit as far as ``cap_mib`` and no
further (``keep_room``): a value built in one piece is refused past the limit of the moment, and
never past ``cap_mib``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import resource
import threading
import time
from collections.abc import Iterator

import duckdb

INTERVAL_S = 0.01
log = logging.getLogger("outreach.projector")
MIB = 1024 * 1024
_PAGE = os.sysconf("SC_PAGE_SIZE")


def resident_mib() -> float:
    """This process's resident memory now, in MiB (Linux: the second field of /proc/self/statm)."""
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * _PAGE / MIB


def data_mib() -> float:
    """This process's data segment now, in MiB (Linux: VmData)."""
    with open("/proc/self/status") as status:
        found = re.search(r"^VmData:\s+(\d+) kB$", status.read(), re.MULTILINE)
    return int(found.group(1)) / 1024 if found else 0.0


def data_limit_mib() -> int | None:
    """The kernel's limit of this process's data segment, in MiB; None when there is none."""
    soft, _ = resource.getrlimit(resource.RLIMIT_DATA)
    return None if soft == resource.RLIM_INFINITY else soft // MIB


class Watch:
    """One query under the guard: ``stopped`` once the guard interrupted it."""

    def __init__(self) -> None:
        self._stopped = threading.Event()

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()


class MemoryGuard:
    """Interrupts the queries it watches while the process's resident memory is past ``stop_at_mib``."""

    def __init__(self, stop_at_mib: int, room_mib: int = 0, cap_mib: int | None = None) -> None:
        self.stop_at_mib = stop_at_mib
        self.room_mib = room_mib
        self.cap_mib = cap_mib
        self._watched: dict[duckdb.DuckDBPyConnection, Watch] = {}
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def watching(self, con: duckdb.DuckDBPyConnection) -> Iterator[Watch]:
        """Watch ``con`` while the block runs a query on it."""
        watch = Watch()
        with self._changed:
            self._watched[con] = watch
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="outreach-memory-guard", daemon=True)
                self._thread.start()
            self._changed.notify()
        try:
            yield watch
        finally:
            with self._changed:
                self._watched.pop(con, None)
            self.keep_room()

    def keep_room(self) -> None:
        """Raise the kernel's limit of the data segment so that ``room_mib`` stays free under it,
        up to ``cap_mib``: the address space DuckDB kept after a query is no room for the rest."""
        limit = data_limit_mib()
        if limit is None or self.cap_mib is None or limit >= self.cap_mib:
            return
        held = int(data_mib())
        wanted = min(self.cap_mib, held + self.room_mib)
        if limit - held < self.room_mib // 2 and wanted > limit:  # in steps, not a few MiB at a time
            _, hard = resource.getrlimit(resource.RLIMIT_DATA)
            resource.setrlimit(resource.RLIMIT_DATA, (wanted * MIB, hard))
            log.warning(
                "the projector's data segment holds %d MiB, address space DuckDB keeps for its own reuse after "
                "a query; its limit raised from %d to %d MiB (at most %d), to keep %d MiB free for the rest",
                held,
                limit,
                wanted,
                self.cap_mib,
                self.room_mib,
            )

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: bool(self._watched))
            if resident_mib() > self.stop_at_mib:
                self._stop_all()
            time.sleep(INTERVAL_S)

    def _stop_all(self) -> None:
        with self._changed:
            for con, watch in self._watched.items():
                if not watch.stopped:
                    watch._stopped.set()
                    with contextlib.suppress(duckdb.Error):  # it ended, and closed, just now
                        con.interrupt()

    def refusal(self) -> str:
        """What a query the guard stopped is told."""
        return (
            f"the query was stopped: the projector's memory passed {self.stop_at_mib:,} MiB, the most analysts' "
            f"queries may take it to; narrow it with WHERE or LIMIT, or use `outreach export`"
        )
