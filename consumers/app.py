"""The live projector as a FastStream application.

FastStream runs the pull subscription (``PullSub(batch=True)``) and hands each batch of raw NATS
messages to the ``Projector``. The consumer is ephemeral, starts right after the checkpoint, and
acknowledges nothing (ack policy none): the checkpoint in DuckDB is the only position that counts.

nats-py is used directly where FastStream has nothing to offer: creating and checking the stream
(``runtime.stream``) and reading the stream's last sequence to know when we are caught up.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import duckdb
from faststream import AckPolicy, Context, FastStream
from faststream.nats import JStream, NatsBroker, PullSub
from faststream.nats.message import NatsBatchMessage, NatsMessage
from faststream.nats.security import NatsUserPassword
from nats.errors import ConnectionClosedError, NoRespondersError
from nats.js.api import AckPolicy as ConsumerAckPolicy
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError, ServiceUnavailableError

from consumers.fold import StreamMessage, from_reply, gaps
from consumers.projector import Projector, ProjectorStats
from consumers.replay import tune_gc
from projections.query import execute_read_only
from projections.snapshot import snapshot_path, write_snapshot
from projections.status import agency_status
from projections.store import ProjectionStore
from runtime.connection import connect, connect_options
from runtime.settings import Settings
from runtime.stream import ensure_stream
from schemas.errors import BrokerError, OutreachError, ProjectionError
from schemas.subjects import ALL_EVENTS, query_subject, status_subject

log = logging.getLogger("outreach.projector")


STALL_SECONDS = 10.0
# The collector's young-generation threshold is raised for speed (``tune_gc``), so garbage cycles
# (a timed-out fetch leaves some every 0.1 s) that outlive a young collection would wait for a
# rare full one: an idle projector grew by ~37 KiB/s. A full collection this often keeps it flat.
FULL_GC_SECONDS = 10.0


class MissedDelivery(ProjectionError):
    """A message the stream holds was not delivered: read again from the checkpoint."""


# The broker did not answer in time, or has no JetStream leader for a moment (it restarts, a
# cluster elects a new leader): nothing was applied, so start again from the checkpoint.
BROKER_UNAVAILABLE = (TimeoutError, NoRespondersError, ServiceUnavailableError, ConnectionClosedError)
RETRY_SECONDS = 1.0


async def check_gaps(js: Any, stream: str, last_seq: int, msgs: list[StreamMessage]) -> None:
    """A sequence missing from a batch was either deleted from the stream (a gap the projection
    records and verify reports) or not delivered: then nothing of the batch is applied and the
    consumer is started again from the checkpoint, rather than skip it."""
    for first, _ in gaps(last_seq, msgs):
        try:
            await js.get_msg(stream, first)
        except NotFoundError:
            continue
        raise MissedDelivery(f"stream sequence {first} exists but was not delivered (checkpoint {last_seq})")


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
    nc = await connect(settings, "outreach-projector-control")
    try:
        js = nc.jetstream()
        info = await ensure_stream(js, settings.stream, settings.duplicate_window_s, settings.stream_replicas)
        store = ProjectionStore(settings.db)
        try:
            projector = Projector(store, settings.stream, info.created)
            while True:
                try:
                    return await _run(settings, projector, js, until_caught_up, on_batch)
                except MissedDelivery as exc:
                    # A pull that timed out can lose what it had fetched (nothing is acknowledged):
                    # the checkpoint did not move, so a new consumer from it reads them again.
                    log.warning("%s; reading again from the checkpoint", exc)
                except BROKER_UNAVAILABLE as exc:
                    log.warning(
                        "NATS did not answer while the consumer was created (%s); trying again in %.0f s",
                        type(exc).__name__,
                        RETRY_SECONDS,
                    )
                    await asyncio.sleep(RETRY_SECONDS)
        finally:
            store.close()
    finally:
        await nc.close()


async def _run(
    settings: Settings,
    projector: Projector,
    js: Any,
    until_caught_up: bool,
    on_batch: Callable[[Projector], Any] | None,
) -> ProjectorStats:
    async def caught_up() -> bool:
        info = await js.stream_info(settings.stream)
        return projector.last_seq >= info.state.last_seq

    stream_end = (await js.stream_info(settings.stream)).state.last_seq
    projector.check_stream_end(stream_end)
    if until_caught_up and projector.last_seq >= stream_end:
        return projector.stats

    options = connect_options(settings, "outreach-projector")
    user, password = options.pop("user", None), options.pop("password", None)
    if user is not None:  # FastStream takes a user and password as a security object
        options["security"] = NatsUserPassword(user, password or "")
    broker = NatsBroker(**options, logger=log, log_level=logging.DEBUG)
    app = FastStream(broker, logger=log)
    failures: list[BaseException] = []

    @broker.subscriber(
        ALL_EVENTS,
        stream=JStream(settings.stream, declare=False),
        config=ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=projector.last_seq + 1,
            ack_policy=ConsumerAckPolicy.NONE,
            inactive_threshold=60.0,
        ),
        pull_sub=PullSub(batch_size=settings.batch_size, timeout=0.1, batch=True),
        ack_policy=AckPolicy.MANUAL,
        decoder=raw_payloads,
        # nats-py's pull subscription takes its own inbox prefix, not the connection's.
        inbox_prefix=f"{settings.nats_inbox_prefix or '_INBOX'}.".encode(),
    )
    async def project(body: Any, message: NatsBatchMessage = Context("message")) -> None:  # noqa: ARG001
        if failures:
            return  # stopping: apply nothing after a failed batch
        raw = message.raw_message
        try:
            msgs = [from_reply(m.subject, m.data, m.reply, m.headers) for m in raw]
            await check_gaps(js, settings.stream, projector.last_seq, msgs)
            projector.apply(msgs)
        except BROKER_UNAVAILABLE as exc:  # checking a gap, or whether caught up: nothing applied
            failures.append(MissedDelivery(f"NATS did not answer ({type(exc).__name__})"))
            app.exit()
            return
        except Exception as exc:
            failures.append(exc)
            app.exit()
            return
        log.info("applied stream sequences up to %d (batch of %d)", projector.last_seq, len(raw))
        await refresh_snapshot()
        if on_batch is not None:
            on_batch(projector)
        if until_caught_up and raw[-1].metadata.num_pending == 0 and await caught_up():
            app.exit()

    @broker.subscriber(query_subject(settings.stream), decoder=raw_payloads, no_reply=True)
    async def answer(body: Any, message: NatsMessage = Context("message")) -> None:  # noqa: ARG001
        """Analysts' read-only queries, answered from the projection while it is being written."""
        raw = message.raw_message
        if not may_answer(raw.reply):
            return
        # The cursor is made here, in the loop's thread, never while that thread uses the connection.
        await raw.respond(await asyncio.to_thread(answer_query, projector.store.con.cursor(), message.body))

    @broker.subscriber(status_subject("*"), decoder=raw_payloads, no_reply=True)
    async def status(body: Any, message: NatsMessage = Context("message")) -> None:  # noqa: ARG001
        """An agency's receipts: the agency is the subject's last token, which the broker lets only
        that agency (its account) reach."""
        raw = message.raw_message
        if not may_answer(raw.reply):
            return
        agency = raw.subject.rsplit(".", 1)[1]
        await raw.respond(await asyncio.to_thread(answer_status, projector.store.con.cursor(), agency, raw.data))

    # When the snapshot was last written, and as of which sequence: none is written before
    # something has been applied (an empty snapshot would say nothing).
    last_snapshot = [time.monotonic() - settings.snapshot_interval_s, float(projector.last_seq)]
    snapshot_lock = asyncio.Lock()

    def snapshot(cursor: duckdb.DuckDBPyConnection) -> None:
        """The snapshot is a copy for convenience: failing to write it (a full disk) is reported and
        the previous one stays; the projection itself goes on, or stops on its own write."""
        try:
            write_snapshot(cursor, settings.db)
        except (duckdb.Error, OSError) as exc:
            log.warning("the snapshot %s was not refreshed: %s", snapshot_path(settings.db), exc)

    async def refresh_snapshot() -> None:
        """At most every snapshot_interval_s, and only when something new was applied."""
        due = time.monotonic() - last_snapshot[0] >= settings.snapshot_interval_s
        if settings.snapshot_interval_s and due and projector.last_seq != last_snapshot[1]:
            last_snapshot[:] = [time.monotonic(), projector.last_seq]
            async with snapshot_lock:  # one writer of the snapshot file at a time
                await asyncio.to_thread(snapshot, projector.store.con.cursor())

    async def watchdog() -> None:
        """FastStream's pull loop can stall after the broker restarts: if messages wait and none
        has been applied for a while, start a new consumer from the checkpoint."""
        seen = (projector.last_seq, time.monotonic())
        collected = time.monotonic()
        while not failures and not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), 0.5)
            if time.monotonic() - collected >= FULL_GC_SECONDS:
                gc.collect()
                collected = time.monotonic()
            await refresh_snapshot()  # the last batch before a quiet spell is in the snapshot too
            if projector.last_seq != seen[0]:
                seen = (projector.last_seq, time.monotonic())
                continue
            if time.monotonic() - seen[1] < STALL_SECONDS:
                continue
            try:
                last_seq = (await js.stream_info(settings.stream)).state.last_seq
                projector.check_stream_end(last_seq)
            except ProjectionError as exc:  # the server came back with fewer messages than applied
                failures.append(exc)
                app.exit()
                return
            except Exception:
                continue
            waiting = last_seq - projector.last_seq
            if waiting > 0:
                failures.append(MissedDelivery(f"{waiting} message(s) wait but none arrived for {STALL_SECONDS}s"))
                app.exit()
                return
            seen = (projector.last_seq, time.monotonic())

    stopping = asyncio.Event()
    guard = asyncio.create_task(watchdog())
    try:
        await app.run(sleep_time=0.05)
    except BaseException:
        with contextlib.suppress(Exception):  # a start that failed leaves the broker's connection open
            await broker.stop()
        raise
    finally:
        stopping.set()  # and wait for it: a snapshot it is writing must finish first
        await guard
    if settings.snapshot_interval_s and not failures and projector.stats.batches:
        async with snapshot_lock:  # after any write the watchdog had under way
            snapshot(projector.store.con.cursor())
    if failures:
        exc = failures[0]
        if isinstance(exc, OutreachError):
            raise exc
        raise ProjectionError(f"the projector stopped at stream sequence {projector.last_seq}: {exc}") from exc
    return projector.stats


__all__ = ["BrokerError", "run_projector"]
