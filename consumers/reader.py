"""The one way the stream is read: an ordered consumer, in batches, in stream order.

The live projector, replay, verify and export all read through ``StreamReader``; this module is the
only one that reads through nats-py. nats-py directly: FastStream has no ordered consumer that
starts at a given sequence. The Python client delivers several times more messages per second to an
ordered push consumer than through pull fetches, and it recreates the consumer itself after a gap in
the consumer's own sequence.

Memory stays flat because the broker's flow control ties delivery to what the reader has taken:
the broker sends at most a window of bytes (32 MiB at most, nats-server's ``JsFlowControlMaxPending``)
until the client answers its flow-control request, and nats-py answers once the messages before the
request have left its queue. With a message callback nats-py answers at once (it counts a message
delivered when it arrives), so a slow reader would hold the rest of the stream in memory. So the
reader subscribes without a callback and takes the messages from the subscription's queue itself
(``take``), only as fast as the batches are used.

The window is the broker's: up to 64,000 small messages queued in nats-py, each a Python object
with its subject and reply subject. So a reader whose queue holds ``QUEUE_MESSAGES`` or
``QUEUE_BYTES`` pauses: it unsubscribes, takes what is queued, and subscribes again after the last
message it received, so its queue stays near those limits whatever the broker's window.

A reader is in one ``ReaderState`` at a time: *subscribing* (asking the broker for a consumer),
*reading*, *paused* (as above), *finished* (nothing more is taken; the batches collected are still
handed over).

Stall policy, *read on after the last message received*: the reader alone recovers a delivery
that stops or skips, and always the same way, by subscribing again from the message after the last
one it received (which is where it stands; whoever applies the batches need not start over):

- nothing received for ``STALL_S`` while the stream holds a message after the last one received
  (a broker restarted and its consumer lost, a flow-control answer lost), and
- a message arrives whose sequence skips one the stream holds (a skipped sequence the stream no
  longer holds, a message deleted before deletes were denied, is a gap, and reading goes on).

A reader with an ``end_seq`` gives up after ``idle_timeout`` seconds with nothing received, with an
error that says so; a follower (no ``end_seq``) waits for as long as it takes. nats-py's own
heartbeats are part of the ordered consumer's protocol (the broker needs them for flow control) and
are set far apart (``IDLE_HEARTBEAT_S``), so that nats-py's recreation of a silent consumer, after
two missed heartbeats, never comes before the reader's own.

A reader with an ``end_seq`` stops there (or at the stream's last message, or at the last one
stored by ``as_of``); without one it follows the stream's end for as long as it is iterated.
Messages are handed over in batches of up to ``batch_size`` messages, and ending once they hold
``batch_bytes`` of payload (so a batch holds at most that plus one message): a batch ends early when
the stream had nothing more stored, so a message published to a quiet stream is handed over at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from consumers.delivery import StreamMessage, delivered
from runtime.settings import DEFAULT_BATCH_BYTES
from schemas.errors import OutreachError, ProjectionError

log = logging.getLogger("outreach.reader")

# The ordered consumer's filter: none, for the stream holds events alone (``runtime.stream``). A
# filter, even one equal to the stream's subjects, has nats-server count what is pending subject by
# subject each time the consumer is made (at every pause and stall), and there is a subject an event.
WHOLE_STREAM = ""
# Heartbeats the ordered consumer needs; nats-py recreates it after missing two. Far longer than
# STALL_S, so that the reader's own policy acts first.
IDLE_HEARTBEAT_S = 30.0
# What nats-py may hold before the reader takes it. The broker's flow-control window bounds it;
# past these limits nats-py would drop messages, the flow-control request among them, and delivery
# would stop: so they are nats-py's largest.
PENDING_LIMIT = 1_000_000
PENDING_BYTES = 256 * 1024 * 1024
# Nothing received for this long while the stream holds more: subscribe again (the stall policy).
STALL_S = 5.0
# What the reader lets nats-py's queue hold before it pauses, and how often it looks while it waits
# for the batches to be used (the queue grows in the meantime). Far more than a batch, so that
# pausing is rare and never makes the writer wait.
QUEUE_MESSAGES = 10_000
QUEUE_BYTES = 8 * 1024 * 1024
QUEUE_CHECK_S = 0.05


async def take(subscription: Any, *, wait: bool) -> Msg | None:
    """The next message nats-py holds for ``subscription``: None if it holds none and not ``wait``.

    The one use of nats-py's private attributes: its public ``next_msg`` and ``messages`` make a
    task per message, which costs the event loop more than everything else the reader does. Taken
    as ``next_msg`` takes it: the queue's byte count lowered (``pending_bytes``) and the message
    marked done, so that nats-py answers the broker's flow control. ``tests/test_reader.py`` holds
    this to the nats-py versions pyproject.toml allows."""
    sub = subscription._sub
    queue: asyncio.Queue[Msg] = sub._pending_queue
    try:
        msg = queue.get_nowait()
    except asyncio.QueueEmpty:
        if not wait:
            return None
        msg = await queue.get()
    sub._pending_size -= len(msg.data)
    queue.task_done()
    return msg


async def stored(js: Any, stream: str, seq: int) -> bool:
    """Whether the stream holds ``seq``. When the broker cannot say, it is taken to hold it, so
    that a message is read again rather than skipped."""
    try:
        await js.get_msg(stream, seq)
    except NotFoundError:
        return False
    except Exception:  # the broker is away or slow: read again from it, never skip it
        return True
    return True


class ReaderState(enum.Enum):
    SUBSCRIBING = "subscribing"  # asking the broker for an ordered consumer
    READING = "reading"  # taking messages as the batches have room
    PAUSED = "paused"  # unsubscribed, nats-py's queue full: taking what it holds, then subscribing again
    FINISHED = "finished"  # nothing more is taken; the batches collected are still handed over


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
        self._js = js
        self._stream = stream
        self._start_seq = start_seq
        self._batch_size = batch_size
        self._batch_bytes = batch_bytes
        self._end_seq = end_seq
        self._as_of = as_of
        self._idle_timeout = idle_timeout if end_seq is not None else None  # a follower may wait for ever
        self._state = ReaderState.SUBSCRIBING
        self._ready: deque[list[StreamMessage]] = deque()  # full batches, in order
        self._current: list[StreamMessage] = []  # the batch collecting
        self._current_bytes = 0  # the payload bytes ``_current`` holds
        self._caught_up = False  # the stream held nothing after ``_current``: hand it over when asked
        self._wake = asyncio.Event()  # something to hand over
        self._room = asyncio.Event()  # room for delivery to go on
        self._failure: BaseException | None = None
        self._last_seen = time.monotonic()  # when the last message was received
        self._next_seq = start_seq  # the sequence after the last message received
        self._subscription: Any = None
        self._generation = 0  # which subscription's messages count; a replaced one's are ignored
        self._pump: asyncio.Task[None] | None = None
        self._pauses = 0

    @property
    def state(self) -> ReaderState:
        return self._state

    @property
    def pauses(self) -> int:
        """How many times the reader paused because nats-py's queue was full."""
        return self._pauses

    def queued(self) -> tuple[int, int]:
        """Messages and payload bytes nats-py holds for the reader, not yet taken."""
        if self._subscription is None:
            return 0, 0
        return self._subscription.pending_msgs, self._subscription.pending_bytes

    def holds_messages(self) -> bool:
        """Whether messages received are waiting to be handed over."""
        return bool(self._ready or self._current)

    def stop(self, failure: BaseException | None = None, *, discard: bool = False) -> None:
        """Stop reading: the batches already collected are still handed over (unless ``discard``),
        then the iteration ends, raising ``failure`` if given."""
        if failure is not None and self._failure is None:
            self._failure = failure
        if discard:
            self._ready.clear()
            self._current, self._current_bytes = [], 0
        self._finish()
        self._room.set()

    async def __aenter__(self) -> StreamReader:
        await self._subscribe(self._start_seq)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()
        self._stop_pump()
        if self._subscription is not None:
            with contextlib.suppress(Exception):  # a closed connection has nothing left to unsubscribe
                await self._subscription.unsubscribe()

    def __aiter__(self) -> AsyncIterator[list[StreamMessage]]:
        return self._batches()

    async def _subscribe(self, start_seq: int) -> None:
        if self._state is ReaderState.FINISHED:
            return
        generation = self._generation = self._generation + 1
        self._state = ReaderState.SUBSCRIBING
        try:
            self._subscription = await self._js.subscribe(
                WHOLE_STREAM,
                stream=self._stream,
                ordered_consumer=True,
                idle_heartbeat=IDLE_HEARTBEAT_S,
                config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start_seq),
                pending_msgs_limit=PENDING_LIMIT,
                pending_bytes_limit=PENDING_BYTES,
            )
        finally:
            if self._state is ReaderState.SUBSCRIBING:
                self._state = ReaderState.READING
        self._pump = asyncio.create_task(self._take_messages(self._subscription, generation))

    async def _take_messages(self, subscription: Any, generation: int) -> None:
        """Take the subscription's messages, one at a time, as the batches have room. A replaced
        subscription's task stops; its leftovers are ignored. A paused one's takes what is queued,
        then subscribes again and leaves the rest to the next."""
        try:
            while generation == self._generation and self._state is not ReaderState.FINISHED:
                msg = await take(subscription, wait=False)
                if msg is None:
                    if self._state is ReaderState.PAUSED:
                        await self._subscribe(self._next_seq)
                        return
                    msg = await take(subscription, wait=True)
                if generation != self._generation:
                    return
                if await self._on_message(msg):  # a message the stream holds was skipped
                    with contextlib.suppress(Exception):  # a closed connection delivers nothing more anyway
                        await subscription.unsubscribe()
                    await self._subscribe(self._next_seq)
                    return
                await self._pause_if_full()
        except Exception as exc:  # the iteration raises it, rather than waiting for ever
            self.stop(exc)

    async def _pause_if_full(self) -> None:
        """Unsubscribe when nats-py's queue holds ``QUEUE_MESSAGES`` or ``QUEUE_BYTES``: the
        broker stops sending, and what is queued is still taken."""
        if self._state is not ReaderState.READING or self._subscription is None:
            return
        queued, queued_bytes = self.queued()
        if queued < QUEUE_MESSAGES and queued_bytes < QUEUE_BYTES:
            return
        self._state = ReaderState.PAUSED
        self._pauses += 1
        with contextlib.suppress(Exception):  # a closed connection delivers nothing more anyway
            await self._subscription.unsubscribe()

    def _stop_pump(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            self._pump = None

    async def _read_again(self) -> None:
        """Delivery stopped while messages wait: subscribe again after the last one received."""
        log.warning(
            "nothing arrived from stream %s for %.0fs while it holds sequence %d; reading again from there",
            self._stream,
            STALL_S,
            self._next_seq,
        )
        old, self._subscription = self._subscription, None
        self._generation += 1
        self._stop_pump()
        if old is not None:
            with contextlib.suppress(Exception):
                await old.unsubscribe()
        self._last_seen = time.monotonic()
        await self._subscribe(self._next_seq)

    async def _on_message(self, msg: Msg) -> bool:
        """Add a message to the batch collecting. True when it skipped a sequence the stream holds:
        then it is not added, and reading starts again from the skipped one."""
        if self._state is ReaderState.FINISHED:
            return False
        self._last_seen = time.monotonic()
        try:
            m, left = delivered(msg.subject, msg.data, msg.reply, msg.headers)
            if self._as_of is not None and m.stored_at > self._as_of:
                self._finish()
                return False
            if m.seq < self._next_seq:
                return False  # received before a new subscription
            if m.seq > self._next_seq and await stored(self._js, self._stream, self._next_seq):
                log.warning(
                    "stream sequence %d exists but was not delivered (sequence %d was); reading again from it",
                    self._next_seq,
                    m.seq,
                )
                return True
            self._next_seq = m.seq + 1
            self._current.append(m)
            self._current_bytes += len(m.data)
            caught_up = left == 0
            if self._end_seq is not None and (m.seq >= self._end_seq or caught_up):
                self._finish()
                return False
            if len(self._current) >= self._batch_size or self._current_bytes >= self._batch_bytes:
                self._ready.append(self._current)
                self._current, self._current_bytes, self._caught_up = [], 0, False
                self._wake.set()
                while self._ready and self._state is not ReaderState.FINISHED:  # the consumer is behind
                    self._room.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._room.wait(), QUEUE_CHECK_S)
                    await self._pause_if_full()
            elif caught_up:
                self._caught_up = True
                self._wake.set()
        except Exception as exc:  # stop at the first failure; the iteration raises it
            self._failure = exc
            self._finish()
        return False

    def _finish(self) -> None:
        if self._current:
            self._ready.append(self._current)
            self._current, self._current_bytes = [], 0
        self._state = ReaderState.FINISHED
        self._wake.set()

    async def _stalled(self) -> bool:
        """Nothing received for STALL_S, and the stream holds messages after the last received."""
        if time.monotonic() - self._last_seen < STALL_S or self._state in (
            ReaderState.SUBSCRIBING,
            ReaderState.FINISHED,
        ):
            return False
        try:
            last = (await self._js.stream_info(self._stream)).state.last_seq
        except Exception:  # the broker is away: nothing to read again yet
            return False
        if self._end_seq is not None:
            last = min(last, self._end_seq)
        return last >= self._next_seq

    async def _batches(self) -> AsyncIterator[list[StreamMessage]]:
        while (batch := await self._next()) is not None:
            yield batch
        if self._failure is not None:
            exc = self._failure
            if isinstance(exc, OutreachError):
                raise exc
            raise ProjectionError(f"reading stream {self._stream} stopped: {exc}") from exc

    async def _next(self) -> list[StreamMessage] | None:
        """The next batch, or None at the end."""
        while True:
            if self._ready:
                batch = self._ready.popleft()
                self._room.set()
                return batch
            finished = self._state is ReaderState.FINISHED
            if self._current and (self._caught_up or finished):
                batch, self._current, self._current_bytes, self._caught_up = self._current, [], 0, False
                return batch
            if finished:
                return None
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=1.0)
            except TimeoutError:
                if await self._stalled():
                    await self._read_again()
                if self._idle_timeout is not None and time.monotonic() - self._last_seen > self._idle_timeout:
                    raise ProjectionError(
                        f"nothing arrived from stream {self._stream} for {self._idle_timeout:.0f}s while reading "
                        f"up to sequence {self._end_seq}; is the server still up?"
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
