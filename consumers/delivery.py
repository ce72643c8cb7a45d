"""What JetStream delivers: one stored message, and its metadata read from the reply subject.

The reader makes these; the fold, the projector, export and replay take them as their input. The
module knows the wire format of a JetStream delivery (the ``$JS.ACK`` reply subject) and nothing
else: it imports neither nats-py nor the fold.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import NamedTuple

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class StreamMessage(NamedTuple):
    """One message as JetStream stored it. A named tuple: one is made for every message read, and a
    named tuple is the cheapest immutable record Python makes."""

    seq: int
    subject: str
    data: bytes
    stored_at: datetime
    msg_id: str | None = None  # the Nats-Msg-Id header, if the publisher set one


def delivered(
    subject: str, data: bytes, reply: str, headers: dict[str, str] | None = None
) -> tuple[StreamMessage, int]:
    """A delivered message, and how many the stream holds after it, from its JetStream reply subject:

    ``$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<nanoseconds>.<pending>``
    (or the longer form with domain and account hash). The time is truncated to the microsecond,
    as the stream's own API reports it, so that "stored by T" means the same everywhere.
    """
    tokens = reply.split(".")
    if len(tokens) == 9:
        seq, nanos, pending = tokens[5], tokens[7], tokens[8]
    else:  # $JS.ACK.<domain>.<account hash>.<stream>.<consumer>.<delivered>.<seq>.<cseq>.<nanos>.<pending>[.<token>]
        seq, nanos, pending = tokens[7], tokens[9], tokens[10]
    msg_id = headers.get("Nats-Msg-Id") if headers else None
    stored_at = EPOCH + timedelta(microseconds=int(nanos) // 1000)
    return StreamMessage(int(seq), subject, data, stored_at, msg_id), int(pending)
