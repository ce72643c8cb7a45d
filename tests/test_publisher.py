"""The publisher against a real nats-server: every event acknowledged, reported, never doubled."""

from __future__ import annotations

import pytest
from nats.aio.client import Client

from outreach.synthetic import generate
from producers.publisher import Publisher
from runtime.settings import Settings
from runtime.stream import ensure_stream
from schemas.parse import parse_event

pytestmark = pytest.mark.integration


async def test_windows_of_events_are_all_acknowledged_in_order(nc: Client, settings: Settings) -> None:
    js = nc.jetstream()
    await ensure_stream(js, settings.stream, settings.duplicate_window_s)
    events = [parse_event(item.payload) for item in generate(2_500, seed=3)]
    report = await Publisher(js, window=1_000).publish(events)
    assert (report.stored, report.duplicates, report.failed) == (2_500, 0, [])
    assert (report.first_seq, report.last_seq) == (1, 2_500)
    stored = await js.get_msg(settings.stream, 1_234)
    assert stored.data == events[1_233].model_dump_json().encode()
    agency, event_id = events[1_233].agency, events[1_233].event_id
    assert stored.headers == {
        "Nats-Expected-Last-Subject-Sequence": "0",
        "Nats-Expected-Last-Subject-Sequence-Subject": f"outreach.events.{agency}.*.{event_id}",
    }
    assert (
        stored.subject == f"outreach.events.{events[1_233].agency}.{events[1_233].event_type}.{events[1_233].event_id}"
    )

    again = await Publisher(js, window=700).publish(events[:1_000])
    assert (again.stored, again.duplicates, again.failed) == (0, 1_000, [])
    info = await js.stream_info(settings.stream)
    assert info.state.messages == 2_500


async def test_events_no_stream_acknowledges_fail_with_a_reason_after_retries(nc: Client) -> None:
    js = nc.jetstream()  # no stream exists: nothing will acknowledge
    events = [parse_event(item.payload) for item in generate(3, seed=5)]
    lines = [10, 11, 12]
    report = await Publisher(js, retries=2, ack_timeout=1.0).publish(events, lines=lines)
    assert (report.stored, report.duplicates) == (0, 0)
    assert [(f.event_id, f.line) for f in report.failed] == [
        (str(e.event_id), n) for e, n in zip(events, lines, strict=True)
    ]
    assert {f.reason for f in report.failed} == {
        "no stream acknowledged it after 2 retries: has the admin created the stream (`outreach stream`)? "
        "(NoStreamResponseError)"
    }


async def test_a_changed_event_under_a_stored_event_id_is_a_conflict_with_the_way_out(
    nc: Client, settings: Settings
) -> None:
    """Within the old duplicate window a changed figure vanished as a "duplicate"; now it is read
    back from the stream, compared, and reported as a conflict, at any time after the first."""
    js = nc.jetstream()
    await ensure_stream(js, settings.stream, settings.duplicate_window_s)
    first, other = (parse_event(item.payload) for item in generate(2, seed=8))
    assert (await Publisher(js).publish([first, other])).stored == 2
    changed = first.model_copy(update={"source": "a changed figure"})
    report = await Publisher(js).publish([changed, other])
    assert (report.stored, report.duplicates, len(report.failed)) == (0, 1, 1)
    assert report.failed[0].event_id == str(first.event_id)
    assert report.failed[0].reason == (
        f"conflict: event_id {first.event_id} is already stored (stream sequence 1) with different content; "
        f"an event is never changed: publish an event_corrected that corrects {first.event_id} with the new figures"
    )
    assert (await js.stream_info(settings.stream)).state.messages == 2
