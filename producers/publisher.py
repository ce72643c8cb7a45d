"""Publishing validated events to JetStream: every one acknowledged, none ever duplicated.

``event_id`` is sent as ``Nats-Msg-Id``, so the broker drops a re-published event within its
duplicate window (and the projector drops an identical one after it). Events go out
asynchronously in windows; every acknowledgement is awaited; a timeout is retried with the same
``Nats-Msg-Id``, so a retry can never store an event twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

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

from schemas.events import EventBase
from schemas.subjects import subject_for

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


def encode(event: EventBase) -> tuple[str, bytes, dict[str, str]]:
    """Subject, payload and headers of one event."""
    return (
        subject_for(event.agency, event.event_type),
        event.model_dump_json().encode(),
        {"Nats-Msg-Id": str(event.event_id)},
    )


class Publisher:
    """An agency's publisher. ``await publisher.publish(events)`` returns a ``PublishReport``."""

    def __init__(self, js: JetStreamContext, *, window: int = 1000, ack_timeout: float = 5.0, retries: int = 3) -> None:
        self.js = js
        self.window = window
        self.ack_timeout = ack_timeout
        self.retries = retries

    async def publish(
        self,
        events: Iterable[EventBase],
        lines: Sequence[int] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> PublishReport:
        """Publish events (already validated: they are pydantic models) and await every ack;
        ``progress`` is told, after each window, how many events have been handled."""
        report = PublishReport()
        batch: list[tuple[EventBase, int | None]] = []
        for i, event in enumerate(events):
            batch.append((event, lines[i] if lines is not None else None))
            if len(batch) >= self.window:
                report.add(await self._publish_window(batch))
                batch = []
                if progress is not None:
                    progress(report.total)
        if batch:
            report.add(await self._publish_window(batch))
            if progress is not None:
                progress(report.total)
        return report

    async def _publish_window(self, batch: list[tuple[EventBase, int | None]]) -> PublishReport:
        """Send a window asynchronously and await every ack; send again, with the same
        Nats-Msg-Id and backing off, whatever was not acknowledged for a reason worth retrying."""
        report = PublishReport()
        pending = [(event, line, encode(event)) for event, line in batch]
        errors: dict[int, BaseException] = {}
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(min(0.1 * 2 ** (attempt - 1), 2.0))
            futures: list[asyncio.Future[PubAck]] = []
            for _, _, (subject, payload, headers) in pending:
                try:
                    futures.append(await self.js.publish_async(subject, payload, headers=headers))
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
        return report


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
