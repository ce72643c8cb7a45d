"""What an agency sends and what holds the projector's file are bounded: a flood of the largest
messages a stream made before the limit accepts is folded within the projector's memory and
rejected with a reason; the admin lowers that stream's limit; a failed write says what failed; a
stream deleted and created anew under a running projector stops it; a reader holding the file
delays its start, never stops it. Against a real nats-server (with an account per agency where the
attack is an agency's) and real projector processes."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
from nats.errors import Error as NatsError
from nats.js.errors import BadRequestError

from consumers.fold import REJECTED_PAYLOAD_BYTES
from outreach import auth
from projections.query import run_query
from projections.rows import BatchUpdate, RejectedRow
from projections.store import ProjectionStore
from runtime.connection import connect
from runtime.server import EmbeddedServer
from runtime.settings import Settings
from runtime.stream import MAX_MESSAGE_BYTES, ensure_stream, stream_config
from schemas.errors import ProjectionError
from schemas.parse import MAX_EVENT_BYTES
from tests.reliability.harness import Processes, checkpoint, outreach_env, snapshot_seq, wait_for_projection
from tests.test_trust_boundary import as_user, env_of, publish_raw, session, subject

pytestmark = pytest.mark.integration

AGENCIES = ["al-a", "al-b"]
OLD_LIMIT = 1024 * 1024  # what streams were made with before messages were bounded by an event's size
JUNK = b"{" + b" " * 999_998 + b"}"  # 1,000,000 bytes
FLOOD = 150
# The projector's peak (VmHWM) while it folds the flood: DuckDB's 112 MB pool, the interpreter and
# its libraries (about 80 MiB), and at most four batches of OUTREACH_BATCH_BYTES (4 MiB) in flight.
PEAK_BOUND_MIB = 256
# The same while it folds 2,000 valid events of 64 KiB (125 MiB), each kept whole: with them, their
# parsed and Arrow copies, and up to a quarter of the pool of such text not yet folded into the file.
LARGEST_FLOOD = 2000
LARGEST_PEAK_BOUND_MIB = 448


@pytest.fixture
def closed_old_stream(tmp_path: Path) -> Iterator[tuple[EmbeddedServer, Path]]:
    """A closed server (an account per agency) whose stream the admin made with the old 1 MiB limit."""
    directory = tmp_path / "auth"
    config = auth.init(directory, AGENCIES)
    with EmbeddedServer(tmp_path / "nats", port=0, config_file=config) as server:
        asyncio.run(_create_old_stream(directory, server))
        yield server, directory


async def _create_old_stream(directory: Path, server: EmbeddedServer) -> None:
    nc = await as_user(directory, "admin", server)
    try:
        config = stream_config("OUTREACH", 3600)
        config.max_msg_size = OLD_LIMIT
        await nc.jetstream().add_stream(config)
    finally:
        await nc.close()


async def _stream_limit(directory: Path, server: EmbeddedServer) -> int:
    nc = await as_user(directory, "admin", server)
    try:
        return (await nc.jetstream().stream_info("OUTREACH")).config.max_msg_size
    finally:
        await nc.close()


def peak_mib(pid: int) -> float:
    """The process's peak resident memory so far (the kernel's high-water mark), in MiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"^VmHWM:\s+(\d+) kB$", status, re.MULTILINE)
    assert found, status
    return int(found.group(1)) / 1024


async def test_an_agency_flooding_an_old_stream_with_1_mb_messages_is_rejected_within_the_projectors_memory(
    closed_old_stream: tuple[EmbeddedServer, Path], tmp_path: Path, processes: Processes
) -> None:
    server, directory = closed_old_stream
    b = await as_user(directory, "al-b", server)
    before, after = session("al-b", students=7), session("al-b", students=5)
    await publish_raw(b, before, subject(before))
    junk_seqs = [await publish_raw(b, JUNK, f"outreach.events.al-b.session_held.{uuid.uuid4()}") for _ in range(FLOOD)]
    await publish_raw(b, after, subject(after))
    await b.close()
    last = junk_seqs[-1] + 1

    db = tmp_path / "p.duckdb"
    env = env_of(directory, "projector", server, OUTREACH_DB=str(db), OUTREACH_SNAPSHOT_INTERVAL_S="0.2")
    projector = processes.outreach(["-v", "project"], env)
    wait_for_projection(projector, db, last, 120)
    peak = peak_mib(projector.process.pid)
    assert projector.stop() == 0, projector.stderr[-2000:]

    assert peak < PEAK_BOUND_MIB, f"the projector peaked at {peak:.0f} MiB"
    # The projector may not change the stream: it says what the admin does, and goes on.
    assert (
        f"stream OUTREACH accepts messages of up to {OLD_LIMIT:,} bytes, but an event is at most "
        f"{MAX_EVENT_BYTES:,} bytes ({MAX_MESSAGE_BYTES:,} with headers)" in projector.stderr
    )
    assert "The admin lowers it with `outreach stream`" in projector.stderr
    # Batches bounded by bytes: one ends once it holds 4 MiB, so at most five of these messages and
    # the small event before them.
    batches = [int(n) for n in re.findall(r"applied stream sequences up to \d+ \(batch of (\d+)\)", projector.stderr)]
    assert sum(batches) == last and max(batches) <= 6, batches

    reason = f"invalid: (event): is 1,000,000 bytes; the limit is {MAX_EVENT_BYTES:,}"
    sha = hashlib.sha256(JUNK).hexdigest()
    rows = run_query(
        db, "SELECT stream_seq, reason, payload = ?, payload_bytes, payload_sha256 FROM rejected_events", [JUNK[:4096]]
    ).rows
    assert rows == [(seq, reason, True, len(JUNK), sha) for seq in junk_seqs]
    assert run_query(db, "SELECT max(octet_length(payload)) FROM rejected_events").rows == [(REJECTED_PAYLOAD_BYTES,)]
    assert run_query(db, "SELECT participants FROM totals_by_county").rows == [(12,)]
    assert checkpoint(db) == last


async def test_an_agency_flooding_the_stream_with_the_largest_valid_events_is_folded_within_the_projectors_memory(
    tmp_path: Path, processes: Processes
) -> None:
    """The largest message the stream now takes: a valid event padded to 64 KiB, each stored whole
    in the event log. DuckDB holds such long strings in its pool until the log is folded into the
    file; the projector folds it before they fill the pool."""
    directory = tmp_path / "auth"
    config = auth.init(directory, AGENCIES)
    with EmbeddedServer(tmp_path / "nats", port=0, config_file=config) as server:
        admin = await as_user(directory, "admin", server)
        await ensure_stream(admin.jetstream(), "OUTREACH", 3600)
        await admin.close()
        a = await as_user(directory, "al-a", server)
        for _ in range(LARGEST_FLOOD):
            event = session("al-a", students=3)
            raw = json.dumps(event).encode()
            await publish_raw(a, raw[:-1] + b" " * (MAX_EVENT_BYTES - len(raw)) + b"}", subject(event))
        await a.close()

        db = tmp_path / "p.duckdb"
        env = env_of(directory, "projector", server, OUTREACH_DB=str(db), OUTREACH_SNAPSHOT_INTERVAL_S="0.2")
        projector = processes.outreach(["project"], env)
        wait_for_projection(projector, db, LARGEST_FLOOD, 120)
        peak = peak_mib(projector.process.pid)
        assert projector.stop() == 0, projector.stderr[-2000:]

    assert peak < LARGEST_PEAK_BOUND_MIB, f"the projector peaked at {peak:.0f} MiB"
    assert run_query(db, "SELECT count(*), min(octet_length(encode(payload::VARCHAR))) FROM event_log").rows == [
        (LARGEST_FLOOD, MAX_EVENT_BYTES)
    ]
    assert run_query(db, "SELECT events, participants FROM totals_by_county").rows == [
        (LARGEST_FLOOD, 3 * LARGEST_FLOOD)
    ]


async def test_the_admin_lowers_an_old_streams_limit_and_the_broker_then_refuses_large_messages(
    closed_old_stream: tuple[EmbeddedServer, Path],
) -> None:
    server, directory = closed_old_stream
    assert await _stream_limit(directory, server) == OLD_LIMIT
    done = subprocess.run(
        [sys.executable, "-m", "outreach", "stream"],
        env=env_of(directory, "admin", server),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "stream OUTREACH is in place, with immutable history\n"
    assert (
        f"stream OUTREACH accepted messages of up to {OLD_LIMIT:,} bytes; lowered to {MAX_MESSAGE_BYTES:,} bytes "
        f"(an event is at most {MAX_EVENT_BYTES:,}); messages stored before stay as they are" in done.stderr
    )
    assert await _stream_limit(directory, server) == MAX_MESSAGE_BYTES

    b = await as_user(directory, "al-b", server)
    try:
        with pytest.raises(BadRequestError, match="message size exceeds maximum allowed"):
            await publish_raw(b, JUNK, f"outreach.events.al-b.session_held.{uuid.uuid4()}")
        largest = b"{" + b" " * (MAX_EVENT_BYTES - 2) + b"}"  # an event's limit, with the publisher's headers
        seq = await publish_raw(
            b, largest, f"outreach.events.al-b.session_held.{uuid.uuid4()}", **{"Nats-Msg-Id": str(uuid.uuid4())}
        )
        assert seq == 1
    finally:
        await b.close()
    # A stream made now has the limit from the start, and the admin's next run changes nothing.
    again = subprocess.run(
        [sys.executable, "-m", "outreach", "stream"], env=env_of(directory, "admin", server), capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert (again.returncode, again.stderr) == (0, "")


async def test_a_new_stream_takes_messages_no_larger_than_an_event(nats_server: EmbeddedServer) -> None:
    nc = await connect(Settings(nats_url=nats_server.url), "admin")
    try:
        info = await ensure_stream(nc.jetstream(), "OUTREACH", 3600)
        assert info.config.max_msg_size == MAX_MESSAGE_BYTES == 65_536 + 1024
        with pytest.raises(NatsError, match="message size exceeds maximum allowed"):
            await nc.jetstream().publish("outreach.events.al-a.session_held", b" " * (MAX_MESSAGE_BYTES + 1))
    finally:
        await nc.close()


def test_a_file_made_before_rejections_were_bounded_opens_with_their_length_and_hash_derived(tmp_path: Path) -> None:
    db = tmp_path / "old.duckdb"
    old = duckdb.connect(str(db))
    old.execute(
        "CREATE TABLE rejected_events (stream_seq UBIGINT NOT NULL, subject VARCHAR NOT NULL, stored_at TIMESTAMPTZ "
        "NOT NULL, event_id VARCHAR, reason VARCHAR NOT NULL, payload BLOB NOT NULL)"
    )
    old.execute("INSERT INTO rejected_events VALUES (7, 'outreach.events.al-a.x', now(), NULL, 'junk', ?)", [JUNK])
    old.close()
    ProjectionStore(db).close()
    assert run_query(db, "SELECT stream_seq, payload_bytes, payload_sha256 FROM rejected_events").rows == [
        (7, len(JUNK), hashlib.sha256(JUNK).hexdigest())
    ]


# ---- a failed write says what failed ---------------------------------------------------------------


def _junk_rejections(count: int, size: int) -> BatchUpdate:
    now = datetime.now(UTC)
    payload = b"x" * size
    rows = [
        RejectedRow(seq, "outreach.events.al-a.x", now, None, "junk", payload, size, "0" * 64)
        for seq in range(1, count + 1)
    ]
    return BatchUpdate(log=[], rejected=rows, last_seq=count, last_stored_at=now, digest="1" * 64)


def test_a_batch_beyond_duckdbs_memory_says_memory_and_how_to_give_it_more(tmp_path: Path) -> None:
    db = tmp_path / "p.duckdb"
    store = ProjectionStore(db, memory_limit="16MB")
    try:
        with pytest.raises(ProjectionError) as failed:
            store.apply(_junk_rejections(40, 1_000_000), "OUTREACH", datetime.now(UTC), 0)
        assert store.checkpoint("OUTREACH") is None
    finally:
        store.close()
    message = str(failed.value)
    assert message.startswith(
        f"writing the batch ending at stream sequence 40 to {db} failed; nothing of it was kept and the checkpoint "
        f"did not move: "
    ), message
    assert message.endswith(
        "Memory: DuckDB's buffer pool (16MB, OUTREACH_MEMORY_LIMIT_MB) could not hold the batch. Raise "
        "OUTREACH_MEMORY_LIMIT_MB, or lower OUTREACH_BATCH_BYTES or OUTREACH_BATCH_SIZE, then start the projector "
        "again: it resumes from the checkpoint."
    ), message
    assert duckdb.connect(str(db), read_only=True).execute("SELECT count(*) FROM rejected_events").fetchone() == (0,)


def test_a_batch_that_fails_for_memory_is_written_again_before_the_projector_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An analyst's query may hold the memory for a moment: the writer tries the batch again, saying
    so each time, and stops with the memory's remedy only when the batch never fits."""
    from consumers import projector as projector_module
    from projections.store import WriteOutOfMemory

    monkeypatch.setattr(projector_module, "MEMORY_RETRY_S", (0.0, 0.0))
    db = tmp_path / "p.duckdb"
    store = ProjectionStore(db, memory_limit="16MB")
    try:
        writer = projector_module.Projector(store, "OUTREACH", datetime.now(UTC))
        made_room: list[int] = []
        writer.make_room = lambda: made_room.append(3) or 3  # three analysts' queries were running
        with caplog.at_level("WARNING", logger="outreach.projector"), pytest.raises(WriteOutOfMemory) as failed:
            writer._write(_junk_rejections(40, 1_000_000))
        assert store.checkpoint("OUTREACH") is None
    finally:
        store.close()
    retries = [r.getMessage() for r in caplog.records if "ran out of memory" in r.getMessage()]
    assert len(retries) == 2, retries
    assert made_room == [3, 3]
    assert all(
        re.fullmatch(
            r"writing the batch ending at stream sequence 40 ran out of memory \(.*failed to pin block of size "
            r"980\.0 KiB .+\); "
            r"nothing of it was kept, 3 analysts' queries running were stopped, and it is written again in 0 s",
            message,
        )
        for message in retries
    ), retries
    assert "Memory: DuckDB's buffer pool (16MB, OUTREACH_MEMORY_LIMIT_MB) could not hold the batch" in str(failed.value)


def test_the_writer_stops_the_analysts_queries_running_and_each_is_told_why(tmp_path: Path) -> None:
    """The projection's writes come first: ``make_room`` interrupts every query running, inside
    DuckDB, and each analyst is refused with the reason; a query after it runs as before."""
    import threading

    from consumers.queries import WRITER_FIRST
    from projections.memory_guard import MemoryGuard
    from projections.query import QueryLimits, execute_read_only
    from schemas.errors import QueryRefused

    store = ProjectionStore(tmp_path / "p.duckdb")
    guard = MemoryGuard(None)
    limits = QueryLimits(seconds=60, max_rows=10, max_bytes=None)
    runaway = "SELECT count(*) FROM range(1000000000) a, range(1000) b"
    outcomes: list[str] = []

    def ask() -> None:
        cursor = store.reader()
        try:
            execute_read_only(cursor, runaway, limits=limits, guard=guard)
            outcomes.append("answered")
        except QueryRefused as exc:
            outcomes.append(str(exc))
        finally:
            cursor.close()

    try:
        askers = [threading.Thread(target=ask) for _ in range(2)]
        for asker in askers:
            asker.start()
        stopped = 0
        deadline = time.monotonic() + 30
        while any(asker.is_alive() for asker in askers) and time.monotonic() < deadline:
            stopped += guard.stop_all(WRITER_FIRST)
            time.sleep(0.01)
        assert (stopped, outcomes) == (2, [WRITER_FIRST, WRITER_FIRST])
        assert execute_read_only(store.reader(), "SELECT 42", limits=limits, guard=guard).rows == [(42,)]
    finally:
        store.close()


def test_a_write_refused_for_permissions_says_permissions(tmp_path: Path) -> None:
    """DuckDB's words for a file it may not write (this suite runs as root, for whom no mode refuses)."""
    store = ProjectionStore(tmp_path / "p.duckdb")
    try:
        denied = store._remedy(duckdb.IOException('Could not write file "p.duckdb.wal": Permission denied'))
        read_only = store._remedy(duckdb.IOException('Cannot open file "p.duckdb.wal": Read-only file system'))
    finally:
        store.close()
    expected = (
        f"Permissions: the projector may not write {tmp_path / 'p.duckdb'} or its directory (a read-only file "
        f"system, or the file's owner and mode). Give the projector's user write access"
    )
    assert denied == read_only == expected


# ---- the stream deleted and created anew under a running projector ---------------------------------


async def _recreate_and_publish(url: str, events: list[dict[str, object]]) -> None:
    nc = await connect(Settings(nats_url=url), "admin")
    try:
        js = nc.jetstream()
        await js.delete_stream("OUTREACH")
        await ensure_stream(js, "OUTREACH", 3600)
        for event in events:
            await js.publish(subject(event), json.dumps(event).encode())  # type: ignore[arg-type]
    finally:
        await nc.close()


async def _publish(url: str, events: list[dict[str, object]]) -> None:
    nc = await connect(Settings(nats_url=url), "agency")
    try:
        await ensure_stream(nc.jetstream(), "OUTREACH", 3600)
        for event in events:
            await nc.jetstream().publish(subject(event), json.dumps(event).encode())  # type: ignore[arg-type]
    finally:
        await nc.close()


def test_a_stream_deleted_and_created_anew_under_a_running_projector_stops_it(
    nats_server: EmbeddedServer, tmp_path: Path, processes: Processes
) -> None:
    old = [session("al-a", students=n) for n in range(1, 13)]
    new = [session("al-a", students=100 + n) for n in range(1, 19)]
    asyncio.run(_publish(nats_server.url, old))
    db = tmp_path / "p.duckdb"
    projector = processes.outreach(["project"], outreach_env(nats_server.url, db, snapshot_interval_s="0.1"))
    wait_for_projection(projector, db, 12, 60)

    asyncio.run(_recreate_and_publish(nats_server.url, new))
    assert projector.finish(60) == 1
    error = projector.stderr.splitlines()[-1]
    assert re.fullmatch(
        rf"error: {re.escape(str(db))} was projected from a stream OUTREACH created at .+, but the stream now was "
        r"created at .+: it was deleted and created anew\. Project into a new database file \(--db\) and compare "
        r"with `outreach sql`\.",
        error,
    ), projector.stderr[-2000:]
    assert checkpoint(db) == 12
    logged = run_query(db, "SELECT stream_seq, event_id FROM event_log ORDER BY stream_seq").rows
    assert logged == [(n, uuid.UUID(e["event_id"])) for n, e in enumerate(old, 1)]  # type: ignore[arg-type]


# ---- a reader holding the file ---------------------------------------------------------------------

HOLD = """
import duckdb, sys
con = duckdb.connect(sys.argv[1], read_only=True)
con.execute("SELECT count(*) FROM event_log").fetchone()
print("holding", flush=True)
sys.stdin.readline()
"""


def test_a_reader_holding_the_file_delays_the_projectors_start_and_a_second_projector_is_refused(
    nats_server: EmbeddedServer, tmp_path: Path, processes: Processes
) -> None:
    first, rest = [session("al-a", students=1)], [session("al-a", students=2) for _ in range(4)]
    asyncio.run(_publish(nats_server.url, first))
    db = tmp_path / "p.duckdb"
    env = outreach_env(nats_server.url, db, snapshot_interval_s="0.1")
    assert processes.outreach(["project", "--until-caught-up"], env).finish(60) == 0
    asyncio.run(_publish(nats_server.url, rest))

    notebook = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert notebook.stdout is not None and notebook.stdout.readline() == "holding\n"
        projector = processes.outreach(["project"], env)
        said = projector.wait_for_stderr(lambda line: "a reader" in line, 60, "the projector to name the reader")
        assert re.search(
            rf"WARNING outreach.projector: {re.escape(str(db))} is open read-only in process {notebook.pid} \(.+\), a "
            r"reader \(a notebook, `outreach sql --db`, a report\); waiting for it to close the file, for as long as "
            r"it takes$",
            said.rstrip("\n"),
        ), said
        assert projector.running and snapshot_seq(db) == 1  # as the first run left it
    finally:
        assert notebook.stdin is not None
        notebook.stdin.write("\n")
        notebook.stdin.close()
        notebook.wait(30)
        assert notebook.stdout is not None
        notebook.stdout.close()
    wait_for_projection(projector, db, 5, 60)  # it starts once the reader lets go
    assert projector.stderr.count("a reader") == 1

    # A second writer, though, is refused at once, named by its PID.
    second = processes.outreach(["project", "--until-caught-up"], env)
    assert second.finish(60) == 1
    assert re.search(
        rf"error: cannot open {re.escape(str(db))} for writing: process {projector.process.pid} \(.+\) holds it open "
        r"for writing \(.+\)\. One projector writes a file; stop the other, or give this one a file of its own "
        r"\(--db\)",
        second.stderr,
    ), second.stderr[-2000:]
    assert projector.stop() == 0, projector.stderr[-2000:]
    assert checkpoint(db) == 5
