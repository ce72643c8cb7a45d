"""Reading the whole stream, or a stretch of it, in large batches through an ordered consumer.

nats-py directly: FastStream has no ordered consumer that starts at a given sequence. The Python
client delivers several times more messages per second to an ordered push consumer than through
pull fetches, and its flow control ties delivery to processing, so memory stays flat however
long the stream.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from consumers.fold import StreamMessage, from_reply
from schemas.errors import OutreachError, ProjectionError
from schemas.subjects import ALL_EVENTS


async def read_stream(
    js: Any,
    stream: str,
    *,
    start_seq: int,
    end_seq: int,
    batch_size: int,
    handle: Callable[[list[StreamMessage]], None],
    as_of: datetime | None = None,
    idle_timeout: float = 30.0,
) -> None:
    """Hand batches of messages from ``start_seq`` to ``end_seq`` (or to the last one stored by
    ``as_of``) to ``handle``, in stream order. Stops early at the stream's last message, so a
    deleted tail does not leave it waiting. The first error from ``handle`` stops the reading
    and is raised."""
    done = asyncio.Event()
    failures: list[BaseException] = []
    batch: list[StreamMessage] = []
    last_seen = time.monotonic()

    def flush() -> None:
        if batch:
            handle(batch[:])
            batch.clear()

    async def on_message(msg: Msg) -> None:
        nonlocal last_seen
        if done.is_set():
            return
        last_seen = time.monotonic()
        try:
            m = from_reply(msg.subject, msg.data, msg.reply, msg.headers)
            if as_of is not None and m.stored_at > as_of:
                flush()
                done.set()
                return
            batch.append(m)
            last = m.seq >= end_seq or pending(msg.reply) == 0
            if len(batch) >= batch_size or last:
                flush()
            if last:
                done.set()
        except Exception as exc:  # stop at the first failure
            failures.append(exc)
            done.set()

    sub = await js.subscribe(
        ALL_EVENTS,
        stream=stream,
        cb=on_message,
        ordered_consumer=True,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start_seq),
        pending_msgs_limit=4 * batch_size + 1000,
    )
    try:
        while not done.is_set():
            try:
                await asyncio.wait_for(done.wait(), timeout=1.0)
            except TimeoutError:
                if time.monotonic() - last_seen > idle_timeout:
                    raise ProjectionError(
                        f"nothing arrived from stream {stream} for {idle_timeout:.0f}s while reading up to "
                        f"sequence {end_seq}; is the server still up?"
                    ) from None
    finally:
        await sub.unsubscribe()
    if failures:
        exc = failures[0]
        if isinstance(exc, OutreachError):
            raise exc
        raise ProjectionError(f"reading stream {stream} stopped: {exc}") from exc


def pending(reply: str) -> int:
    """Messages left in the stream after this one, from the reply subject."""
    tokens = reply.split(".")
    return int(tokens[8] if len(tokens) == 9 else tokens[10])
