"""``outreach bench``: publish, project and replay side by side with their floors and ceilings.

One run, one machine, one embedded nats-server. Every figure is measured here, in this run:

- publishing: the project's ``Publisher`` next to bare nats-py ``publish_async`` of the same payloads;
- reading: a bare ordered consumer that only counts (the ceiling);
- replay into a new file (``consumers.replay``, in a process of its own: its peak RSS is its own, and
  its copy's for analysts' tools, made by a process of the replay's, is reported beside it), at N and N/4;
- the live projector (``consumers.app`` until caught up, in a process of its own) over the same backlog;
- a naive projector, one FastStream handler call and one INSERT per event, on a sample (the floor);
- live latency from publish to committed (visible in ``totals_by_county``) at a steady rate;
- the three totals queries on the replayed file;
- analysts: the start-up of `outreach sql "SELECT 1"` as a process, and, while a runaway query runs
  in the projector, the latency again and the time to answer `SELECT 1` through it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import nats
from nats.js.api import StreamConfig

from consumers.reader import WHOLE_STREAM
from outreach.measure import Command, Measured, in_a_process
from outreach.synthetic import generate
from producers.publisher import Publisher
from runtime.protocol import ask, decode_answer, encode_query
from runtime.server import EmbeddedServer
from runtime.settings import Settings
from runtime.stream import ensure_stream
from schemas.errors import OutreachError
from schemas.parse import parse_event
from schemas.subjects import query_subject

RAW_STREAM = "BENCH_RAW"
WINDOW = 1000


@dataclass
class Results:
    events: int
    machine: dict[str, Any]
    figures: dict[str, float] = field(default_factory=dict)

    def add(self, key: str, value: float) -> None:
        self.figures[key] = value
        print(f"  {key}: {value:,.1f}", file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "cpu": cpu,
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }


def run_bench(events: int, sample: int, latency_rate: int, latency_seconds: float, workdir: Path) -> Results:
    results = Results(events, machine())
    with EmbeddedServer(workdir / "nats", port=0) as server:
        settings = Settings(nats_url=server.url, db=workdir / "live.duckdb")
        asyncio.run(_publish_phase(settings, events, results))
        asyncio.run(_ordered_ceiling(settings, events, results))
        _replay_phase(settings, events, workdir, results)
        _live_phase(settings, events, workdir, results)
        _naive_phase(settings, sample, workdir, results)
        _query_phase(workdir / "replay.duckdb", results)
        _startup_phase(workdir / "replay.duckdb", results)
    with EmbeddedServer(workdir / "nats-latency", port=0) as server:
        settings = Settings(nats_url=server.url, db=workdir / "latency.duckdb")
        _latency_phase(settings, latency_rate, latency_seconds, results)
    with EmbeddedServer(workdir / "nats-runaway", port=0) as server:
        settings = Settings(nats_url=server.url, db=workdir / "runaway.duckdb")
        _latency_phase(settings, latency_rate, latency_seconds, results, runaway=True)
    _ratios(results)
    return results


# A server that acknowledges before its disk has the write: the memory run builds a large stream
# once, to measure what reading it costs, not what storing it does.
UNSYNCED = "# Written by outreach bench --memory: acknowledged before written to disk.\njetstream {}\n"


def run_memory(at: list[int], workdir: Path) -> Results:
    """The memory run: one stream of ``max(at)`` events, and at each size in ``at`` as the stream
    reaches it: the live projector over the whole backlog and a replay of it, each a new process
    from an empty file (peak RSS, events/s), and the three totals queries on the replayed file."""
    results = Results(max(at), machine())
    config = workdir / "unsynced.conf"
    config.write_text(UNSYNCED)
    with EmbeddedServer(workdir / "nats", port=0, config_file=config) as server:
        settings = Settings(nats_url=server.url, db=workdir / "live.duckdb")
        generated = generate(max(at))
        published = 0
        for size in sorted(at):
            published = asyncio.run(_publish_bare(settings, generated, published, size))
            print(f"{published:,} events stored; the live projector and a replay over them", file=sys.stderr)
            seconds, measured = _timed("project", settings, workdir / f"live-{size}.duckdb")
            _require_all("project --until-caught-up", measured, size)
            results.add(f"live_projector_{size}_per_s", size / seconds)
            results.add(f"live_projector_{size}_peak_rss_mib", measured.peak_rss_mib)
            replayed = workdir / f"replay-{size}.duckdb"
            seconds, measured = _timed("replay", settings, replayed)
            _require_all("replay", measured, size)
            results.add(f"replay_{size}_per_s", size / seconds)
            results.add(f"replay_{size}_peak_rss_mib", measured.peak_rss_mib)
            results.add(f"replay_{size}_copy_peak_rss_mib", measured.copy_peak_rss_mib)
            _query_phase(replayed, results, suffix=f"_{size}")
            for path in (workdir / f"live-{size}.duckdb", replayed):  # a few GB at millions of events
                path.unlink()
    return results


async def _publish_bare(settings: Settings, generated: Iterator[Any], published: int, until: int) -> int:
    """Publish the next generated events with bare ``publish_async`` until ``until`` are stored."""
    nc = await nats.connect(settings.nats_url)
    js = nc.jetstream(publish_async_max_pending=WINDOW)
    await ensure_stream(js, settings.stream, settings.duplicate_window_s)
    while published < until:
        window = list(itertools.islice(generated, min(WINDOW, until - published)))
        futures = [await js.publish_async(i.subject, i.payload, headers={"Nats-Msg-Id": i.event_id}) for i in window]
        await asyncio.gather(*futures)
        published += len(window)
    info = await js.stream_info(settings.stream)
    await nc.close()
    if info.state.messages != published:
        raise RuntimeError(f"{info.state.messages:,} of {published:,} events were stored")
    return published


def _chunks(events: int, size: int = 20_000) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in generate(events):
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


async def _publish_phase(settings: Settings, events: int, results: Results) -> None:
    print(f"publishing {events:,} events twice (bare publish_async, then the Publisher)", file=sys.stderr)
    nc = await nats.connect(settings.nats_url)
    js = nc.jetstream(publish_async_max_pending=WINDOW)
    await js.add_stream(StreamConfig(name=RAW_STREAM, subjects=["bench.raw.>"], duplicate_window=3600))
    await ensure_stream(js, settings.stream, settings.duplicate_window_s)
    raw_seconds = ours_seconds = 0.0
    publisher = Publisher(js, window=WINDOW)
    stored = 0
    for chunk in _chunks(events):
        payloads = [(i.subject, i.payload, i.event_id) for i in chunk]
        models = [parse_event(i.payload) for i in chunk]  # agencies hold validated events already
        start = time.perf_counter()
        for offset in range(0, len(payloads), WINDOW):
            futures = [
                await js.publish_async("bench.raw." + s[16:], p, headers={"Nats-Msg-Id": e})
                for s, p, e in payloads[offset : offset + WINDOW]
            ]
            await asyncio.gather(*futures)
        raw_seconds += time.perf_counter() - start
        start = time.perf_counter()
        report = await publisher.publish(models)
        ours_seconds += time.perf_counter() - start
        stored += report.stored
        if report.failed:
            raise RuntimeError(f"publishing failed: {report.failed[:3]}")
    await nc.close()
    if stored != events:
        raise RuntimeError(f"{stored} of {events} events were acknowledged as stored")
    results.add("publish_raw_per_s", events / raw_seconds)
    results.add("publish_ours_per_s", events / ours_seconds)


async def _ordered_ceiling(settings: Settings, events: int, results: Results) -> None:
    nc = await nats.connect(settings.nats_url)
    js = nc.jetstream()
    done = asyncio.Event()
    count = 0

    async def counted(msg: Any) -> None:  # noqa: ARG001
        nonlocal count
        count += 1
        if count == events:
            done.set()

    start = time.perf_counter()
    sub = await js.subscribe(WHOLE_STREAM, stream=settings.stream, cb=counted, ordered_consumer=True)
    await asyncio.wait_for(done.wait(), timeout=3600)
    results.add("ordered_consumer_per_s", events / (time.perf_counter() - start))
    await sub.unsubscribe()
    await nc.close()


def _replay_phase(settings: Settings, events: int, workdir: Path, results: Results) -> None:
    quarter = events // 4
    print(f"replaying {quarter:,} and {events:,} events into new files", file=sys.stderr)
    seconds, measured = _timed("replay", settings, workdir / "replay-quarter.duckdb", until_seq=quarter)
    _require_all("replay --until-seq", measured, quarter)
    results.add("replay_quarter_per_s", quarter / seconds)
    results.add("replay_quarter_peak_rss_mib", measured.peak_rss_mib)
    results.add("replay_quarter_copy_peak_rss_mib", measured.copy_peak_rss_mib)
    seconds, measured = _timed("replay", settings, workdir / "replay.duckdb")
    _require_all("replay", measured, events)
    results.add("replay_per_s", events / seconds)
    results.add("replay_peak_rss_mib", measured.peak_rss_mib)
    results.add("replay_copy_peak_rss_mib", measured.copy_peak_rss_mib)


def _timed(command: Command, settings: Settings, db: Path, until_seq: int | None = None) -> tuple[float, Measured]:
    """A command in a process of its own (``outreach.measure``): its seconds, start to end, and
    what it measured of itself."""
    start = time.perf_counter()
    measured = in_a_process(command, settings, db, until_seq)
    return time.perf_counter() - start, measured


def _require_all(command: str, measured: Measured, expected: int) -> None:
    """A rate is only a figure if every event was read: a reader that stops early looks fast."""
    if measured.messages != expected:
        raise RuntimeError(
            f"outreach {command} read {measured.messages:,} of {expected:,} events; no rate is reported for it"
        )


def _live_phase(settings: Settings, events: int, workdir: Path, results: Results) -> None:
    print("the live projector over the same backlog", file=sys.stderr)
    seconds, measured = _timed("project", settings, workdir / "live.duckdb")
    _require_all("project --until-caught-up", measured, events)
    results.add("live_projector_per_s", events / seconds)
    results.add("live_projector_peak_rss_mib", measured.peak_rss_mib)


def _naive_phase(settings: Settings, sample: int, workdir: Path, results: Results) -> None:
    print(f"the naive projector on {sample:,} events", file=sys.stderr)
    seconds = asyncio.run(_naive(settings, sample, workdir / "naive.duckdb"))
    results.add("naive_projector_per_s", sample / seconds)


async def _naive(settings: Settings, sample: int, db: Path) -> float:
    """One FastStream handler call and one INSERT per event: what a first version would do."""
    from faststream import Context
    from faststream.nats import JStream, NatsBroker, PullSub

    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE totals (county VARCHAR PRIMARY KEY, events BIGINT)")
    broker = NatsBroker(settings.nats_url, logger=None)
    done = asyncio.Event()
    seen = 0

    @broker.subscriber(
        "outreach.events.>",
        stream=JStream(settings.stream, declare=False),
        durable="naive",
        pull_sub=PullSub(batch_size=100, timeout=0.5),
    )
    async def handle(body: Any, message: Any = Context("message")) -> None:  # noqa: ARG001
        nonlocal seen
        event = parse_event(message.body)
        county = getattr(event, "county", None) or "-"
        con.execute("INSERT INTO totals VALUES (?, 1) ON CONFLICT (county) DO UPDATE SET events = events + 1", [county])
        seen += 1
        if seen >= sample:
            done.set()

    start = time.perf_counter()
    async with broker:
        await broker.start()
        await asyncio.wait_for(done.wait(), timeout=3600)
        seconds = time.perf_counter() - start
    con.close()
    return seconds


def _query_phase(db: Path, results: Results, suffix: str = "") -> None:
    con = duckdb.connect(str(db), read_only=True)
    for view in ("totals_by_county", "totals_by_campaign", "totals_by_plan_task"):
        times = []
        for _ in range(5):
            start = time.perf_counter()
            con.execute(f"SELECT * FROM {view}").fetchall()
            times.append((time.perf_counter() - start) * 1000)
        results.add(f"query_{view}{suffix}_ms", statistics.median(times))
    con.close()


def _startup_phase(db: Path, results: Results) -> None:
    """`outreach sql --db FILE "SELECT 1"`, a whole process, five times: the median."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
    times = []
    for _ in range(5):
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "outreach", "sql", "--db", str(db), "SELECT 1"],
            env=env,
            check=True,
            capture_output=True,
        )
        times.append((time.perf_counter() - start) * 1000)
    results.add("sql_startup_ms", statistics.median(times))


RUNAWAY = "SELECT count(*) FROM range(1000000) a, range(1000000) b"


def _latency_phase(settings: Settings, rate: int, seconds: float, results: Results, *, runaway: bool = False) -> None:
    during = " with a runaway query" if runaway else ""
    print(f"live latency at {rate:,} events/s for {seconds:.0f}s{during}", file=sys.stderr)
    ctx = multiprocessing.get_context("spawn")
    commits: Any = ctx.Queue()
    ready = ctx.Event()
    # The runaway is stopped at the projector's limit: long enough to span the whole run.
    if runaway:
        settings = settings.model_copy(update={"query_timeout_s": seconds + 30})
    child = ctx.Process(target=_latency_projector, args=(settings, commits, ready), daemon=True)
    child.start()
    answers: list[float] = []
    try:
        if not ready.wait(60):
            raise RuntimeError("the projector did not start")
        sent = asyncio.run(
            _with_runaway(settings, rate, seconds, answers) if runaway else _steady_publish(settings, rate, seconds)
        )
        last_seq = max(sent)
        committed: list[tuple[int, float]] = []
        deadline = time.monotonic() + 60
        while (not committed or committed[-1][0] < last_seq) and time.monotonic() < deadline:
            committed.append(commits.get(timeout=60))
    finally:
        child.terminate()
        child.join(10)
    latencies = []
    position = 0
    warm_up = rate  # the first second's events: the projector may still be starting
    for seq in sorted(sent)[warm_up:]:
        while committed[position][0] < seq:
            position += 1
        latencies.append((committed[position][1] - sent[seq]) * 1000)
    latencies.sort()
    name = "latency_runaway" if runaway else "latency"
    results.add(f"{name}_p50_ms", latencies[len(latencies) // 2])
    results.add(f"{name}_p99_ms", latencies[int(len(latencies) * 0.99) - 1])
    if runaway:
        answers.sort()
        results.add("select1_during_runaway_p95_ms", answers[int(len(answers) * 0.95) - 1])


async def _with_runaway(settings: Settings, rate: int, seconds: float, answers: list[float]) -> dict[int, float]:
    """The steady publishing, while one analyst's runaway query runs in the projector and another
    asks `SELECT 1` every 100 ms (each answer's time in ``answers``, in ms)."""
    nc = await nats.connect(settings.nats_url)
    subject = query_subject(settings.stream)
    select_1 = encode_query("SELECT 1")
    await ask(nc, subject, select_1, timeout=5, starting_s=60)  # the projector answers once its services are up
    runaway = asyncio.create_task(ask(nc, subject, encode_query(RUNAWAY), timeout=seconds + 60))

    async def probe() -> None:
        while not stop.is_set():
            start = time.perf_counter()
            answer = decode_answer(await ask(nc, subject, select_1, timeout=30), subject)  # raises on a refusal
            answers.append((time.perf_counter() - start) * 1000)
            assert answer.rows == [(1,)], answer
            await asyncio.sleep(0.1)

    stop = asyncio.Event()
    probing = asyncio.create_task(probe())
    try:
        sent = await _steady_publish(settings, rate, seconds)
    finally:
        stop.set()
        await probing
        runaway.cancel()
        await nc.close()
    return sent


def _latency_projector(settings: Settings, commits: Any, ready: Any) -> None:
    from consumers.app import run_projector
    from runtime.interpreter import tune_gc

    tune_gc()  # as `outreach project` does

    def on_batch(projector: Any) -> None:
        commits.put((projector.last_seq, time.time()))

    async def main() -> None:
        nc = await nats.connect(settings.nats_url)
        await ensure_stream(nc.jetstream(), settings.stream, settings.duplicate_window_s)
        await nc.close()
        ready.set()
        await run_projector(settings, on_batch=on_batch)

    asyncio.run(main())


async def _steady_publish(settings: Settings, rate: int, seconds: float) -> dict[int, float]:
    """Publish at ``rate`` events/s in 10 ms ticks; return stream sequence -> wall time sent."""
    nc = await nats.connect(settings.nats_url)
    js = nc.jetstream()
    publisher = Publisher(js, window=WINDOW)
    total = int(rate * seconds)
    items = [parse_event(i.payload) for i in generate(total, seed=99)]
    sent: dict[int, float] = {}
    per_tick = max(1, rate // 100)
    start = time.perf_counter()
    for tick, offset in enumerate(range(0, total, per_tick)):
        wall = time.time()
        report = await publisher.publish(items[offset : offset + per_tick])
        if report.first_seq is not None and report.last_seq is not None:
            for seq in range(report.first_seq, report.last_seq + 1):
                sent[seq] = wall
        pause = start + (tick + 1) * 0.01 - time.perf_counter()
        if pause > 0:
            await asyncio.sleep(pause)
    await nc.close()
    return sent


def _ratios(results: Results) -> None:
    f = results.figures
    f["publish_ratio_to_raw"] = f["publish_ours_per_s"] / f["publish_raw_per_s"]
    f["replay_ratio_to_ordered_consumer"] = f["replay_per_s"] / f["ordered_consumer_per_s"]
    f["replay_ratio_to_naive"] = f["replay_per_s"] / f["naive_projector_per_s"]
    f["live_ratio_to_naive"] = f["live_projector_per_s"] / f["naive_projector_per_s"]


# What BENCHMARKS.md holds each figure to (its *Targets*).
TARGETS: list[tuple[str, str, Callable[[dict[str, float]], bool]]] = [
    ("publish_ratio_to_raw", ">= 0.7", lambda f: f["publish_ratio_to_raw"] >= 0.7),
    ("replay_ratio_to_ordered_consumer", ">= 0.12", lambda f: f["replay_ratio_to_ordered_consumer"] >= 0.12),
    ("replay_peak_rss_mib", "<= 400 MiB", lambda f: f["replay_peak_rss_mib"] <= 400),
    ("replay_copy_peak_rss_mib", "<= 400 MiB", lambda f: f["replay_copy_peak_rss_mib"] <= 400),
    ("live_projector_peak_rss_mib", "<= 400 MiB", lambda f: f["live_projector_peak_rss_mib"] <= 400),
    ("query_totals_by_county_ms", "< 100 ms", lambda f: f["query_totals_by_county_ms"] < 100),
    ("query_totals_by_campaign_ms", "< 100 ms", lambda f: f["query_totals_by_campaign_ms"] < 100),
    ("query_totals_by_plan_task_ms", "< 100 ms", lambda f: f["query_totals_by_plan_task_ms"] < 100),
    ("sql_startup_ms", "<= 300 ms", lambda f: f["sql_startup_ms"] <= 300),
    ("latency_p99_ms", "<= 500 ms", lambda f: f["latency_p99_ms"] <= 500),
    ("latency_runaway_p99_ms", "<= 1,000 ms", lambda f: f["latency_runaway_p99_ms"] <= 1000),
]


def table(results: Results) -> str:
    """The results as one Markdown table, with the targets they are held to."""
    targets = {key: (text, check) for key, text, check in TARGETS}
    lines = ["| measure | value | target | met |", "| --- | ---: | --- | --- |"]
    for key, value in results.figures.items():
        text, check = targets.get(key, ("", None))
        met = "" if check is None else ("yes" if check(results.figures) else "no")
        shown = f"{value:,.2f}" if value < 10 else f"{value:,.0f}"
        lines.append(f"| {key} | {shown} | {text} | {met} |")
    m = results.machine
    lines.append("")
    lines.append(
        f"{results.events:,} events; {m['cpus']} CPUs ({m['cpu']}), {m['memory_gib']} GiB, "
        f"Python {m['python']}, DuckDB {m['duckdb']}, {m['date']}."
    )
    return "\n".join(lines)


def main(
    events: int,
    sample: int,
    latency_rate: int,
    latency_seconds: float,
    out: Path | None,
    workdir: Path | None,
    memory_at: list[int] | None = None,
) -> Results:
    if workdir is not None:
        try:
            workdir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutreachError(f"cannot use {workdir} as the benchmark's working directory: {exc}") from None
    with tempfile.TemporaryDirectory(prefix="outreach-bench-", dir=workdir) as tmp:
        if memory_at:
            results = run_memory(memory_at, Path(tmp))
        else:
            results = run_bench(events, sample, latency_rate, latency_seconds, Path(tmp))
    print(table(results))
    if out is not None:
        out.write_text(
            json.dumps({"events": results.events, "machine": results.machine, "figures": results.figures}, indent=2)
            + "\n"
        )
    return results
