"""The JetStream stream that holds the event log, created by the system itself, idempotently.

History is immutable: the stream denies deleting messages and purging, allows no roll-ups, keeps
everything (no limits on age, count or total size), and stores on disk. Each event has a subject of
its own, stored once (publishers send ``Nats-Expected-Last-Subject-Sequence: 0``); direct gets let an
agency read back what is stored on its own subjects, to tell a re-send from a changed event.

A message is at most what an event can be (``schemas.parse.MAX_EVENT_BYTES``) plus room for its
headers: the broker refuses anything larger, so an agency cannot make the projector read megabytes
it would only reject. A stream made with a larger limit is lowered by the admin's ``outreach
stream`` or ``outreach server`` (a lower limit changes nothing stored); anyone else who finds it so
(the projector) says so and goes on, its batches bounded by bytes whatever the messages hold.
"""

from __future__ import annotations

import contextlib
import logging

from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig, StreamInfo
from nats.js.errors import NotFoundError

from schemas.errors import BrokerError
from schemas.parse import MAX_EVENT_BYTES
from schemas.subjects import ALL_EVENTS

log = logging.getLogger("outreach.stream")

# The broker counts a message's headers in its size: publishers send two (Nats-Msg-Id and
# Nats-Expected-Last-Subject-Sequence, under 100 bytes).
HEADER_ROOM = 1024
MAX_MESSAGE_BYTES = MAX_EVENT_BYTES + HEADER_ROOM


def stream_config(name: str, duplicate_window_s: float, replicas: int = 1) -> StreamConfig:
    """The configuration the event log must have."""
    return StreamConfig(
        name=name,
        description="Outreach Ledger event log: immutable, one message per event",
        subjects=[ALL_EVENTS],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.NEW,
        max_msgs=-1,
        max_bytes=-1,
        max_age=0,
        max_msg_size=MAX_MESSAGE_BYTES,
        num_replicas=replicas,
        duplicate_window=duplicate_window_s,
        deny_delete=True,
        deny_purge=True,
        allow_rollup_hdrs=False,
        allow_direct=True,
    )


IMMUTABILITY = ("deny_delete", "deny_purge", "allow_rollup_hdrs", "storage", "subjects")


async def ensure_stream(
    js: JetStreamContext, name: str, duplicate_window_s: float, replicas: int = 1, *, change: bool = True
) -> StreamInfo:
    """Create the stream if it does not exist; refuse one that exists without immutable history.

    ``replicas`` applies when creating it: in a JetStream cluster, how many servers keep a copy.
    With ``change`` (the admin's commands), a stream made by an older version is brought up to date
    (its message limit lowered, direct gets allowed); without it (the projector, which may not change
    the stream) what is out of date is only said."""
    wanted = stream_config(name, duplicate_window_s, replicas)
    try:
        info = await js.stream_info(name)
    except NotFoundError:
        try:
            return await js.add_stream(wanted)
        except Exception as exc:
            raise BrokerError(f"cannot create stream {name}: {exc}") from None
    except Exception as exc:
        raise BrokerError(f"cannot read stream {name}: {exc}") from None
    wrong = [
        f"{key}={getattr(info.config, key)!r} (needs {getattr(wanted, key)!r})"
        for key in IMMUTABILITY
        if getattr(info.config, key) != getattr(wanted, key)
    ]
    if wrong:
        raise BrokerError(
            f"stream {name} exists but does not keep history immutable: {', '.join(wrong)}. "
            f"An operator must fix it (e.g. `nats stream edit {name}`); this tool will not change it."
        )
    if not _message_size_bounded(info):
        info = await _lower_message_size(js, info) if change else _say_message_size(info, "")
    if change and not info.config.allow_direct:
        # A stream made by an older version: direct gets are what lets a publisher compare a
        # re-sent event with the stored one. Only the admin may change the stream; others go on.
        config = info.config
        config.allow_direct = True
        with contextlib.suppress(Exception):
            info = await js.update_stream(config)
    return info


def _message_size_bounded(info: StreamInfo) -> bool:
    limit = info.config.max_msg_size
    return limit is not None and 0 < limit <= MAX_MESSAGE_BYTES


async def _lower_message_size(js: JetStreamContext, info: StreamInfo) -> StreamInfo:
    """Lower the largest message a stream made before the limit accepts; only the admin may. For
    anyone else it is said (the projector goes on: its batches are bounded by bytes)."""
    name, limit = info.config.name, info.config.max_msg_size
    shown = "any size" if limit is None or limit <= 0 else f"up to {limit:,} bytes"
    config = info.config
    config.max_msg_size = MAX_MESSAGE_BYTES
    try:
        info = await js.update_stream(config)
    except Exception as exc:
        config.max_msg_size = limit
        return _say_message_size(
            info,
            f" Not lowered here: these credentials may not change the stream, or the broker did not answer ({exc})",
        )
    log.warning(
        "stream %s accepted messages of %s; lowered to %s bytes (an event is at most %s); messages stored "
        "before stay as they are",
        name, shown, f"{MAX_MESSAGE_BYTES:,}", f"{MAX_EVENT_BYTES:,}",
    )  # fmt: skip
    return info


def _say_message_size(info: StreamInfo, why: str) -> StreamInfo:
    name, limit = info.config.name, info.config.max_msg_size
    shown = "any size" if limit is None or limit <= 0 else f"up to {limit:,} bytes"
    log.warning(
        "stream %s accepts messages of %s, but an event is at most %s bytes (%s with headers): an agency can "
        "send large messages the projector only rejects. The admin lowers it with `outreach stream` (with the "
        "admin's credentials) or `nats stream edit %s --max-msg-size %d`.%s",
        name, shown, f"{MAX_EVENT_BYTES:,}", f"{MAX_MESSAGE_BYTES:,}", name, MAX_MESSAGE_BYTES, why,
    )  # fmt: skip
    return info


async def read_stream_info(js: JetStreamContext, name: str) -> StreamInfo:
    """The stream's configuration and state, or a ``BrokerError`` naming the stream."""
    try:
        return await js.stream_info(name)
    except Exception as exc:
        raise BrokerError(f"cannot read stream {name}: {exc}") from None
