"""The live projector as a FastStream application.

FastStream runs the lifecycle (signals, start, stop) and the request-reply services: analysts'
queries and agencies' receipts. The stream itself is read by the ``Follower`` (``consumers.live``)
through the one reader every command uses, an ordered consumer from the checkpoint; the checkpoint
in DuckDB is the only position that counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

import duckdb
from faststream import Context, FastStream
from faststream.nats import NatsBroker
from faststream.nats.message import NatsMessage
from faststream.nats.security import NatsUserPassword

from consumers.live import Follower
from consumers.projector import Projector, ProjectorStats
from consumers.replay import tune_gc
from projections.query import execute_read_only
from projections.status import agency_status
from projections.store import ProjectionStore
from runtime.connection import connect, connect_options
from runtime.settings import Settings
from runtime.stream import ensure_stream
from schemas.errors import BrokerError, OutreachError, ProjectionError
from schemas.subjects import query_subject, status_subject

log = logging.getLogger("outreach.projector")


def answer_query(cursor: duckdb.DuckDBPyConnection, request: bytes) -> bytes:
    """One query on a cursor of the projector's own connection (external access is disabled on
    it); the reply is JSON: columns, rows and as of which stream sequence, or an error."""
    try:
        result = execute_read_only(cursor, request.decode("utf-8", "replace"))
    except OutreachError as exc:
        return json.dumps({"error": str(exc)}).encode()
    finally:
        cursor.close()
    return json.dumps(
        {
            "columns": result.columns,
            "rows": result.rows,
            "as_of_seq": result.as_of_seq,
            "as_of_stored_at": result.as_of_stored_at,
        },
        default=str,
        ensure_ascii=False,
    ).encode()


# Replies go only to inboxes: a client's own (_INBOX…) or, across accounts, the private subject a
# service import maps the asker's reply to (_R_.…). Any other reply subject could name a subject
# that a stream stores; such a request is refused and logged.
REPLY_PREFIXES = ("_INBOX", "_R_.")


def may_answer(reply: str | None) -> bool:
    if reply and reply.startswith(REPLY_PREFIXES):
        return True
    log.warning("refused a request whose reply subject %r is not an inbox", (reply or "")[:200])
    return False


def answer_status(cursor: duckdb.DuckDBPyConnection, agency: str, request: bytes) -> bytes:
    """One agency's receipts on a cursor of the projector's own connection, as JSON."""
    try:
        return agency_status(cursor, agency, request).model_dump_json().encode()
    finally:
        cursor.close()


async def raw_payloads(message: Any) -> None:  # noqa: ARG001
    """FastStream would decode every payload as JSON before the handler runs: wasted work, and a
    malicious payload (JSON nested thousands deep) would fail the whole batch there. The projector
    validates the raw bytes itself, so nothing is decoded here."""
    return None


async def run_projector(
    settings: Settings, *, until_caught_up: bool = False, on_batch: Callable[[Projector], Any] | None = None
) -> ProjectorStats:
    """Run the projector until stopped (SIGINT/SIGTERM) or, with ``until_caught_up``, until it has
    applied everything the stream held when it last looked. Raises on a fatal error, after which
    the database holds exactly the batches up to its checkpoint."""
    tune_gc()
    nc = await connect(settings, "outreach-projector")
    try:
        js = nc.jetstream()
        info = await ensure_stream(js, settings.stream, settings.duplicate_window_s, settings.stream_replicas)
        store = ProjectionStore(settings.db)
        try:
            projector = Projector(store, settings.stream, info.created)
            follower = Follower(settings, projector, js, until_caught_up=until_caught_up, on_batch=on_batch)
            await _serve(settings, projector, follower)
            return projector.stats
        finally:
            store.close()
    finally:
        await nc.close()


async def _serve(settings: Settings, projector: Projector, follower: Follower) -> None:
    """FastStream runs the application's lifecycle (signals, start, stop) and the request-reply
    services beside the follower, which reads the stream itself (``consumers.reader``)."""
    options = connect_options(settings, "outreach-projector-services")
    user, password = options.pop("user", None), options.pop("password", None)
    if user is not None:  # FastStream takes a user and password as a security object
        options["security"] = NatsUserPassword(user, password or "")
    broker = NatsBroker(**options, logger=log, log_level=logging.DEBUG)
    app = FastStream(broker, logger=log)
    outcome: list[BaseException] = []

    @broker.subscriber(query_subject(settings.stream), decoder=raw_payloads, no_reply=True)
    async def answer(body: Any, message: NatsMessage = Context("message")) -> None:  # noqa: ARG001
        """Analysts' read-only queries, answered from the projection while it is being written."""
        raw = message.raw_message
        if not may_answer(raw.reply):
            return
        # The cursor is made here, in the loop's thread; the writer has a connection of its own.
        await raw.respond(await asyncio.to_thread(answer_query, projector.store.reader(), message.body))

    @broker.subscriber(status_subject("*"), decoder=raw_payloads, no_reply=True)
    async def status(body: Any, message: NatsMessage = Context("message")) -> None:  # noqa: ARG001
        """An agency's receipts: the agency is the subject's last token, which the broker lets only
        that agency (its account) reach."""
        raw = message.raw_message
        if not may_answer(raw.reply):
            return
        agency = raw.subject.rsplit(".", 1)[1]
        await raw.respond(await asyncio.to_thread(answer_status, projector.store.reader(), agency, raw.data))

    async def follow() -> None:
        try:
            await follower.run()
        except BaseException as exc:
            outcome.append(exc)
        finally:
            app.exit()

    task: list[asyncio.Task[None]] = []

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
        raise ProjectionError(f"the projector stopped at stream sequence {projector.last_seq}: {exc}") from exc


__all__ = ["BrokerError", "run_projector"]
