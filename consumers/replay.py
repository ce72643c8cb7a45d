"""Replay: rebuild a projection from the stream into a new database file, as fast as it can be read.

The stream is read through the one reader (``consumers.reader``) in large batches, and every batch
goes through the same ``Pipeline`` and ``Projector`` as the live path, so a replay and the live
projection are the same fold of the same messages. It is built beside its path in the newest
storage format, then copied into an older one that analysts' tools read (``projections.copy``),
in a process of its own: the copy's memory is never added to what the replay's process has held.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from consumers.delivery import StreamMessage
from consumers.live import Pipeline
from consumers.projector import Projector, ProjectorStats
from consumers.reader import StreamReader
from projections.batch_insert import use_system_memory_pool
from projections.copy import copy_file
from projections.store import ProjectionStore
from runtime.connection import connect
from runtime.memory import peak_rss_mib
from runtime.settings import Settings
from runtime.stream import read_stream_info
from schemas.errors import ProjectionError


@dataclass
class ReplayStats(ProjectorStats):
    """What a replay applied, and the peak memory of the process that copied it for analysts' tools
    (0 when it was not copied)."""

    copy_peak_rss_mib: float = 0.0


@dataclass(frozen=True)
class Progress:
    applied_seq: int
    end_seq: int
    messages: int
    seconds: float


async def replay(
    settings: Settings,
    db: Path,
    *,
    until_seq: int | None = None,
    as_of: datetime | None = None,
    progress: Callable[[Progress], None] | None = None,
    idle_timeout: float = 30.0,
    for_analysts: bool = True,
) -> ReplayStats:
    """Rebuild every projection from the first event into ``db`` (a new file), stopping after
    stream sequence ``until_seq`` or at the last event the stream had stored by ``as_of``.
    ``for_analysts``: in the storage format older DuckDB versions read (``STORAGE_VERSION``),
    which costs a copy of the file once it is built; a replay only this process reads skips it."""
    if db.exists():
        raise ProjectionError(f"{db} exists; replay builds a new database file, give a path that does not exist")
    if not for_analysts:
        return ReplayStats(**vars(await _replay(settings, db, until_seq, as_of, progress, idle_timeout)))
    building = db.with_name(db.name + ".building")
    _remove(building)  # of a replay interrupted
    try:
        stats = await _replay(settings, building, until_seq, as_of, progress, idle_timeout)
        copy_peak = _copy_in_a_process(building, db, f"{settings.memory_limit_mb}MB")
    finally:
        _remove(building)
    return ReplayStats(**vars(stats), copy_peak_rss_mib=copy_peak)


def _copy_in_a_process(building: Path, db: Path, memory_limit: str) -> float:
    """``copy_file`` in a new process, its errors raised here; that process's peak memory, in MiB.
    The replay's process keeps what its allocators took for the fold and the writes; a copy made
    beside it would peak on top of that."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as copier:
        try:
            return copier.submit(_copy, building, db, memory_limit).result()
        except BrokenProcessPool:
            raise ProjectionError(
                f"the copy of the replay into {db} ended without a word (killed, or out of memory); "
                "the replay is not kept: run it again, with more memory for the copy (OUTREACH_MEMORY_LIMIT_MB)"
            ) from None


def _copy(building: Path, db: Path, memory_limit: str) -> float:
    """The copier's process: Arrow's batches through the C library's allocator, as in the replay's.
    Returns its peak resident memory."""
    use_system_memory_pool()
    copy_file(building, db, memory_limit)
    return peak_rss_mib()


def _remove(db: Path) -> None:
    for path in (db, db.with_name(db.name + ".wal")):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


async def _replay(
    settings: Settings,
    db: Path,
    until_seq: int | None,
    as_of: datetime | None,
    progress: Callable[[Progress], None] | None,
    idle_timeout: float,
) -> ProjectorStats:
    nc = await connect(settings, "outreach-replay")
    store: ProjectionStore | None = None
    try:
        js = nc.jetstream()
        info = await read_stream_info(js, settings.stream)
        end = info.state.last_seq if until_seq is None else min(until_seq, info.state.last_seq)
        use_system_memory_pool()
        # A new file from the first event: its totals are computed once, at the end.
        store = ProjectionStore(
            db, memory_limit=f"{settings.memory_limit_mb}MB", threads=settings.duckdb_threads, keep_totals=False
        )
        projector = Projector(store, settings.stream, info.created)
        if end <= projector.last_seq or info.state.messages == 0:
            store.build_totals()
            return projector.stats
        started = time.monotonic()

        async def applied(batch: list[StreamMessage]) -> None:  # noqa: ARG001
            if progress is not None:
                progress(Progress(projector.last_seq, end, projector.stats.messages, time.monotonic() - started))

        reader = StreamReader(
            js,
            settings.stream,
            start_seq=projector.last_seq + 1,
            end_seq=end,
            batch_size=settings.batch_size,
            batch_bytes=settings.batch_bytes,
            as_of=as_of,
            idle_timeout=idle_timeout,
        )
        async with reader:
            await Pipeline(projector, after_write=applied).run(reader)
        store.build_totals()
        return projector.stats
    finally:
        if store is not None:
            store.close()
        await nc.close()
