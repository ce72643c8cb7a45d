"""The live projector: the follower that folds the stream into the projection, and the services
that answer from it (analysts' queries, copies of the projection, agencies' receipts), on one NATS
connection, from start to a signal or to the end of what there is to apply.

The stream is read by the ``Follower`` (``consumers.live``) through the one reader every command
uses, an ordered consumer from the checkpoint; the checkpoint in DuckDB is the only position that
counts. The services speak ``runtime.protocol`` on plain nats-py subscriptions of the same
connection; FastStream does not run them (``runtime.protocol`` says why), and what it did besides,
a stop on SIGINT or SIGTERM, is ``_stop_on_signals`` here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Iterator
from typing import Any

from nats.aio.client import Client

from consumers.live import Follower
from consumers.projector import Projector, ProjectorStats
from consumers.queries import COPY_WAITERS, Services
from projections.batch_insert import use_system_memory_pool
from projections.store import ProjectionStore
from runtime.connection import connect
from runtime.protocol import Request, Serving, serve
from runtime.settings import Settings
from runtime.stream import ensure_stream
from schemas.errors import BrokerError, OutreachError, ProjectionError
from schemas.subjects import copy_subject, query_subject, status_subject

log = logging.getLogger("outreach.projector")


async def run_projector(
    settings: Settings,
    *,
    until_caught_up: bool = False,
    on_batch: Callable[[Projector], Any] | None = None,
    on_start: Callable[[Projector], Any] | None = None,
) -> ProjectorStats:
    """Run the projector until stopped (SIGINT/SIGTERM) or, with ``until_caught_up``, until it has
    applied everything the stream held when it last looked; ``on_start`` is called once, before the
    stream is read, with the projector at its checkpoint. Raises on a fatal error, after which the
    database holds exactly the batches up to its checkpoint."""
    nc = await connect(settings, "outreach-projector")
    try:
        js = nc.jetstream()
        info = await ensure_stream(
            js, settings.stream, settings.duplicate_window_s, settings.stream_replicas, change=False
        )
        use_system_memory_pool()
        # On a thread: while a reader holds the file it waits, and the connection stays answered.
        store = await asyncio.to_thread(
            ProjectionStore, settings.db, memory_limit=f"{settings.memory_limit_mb}MB", threads=settings.duckdb_threads
        )
        try:
            projector = Projector(store, settings.stream, info.created)
            if on_start is not None:
                on_start(projector)
            follower = Follower(settings, projector, js, until_caught_up=until_caught_up, on_batch=on_batch)
            services = Services(store, settings, nc.max_payload, applied=lambda: projector.last_seq)
            projector.make_room = services.make_room
            try:
                await LiveProjector(nc, settings.stream, follower, services).run()
            finally:
                services.close()
            return projector.stats
        finally:
            store.close()
    finally:
        await nc.close()


class LiveProjector:
    """The follower and the services, started and stopped in order: the services first up and
    first down, so that every request is answered or refused, and the follower stopped after
    the batch it is writing."""

    def __init__(self, nc: Client, stream: str, follower: Follower, services: Services) -> None:
        self._nc = nc
        self._stream = stream
        self._follower = follower
        self._services = services

    async def run(self) -> None:
        """Until a signal, the follower's end, or its fatal error (raised here)."""
        servings = await self._serve()
        following = asyncio.create_task(self._follower.run())
        signalled = asyncio.Event()
        waiting = asyncio.create_task(signalled.wait())
        try:
            with _stop_on_signals(signalled.set):
                await asyncio.wait({following, waiting}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            # A query still running would hold the stop up to its limit: it is interrupted, and
            # what waits is refused, each with an answer.
            await self._services.stop()
            for serving in servings:
                await serving.stop()
            self._follower.stop()  # after the batch being written
            waiting.cancel()
            failure = await _outcome(following)
        if failure is not None:
            if isinstance(failure, OutreachError):
                raise failure
            raise ProjectionError(
                f"the projector stopped at stream sequence {self._follower.projector.last_seq}: {failure}"
            ) from failure

    async def _serve(self) -> list[Serving]:
        services = self._services

        async def query(request: Request) -> None:
            services.query(request)

        async def copy(request: Request) -> None:
            await request.answer(await services.copy())

        async def status(request: Request) -> None:
            services.status(request)

        return [
            await serve(self._nc, query_subject(self._stream), query),
            # Requests that come while a copy is written wait for it side by side, and share the next.
            await serve(self._nc, copy_subject(self._stream), copy, at_once=COPY_WAITERS),
            await serve(self._nc, status_subject("*"), status),
        ]


async def _outcome(following: asyncio.Task[None]) -> BaseException | None:
    """The follower's end: None, or what stopped it."""
    try:
        await following
    except BaseException as exc:  # a cancellation too: the caller reports it
        return exc
    return None


@contextlib.contextmanager
def _stop_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    """SIGINT and SIGTERM call ``stop`` while inside, where the loop can take signals (its main
    thread); elsewhere the caller stops the projector itself."""
    loop = asyncio.get_running_loop()
    taken = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop)
            taken.append(sig)
    try:
        yield
    finally:
        for sig in taken:
            loop.remove_signal_handler(sig)


__all__ = ["BrokerError", "LiveProjector", "run_projector"]
