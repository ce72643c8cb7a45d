"""The projector's request-reply services: analysts' queries, a copy of the projection for reading
commands that need more than its snapshot, and agencies' receipts.

Each request runs on a cursor of its own (never the writer's), in a read-only transaction, on a
thread of the services' own pool, so a slow query holds up neither another query nor the projector,
whose batches are written on threads of their own. A query past its time limit is interrupted
inside DuckDB; an answer too large for one reply is refused. Queries and status requests are shared
fairly between askers (``consumers.fair``): an asker runs at most half the query slots at once, and
the askers waiting are served in turn; past the slots, a query waits a moment and is then refused.
Every refusal is answered to the asker and logged.

Who asked is what the broker says, never what the asker says: an agency's status request names it
in its subject, which the broker lets only that agency reach; an analyst's query, on a server set
up by ``outreach auth``, comes through the ANALYSTS account's service import, which shares the
asker's account and user with the projector in the ``Nats-Request-Info`` header (see
``runtime.protocol.asker``). A query without it (an open server, where anyone may claim any name,
or a user of the stream's own account) is an asker of its own. What travels, and how it is
encoded, is ``runtime.protocol``'s.

A copy is written once for every request that it can answer: one at a time, and a request is
answered with the last copy written when that copy began after the request came, or when nothing
was applied since it was written (and its file is as it was left).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import duckdb

from consumers.fair import FairShare
from projections.copy import write_copy
from projections.memory_guard import MemoryGuard, data_limit_mib
from projections.query import QueryLimits, execute_read_only
from projections.status import agency_status
from projections.store import ProjectionStore
from runtime.memory import resident_bound_mib
from runtime.protocol import (
    REPLY_ROOM,
    CopyAnswer,
    QueryAnswer,
    Request,
    decode_query,
    decode_status_request,
    encode_answer,
    encode_copy,
    encode_status,
    refusal,
)
from runtime.settings import Settings
from schemas.errors import OutreachError, QueryRefused
from schemas.receipts import StatusReply

log = logging.getLogger("outreach.projector")

SLOT_WAIT_S = 2.0  # how long a query waits for a slot before it is refused
STATUS_WAITING = 16  # an agency's status requests waiting at once; more are refused
COPY_WAITERS = 8  # requests for a copy handled at once: one writes, the others wait to share the next


@dataclass(frozen=True)
class WrittenCopy:
    began: float  # time.monotonic() as its read transaction was about to begin
    path: Path
    as_of_seq: int | None
    file: tuple[int, int, int] | None  # inode, size and modification time, once renamed in place


def _file_of(path: Path) -> tuple[int, int, int] | None:
    try:
        found = path.stat()
    except OSError:
        return None
    return (found.st_ino, found.st_size, found.st_mtime_ns)


# What a query stopped for the writer's sake is told.
WRITER_FIRST = (
    "the query was stopped: the projector ran out of memory writing a batch of events, and its writes come "
    "first; ask again in a moment, or narrow it with WHERE or LIMIT"
)


class Services:
    """Queries and receipts, answered concurrently from the projection being written."""

    def __init__(
        self,
        store: ProjectionStore,
        settings: Settings,
        max_payload: int,
        applied: Callable[[], int] | None = None,
    ) -> None:
        self.store = store
        self.applied = applied  # the last stream sequence the projector committed
        self.slots = settings.query_slots
        self.max_bytes = max(max_payload - REPLY_ROOM, 1024)
        # Where the process is bounded (`outreach project`), queries are stopped short of the bound;
        # anywhere, all of them when the writer runs out of memory (``make_room``).
        bounded = data_limit_mib() is not None
        self.guard = MemoryGuard(resident_bound_mib(settings.memory_limit_mb) if bounded else None)
        self.limits = QueryLimits(
            seconds=settings.query_timeout_s, max_rows=settings.query_max_rows, max_bytes=self.max_bytes
        )
        # A thread per slot, and one for receipts, which a crowd of queries must not hold up.
        self.queries = ThreadPoolExecutor(self.slots, thread_name_prefix="outreach-query")
        self.receipts = ThreadPoolExecutor(1, thread_name_prefix="outreach-status")
        # Half the slots at most for one asker: the others always find one free.
        self.shared_queries = FairShare(self.slots, max(1, self.slots // 2), self.slots * 4, SLOT_WAIT_S, "queries")
        self.shared_status = FairShare(1, 1, STATUS_WAITING, None, "status requests")
        self.copying = asyncio.Lock()  # one copy written at a time
        self.last_copy: WrittenCopy | None = None
        self.memory_limit = f"{settings.memory_limit_mb}MB"
        self.running: set[duckdb.DuckDBPyConnection] = set()
        self.lock = threading.Lock()
        self.stopping = False

    def query(self, request: Request) -> None:
        """Queue an analyst's query; it is answered, or refused, when there is an answer."""

        async def run() -> None:
            await request.answer(await self._query(request.data))

        async def refuse(reason: str) -> None:
            log.warning("refused a query from %s: %s", request.asker, reason)
            await request.answer(refusal(reason))

        self.shared_queries.submit(request.asker, run, refuse)

    async def _query(self, request: bytes) -> bytes:
        sql = decode_query(request)
        cursor = self.store.reader()  # made here, in the loop's thread
        with self.lock:
            self.running.add(cursor)
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self.queries, self._answer, cursor, sql)
        finally:
            with self.lock:
                self.running.discard(cursor)

    def _answer(self, cursor: duckdb.DuckDBPyConnection, sql: str) -> bytes:
        try:
            result = execute_read_only(cursor, sql, limits=self.limits, guard=self.guard)
            answer = QueryAnswer(result.columns, result.rows, result.as_of_seq, result.as_of_stored_at)
            return encode_answer(answer, self.max_bytes)
        except QueryRefused as exc:
            if self.stopping:
                return refusal("the projector is stopping, and stopped the query; ask again once it is back")
            log.warning("refused a query (%s): %.200r", exc, sql)
            return refusal(str(exc))
        except OutreachError as exc:
            return refusal(str(exc), refused=False)
        finally:
            cursor.close()

    async def copy(self) -> bytes:
        """Write a whole copy of the projection beside it, unless the last one written answers
        this request too; answer with its path and as-of."""
        asked = time.monotonic()
        async with self.copying:
            last = self.last_copy
            if last is not None and self._answers(last, asked):
                log.info(
                    "answered with the copy as of stream sequence %s already written to %s", last.as_of_seq, last.path
                )
                return encode_copy(CopyAnswer(last.path, last.as_of_seq))
            if self.stopping:  # a copy begun now would hold the stop up for as long as it takes
                return refusal("the projector is stopping; ask again once it is back")
            cursor = self.store.reader()  # made here, in the loop's thread
            with self.lock:
                self.running.add(cursor)  # a stop interrupts it, as it does queries
            loop = asyncio.get_running_loop()
            began = time.monotonic()
            try:
                path, as_of_seq = await loop.run_in_executor(
                    self.queries, write_copy, cursor, self.store.path, self.memory_limit
                )
            except (duckdb.Error, OSError) as exc:
                log.warning("could not write a copy of the projection: %s", exc)
                return refusal(f"the projector could not write a copy of {self.store.path}: {exc}", refused=False)
            finally:
                with self.lock:
                    self.running.discard(cursor)
            self.last_copy = WrittenCopy(began, path, as_of_seq, _file_of(path))
        log.info("wrote a copy of the projection as of stream sequence %s to %s", as_of_seq, path)
        return encode_copy(CopyAnswer(path, as_of_seq))

    def _answers(self, last: WrittenCopy, asked: float) -> bool:
        """Whether ``last`` holds everything committed when the request came: it began after,
        or nothing was applied since. Its file must be the one written, untouched."""
        if last.file is None or _file_of(last.path) != last.file:
            return False
        return last.began >= asked or (self.applied is not None and last.as_of_seq == self.applied())

    def status(self, request: Request) -> None:
        """Queue an agency's status request; the agency is the subject's last token, which the
        broker lets only that agency reach. Agencies waiting are answered in turn, one at a time."""
        agency = request.subject.rsplit(".", 1)[1]

        async def run() -> None:
            cursor = self.store.reader()
            loop = asyncio.get_running_loop()
            answer = await loop.run_in_executor(self.receipts, self._status, cursor, agency, request.data)
            await request.answer(answer)

        async def refuse(reason: str) -> None:
            log.warning("refused a status request of %s: %s", agency, reason)
            await request.answer(encode_status(StatusReply(agency=agency, error=reason)))

        self.shared_status.submit(agency, run, refuse)

    @staticmethod
    def _status(cursor: duckdb.DuckDBPyConnection, agency: str, data: bytes) -> bytes:
        try:
            wanted = decode_status_request(data)
            if isinstance(wanted, str):
                return encode_status(StatusReply(agency=agency, error=wanted))
            return encode_status(agency_status(cursor, agency, wanted))
        finally:
            cursor.close()

    def make_room(self) -> int:
        """The writer ran out of memory: every analyst's query running is stopped, and told so, for
        the projection's own writes come first. Returns how many."""
        return self.guard.stop_all(WRITER_FIRST)

    def interrupt(self) -> None:
        """At a stop: the queries still running are interrupted in DuckDB, and told why."""
        self.stopping = True
        with self.lock:
            for cursor in self.running:
                with contextlib.suppress(duckdb.ConnectionException):  # it ended, and closed, just now
                    cursor.interrupt()

    async def stop(self) -> None:
        """At a stop: what waits is refused, what runs is interrupted, and both are answered."""
        self.interrupt()
        await self.shared_queries.close()
        await self.shared_status.close()

    def close(self) -> None:
        self.interrupt()
        self.queries.shutdown(wait=True, cancel_futures=True)
        self.receipts.shutdown(wait=True, cancel_futures=True)


__all__ = ["COPY_WAITERS", "Services"]
