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
from typing import Any, NamedTuple

import pytest
from nats.errors import NoRespondersError

from outreach.synthetic import generate
from runtime.connection import connect
from runtime.server import EmbeddedServer
from runtime.settings import Settings
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


class Sample(NamedTuple):
    elapsed: float  # seconds since publishing began
    published: int
    applied: int  # the projector's checkpoint, as its answer to a query reports it
    rss: float  # the projector's resident memory, MiB
    duckdb: float  # of which DuckDB's buffers, MiB (bounded by its memory_limit)


async def soak(url: str, payloads: list[tuple[str, bytes, str]], pid: int) -> list[Sample]:
    """Publish at RATE; every SAMPLE_EVERY seconds ask the projector, as an analyst would, how much
    memory DuckDB holds; its answer also says as of which stream sequence it is."""
    nc = await connect(Settings(nats_url=url), "soak")

    async def ask(query: bytes) -> dict[str, Any]:
        """As `outreach sql` does: a projector (re)starting its consumer answers within seconds."""
        deadline = time.monotonic() + 15
        while True:
            try:
                reply = await nc.request(query_subject(STREAM), query, timeout=30)
                return dict(json.loads(reply.data))
            except NoRespondersError:
                assert time.monotonic() < deadline, "the projector stopped answering queries"
                await asyncio.sleep(0.1)

    try:
        await ask(b"SELECT 1")  # the projector is up before the clock starts
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
                answer = await ask(b"SELECT sum(memory_usage_bytes) / 1048576 FROM duckdb_memory()")
                assert "error" not in answer, answer
                applied, duckdb_mib = int(answer["as_of_seq"]), float(answer["rows"][0][0])
                samples.append(Sample(elapsed, first + len(pending), applied, rss_mib(pid), duckdb_mib))
                next_sample += SAMPLE_EVERY
            ahead = (tick + 1) / 10 - (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)  # hold the rate steady, not as fast as possible
        return samples
    finally:
        await nc.close()


@pytest.mark.timeout(SECONDS + 240)
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
    assert projector.stop() == 0, projector.stderr[-2000:]
    assert_exact(db, [s.event for s in items])

    lags = [x.published - x.applied for x in samples]
    limit_mb = Settings.model_fields["memory_limit_mb"].default  # the projector runs with the default
    # Memory apart from DuckDB's buffers (Python, FastStream, nats-py, DuckDB's own bookkeeping):
    # a leak grows it with every event; compare its median over the middle and the last third.
    middle = [x.rss - x.duckdb for x in samples if SECONDS / 3 <= x.elapsed < 2 * SECONDS / 3]
    last = [x.rss - x.duckdb for x in samples if x.elapsed >= 2 * SECONDS / 3]
    figures.append(
        f"soak: {total:,} events at {RATE:,}/s for {SECONDS:.0f} s; lag behind the publisher, sampled every "
        f"{SAMPLE_EVERY:.0f} s: median {statistics.median(lags):,.0f} events, max {max(lags):,} "
        f"({max(lags) / RATE:.2f} s of traffic); projector RSS {samples[0].rss:.0f} MiB at first, "
        f"{samples[-1].rss:.0f} MiB at the end, of which DuckDB's buffers {samples[-1].duckdb:.0f} MiB "
        f"(limit {limit_mb}); the rest, median over the middle third {statistics.median(middle):.0f} MiB, over the "
        f"last third {statistics.median(last):.0f} MiB"
    )
    assert len(samples) >= SECONDS / SAMPLE_EVERY - 2
    assert max(lags) <= 10 * RATE  # never more than ten seconds of traffic behind
    assert max(x.duckdb for x in samples) <= limit_mb  # DuckDB's cache grows with the file, up to its limit
    assert statistics.median(last) - statistics.median(middle) <= 24  # the rest stays flat
