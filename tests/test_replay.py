"""Replay into a new file, against a real nats-server: equal to the live projection, or as it stood."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client

from consumers import reader as reader_module
from consumers.app import run_projector
from consumers.reader import QUEUE_BYTES, ReaderState, StreamReader
from consumers.replay import replay
from outreach.synthetic import generate
from producers.publisher import Publisher
from projections.query import run_query
from runtime.settings import Settings
from runtime.stream import ensure_stream
from schemas.errors import ProjectionError
from schemas.parse import parse_event
from tests import oracle

pytestmark = pytest.mark.integration

TABLES = ["event_log", "rejected_events", "ignored_duplicates", "fact_versions"]
COUNTY_TOTALS = (
    "SELECT county, events, sessions, participants, materials_distributed, teams_established "
    "FROM totals_by_county ORDER BY county"
)


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    return run_query(db, sql).rows


def county_totals(db: Path) -> dict[str, tuple[int, ...]]:
    return {r[0]: tuple(r[1:]) for r in rows(db, COUNTY_TOTALS)}


async def publish(nc: Client, settings: Settings, items: list[Any]) -> None:
    js = nc.jetstream()
    await ensure_stream(js, settings.stream, settings.duplicate_window_s)
    report = await Publisher(js).publish(parse_event(i.payload) for i in items)
    assert (report.stored, report.failed) == (len(items), [])


async def test_replay_equals_the_live_projection_row_for_row(nc: Client, settings: Settings, tmp_path: Path) -> None:
    items = list(generate(12_000, seed=21))
    await publish(nc, settings, items)
    await run_projector(settings, until_caught_up=True)
    rebuilt = tmp_path / "rebuilt.duckdb"
    stats = await replay(settings.model_copy(update={"batch_size": 1_000}), rebuilt)
    assert (stats.messages, stats.accepted, stats.rejected) == (12_000, 12_000, 0)
    for table in TABLES:
        query = f"SELECT * FROM {table} ORDER BY ALL"
        assert rows(settings.db, query) == rows(rebuilt, query), table
    assert rows(rebuilt, "SELECT count(*) FROM fact_versions") == rows(
        settings.db, "SELECT count(*) FROM fact_versions"
    )
    assert county_totals(rebuilt) == oracle.totals_by_county(i.event for i in items)


async def test_until_seq_gives_the_totals_as_they_stood(nc: Client, settings: Settings, tmp_path: Path) -> None:
    items = list(generate(3_000, seed=22))
    await publish(nc, settings, items)
    for until in (1, 777, 2_000):
        db = tmp_path / f"until-{until}.duckdb"
        stats = await replay(settings, db, until_seq=until)
        assert stats.messages == until
        assert rows(db, "SELECT last_seq FROM checkpoint") == [(until,)]
        assert county_totals(db) == oracle.totals_by_county(i.event for i in items[:until])


async def test_as_of_stops_at_what_the_stream_had_stored_by_then(
    nc: Client, settings: Settings, tmp_path: Path
) -> None:
    items = list(generate(1_500, seed=23))
    await publish(nc, settings, items[:1_000])
    moment = (await nc.jetstream().get_msg(settings.stream, 1_000)).time  # when sequence 1,000 was stored
    assert isinstance(moment, datetime)
    await publish(nc, settings, items[1_000:])
    db = tmp_path / "as-of.duckdb"
    stats = await replay(settings, db, as_of=moment)
    assert stats.messages == 1_000
    assert county_totals(db) == oracle.totals_by_county(i.event for i in items[:1_000])
    early = tmp_path / "before-anything.duckdb"
    assert (await replay(settings, early, as_of=datetime(2000, 1, 1, tzinfo=UTC))).messages == 0


async def test_replay_refuses_an_existing_file(settings: Settings, tmp_path: Path) -> None:
    existing = tmp_path / "live.duckdb"
    existing.write_bytes(b"")
    with pytest.raises(ProjectionError) as caught:
        await replay(settings, existing)
    assert str(caught.value) == f"{existing} exists; replay builds a new database file, give a path that does not exist"


@pytest.mark.e2e
def test_the_benchmark_runs_end_to_end_on_a_small_stream(tmp_path: Path) -> None:
    """A smoke test with no timing assertion, so that the benchmark never rots."""
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "outreach",
            "bench",
            "--events",
            "20000",
            "--sample",
            "500",
            "--latency-rate",
            "500",
            "--latency-seconds",
            "3",
            "--out",
            str(out),
            "--workdir",
            str(tmp_path / "not" / "yet"),  # made for it
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(out.read_text())["figures"]
    expected = {
        "publish_raw_per_s",
        "publish_ours_per_s",
        "ordered_consumer_per_s",
        "replay_quarter_per_s",
        "replay_quarter_peak_rss_mib",
        "replay_quarter_copy_peak_rss_mib",
        "replay_per_s",
        "replay_peak_rss_mib",
        "replay_copy_peak_rss_mib",
        "live_projector_per_s",
        "live_projector_peak_rss_mib",
        "naive_projector_per_s",
        "query_totals_by_county_ms",
        "query_totals_by_campaign_ms",
        "query_totals_by_plan_task_ms",
        "latency_p50_ms",
        "latency_p99_ms",
        "sql_startup_ms",
        "latency_runaway_p50_ms",
        "latency_runaway_p99_ms",
        "select1_during_runaway_p95_ms",
        "publish_ratio_to_raw",
        "replay_ratio_to_ordered_consumer",
        "replay_ratio_to_naive",
        "live_ratio_to_naive",
    }
    assert set(figures) == expected
    assert all(value > 0 for value in figures.values())
    assert "| replay_per_s |" in done.stdout


@pytest.mark.e2e
def test_the_memory_run_measures_each_size_as_the_stream_reaches_it(tmp_path: Path) -> None:
    """``outreach bench --memory``: every figure at every size, each command having read every event
    (the run stops otherwise), without a timing assertion."""
    out = tmp_path / "memory.json"
    done = subprocess.run(
        [sys.executable, "-m", "outreach", "bench", "--memory", "2000,4000", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    document = json.loads(out.read_text())
    assert document["events"] == 4000
    measures = [
        "live_projector_{}_per_s",
        "live_projector_{}_peak_rss_mib",
        "replay_{}_per_s",
        "replay_{}_peak_rss_mib",
        "replay_{}_copy_peak_rss_mib",
        "query_totals_by_county_{}_ms",
        "query_totals_by_campaign_{}_ms",
        "query_totals_by_plan_task_{}_ms",
    ]
    assert list(document["figures"]) == [m.format(size) for size in (2000, 4000) for m in measures]
    assert all(value > 0 for value in document["figures"].values())


def test_the_memory_run_names_sizes_it_cannot_use() -> None:
    command = [sys.executable, "-m", "outreach", "bench", "--memory", "1000000,3m"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        "outreach bench: error: argument --memory: '1000000,3m' is not a list of event counts such as 1000000,3000000"
    )


def test_the_benchmark_names_a_working_directory_it_cannot_use(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    done = subprocess.run(
        [sys.executable, "-m", "outreach", "bench", "--events", "1000", "--workdir", str(blocker / "work")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert done.stderr.strip() == (
        f"error: cannot use {blocker / 'work'} as the benchmark's working directory: "
        f"[Errno 20] Not a directory: '{blocker / 'work'}'"
    )


def test_the_benchmark_reports_no_rate_for_a_reader_that_stopped_early() -> None:
    from outreach.bench import _require_all
    from outreach.measure import Measured

    _require_all("replay", Measured(messages=1000, peak_rss_mib=150.0, copy_peak_rss_mib=0.0), 1000)
    with pytest.raises(RuntimeError) as caught:
        _require_all("replay", Measured(messages=734_800, peak_rss_mib=150.0, copy_peak_rss_mib=0.0), 1_000_000)
    assert str(caught.value) == "outreach replay read 734,800 of 1,000,000 events; no rate is reported for it"


async def _publish_filler(js: Any, total: int, payload: bytes) -> None:
    for _ in range(total // 1000):
        acks = [await js.publish_async("outreach.events.al-a.session_held", payload) for _i in range(1000)]
        await asyncio.gather(*acks)


async def test_a_reader_that_does_not_take_batches_holds_no_more_than_its_queue_limit(
    settings: Settings, nc: Client
) -> None:
    """What reading holds is bounded by the reader, not by the broker's flow-control window (32
    MiB, up to 64,000 small messages as Python objects): 100 MB stored, one batch taken, and the
    reader unsubscribes once nats-py's queue holds QUEUE_BYTES, then reads the rest, in order."""
    js = nc.jetstream(publish_async_max_pending=1000)
    await ensure_stream(js, settings.stream, settings.duplicate_window_s)
    total, payload = 100_000, b"x" * 1000
    await _publish_filler(js, total, payload)
    assert (await js.stream_info(settings.stream)).state.messages == total

    reader = StreamReader(js, settings.stream, start_seq=1, batch_size=1000, end_seq=total)
    async with reader:
        batches = aiter(reader)
        first = await anext(batches)
        assert [m.seq for m in first] == list(range(1, 1001))

        deadline = time.monotonic() + 60
        while reader.state is not ReaderState.PAUSED:
            assert time.monotonic() < deadline, "the reader never unsubscribed"
            await asyncio.sleep(0.01)
        queued, queued_bytes = reader.queued()
        assert queued_bytes >= QUEUE_BYTES
        # What arrived between two looks (QUEUE_CHECK_S apart) comes on top; nothing after.
        assert queued_bytes <= 2 * QUEUE_BYTES, f"{queued} messages, {queued_bytes:,} bytes queued"
        assert reader.pauses == 1

        rest: list[int] = []
        async for batch in batches:
            rest.extend(m.seq for m in batch)
        assert rest == list(range(1001, total + 1))


async def test_a_reader_that_pauses_again_and_again_reads_every_message_once_in_order(
    settings: Settings, nc: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each pause unsubscribes with messages queued and in flight; the reader takes what is queued
    and subscribes again after the last it received: nothing is skipped, nothing read twice."""
    monkeypatch.setattr(reader_module, "QUEUE_MESSAGES", 150)
    js = nc.jetstream(publish_async_max_pending=1000)
    await ensure_stream(js, settings.stream, settings.duplicate_window_s)
    total = 10_000
    await _publish_filler(js, total, b'{"n": 1}')

    reader = StreamReader(js, settings.stream, start_seq=1, batch_size=100, end_seq=total)
    seqs: list[int] = []
    async with reader:
        async for batch in reader:
            seqs.extend(m.seq for m in batch)
            # Take the next batch only once the reader is paused: its queue full, or being emptied.
            deadline = time.monotonic() + 30
            while reader.state is not ReaderState.PAUSED and len(seqs) < total - 1000:
                assert time.monotonic() < deadline, "the reader never paused"
                await asyncio.sleep(0.005)
    assert seqs == list(range(1, total + 1))
    assert reader.pauses >= 2
