"""Publishing validated events to JetStream: every one acknowledged, none ever duplicated.

Each event goes on a subject of its own, ``outreach.events.<agency>.<event_type>.<event_id>``, with
``Nats-Expected-Last-Subject-Sequence: 0`` checked on ``outreach.events.<agency>.*.<event_id>``: the
stream stores it only if nothing is stored under that event_id yet, of any type, for ever, and only
the agency itself may publish there. So a retry can never store an
event twice, and no other agency can take an event_id first (an ``Nats-Msg-Id`` would be shared by
every agency, and any of them could set another's). When the stream answers that the event_id holds
a message already, the publisher reads that message back (a direct get on its own subjects, which
an agency may do) and compares: the same event is a duplicate, as a re-send should be; a different
one, or one of another type, is a conflict, reported with the way out and never stored. Events go out
asynchronously in windows; every acknowledgement is awaited; timeouts are retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import (
    ConnectionReconnectingError,
    NoRespondersError,
    OutboundBufferLimitError,
    StaleConnectionError,
)
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import APIError, NoStreamResponseError

from schemas.errors import EventInvalid
from schemas.events import EventBase
from schemas.parse import parse_event
from schemas.subjects import event_id_subjects, parse_subject, subject_for

# The stream's answer when the expected last sequence of a subject is not the one it holds.
WRONG_LAST_SEQUENCE = 10071
EXPECT_NEW_SUBJECT = "Nats-Expected-Last-Subject-Sequence"
# The subject (a wildcard) the expectation is checked on, instead of the one published on.
CHECKED_SUBJECT = "Nats-Expected-Last-Subject-Sequence-Subject"

# A broker restarting, a leader election, a connection being re-established: worth another try,
# with the same Nats-Msg-Id, so that a retry can never store an event twice.
RETRYABLE = (
    asyncio.TimeoutError,
    NatsTimeoutError,
    NoStreamResponseError,
    NoRespondersError,
    ConnectionReconnectingError,
    OutboundBufferLimitError,
    StaleConnectionError,
)


@dataclass(frozen=True)
class Failure:
    event_id: str
    reason: str
    line: int | None = None


@dataclass
class PublishReport:
    """What happened to every event handed to the publisher."""

    stored: int = 0
    duplicates: int = 0
    failed: list[Failure] = field(default_factory=list)
    first_seq: int | None = None
    last_seq: int | None = None

    @property
    def total(self) -> int:
        return self.stored + self.duplicates + len(self.failed)

    def add(self, other: PublishReport) -> None:
        self.stored += other.stored
        self.duplicates += other.duplicates
        self.failed.extend(other.failed)
        for seq in (other.first_seq, other.last_seq):
            if seq is not None:
                self.first_seq = seq if self.first_seq is None else min(self.first_seq, seq)
                self.last_seq = seq if self.last_seq is None else max(self.last_seq, seq)

    def _ack(self, ack: PubAck) -> None:
        if ack.duplicate:
            self.duplicates += 1
            return
        self.stored += 1
        self.first_seq = ack.seq if self.first_seq is None else min(self.first_seq, ack.seq)
        self.last_seq = ack.seq if self.last_seq is None else max(self.last_seq, ack.seq)


Encoded = tuple[str, bytes, dict[str, str]]  # subject, payload, headers
Item = tuple[EventBase, int | None, Encoded]  # an event, its line in a file, what is sent


def encode(event: EventBase, payload: bytes | None = None, headers: dict[str, str] | None = None) -> Encoded:
    """Subject, payload and headers of one event. ``payload`` is the event as the agency wrote it
    (validated into ``event``) and is sent unchanged: an old version stays the old version in the
    log, upcast only when folded. Without it, the model's own JSON is sent. ``headers`` (such as
    where in a file the event came from) are stored with it, beside the event's content."""
    subject = subject_for(event.agency, event.event_type, event.event_id)
    sent = {
        **(headers or {}),
        EXPECT_NEW_SUBJECT: "0",
        CHECKED_SUBJECT: event_id_subjects(event.agency, event.event_id),
    }
    return subject, payload if payload is not None else event.model_dump_json().encode(), sent


@dataclass(frozen=True)
class StoredAlready:
    """The stream holds a message on this event's subject already, at ``seq``."""

    seq: int


def _stored_already(error: BaseException) -> StoredAlready | None:
    if isinstance(error, APIError) and error.err_code == WRONG_LAST_SEQUENCE:
        words = (error.description or "").rsplit(" ", 1)
        return StoredAlready(int(words[-1]) if words[-1].isdigit() else 0)
    return None


class _Acks:
    """Publishes with a reply subject under one inbox subscription and resolves one future per
    message with the stream's acknowledgement or its error. (nats-py's ``publish_async`` loses
    error acknowledgements: its reply handler raises them instead of handing them to the future,
    which then only times out; "already stored" is such an error.)"""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.prefix = nc.new_inbox()
        self.futures: dict[str, asyncio.Future[PubAck]] = {}
        self.count = 0
        self.subscription: Any = None

    async def publish(self, subject: str, payload: bytes, headers: dict[str, str]) -> asyncio.Future[PubAck]:
        if self.subscription is None:
            self.subscription = await self.nc.subscribe(f"{self.prefix}.*", cb=self._reply)
        self.count += 1
        token = str(self.count)
        future: asyncio.Future[PubAck] = asyncio.get_running_loop().create_future()
        self.futures[token] = future
        future.add_done_callback(lambda _: self.futures.pop(token, None))
        await self.nc.publish(subject, payload, reply=f"{self.prefix}.{token}", headers=headers)
        return future

    async def _reply(self, msg: Msg) -> None:
        future = self.futures.get(msg.subject.rsplit(".", 1)[1])
        if future is None or future.done():
            return
        if msg.headers and msg.headers.get("Status") == "503":
            future.set_exception(NoStreamResponseError())
            return
        try:
            response = json.loads(msg.data)
            if "error" in response:
                APIError.from_error(response["error"])  # raises the error of its kind
            future.set_result(PubAck.from_response(response))
        except Exception as exc:  # the error, or an answer that is not an acknowledgement
            future.set_exception(exc)

    async def close(self) -> None:
        if self.subscription is not None:
            with contextlib.suppress(Exception):
                await self.subscription.unsubscribe()
            self.subscription = None


class Publisher:
    """An agency's publisher. ``await publisher.publish(events)`` returns a ``PublishReport``."""

    def __init__(
        self,
        js: JetStreamContext,
        *,
        stream: str = "OUTREACH",
        window: int = 1000,
        ack_timeout: float = 5.0,
        retries: int = 3,
    ) -> None:
        self.js = js
        self.nc: Client = js._nc  # the connection under the JetStream context: acks and direct gets
        self.stream = stream
        self.window = window
        self.ack_timeout = ack_timeout
        self.retries = retries

    async def publish(
        self,
        events: Iterable[EventBase],
        lines: Sequence[int] | None = None,
        progress: Callable[[int], None] | None = None,
        payloads: Sequence[bytes] | None = None,
        headers: Sequence[dict[str, str]] | None = None,
    ) -> PublishReport:
        """Publish events (already validated: they are pydantic models) and await every ack;
        ``payloads``, when given, are the bytes each event was validated from, sent as they are;
        ``headers``, each event's own headers to store with it; ``progress`` is told, after each
        window, how many events have been handled."""
        report = PublishReport()
        self.acks = _Acks(self.nc)
        try:
            await self._publish_all(report, events, lines, progress, payloads, headers)
        finally:
            await self.acks.close()
        return report

    async def _publish_all(
        self,
        report: PublishReport,
        events: Iterable[EventBase],
        lines: Sequence[int] | None,
        progress: Callable[[int], None] | None,
        payloads: Sequence[bytes] | None,
        headers: Sequence[dict[str, str]] | None = None,
    ) -> None:
        batch: list[Item] = []
        for i, event in enumerate(events):
            encoded = encode(
                event, payloads[i] if payloads is not None else None, headers[i] if headers is not None else None
            )
            batch.append((event, lines[i] if lines is not None else None, encoded))
            if len(batch) >= self.window:
                report.add(await self._publish_window(batch))
                batch = []
                if progress is not None:
                    progress(report.total)
        if batch:
            report.add(await self._publish_window(batch))
            if progress is not None:
                progress(report.total)

    async def _publish_window(self, batch: list[Item]) -> PublishReport:
        """Send a window asynchronously and await every ack; send again, backing off, whatever
        was not acknowledged for a reason worth retrying (the subject makes a retry harmless)."""
        report = PublishReport()
        pending = list(batch)
        errors: dict[int, BaseException] = {}
        resent: list[tuple[Item, StoredAlready]] = []
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(min(0.1 * 2 ** (attempt - 1), 2.0))
            futures: list[asyncio.Future[PubAck]] = []
            for _, _, (subject, payload, headers) in pending:
                try:
                    futures.append(await self.acks.publish(subject, payload, headers))
                except RETRYABLE as exc:  # not even sent: the connection is being re-established
                    futures.append(_failed(exc))
            # One timeout for the whole window: a timer per event would cost more than the publish.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), self.ack_timeout)
            again = []
            for item, future in zip(pending, futures, strict=True):
                error = TimeoutError() if future.cancelled() else future.exception()
                if error is None:
                    report._ack(future.result())
                elif (already := _stored_already(error)) is not None:
                    resent.append((item, already))
                elif isinstance(error, RETRYABLE):
                    errors[id(item)] = error
                    again.append(item)
                else:
                    report.failed.append(Failure(str(item[0].event_id), _reason(error), item[1]))
            pending = again
            if not pending:
                break
        for item in pending:
            report.failed.append(Failure(str(item[0].event_id), _reason(errors[id(item)], self.retries), item[1]))
        if resent:
            verdicts = await asyncio.gather(*(self._compare(item, already) for item, already in resent))
            for (item, _), problem in zip(resent, verdicts, strict=True):
                if problem is None:
                    report.duplicates += 1
                else:
                    report.failed.append(Failure(str(item[0].event_id), problem, item[1]))
        return report

    async def _compare(self, item: Item, already: StoredAlready) -> str | None:
        """None when the message stored under the event's event_id states the same event (a re-send);
        else why it is a conflict, or why it could not be compared."""
        event, _, (_, payload, headers) = item
        try:
            stored = await self.nc.request(
                f"$JS.API.DIRECT.GET.{self.stream}.{headers[CHECKED_SUBJECT]}", b"", timeout=self.ack_timeout
            )
        except Exception as exc:  # no responder, a timeout, a permission
            return (
                f"the stream already holds a message for event_id {event.event_id} (stream sequence {already.seq}) "
                f"and it could not be read back to compare ({type(exc).__name__}); if it is a changed event, "
                f"publish an event_corrected"
            )
        seq = (stored.headers or {}).get("Nats-Sequence", str(already.seq))
        where = parse_subject((stored.headers or {}).get("Nats-Subject", ""))
        if where is not None and where[1] != event.event_type:
            return (
                f"conflict: event_id {event.event_id} is already stored as a {where[1]} (stream sequence {seq}), "
                f"and this is a {event.event_type}; an event_id names one event for ever: give this one an "
                f"event_id of its own (and publish an event_retracted of {event.event_id} if that {where[1]} "
                f"was wrong)"
            )
        if stored.data == payload or _same(stored.data, event):
            return None
        return (
            f"conflict: event_id {event.event_id} is already stored (stream sequence {seq}) with different "
            f"content; an event is never changed: publish an event_corrected that corrects {event.event_id} "
            f"with the new figures"
        )


def _same(data: bytes, event: EventBase) -> bool:
    """Whether a stored payload states ``event``. When it was recorded is not what it states: a
    workbook row whose ``recorded_at`` is empty is recorded when it is published, each time."""
    try:
        stored = parse_event(data)
    except EventInvalid:
        return False
    return stored == event or stored == event.model_copy(update={"recorded_at": stored.recorded_at})


def _failed(exc: BaseException) -> asyncio.Future[PubAck]:
    future: asyncio.Future[PubAck] = asyncio.get_running_loop().create_future()
    future.set_exception(exc)
    return future


def _reason(error: BaseException, retries: int | None = None) -> str:
    if isinstance(error, NoStreamResponseError):
        return (
            f"no stream acknowledged it after {retries} retries: has the admin created the stream "
            f"(`outreach stream`)? ({type(error).__name__})"
        )
    if isinstance(error, RETRYABLE):
        return f"no acknowledgement from JetStream after {retries} retries ({type(error).__name__})"
    if isinstance(error, APIError):
        return f"refused by JetStream: {error.description or error}"
    text = str(error) or type(error).__name__
    if "permissions violation" in text.lower():
        return f"refused by NATS: {text}; this account may not publish on that subject"
    return text
