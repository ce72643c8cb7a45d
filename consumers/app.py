"""The live projector as a FastStream application.

FastStream runs the lifecycle (signals, start, stop) and the request-reply services: analysts'
queries, a copy of the projection for reading commands, and agencies' receipts. The stream itself
is read by the ``Follower`` (``consumers.live``) through the one reader every command uses, an
ordered consumer from the checkpoint; the checkpoint in DuckDB is the only position that counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from faststream import Context, FastStream
from faststream.nats import NatsBroker
from faststream.nats.message import NatsMessage
from faststream.nats.security import NatsUserPassword

from consumers.live import Follower
from consumers.projector import Projector, ProjectorStats
from consumers.queries import COPY_WAITERS, Services, asker, may_answer
from projections.store import ProjectionStore
from runtime.connection import connect, connect_options
from runtime.settings import Settings
from runtime.stream import ensure_stream
from schemas.errors import BrokerError, OutreachError, ProjectionError
from schemas.subjects import copy_subject, query_subject, status_subject

log = logging.getLogger("outreach.projector")


async def raw_payloads(message: Any) -> None:  # noqa: ARG001
    """FastStream would decode every payload as JSON before the handler runs: wasted work, and a
    malicious payload (JSON nested thousands deep) would fail the whole batch there. The projector
    validates the raw bytes itself, so nothing is decoded here."""
    return None


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
            try:
                await _serve(settings, follower, services)
            finally:
                services.close()
            return projector.stats
        finally:
            store.close()
    finally:
        await nc.close()


async def _serve(settings: Settings, follower: Follower, services: Services) -> None:
    """FastStream runs the application's lifecycle (signals, start, stop) and the request-reply
    services beside the follower, which reads the stream itself (``consumers.reader``)."""
    options = connect_options(settings, "outreach-projector-services")
    user, password = options.pop("user", None), options.pop("password", None)
    if user is not None:  # FastStream takes a user and password as a security object
        options["security"] = NatsUserPassword(user, password or "")
    broker = NatsBroker(**options, logger=log, log_level=logging.DEBUG)
    app = FastStream(broker, logger=log)
    outcome: list[BaseException] = []

    # A handler only queues the request: the services share their slots between askers in turn.
    @broker.subscriber(query_subject(settings.stream), decoder=raw_payloads, no_reply=True)
    async def answer(body: Any, message: NatsMessage = Context("message")) -> None:  # noqa: ARG001
        """Analysts' read-only queries, answered from the projection while it is being written."""
        raw = message.raw_message
        if may_answer(raw.reply):
            services.query(asker(raw.reply, raw.headers), raw.data, raw.respond)

    # Requests that come while a copy is written wait for it side by side, and share the next.
    @broker.subscriber(copy_subject(settings.stream), decoder=raw_payloads, no_reply=True, max_workers=COPY_WAITERS)
    async def copy(body: Any, message: NatsMessage = Context("message")) -> None:  # noqa: ARG001
        """A whole copy of the projection beside it, for a reading command that needs more than the
        snapshot (an export of any view, a report of any size, verify's comparison of every table)."""
        raw = message.raw_message
        if may_answer(raw.reply):
            await raw.respond(await services.copy())

    @broker.subscriber(status_subject("*"), decoder=raw_payloads, no_reply=True)
    async def status(body: Any, message: NatsMessage = Context("message")) -> None:  # noqa: ARG001
        """An agency's receipts: the agency is the subject's last token, which the broker lets only
        that agency (its account) reach."""
        raw = message.raw_message
        if not may_answer(raw.reply):
            return
        services.status(raw.subject.rsplit(".", 1)[1], raw.data, raw.respond)

    async def follow() -> None:
        try:
            await follower.run()
        except BaseException as exc:
            outcome.append(exc)
        finally:
            app.exit()

    task: list[asyncio.Task[None]] = []

    @app.on_shutdown
    async def stop_queries() -> None:
        """Before the services stop: a query still running would hold their stop up to its limit;
        it is interrupted, and what waits is refused, each with an answer."""
        await services.stop()

    @app.after_startup
    async def start_following() -> None:
        task.append(asyncio.create_task(follow()))

    try:
        await app.run(sleep_time=0.05)
    except BaseException:
        with contextlib.suppress(Exception):  # a start that failed leaves the broker's connection open
            await broker.stop()
        raise
    finally:
        follower.stop()  # after the batch being written; a signal stops here too
        if task:
            await task[0]
    if outcome:
        exc = outcome[0]
        if isinstance(exc, OutreachError):
            raise exc
        raise ProjectionError(f"the projector stopped at stream sequence {follower.projector.last_seq}: {exc}") from exc


__all__ = ["BrokerError", "run_projector"]
