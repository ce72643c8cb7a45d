"""The reading adapter against a real nats-server: the delivery metadata, the stall policy's
recovery from a skipped message, and the contract with nats-py's internals that ``take`` relies on."""

from __future__ import annotations

import asyncio
import logging
import tomllib
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy, StreamConfig
from packaging.requirements import Requirement

from consumers import reader as reader_module
from consumers.delivery import delivered
from consumers.reader import PENDING_BYTES, PENDING_LIMIT, StreamReader, stored, take
from runtime.settings import Settings
from runtime.stream import ensure_stream
from tests.conftest import async_wait_until

ROOT = Path(__file__).resolve().parent.parent


def test_sequence_storage_time_and_what_is_left_come_from_either_form_of_reply_subject() -> None:
    v1 = delivered("s", b"{}", "$JS.ACK.OUTREACH.c1.1.42.40.1700000000123456789.7", {"Nats-Msg-Id": "m"})
    v2 = delivered("s", b"{}", "$JS.ACK._.HASH.OUTREACH.c1.1.42.40.1700000000123456789.7.tok")
    stored_at = datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=UTC)
    assert [(msg.seq, msg.stored_at, msg.msg_id, left) for msg, left in (v1, v2)] == [
        (42, stored_at, "m", 7),
        (42, stored_at, None, 7),
    ]


async def _publish(js: Any, count: int, payload: bytes) -> None:
    for start in range(0, count, 1000):
        acks = [
            await js.publish_async("outreach.events.al-a.session_held", payload)
            for _ in range(min(1000, count - start))
        ]
        await asyncio.gather(*acks)


@pytest.mark.integration
async def test_a_gap_is_a_deleted_message_or_a_delivery_to_read_again(
    settings: Settings, nc: Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Sequence 3 deleted from the stream is a gap, read past; sequence 6 lost on its way (nats-py
    hands the reader 7 after 5) is read again from the stream, once, in order."""
    js = nc.jetstream(publish_async_max_pending=1000)
    # A stream that allows deleting, as one made before deletes were denied.
    await js.add_stream(StreamConfig(name=settings.stream, subjects=["outreach.events.>"]))
    await _publish(js, 10, b'{"n": 1}')
    assert await js.delete_msg(settings.stream, 3)
    assert await stored(js, settings.stream, 3) is False
    assert await stored(js, settings.stream, 6) is True

    lost: list[int] = []

    async def losing_six(subscription: Any, *, wait: bool) -> Msg | None:
        msg = await take(subscription, wait=wait)
        if msg is not None and not lost and delivered(msg.subject, msg.data, msg.reply)[0].seq == 6:
            lost.append(6)
            return await take(subscription, wait=True)
        return msg

    monkeypatch.setattr(reader_module, "take", losing_six)
    seqs: list[int] = []
    with caplog.at_level(logging.WARNING, logger="outreach.reader"):
        reader = StreamReader(js, settings.stream, start_seq=1, batch_size=4, end_seq=10)
        async with reader:
            async for batch in reader:
                seqs.extend(m.seq for m in batch)
    assert lost == [6]
    assert seqs == [1, 2, 4, 5, 6, 7, 8, 9, 10]
    assert [r.getMessage() for r in caplog.records] == [
        "stream sequence 6 exists but was not delivered (sequence 7 was); reading again from it"
    ]


def test_the_nats_py_installed_is_one_pyproject_allows() -> None:
    """``take`` is held to the versions pyproject.toml allows: widening the pin runs the contract
    test below on the new version before anything else does."""
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]["dependencies"]
    (pin,) = [Requirement(d) for d in dependencies if Requirement(d).name == "nats-py"]
    assert str(pin.specifier) == "<2.17,>=2.16"
    assert pin.specifier.contains(version("nats-py"))


@pytest.mark.integration
async def test_take_empties_nats_py_queue_as_its_public_counts_say_and_flow_control_goes_on(
    settings: Settings, nc: Client
) -> None:
    """The contract ``take`` relies on: a subscription without a callback queues what the broker
    sends; ``pending_msgs`` and ``pending_bytes`` count it; what ``take`` takes leaves both counts,
    and nats-py answers the broker's flow control once it is taken, so that more than the broker's
    window (at most 32 MiB) arrives through a reader that takes only from the queue."""
    js = nc.jetstream(publish_async_max_pending=1000)
    await ensure_stream(js, settings.stream, settings.duplicate_window_s)
    total, payload = 40_000, b"x" * 1000  # 40 MB: more than the broker's flow-control window
    await _publish(js, total, payload)

    subscription = await js.subscribe(
        reader_module.WHOLE_STREAM,
        stream=settings.stream,
        ordered_consumer=True,
        idle_heartbeat=reader_module.IDLE_HEARTBEAT_S,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=1),
        pending_msgs_limit=PENDING_LIMIT,
        pending_bytes_limit=PENDING_BYTES,
    )
    try:
        # The consumer reads the whole stream unfiltered: nats-server then counts nothing subject by subject.
        config = (await subscription.consumer_info()).config
        assert (config.filter_subject, config.filter_subjects) == (None, None)
        await async_wait_until(lambda: subscription.pending_msgs >= 100, what="the first messages queued")

        seqs: list[int] = []
        while len(seqs) < total:
            msg = await asyncio.wait_for(take(subscription, wait=True), timeout=30)
            assert msg is not None
            seqs.append(delivered(msg.subject, msg.data, msg.reply)[0].seq)
            if len(seqs) % 1000 == 1:  # the byte count follows what is taken
                assert subscription.pending_bytes == subscription.pending_msgs * len(payload)
        assert seqs == list(range(1, total + 1))
        assert (subscription.pending_msgs, subscription.pending_bytes) == (0, 0)
        assert await take(subscription, wait=False) is None
    finally:
        await subscription.unsubscribe()
