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

from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import APIError, NoStreamResponseError

from schemas.events import EventBase
from schemas.subjects import subject_for

RETRYABLE = (asyncio.TimeoutError, NatsTimeoutError, NoStreamResponseError)


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
        report = PublishReport()
        encoded = [encode(event) for event, _ in batch]
        futures = []
        for subject, payload, headers in encoded:
            futures.append(await self.js.publish_async(subject, payload, headers=headers))
        # One timeout for the whole window: a timer per event would cost more than the publish.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), self.ack_timeout)
        for (event, line), (subject, payload, headers), future in zip(batch, encoded, futures, strict=True):
            if future.cancelled():
                await self._retry(event, line, subject, payload, headers, report, TimeoutError())
            elif (error := future.exception()) is None:
                report._ack(future.result())
            elif isinstance(error, RETRYABLE):
                await self._retry(event, line, subject, payload, headers, report, error)
            else:
                report.failed.append(Failure(str(event.event_id), _reason(error), line))
        return report

    async def _retry(
        self,
        event: EventBase,
        line: int | None,
        subject: str,
        payload: bytes,
        headers: dict[str, str],
        report: PublishReport,
        error: BaseException,
    ) -> None:
        """Retry one event with the same Nats-Msg-Id, backing off; record why it finally failed."""
        for attempt in range(self.retries):
            await asyncio.sleep(min(0.1 * 2**attempt, 2.0))
            try:
                ack = await self.js.publish(subject, payload, timeout=self.ack_timeout, headers=headers)
            except RETRYABLE as exc:
                error = exc
                continue
            except Exception as exc:
                error = exc
                break
            report._ack(ack)
            return
        report.failed.append(Failure(str(event.event_id), _reason(error, self.retries), line))


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
