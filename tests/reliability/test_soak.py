"""A soak: agencies publish at a steady rate for minutes while the projector follows and analysts
query it. The projector's lag stays bounded and its memory flat; the figures go to the test report.
SOAK_SECONDS sets the length (default 180)."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from pathlib import Path

import pytest

from outreach.broker import connect
from outreach.server import EmbeddedServer
from outreach.settings import Settings
from outreach.synthetic import generate
from schemas.subjects import query_subject
from tests.reliability.harness import (
    STREAM,
    Processes,
    assert_exact,
    create_stream,
    outreach_env,
    wait_for_projection,
)

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

SECONDS = float(os.environ.get("SOAK_SECONDS", "180"))
RATE = 1_000  # events/s, sent in ticks of a tenth of a second
SAMPLE_EVERY = 5.0


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


async def soak(url: str, payloads: list[tuple[str, bytes, str]], pid: int) -> list[tuple[float, int, int, float]]:
    """Publish at RATE; every SAMPLE_EVERY seconds ask the projector (as an analyst would) how far it
    is. Returns samples of (elapsed s, published, applied, projector RSS MiB)."""
    nc = await connect(Settings(nats_url=url), "soak")
    try:
        js = nc.jetstream(publish_async_max_pending=RATE)
        per_tick = RATE // 10
        samples = []
        started = time.monotonic()
        next_sample = SAMPLE_EVERY
        for tick, first in enumerate(range(0, len(payloads), per_tick)):
            pending = [
                await js.publish_async(subject, data, headers={"Nats-Msg-Id": msg_id})
                for subject, data, msg_id in payloads[first : first + per_tick]
            ]
            await asyncio.gather(*pending)
            elapsed = time.monotonic() - started
            if elapsed >= next_sample:
                reply = await nc.request(query_subject(STREAM), b"SELECT count(*) FROM event_log", timeout=30)
                answer = json.loads(reply.data)
                assert "error" not in answer, answer
                samples.append((elapsed, first + len(pending), int(answer["as_of_seq"]), rss_mib(pid)))
                next_sample += SAMPLE_EVERY
            ahead = (tick + 1) / 10 - (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)  # hold the rate steady, not as fast as possible
        return samples
    finally:
        await nc.close()


def test_a_steady_rate_for_minutes_keeps_lag_bounded_and_memory_flat(
    tmp_path: Path, processes: Processes, figures: list[str]
) -> None:
    total = int(RATE * SECONDS)
    items = list(generate(total, seed=88))
    server = processes.server(EmbeddedServer(tmp_path / "nats", port=0))
    create_stream(server.url)
    db = tmp_path / "projection.duckdb"
    projector = processes.outreach(["project"], outreach_env(server.url, db, snapshot_interval_s="1"))
    payloads = [(s.subject, s.payload, s.event_id) for s in items]
    samples = asyncio.run(soak(server.url, payloads, projector.process.pid))
    wait_for_projection(projector, db, total, 120)
    final_rss = rss_mib(projector.process.pid)
    assert projector.stop() == 0, projector.stderr[-2000:]
    assert_exact(db, [s.event for s in items])

    lags = [published - applied for _, published, applied, _ in samples]
    warm = [rss for elapsed, *_, rss in samples if elapsed >= SECONDS / 3] + [final_rss]
    figures.append(
        f"soak: {total:,} events at {RATE:,}/s for {SECONDS:.0f} s; lag behind the publisher, sampled every "
        f"{SAMPLE_EVERY:.0f} s: median {statistics.median(lags):,.0f} events, max {max(lags):,} "
        f"({max(lags) / RATE:.1f} s of traffic); projector RSS after the first third {warm[0]:.0f} MiB, "
        f"at the end {final_rss:.0f} MiB, max {max(warm):.0f} MiB"
    )
    assert len(samples) >= SECONDS / SAMPLE_EVERY - 2
    assert max(lags) <= 10 * RATE  # never more than ten seconds of traffic behind
    assert max(warm) - warm[0] <= 64  # flat: the file grows, the process does not
