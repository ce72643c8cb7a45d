"""Analysts against a running projector, each as a real process: nothing they send can write, a
runaway query is stopped at its limit without holding up anyone else, an answer too large is
refused, the reading commands work beside the projector, and a reader never stops the writer."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from nats.aio.client import Client

from outreach.synthetic import generate
from producers.publisher import Publisher
from projections.snapshot import snapshot_path
from runtime.memory import data_bound_mib
from runtime.settings import Settings
from runtime.stream import ensure_stream
from schemas.parse import parse_event
from schemas.subjects import query_subject, status_subject
from tests.conftest import wait_until

pytestmark = pytest.mark.integration

RUNAWAY = "SELECT count(*) FROM range(1000000) a, range(1000000) b"


def outreach(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
    clean.update({"OUTREACH_NATS_URL": settings.nats_url, "OUTREACH_DB": str(settings.db), **env})
    return subprocess.run(
        [sys.executable, "-m", "outreach", *args], env=clean, capture_output=True, text=True, timeout=120
    )


def sql_process(settings: Settings, query: str) -> subprocess.Popen[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
    return subprocess.Popen(
        [sys.executable, "-m", "outreach", "sql", "--db", str(settings.db), "--nats", settings.nats_url, query],
        env=clean,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def sql(settings: Settings, query: str) -> subprocess.CompletedProcess[str]:
    return outreach(settings, "sql", "--format", "csv", query)


def answer(done: subprocess.CompletedProcess[str]) -> list[str]:
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()[1:]


class Projector:
    """`outreach project`, following the stream, stopped with SIGTERM."""

    def __init__(self, settings: Settings, **env: str) -> None:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
        clean.update(
            OUTREACH_NATS_URL=settings.nats_url,
            OUTREACH_DB=str(settings.db),
            OUTREACH_BATCH_SIZE="500",
            OUTREACH_SNAPSHOT_INTERVAL_S="0.5",
            **env,
        )
        self.settings = settings
        self.process = subprocess.Popen(
            [sys.executable, "-m", "outreach", "project"], env=clean, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )

    def applied(self) -> int:
        """The stream sequence the projection answers as of (0 before the first batch)."""
        done = sql(self.settings, "SELECT 1")
        if done.returncode != 0 or "as of nothing" in done.stderr:
            return 0
        return int(done.stderr.split("stream sequence ")[1].split(",")[0])

    def stop(self) -> str:
        self.process.send_signal(signal.SIGTERM)
        _, err = self.process.communicate(timeout=60)
        assert self.process.returncode == 0, err.decode()[-3000:]
        return err.decode()


async def publish(nc: Client, settings: Settings, count: int, seed: int) -> int:
    js = nc.jetstream()
    await ensure_stream(js, settings.stream, settings.duplicate_window_s)
    report = await Publisher(js).publish(parse_event(i.payload) for i in generate(count, seed=seed))
    assert report.stored == count
    return (await js.stream_info(settings.stream)).state.last_seq


@pytest.fixture
def projector(settings: Settings) -> Iterator[Projector]:
    running = Projector(settings, OUTREACH_QUERY_TIMEOUT_S="20", OUTREACH_QUERY_SLOTS="2")
    try:
        yield running
    finally:
        if running.process.poll() is None:
            running.stop()


async def test_nothing_an_analyst_sends_can_write(nc: Client, settings: Settings, projector: Projector) -> None:
    last = await publish(nc, settings, 300, seed=61)
    wait_until(lambda: projector.applied() == last, 60, "the projector caught up")
    writes = [
        "EXPLAIN ANALYZE UPDATE checkpoint SET last_seq = 0",
        "EXPLAIN ANALYZE DELETE FROM event_log",
        "EXPLAIN ANALYZE INSERT INTO stream_gaps VALUES (1, 1, now())",
        "EXPLAIN ANALYZE CREATE TABLE stolen AS SELECT * FROM event_log",
        "EXPLAIN ANALYZE DROP TABLE checkpoint",
        "EXPLAIN ANALYZE CHECKPOINT",  # a read-only transaction let this one write the file
        "EXPLAIN ANALYZE FORCE CHECKPOINT",
        "EXPLAIN ANALYZE VACUUM",
        "EXPLAIN ANALYZE CREATE TEMP TABLE stolen AS SELECT 1",
        "/* a comment first */ EXPLAIN ANALYZE CHECKPOINT",
        "UPDATE checkpoint SET last_seq = 0",
        "SELECT 1; DELETE FROM event_log",
    ]
    for statement in writes:
        done = sql(settings, statement)
        assert done.returncode == 1, (statement, done.stdout)
        assert "refused" in done.stderr, (statement, done.stderr)
        assert "Traceback" not in done.stderr
        if "EXPLAIN" in statement:
            assert done.stderr.splitlines()[0] == (
                "error: EXPLAIN of anything but a SELECT is refused (EXPLAIN SELECT … and EXPLAIN ANALYZE SELECT … "
                "are answered): `outreach sql` only reads. The projection is written by the projector alone."
            ), statement
    explained = sql(settings, "-- how is it counted?\nEXPLAIN ANALYZE SELECT count(*) FROM event_log")
    assert explained.returncode == 0 and "EXPLAIN" in explained.stdout.upper(), explained.stderr
    assert answer(sql(settings, "SELECT last_seq FROM checkpoint")) == [str(last)]
    assert answer(sql(settings, "SELECT count(*) FROM event_log")) == ["300"]
    assert answer(sql(settings, "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'stolen'")) == ["0"]

    # The projector goes on writing after every refusal.
    last = await publish(nc, settings, 200, seed=62)
    wait_until(lambda: projector.applied() == last, 60, "the projector applied the next events")
    assert answer(sql(settings, "SELECT count(*) FROM event_log")) == ["500"]


async def test_the_projector_answers_only_inboxes(nc: Client, settings: Settings, projector: Projector) -> None:
    """On a server without accounts nothing else stops a reply: a request whose reply subject is an
    agency's event subject would have its answer stored in the stream, for ever."""
    last = await publish(nc, settings, 20, seed=68)
    wait_until(lambda: projector.applied() == last, 60, "the projector caught up")
    js = nc.jetstream()
    before = (await js.stream_info(settings.stream)).state.messages
    aimed = "outreach.events.al-06-agency-0.session_held"
    await nc.publish(query_subject(settings.stream), b"SELECT 1", reply=aimed)
    await nc.publish(status_subject("al-06-agency-0"), b"{}", reply=aimed)
    await nc.flush()
    assert answer(sql(settings, "SELECT count(*) FROM event_log")) == ["20"]  # an inbox is answered
    err = projector.stop()  # whatever the handlers would have published has been sent by now
    assert (await js.stream_info(settings.stream)).state.messages == before == 20
    assert err.count(f"refused a request whose reply subject '{aimed}' is not an inbox") == 2


async def test_a_runaway_query_is_stopped_and_holds_up_no_one(
    nc: Client, settings: Settings, projector: Projector
) -> None:
    last = await publish(nc, settings, 200, seed=63)
    wait_until(lambda: projector.applied() == last, 60, "the projector caught up")

    runaway = sql_process(settings, RUNAWAY)
    try:
        # While it runs: another analyst's query is answered, and new events are applied.
        started = time.monotonic()
        assert answer(sql(settings, "SELECT 1 AS one")) == ["1"]
        last = await publish(nc, settings, 400, seed=64)
        wait_until(lambda: projector.applied() == last, 60, "the projector applied events during the runaway")
        assert runaway.poll() is None, "the runaway ended before the others were answered"
        assert time.monotonic() - started < 20

        # A second runaway takes the last slot; the next query is refused at once, and says why.
        second = [sql_process(settings, RUNAWAY)]
        refusals: list[str] = []

        def busy() -> bool:
            if second[0].poll() is not None:  # it met a probe in the last slot and was refused: again
                second[0] = sql_process(settings, RUNAWAY)
            done = sql(settings, "SELECT 1")
            if done.returncode != 0:
                refusals.append(done.stderr)
            return bool(refusals)

        wait_until(busy, 15, "a query refused while both slots run")
        assert "the projector is answering 2 queries already" in refusals[0]
        _, err = second[0].communicate(timeout=60)
        assert second[0].returncode == 1
    finally:
        _, first_err = runaway.communicate(timeout=60)
    assert runaway.returncode == 1
    assert "the query ran longer than 20 s and was stopped" in first_err
    assert "the query ran longer than 20 s and was stopped" in err
    assert answer(sql(settings, "SELECT 1 AS one")) == ["1"]
    assert answer(sql(settings, "SELECT count(*) FROM event_log")) == ["600"]
    log = projector.stop()
    assert "ERROR" not in log and "Traceback" not in log
    assert log.count("refused a query (the query ran longer than 20 s") == 2


async def test_an_answer_too_large_is_refused(nc: Client, settings: Settings, projector: Projector) -> None:
    last = await publish(nc, settings, 100, seed=65)
    wait_until(lambda: projector.applied() == last, 60, "the projector caught up")

    done = sql(settings, "SELECT * FROM range(3000000)")
    assert done.returncode == 1
    assert "result too large: 3,000,000 rows; add LIMIT, or use `outreach export`" in done.stderr
    one_reply = f"{nc.max_payload - 4096:,}"  # the broker's max_payload, less room for the reply's headers
    done = sql(settings, "SELECT repeat('x', 2000) AS wide FROM range(1000)")
    assert done.returncode == 1
    assert done.stderr.splitlines()[0] == (
        f"error: result too large: its first 768 rows are more than {one_reply} bytes as JSON, what one reply "
        "holds; add LIMIT, or use `outreach export`"
    )
    # 400 MB of text in 100,000 rows is refused at its first rows fetched (256 at a time), not after all
    # are held as JSON.
    done = sql(settings, "SELECT repeat('x', 4000) AS wide FROM range(100000)")
    assert done.returncode == 1
    assert done.stderr.splitlines()[0] == (
        f"error: result too large: its first 512 rows are more than {one_reply} bytes as JSON, what one reply "
        "holds; add LIMIT, or use `outreach export`"
    )
    assert peak_rss_mib(projector.process.pid) < 400
    assert len(answer(sql(settings, "SELECT * FROM range(100000)"))) == 100_000  # the cap itself is allowed
    assert answer(sql(settings, "SELECT count(*) FROM event_log")) == ["100"]  # and the projector goes on


def peak_rss_mib(pid: int) -> float:
    """A process's peak resident memory so far (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for process {pid}")


async def test_a_query_past_the_memory_limit_is_refused_and_the_projector_goes_on(
    nc: Client, settings: Settings
) -> None:
    """OUTREACH_MEMORY_LIMIT_MB sizes the buffer pool that the projector's queries share; a query
    that needs more is refused with a sentence (DuckDB's own advice is to SET what analysts cannot).
    OUTREACH_DUCKDB_THREADS sets the threads one statement runs on (1 unless given)."""
    running = Projector(settings, OUTREACH_MEMORY_LIMIT_MB="16", OUTREACH_DUCKDB_THREADS="3")
    try:
        last = await publish(nc, settings, 100, seed=66)
        wait_until(lambda: running.applied() == last, 60, "the projector caught up")
        assert answer(sql(settings, "SELECT current_setting('memory_limit')")) == ["15.2 MiB"]  # 16 MB
        assert answer(sql(settings, "SELECT current_setting('threads')")) == ["3"]
        done = sql(settings, "SELECT length(list(repeat('x', 100))::VARCHAR) AS n FROM range(1000000)")
        assert done.returncode == 1
        assert done.stderr.splitlines()[0] == (
            "error: the query needs more memory than queries are given here (15.2 MiB of DuckDB's pool, in a "
            f"process limited to {data_bound_mib(16):,} MiB); narrow it with WHERE or LIMIT, or use `outreach export`"
        )
        assert answer(sql(settings, "SELECT count(*) FROM event_log")) == ["100"]
    finally:
        err = running.stop()
    assert "needs more memory" in err  # the refusal is recorded in the projector's log


async def test_reading_commands_beside_a_live_projector_equal_those_after_it_stops(
    nc: Client, settings: Settings, projector: Projector, tmp_path: Path
) -> None:
    last = await publish(nc, settings, 2_000, seed=66)
    wait_until(lambda: projector.applied() == last, 60, "the projector caught up")

    def snapshot_seq() -> int:
        if not snapshot_path(settings.db).exists():
            return 0
        con = duckdb.connect(str(snapshot_path(settings.db)), read_only=True)
        try:
            return int(con.execute("SELECT as_of_seq FROM snapshot_info").fetchone()[0])
        finally:
            con.close()

    wait_until(lambda: snapshot_seq() == last, 30, "the snapshot caught up")

    def read_all(label: str) -> dict[str, str]:
        report = tmp_path / f"{label}.html"
        some = tmp_path / f"{label}-al-2020.html"
        export = tmp_path / f"{label}.csv"
        history = tmp_path / f"{label}-history.csv"
        done = {
            "report": outreach(settings, "report", "--out", str(report)),
            "some": outreach(settings, "report", "--country", "AL", "--from", "2020", "--out", str(some)),
            "export": outreach(
                settings, "export", "--view", "totals_by_county", "--format", "csv", "--out", str(export)
            ),
            # Not in the snapshot: read from a whole copy the projector writes on request.
            "history": outreach(settings, "export", "--view", "event_history", "--out", str(history)),
            "verify": outreach(settings, "verify"),
        }
        for name, result in done.items():
            assert result.returncode == 0, (label, name, result.stdout, result.stderr)
            assert "Traceback" not in result.stderr
        assert done["verify"].stdout.startswith("OK:")
        return {
            "report": report.read_text("utf-8"),
            "some": some.read_text("utf-8"),
            "export": export.read_text("utf-8"),
            "history": history.read_text("utf-8"),
            "notes": done["report"].stderr,
            "copy notes": without_as_of(done["history"].stderr) + done["verify"].stderr,
            "as of": as_of_of(done["history"].stderr),
            "verified": done["verify"].stdout,
        }

    live = read_all("live")
    assert f"is being written by a running projector: read its snapshot {snapshot_path(settings.db)}" in live["notes"]
    assert f"as of stream sequence {last}" in live["notes"]
    copy = settings.db.with_name(f"{settings.db.stem}.copy.duckdb")
    said = f"note: {settings.db} is being written by a running projector: read the copy it wrote, {copy}, as of "
    assert live["copy notes"] == f"{said}stream sequence {last}\n" * 2
    assert live["as of"] == stopped_as_of(last)
    assert live["verified"].startswith(
        f"OK: {copy} equal a fresh fold of stream {settings.stream} up to sequence {last}"
    )
    projector.stop()
    stopped = read_all("stopped")
    assert stopped["notes"] == ""
    assert live["report"] == stopped["report"]
    assert live["some"] == stopped["some"]
    assert 'id="country-PL"' in stopped["report"] and 'id="country-PL"' not in stopped["some"]
    assert live["export"] == stopped["export"]
    assert live["history"] == stopped["history"] and len(stopped["history"].splitlines()) == 2_000 + 1

    # The snapshot file itself can be read by each of them, too.
    for args in (("report", "--out", str(tmp_path / "s.html")), ("verify",)):
        done = outreach(settings, *args, OUTREACH_DB=str(snapshot_path(settings.db)))
        assert done.returncode == 0, done.stderr
    assert (tmp_path / "s.html").read_text("utf-8") == stopped["report"]
    done = outreach(
        settings,
        "export",
        "--view",
        "event_history",
        "--out",
        str(tmp_path / "h.csv"),
        OUTREACH_DB=str(snapshot_path(settings.db)),
    )
    assert done.returncode == 1
    assert "is a snapshot, which holds the totals views only" in done.stderr


async def test_a_copy_is_written_again_only_once_something_was_applied_since(
    nc: Client, settings: Settings, projector: Projector, tmp_path: Path
) -> None:
    """Exports of a view the snapshot lacks, one after the other: the second reads the copy the
    first had the projector write, as nothing was applied in between; after more events, the
    third has it written again, with them."""
    last = await publish(nc, settings, 300, seed=68)
    wait_until(lambda: projector.applied() == last, 60, "the projector caught up")
    copy = settings.db.with_name(f"{settings.db.stem}.copy.duckdb")

    def export(name: str) -> tuple[str, int, int, int]:
        out = tmp_path / f"{name}.csv"
        done = outreach(settings, "export", "--view", "event_history", "--out", str(out))
        assert done.returncode == 0, done.stderr
        assert as_of_of(done.stderr) == stopped_as_of(projector.applied())
        found = copy.stat()
        return without_as_of(done.stderr), len(out.read_text("utf-8").splitlines()), found.st_ino, found.st_mtime_ns

    said = f"note: {settings.db} is being written by a running projector: read the copy it wrote, {copy}, as of "
    first = export("first")
    assert first[:2] == (f"{said}stream sequence {last}\n", 300 + 1)
    assert export("second") == first  # the same file, not written again
    more = await publish(nc, settings, 20, seed=69)
    wait_until(lambda: projector.applied() == more, 60, "the projector applied the new events")
    third = export("third")
    assert third[0] == f"{said}stream sequence {more}\n"
    assert third[2:] != first[2:]


AS_OF_NOTE = re.compile(r"^note: event_history: figures as received by [0-9-]{10} [0-9:]{8} UTC (\(.*\))\n", re.M)


def without_as_of(stderr: str) -> str:
    """An export's standard error without the line that says what it is as of."""
    return AS_OF_NOTE.sub("", stderr)


def as_of_of(stderr: str) -> list[str]:
    """The stream and sequence of the export's as-of line(s)."""
    return AS_OF_NOTE.findall(stderr)


def stopped_as_of(seq: int) -> list[str]:
    return [f"(stream OUTREACH, sequence {seq:,})"]


def _read_until(projector: Projector, text: str) -> bool:
    """Read the projector's log until ``text`` (True) or its end (False)."""
    return any(text in line.decode() for line in projector.process.stderr)


async def test_a_reader_never_stops_the_projector_from_starting(nc: Client, settings: Settings) -> None:
    last = await publish(nc, settings, 300, seed=67)
    first = Projector(settings)
    wait_until(lambda: first.applied() == last, 60, "the projector caught up")
    first.stop()

    for start in range(5):
        reader = duckdb.connect(str(settings.db), read_only=True)  # an analyst's tool on the file
        reader.execute("SELECT count(*) FROM event_log").fetchone()
        projector = Projector(settings)
        try:
            said = _read_until(projector, "a reader (a notebook, `outreach sql --db`, a report); waiting for")
            assert said, (start, said)
            reader.close()
            more = await publish(nc, settings, 10, seed=100 + start)
            wait_until(lambda p=projector, m=more: p.applied() == m, 60, "the projector started and applied")
        finally:
            reader.close()
            projector.stop()

    # A second writer is refused at once, and told why.
    running = Projector(settings)
    try:
        wait_until(lambda: running.applied() == more, 60, "the projector started")
        second = outreach(settings, "project", "--until-caught-up")
        assert second.returncode == 1
        assert "holds it open for writing" in second.stderr and "One projector writes a file" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        running.stop()


async def test_a_projector_stopping_stops_the_queries_it_runs(nc: Client, settings: Settings) -> None:
    last = await publish(nc, settings, 100, seed=68)
    projector = Projector(settings, OUTREACH_QUERY_SLOTS="1", OUTREACH_QUERY_TIMEOUT_S="600")
    try:
        wait_until(lambda: projector.applied() == last, 60, "the projector caught up")
        runaway = sql_process(settings, RUNAWAY)
        wait_until(lambda: sql(settings, "SELECT 1").returncode == 1, 30, "the runaway holding the one slot")
    finally:
        started = time.monotonic()
        log = projector.stop()  # not 600 s: the running query is interrupted
    assert time.monotonic() - started < 30
    _, err = runaway.communicate(timeout=60)
    assert runaway.returncode == 1
    assert "the projector is stopping, and stopped the query; ask again once it is back" in err
    assert "Traceback" not in log
