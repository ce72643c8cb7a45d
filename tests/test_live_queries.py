"""Analysts query while the projector writes: every answer succeeds, is consistent, and says as of when."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import duckdb
import pytest
from nats.aio.client import Client

from consumers import live
from consumers.delivery import StreamMessage
from consumers.projector import Projector
from outreach.synthetic import generate
from producers.publisher import Publisher
from projections import snapshot as snapshot_module
from projections.copy import copy_path
from projections.query import run_query
from projections.snapshot import SNAPSHOT_VIEWS, snapshot_path, write_snapshot
from projections.store import ProjectionStore
from runtime.settings import Settings
from runtime.stream import ensure_stream
from schemas.parse import parse_event
from tests import oracle
from tests.conftest import async_wait_until

pytestmark = pytest.mark.integration

TOTAL = 40_000


def sql(settings: Settings, query: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "outreach",
            "sql",
            "--db",
            str(settings.db),
            "--nats",
            settings.nats_url,
            "--format",
            "csv",
            query,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_sql_answers_while_the_projector_applies_a_backlog(nc: Client, settings: Settings) -> None:
    items = list(generate(TOTAL, seed=51))
    js = nc.jetstream()
    await ensure_stream(js, settings.stream, settings.duplicate_window_s)
    report = await Publisher(js).publish(parse_event(i.payload) for i in items)
    assert report.stored == TOTAL

    env = dict(
        os.environ,
        OUTREACH_NATS_URL=settings.nats_url,
        OUTREACH_DB=str(settings.db),
        OUTREACH_BATCH_SIZE="1000",
        OUTREACH_SNAPSHOT_INTERVAL_S="0.5",
    )
    projector = subprocess.Popen(
        [sys.executable, "-m", "outreach", "project"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    answers: list[tuple[int, int]] = []
    snapshots: list[int] = []
    try:
        deadline = time.monotonic() + 240
        while not answers or answers[-1][0] < TOTAL:
            assert time.monotonic() < deadline, f"the projector did not catch up; answers: {answers[-3:]}"
            done = sql(settings, "SELECT count(*) AS logged FROM event_log")
            if done.returncode != 0 and "no projection database" in done.stderr:
                continue  # the projector has not created its file yet
            assert done.returncode == 0, done.stderr
            logged = int(done.stdout.splitlines()[1])
            as_of = done.stderr.strip()
            seq = 0 if "as of nothing" in as_of else int(as_of.split("stream sequence ")[1].split(",")[0])
            answers.append((seq, logged))
            snapshot = snapshot_path(settings.db)
            if snapshot.exists():  # analysts' own tools open the snapshot while the projector writes
                con = duckdb.connect(str(snapshot), read_only=True)
                snapshots.append(con.execute("SELECT as_of_seq FROM snapshot_info").fetchone()[0])
                con.close()
    finally:
        projector.send_signal(signal.SIGTERM)
        _, err = projector.communicate(timeout=60)
    assert projector.returncode == 0, err[-2000:]

    # Every answer is one consistent snapshot: the log holds exactly the sequences applied.
    assert all(seq == logged for seq, logged in answers)
    assert [s for s, _ in answers] == sorted(s for s, _ in answers)
    assert len({s for s, _ in answers if 0 < s < TOTAL}) >= 2, f"too few answers mid-way: {answers}"
    assert snapshots and snapshots == sorted(snapshots)
    final = duckdb.connect(str(snapshot_path(settings.db)), read_only=True)
    assert final.execute("SELECT as_of_seq FROM snapshot_info").fetchall() == [(TOTAL,)]
    final.close()
    got: dict[str, Any] = {
        r[0]: tuple(r[1:])
        for r in run_query(
            settings.db,
            "SELECT county, events, sessions, participants, materials_distributed, teams_established "
            "FROM totals_by_county",
        ).rows
    }
    assert got == oracle.totals_by_county(i.event for i in items)


async def test_a_snapshot_cancelled_mid_write_still_lands_before_the_next(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """At a stop the watchdog is cancelled while its snapshot is being written in a thread, and
    another refresh waiting for its turn is cancelled too; both writes still land, in order, so the
    last batch's snapshot is the one left on disk."""
    first_started, release_first, second_started = threading.Event(), threading.Event(), threading.Event()
    finished: list[int] = []

    def write(cursor: Any, _db: Any, **_: Any) -> bool:  # the reader "cursor" holds the sequence it would see
        seq = cursor.seq
        if seq == 1:
            first_started.set()
            assert release_first.wait(30)
        else:
            second_started.set()
        finished.append(seq)
        return True

    monkeypatch.setattr(live, "write_snapshot", write)
    projector = SimpleNamespace(last_seq=0, store=SimpleNamespace())
    projector.store.reader = lambda: SimpleNamespace(seq=projector.last_seq, close=lambda: None)
    snapshots = live.Snapshotter(Settings(db=tmp_path / "p.duckdb", snapshot_interval_s=60), projector)

    projector.last_seq = 1
    watchdog = asyncio.create_task(snapshots.refresh(now=True))
    await asyncio.to_thread(first_started.wait, 30)
    projector.last_seq = 2
    behind = asyncio.create_task(snapshots.refresh(now=True))  # waits for the first write's turn
    await asyncio.sleep(0)
    for task in (watchdog, behind):  # the stop cancels both callers
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    last = asyncio.create_task(snapshots.finish())
    try:  # the last write must wait for the cancelled one: give it a second to (wrongly) start
        assert not await asyncio.to_thread(second_started.wait, 1.0)
    finally:
        release_first.set()
    await asyncio.wait_for(last, 30)
    assert finished == [1, 2]


async def test_a_follower_stopped_by_a_failure_ends_after_the_snapshot_being_written(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """The reading fails while a snapshot is written in a thread: the follower raises its failure
    only once the write has landed, so the projection's file is never closed under it (DuckDB then
    refuses the close, and its error would replace the failure)."""
    started, release = threading.Event(), threading.Event()
    finished: list[int] = []

    def write(cursor: Any, _db: Any, **_: Any) -> bool:
        started.set()
        assert release.wait(30)
        finished.append(cursor.seq)
        return True

    monkeypatch.setattr(live, "write_snapshot", write)
    projector = SimpleNamespace(last_seq=1, store=SimpleNamespace())
    projector.store.reader = lambda: SimpleNamespace(seq=projector.last_seq, close=lambda: None)
    settings = Settings(db=tmp_path / "p.duckdb", snapshot_interval_s=60)
    follower = live.Follower(settings, projector, None, until_caught_up=False)  # type: ignore[arg-type]

    async def read_once() -> None:  # a batch applied, its snapshot under way; then the reading fails
        projector.last_seq = 2
        await follower.snapshots.refresh(now=True, wait=False)
        await asyncio.to_thread(started.wait, 30)
        raise RuntimeError("the stream could not be read")

    monkeypatch.setattr(follower, "_read_once", read_once)
    running = asyncio.create_task(follower.run())
    assert await asyncio.to_thread(started.wait, 30)
    ended, _ = await asyncio.wait({running}, timeout=1.0)  # a second to (wrongly) end under the write
    assert not ended
    release.set()
    with pytest.raises(RuntimeError, match="the stream could not be read"):
        await asyncio.wait_for(running, 30)
    assert finished == [2]


async def test_snapshots_are_spaced_by_what_the_last_one_took_and_never_hold_up_the_writer(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A snapshot that took 2 s is followed by the next no sooner than 20 s after it started, so
    that snapshots of a large file take at most about a tenth of the time; after a batch, the
    writer goes on while a snapshot is written, and no second one queues behind it."""
    clock = [1000.0]
    release = threading.Event()
    finished: list[int] = []

    def write(cursor: Any, _db: Any, **_: Any) -> bool:
        if cursor.seq == 3:
            assert release.wait(30)
        clock[0] += 2.0  # each write takes two seconds
        finished.append(cursor.seq)
        return True

    monkeypatch.setattr(live, "write_snapshot", write)
    monkeypatch.setattr(live, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    projector = SimpleNamespace(last_seq=0, store=SimpleNamespace())
    projector.store.reader = lambda: SimpleNamespace(seq=projector.last_seq, close=lambda: None)
    snapshots = live.Snapshotter(Settings(db=tmp_path / "p.duckdb", snapshot_interval_s=0.5), projector)

    projector.last_seq = 1
    await snapshots.refresh()
    assert (finished, snapshots.took) == ([1], 2.0)
    projector.last_seq = 2
    clock[0] = 1000.0 + 19.9
    await snapshots.refresh()
    assert finished == [1]  # 10 x 2 s have not passed since the first began
    clock[0] = 1000.0 + 20.0
    await snapshots.refresh()
    assert finished == [1, 2]

    projector.last_seq, clock[0] = 3, 2000.0
    await asyncio.wait_for(snapshots.refresh(wait=False), 5)  # returns while the write is blocked
    projector.last_seq, clock[0] = 4, 3000.0
    await asyncio.wait_for(snapshots.refresh(), 5)  # one is being written: none queues behind it
    assert finished == [1, 2]
    release.set()
    await asyncio.wait_for(snapshots.finish(), 30)
    assert finished == [1, 2, 3, 4]  # the one under way, then the last batch's


async def test_replay_sizes_its_buffer_pool_and_threads_from_the_settings(
    nc: Client, settings: Settings, monkeypatch: Any
) -> None:
    """Replay has no analysts beside it: OUTREACH_MEMORY_LIMIT_MB and OUTREACH_DUCKDB_THREADS trade
    its memory for speed."""
    from consumers import replay as replay_module

    limits: list[str] = []

    class Observed(replay_module.ProjectionStore):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            limits.extend(
                self.root.execute("SELECT current_setting('memory_limit'), current_setting('threads')").fetchone()
            )

    monkeypatch.setattr(replay_module, "ProjectionStore", Observed)
    js = nc.jetstream()
    await ensure_stream(js, settings.stream, settings.duplicate_window_s)
    await Publisher(js).publish(parse_event(i.payload) for i in generate(10, seed=5))
    stats = await replay_module.replay(
        settings.model_copy(update={"memory_limit_mb": 96, "duckdb_threads": 2}), settings.db
    )
    assert (stats.messages, limits) == (10, ["91.5 MiB", 2])


async def test_requests_for_a_copy_that_come_while_one_is_written_share_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copy answers the requests that came before it began: of three that come while a first copy
    is written, one has the next written and the other two read it. A copy begun before a request
    answers it only when nothing was applied since, and only while its file is as it was left."""
    from consumers import queries

    at = datetime(2026, 1, 1, tzinfo=UTC)
    store = ProjectionStore(tmp_path / "p.duckdb")
    Projector(store, "OUTREACH", at).apply(
        [StreamMessage(i + 1, item.subject, item.payload, at) for i, item in enumerate(generate(50, seed=8))]
    )
    release = threading.Event()
    written: list[int] = []
    original = queries.write_copy

    def write_copy(reader: duckdb.DuckDBPyConnection, db: Path, memory_limit: str) -> tuple[Path, int | None]:
        written.append(len(written) + 1)
        if len(written) == 1:
            release.wait(30)
        return original(reader, db, memory_limit)

    monkeypatch.setattr(queries, "write_copy", write_copy)
    applied = [50]
    services = queries.Services(store, Settings(db=store.path), 1024 * 1024, applied=lambda: applied[0])
    try:
        applied[0] = 51  # the first copy began before the others came, and something was applied since
        first = asyncio.create_task(services.copy())
        await async_wait_until(lambda: written == [1], 30, "the first copy began")
        waiting = [asyncio.create_task(services.copy()) for _ in range(3)]
        await asyncio.sleep(0)  # each has come, and waits for the copy under way
        release.set()
        answers = [json.loads(a) for a in await asyncio.gather(first, *waiting)]
        assert written == [1, 2]
        assert answers == [{"path": str(copy_path(store.path)), "as_of_seq": 50}] * 4

        assert json.loads(await services.copy()) == answers[0] and written == [1, 2, 3]  # 51 applied, not 50
        applied[0] = 50
        assert json.loads(await services.copy()) == answers[0] and written == [1, 2, 3]  # nothing since
        copy_path(store.path).unlink()
        assert json.loads(await services.copy()) == answers[0] and written == [1, 2, 3, 4]  # the file went
    finally:
        release.set()
        services.close()
        store.close()


def test_the_projectors_duckdb_runs_a_statement_on_one_thread_unless_told(tmp_path: Path) -> None:
    """The writer, the snapshots and analysts' queries run side by side on threads of their own; a
    second thread for each statement only held more memory at once (BENCHMARKS.md)."""
    assert Settings.model_fields["duckdb_threads"].default == 1
    store = ProjectionStore(tmp_path / "p.duckdb")
    reader = store.reader()
    assert reader.execute("SELECT current_setting('threads')").fetchone() == (1,)
    reader.close()
    store.close()


def test_a_snapshot_copies_the_reports_cells_only_while_they_are_few(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cells are copied while there are at most SNAPSHOT_CELLS_MAX of them; past that the
    snapshot has every other table, and a projector that found them too many no longer asks."""
    at = datetime(2026, 1, 1, tzinfo=UTC)
    items = list(generate(400, seed=5))
    store = ProjectionStore(tmp_path / "p.duckdb")
    Projector(store, "OUTREACH", at).apply(
        [StreamMessage(i + 1, item.subject, item.payload, at) for i, item in enumerate(items)]
    )
    cells = store.con.execute("SELECT count(*) FROM report_cells").fetchone()[0]
    assert cells > 10

    def tables() -> dict[str, int]:
        con = duckdb.connect(str(snapshot_path(store.path)), read_only=True)
        try:
            names = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall()]
            return {name: con.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] for name in names}
        finally:
            con.close()

    monkeypatch.setattr(snapshot_module, "SNAPSHOT_CELLS_MAX", cells)
    assert write_snapshot(store.reader(), store.path) == frozenset()
    assert tables()["report_cells"] == cells
    monkeypatch.setattr(snapshot_module, "SNAPSHOT_CELLS_MAX", cells - 1)
    assert write_snapshot(store.reader(), store.path) == {"report_cells"}
    copied = tables()
    assert "report_cells" not in copied
    assert set(copied) == {*SNAPSHOT_VIEWS, "snapshot_info", "checkpoint", "counties"} - {"report_cells"}
    assert copied["snapshot_info"] == 1

    asked: list[str] = []
    reader = store.reader()
    monkeypatch.setattr(snapshot_module, "_copy", lambda _r, _o, name, *_a: asked.append(name) or True)
    assert write_snapshot(reader, store.path, leave_out=frozenset({"report_cells"})) == {"report_cells"}
    assert "report_cells" not in asked
    assert len(asked) == len(SNAPSHOT_VIEWS) + 2  # the three tables and the other views
    store.close()


def test_a_bounded_view_that_does_not_fit_the_pool_is_left_out_of_the_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Running out of DuckDB's pool ends the transaction the views are read in: the bounded views
    come last, and the one that ran out is left out, with those after it this time only."""
    at = datetime(2026, 1, 1, tzinfo=UTC)
    store = ProjectionStore(tmp_path / "p.duckdb")
    items = list(generate(200, seed=3))
    Projector(store, "OUTREACH", at).apply(
        [StreamMessage(i + 1, item.subject, item.payload, at) for i, item in enumerate(items)]
    )
    copy = snapshot_module._copy

    def out_of_memory_for_one(reader: Any, out: Any, name: str, *args: Any) -> bool:
        if name == "changes_since_submission":
            with pytest.raises(duckdb.Error):  # as DuckDB leaves a transaction that ran out of memory
                reader.execute("SELECT error('out of memory')").fetchall()
            raise duckdb.OutOfMemoryException("failed to allocate data of size 8.0 MiB (103.5 MiB/106.8 MiB used)")
        return copy(reader, out, name, *args)

    monkeypatch.setattr(snapshot_module, "_copy", out_of_memory_for_one)
    assert write_snapshot(store.reader(), store.path) == {"changes_since_submission"}
    con = duckdb.connect(str(snapshot_path(store.path)), read_only=True)
    copied = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    as_of = con.execute("SELECT as_of_seq FROM snapshot_info").fetchall()
    con.close()
    left = {"changes_since_submission", "possible_duplicates"}
    assert copied == {*SNAPSHOT_VIEWS, "snapshot_info", "checkpoint", "counties"} - left
    assert as_of == [(200,)]
    store.close()


async def test_a_projector_that_found_the_cells_too_many_no_longer_asks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[frozenset[str]] = []

    def write(_cursor: Any, _db: Any, *, leave_out: frozenset[str]) -> frozenset[str]:
        asked.append(leave_out)
        return frozenset({"report_cells"})  # too many

    monkeypatch.setattr(live, "write_snapshot", write)
    projector = SimpleNamespace(last_seq=0, store=SimpleNamespace())
    projector.store.reader = lambda: SimpleNamespace(close=lambda: None)
    snapshots = live.Snapshotter(Settings(db=tmp_path / "p.duckdb", snapshot_interval_s=60), projector)
    for seq in (1, 2, 3):
        projector.last_seq = seq
        await snapshots.refresh(now=True)
    assert asked == [frozenset(), frozenset({"report_cells"}), frozenset({"report_cells"})]
