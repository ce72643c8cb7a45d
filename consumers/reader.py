"""The one way the stream is read: an ordered consumer, in batches, in stream order.

The live projector, replay, verify and export all read through ``StreamReader``. nats-py directly:
FastStream has no ordered consumer that starts at a given sequence. The Python client delivers
several times more messages per second to an ordered push consumer than through pull fetches, and
it recreates the consumer itself after a gap in delivery.

Memory stays flat because the broker's flow control ties delivery to what the reader has taken:
the broker sends at most a window of bytes (32 MiB at most, nats-server's ``JsFlowControlMaxPending``)
until the client answers its flow-control request, and nats-py answers once the messages before the
request have left its queue. With a message callback nats-py answers at once (it counts a message
delivered when it arrives), so a slow reader held the rest of the stream in memory: 295,000 messages
and about 600 MiB here. So the reader subscribes without a callback and takes the messages from the
subscription's queue itself, only as fast as the batches are used.

The window is the broker's: up to 64,000 small messages queued in nats-py, each a Python object
with its subject and reply subject (about 60 MiB). So a reader whose queue holds ``QUEUE_MESSAGES``
or ``QUEUE_BYTES`` unsubscribes, takes what is queued, and subscribes again after the last message
it received: its queue stays near those limits whatever the broker's window.

A reader with an ``end_seq`` stops there (or at the stream's last message, or at the last one
stored by ``as_of``); without one it follows the stream's end for as long as it is iterated.
Messages are handed over in batches of up to ``batch_size`` messages, and ending once they hold
``batch_bytes`` of payload (so a batch holds at most that plus one message): a batch ends early when
the stream had nothing more stored, so a message published to a quiet stream is handed over at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from consumers.fold import StreamMessage, delivered
from runtime.settings import DEFAULT_BATCH_BYTES
from schemas.errors import OutreachError, ProjectionError
from schemas.subjects import ALL_EVENTS

# Heartbeats the ordered consumer expects; it recreates itself after missing two. A slow writer
# holds the reader back for a few batches at most, far less than two of these.
IDLE_HEARTBEAT_S = 30.0
# What nats-py may hold before the reader takes it. The broker's flow-control window bounds it;
# past these limits nats-py would drop messages, the flow control request among them, and delivery
# would stop: so they are nats-py's largest, and a reader that receives nothing for STALL_S while
# it has not finished subscribes again from the message after the last one it received.
PENDING_LIMIT = 1_000_000
PENDING_BYTES = 256 * 1024 * 1024
STALL_S = 5.0
# What the reader lets nats-py's queue hold before it unsubscribes, and how often it looks while it
# waits for the batches to be used (the queue grows in the meantime: at 65,000 messages/s, by at
# most 3,250 in 50 ms). Far more than a batch, so that subscribing again is rare and never makes the
# writer wait.
QUEUE_MESSAGES = 10_000
QUEUE_BYTES = 8 * 1024 * 1024
QUEUE_CHECK_S = 0.05


class StreamReader:
    """``async with StreamReader(...) as reader: async for batch in reader: …``

    Messages collect into a batch; a full batch is handed over, and so is a partial one as soon
    as the stream had nothing more stored and the consumer of the batches asks for one. At most
    one full batch waits beyond the one collecting: then the reader stops taking messages, and
    the broker's flow control stops delivery, so memory stays bounded whatever the consumer's speed."""

    def __init__(
        self,
        js: Any,
        stream: str,
        *,
        start_seq: int,
        batch_size: int,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
        end_seq: int | None = None,
        as_of: datetime | None = None,
        idle_timeout: float | None = 30.0,
    ) -> None:
        self.js = js
        self.stream = stream
        self.start_seq = start_seq
        self.batch_size = batch_size
        self.batch_bytes = batch_bytes
        self.current_bytes = 0  # the payload bytes ``current`` holds
        self.end_seq = end_seq
        self.as_of = as_of
        self.idle_timeout = idle_timeout if end_seq is not None else None  # a follower may wait for ever
        self.ready: deque[list[StreamMessage]] = deque()  # full batches, in order
        self.current: list[StreamMessage] = []  # the batch collecting
        self.flushable = False  # hand ``current`` over as soon as asked: the stream had nothing more
        self.finished = False  # nothing more will be added
        self.done = False  # no more messages are taken
        self.wake = asyncio.Event()  # something to hand over
        self.room = asyncio.Event()  # room for delivery to go on
        self.failure: BaseException | None = None
        self.last_seen = time.monotonic()
        self.subscription: Any = None
        self.generation = 0
        self.next_seq = start_seq  # the sequence after the last message received
        self.stalled_since: float | None = None
        self.pump: asyncio.Task[None] | None = None
        self.paused = False  # unsubscribed with messages queued: subscribe again once they are taken
        self.subscribing = False
        self.pauses = 0

    async def __aenter__(self) -> StreamReader:
        await self._subscribe(self.start_seq)
        return self

    async def _subscribe(self, start_seq: int) -> None:
        generation = self.generation = self.generation + 1
        self.paused, self.subscribing = False, True
        try:
            self.subscription = await self.js.subscribe(
                ALL_EVENTS,
                stream=self.stream,
                ordered_consumer=True,
                idle_heartbeat=IDLE_HEARTBEAT_S,
                config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start_seq),
                pending_msgs_limit=PENDING_LIMIT,
                pending_bytes_limit=PENDING_BYTES,
            )
        finally:
            self.subscribing = False
        self.pump = asyncio.create_task(self._pump(self.subscription, generation))

    async def _pump(self, subscription: Any, generation: int) -> None:
        """Take the messages from the subscription's queue, one at a time, as the batches have room.

        nats-py's queue directly: its ``next_msg`` makes a task and a timer per message (12 µs
        here, against 0.2 µs), and taking from the queue is what lets nats-py answer flow control.
        A replaced subscription's pump stops; its leftovers are ignored. A paused one's pump takes
        what is queued, then subscribes again and leaves the rest to the next pump."""
        try:
            sub = subscription._sub
            queue: asyncio.Queue[Msg] = sub._pending_queue
            while generation == self.generation and not self.done:
                try:
                    msg = queue.get_nowait()
                except asyncio.QueueEmpty:
                    if self.paused:
                        await self._subscribe(self.next_seq)
                        return
                    msg = await queue.get()
                sub._pending_size -= len(msg.data)
                queue.task_done()
                if generation == self.generation:
                    await self._on_message(msg)
                    await self._pause_if_full()
        except Exception as exc:  # the iteration raises it, rather than waiting for ever
            self.stop(exc)

    async def _pause_if_full(self) -> None:
        """Unsubscribe when nats-py's queue holds ``QUEUE_MESSAGES`` or ``QUEUE_BYTES``: the
        broker stops sending, and what is queued is still taken."""
        if self.paused or self.subscription is None or self.done:
            return
        sub = self.subscription._sub
        if sub._pending_queue.qsize() < QUEUE_MESSAGES and sub._pending_size < QUEUE_BYTES:
            return
        self.paused = True
        self.pauses += 1
        with contextlib.suppress(Exception):  # a closed connection delivers nothing more anyway
            await self.subscription.unsubscribe()

    def _stop_pump(self) -> None:
        if self.pump is not None:
            self.pump.cancel()
            self.pump = None

    async def _resubscribe(self) -> None:
        """Delivery stopped while messages wait: subscribe again after the last one received."""
        old, self.subscription = self.subscription, None
        self.generation += 1
        self._stop_pump()
        if old is not None:
            with contextlib.suppress(Exception):
                await old.unsubscribe()
        self.last_seen = time.monotonic()
        await self._subscribe(self.next_seq)

    async def __aexit__(self, *exc: object) -> None:
        self.stop()
        self._stop_pump()
        if self.subscription is not None:
            with contextlib.suppress(Exception):  # a closed connection has nothing left to unsubscribe
                await self.subscription.unsubscribe()

    async def _on_message(self, msg: Msg) -> None:
        if self.done:
            return
        self.last_seen = time.monotonic()
        try:
            m, left = delivered(msg.subject, msg.data, msg.reply, msg.headers)
            if self.as_of is not None and m.stored_at > self.as_of:
                self._finish()
                return
            if m.seq < self.next_seq:
                return  # received before a resubscription
            self.next_seq = m.seq + 1
            self.current.append(m)
            self.current_bytes += len(m.data)
            caught_up = left == 0
            last = self.end_seq is not None and (m.seq >= self.end_seq or caught_up)
            if last:
                self._finish()
                return
            if len(self.current) >= self.batch_size or self.current_bytes >= self.batch_bytes:
                self.ready.append(self.current)
                self.current, self.current_bytes, self.flushable = [], 0, False
                self.wake.set()
                while len(self.ready) >= 1 and not self.done:  # the consumer is behind: wait for it
                    self.room.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.room.wait(), QUEUE_CHECK_S)
                    await self._pause_if_full()
            elif caught_up:
                self.flushable = True
                self.wake.set()
        except Exception as exc:  # stop at the first failure; the iteration raises it
            self.failure = exc
            self._finish()

    def _finish(self) -> None:
        if self.current:
            self.ready.append(self.current)
            self.current, self.current_bytes = [], 0
        self.finished = self.done = True
        self.wake.set()

    def stop(self, failure: BaseException | None = None, *, discard: bool = False) -> None:
        """Stop reading: the batches already collected are still handed over (unless ``discard``),
        then the iteration ends, raising ``failure`` if given."""
        if failure is not None and self.failure is None:
            self.failure = failure
        if discard:
            self.ready.clear()
            self.current, self.current_bytes = [], 0
        self._finish()
        self.room.set()

    async def _stalled(self) -> bool:
        """Nothing received for STALL_S, and the stream holds messages after the last received."""
        if time.monotonic() - self.last_seen < STALL_S or self.subscribing:
            return False
        try:
            last = (await self.js.stream_info(self.stream)).state.last_seq
        except Exception:  # the broker is away: nothing to read again yet
            return False
        if self.end_seq is not None:
            last = min(last, self.end_seq)
        return last >= self.next_seq

    def __aiter__(self) -> AsyncIterator[list[StreamMessage]]:
        return self._batches()

    async def _batches(self) -> AsyncIterator[list[StreamMessage]]:
        while (batch := await self._next()) is not None:
            yield batch
        if self.failure is not None:
            exc = self.failure
            if isinstance(exc, OutreachError):
                raise exc
            raise ProjectionError(f"reading stream {self.stream} stopped: {exc}") from exc

    async def _next(self) -> list[StreamMessage] | None:
        """The next batch, or None at the end."""
        while True:
            if self.ready:
                batch = self.ready.popleft()
                self.room.set()
                return batch
            if self.current and (self.flushable or self.finished):
                batch, self.current, self.current_bytes, self.flushable = self.current, [], 0, False
                return batch
            if self.finished:
                return None
            self.wake.clear()
            try:
                await asyncio.wait_for(self.wake.wait(), timeout=1.0)
            except TimeoutError:
                if not self.finished and await self._stalled():
                    await self._resubscribe()
                if self.idle_timeout is not None and time.monotonic() - self.last_seen > self.idle_timeout:
                    raise ProjectionError(
                        f"nothing arrived from stream {self.stream} for {self.idle_timeout:.0f}s while reading up "
                        f"to sequence {self.end_seq}; is the server still up?"
                    ) from None


async def read_stream(
    js: Any,
    stream: str,
    *,
    start_seq: int,
    end_seq: int,
    batch_size: int,
    handle: Callable[[list[StreamMessage]], None],
    batch_bytes: int = DEFAULT_BATCH_BYTES,
    as_of: datetime | None = None,
    idle_timeout: float = 30.0,
) -> None:
    """Hand batches of messages from ``start_seq`` to ``end_seq`` (or to the last one stored by
    ``as_of``) to ``handle``, in stream order. Stops early at the stream's last message, so a
    deleted tail does not leave it waiting. The first error from ``handle`` is raised."""
    reader = StreamReader(
        js,
        stream,
        start_seq=start_seq,
        batch_size=batch_size,
        batch_bytes=batch_bytes,
        end_seq=end_seq,
        as_of=as_of,
        idle_timeout=idle_timeout,
    )
    async with reader:
        async for batch in reader:
            handle(batch)
