"""The live projector's moving parts, each a small object owning its state:

- ``Pipeline``: each batch from a ``StreamReader`` is parsed, folded and written on a worker thread
  while the reader reads on. Replay uses it too: the same fold, the same way.
- ``Follower``: reads from the checkpoint and follows the stream's end. A delivery that stops or
  skips is the reader's to recover (its stall policy, in ``consumers.reader``); the follower starts
  reading again from the checkpoint, the only position that counts, when the broker did not answer.
- ``Snapshotter``: refreshes the snapshot file for analysts' own tools, at most every few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import duckdb
from nats.errors import ConnectionClosedError, NoRespondersError
from nats.js.errors import NotFoundError, ServiceUnavailableError

from consumers.delivery import StreamMessage
from consumers.projector import Projector
from consumers.reader import StreamReader
from projections.snapshot import snapshot_path, write_snapshot
from runtime.settings import Settings
from schemas.errors import ProjectionError

log = logging.getLogger("outreach.projector")

# Nothing applied for this long: the watchdog checks that the stream is the same one and no shorter
# than the checkpoint (a stream restored from an older backup delivers nothing, and says nothing).
QUIET_SECONDS = 10.0
# A snapshot waits at least this many times as long as the last one took, so that it takes at most
# about a tenth of the projector's time: at 1,000,000 events one takes 0.9 s (1.4 s of CPU).
SNAPSHOT_SPACING = 10
# `outreach project` raises the collector's young-generation threshold (``runtime.interpreter``), so
# garbage cycles that outlive a young collection would wait for a rare full one. A full collection
# this often keeps a long-running projector's memory flat.
FULL_GC_SECONDS = 10.0
# The broker did not answer in time, or has no JetStream leader for a moment (it restarts, a
# cluster elects a new leader): nothing was applied, so read again from the checkpoint.
BROKER_UNAVAILABLE = (TimeoutError, NoRespondersError, ServiceUnavailableError, ConnectionClosedError)
RETRY_SECONDS = 1.0


class Pipeline:
    """Each batch the reader hands over is parsed, folded and written in one worker thread, one
    batch at a time, while the reader goes on reading on the event loop; the checkpoint stays in
    each batch's transaction, so stopping anywhere leaves the file at a whole batch."""

    def __init__(
        self,
        projector: Projector,
        *,
        before_write: Callable[[list[StreamMessage]], Awaitable[None]] | None = None,
        after_write: Callable[[list[StreamMessage]], Awaitable[None]] | None = None,
    ) -> None:
        self.projector = projector
        self.before_write = before_write
        self.after_write = after_write

    async def run(self, reader: StreamReader) -> None:
        """Until the reader ends; its failure is raised after the batches it handed over are written."""
        async for batch in reader:
            if self.before_write is not None:
                await self.before_write(batch)
            await asyncio.to_thread(self.projector.apply, batch)
            if self.after_write is not None:
                await self.after_write(batch)


class Snapshotter:
    """The snapshot is a copy for convenience: failing to write it (a full disk) is reported and
    the previous one stays; the projection itself goes on, or stops on its own write."""

    def __init__(self, settings: Settings, projector: Projector) -> None:
        self.settings = settings
        self.projector = projector
        self.written_at = time.monotonic() - settings.snapshot_interval_s
        self.written_seq = projector.last_seq  # none is written before something is applied
        self.lock = asyncio.Lock()  # one writer of the snapshot file at a time
        self.writes: set[asyncio.Future[None]] = set()
        self.took = 0.0  # how long the last write took
        self.left_out: frozenset[str] = frozenset()  # the bounded views found too large to copy

    async def refresh(self, *, now: bool = False, wait: bool = True) -> None:
        """At most every snapshot_interval_s, and not before SNAPSHOT_SPACING times as long as the
        last write took (or ``now``), and only when something new was applied. Without ``wait`` the
        caller goes on while the snapshot is written (``finish`` awaits it)."""
        if not self.settings.snapshot_interval_s or self.projector.last_seq == self.written_seq:
            return
        if not now:
            if self.writes:  # one is being written: the next is due after it
                return
            spacing = max(self.settings.snapshot_interval_s, SNAPSHOT_SPACING * self.took)
            if time.monotonic() - self.written_at < spacing:
                return
        self.written_at, self.written_seq = time.monotonic(), self.projector.last_seq
        # Shielded, and kept: a caller cancelled mid-write (the watchdog, at a stop) must neither
        # release the lock while the thread still writes nor lose the write; ``finish`` awaits it.
        write = asyncio.ensure_future(self._write_in_turn())
        self.writes.add(write)
        write.add_done_callback(self.writes.discard)
        if wait:
            await asyncio.shield(write)

    async def settle(self) -> None:
        """Every write under way lands, in order: after this no thread reads the projection for
        the snapshot, and its file may be closed."""
        while self.writes:
            await asyncio.gather(*self.writes, return_exceptions=True)

    async def finish(self) -> None:
        """At a stop: every write under way lands, in order, and then one of the last batch."""
        await self.settle()
        await self.refresh(now=True)

    async def _write_in_turn(self) -> None:
        async with self.lock:
            started = time.monotonic()
            await asyncio.to_thread(self._write, self.projector.store.reader())
            self.took = time.monotonic() - started

    def _write(self, cursor: duckdb.DuckDBPyConnection) -> None:
        try:
            self.left_out = write_snapshot(cursor, self.settings.db, leave_out=self.left_out)
        except (duckdb.Error, OSError) as exc:
            log.warning("the snapshot %s was not refreshed: %s", snapshot_path(self.settings.db), exc)
        finally:
            cursor.close()


class Follower:
    """Reads the stream from the checkpoint and follows its end, through one ``Pipeline``."""

    def __init__(
        self,
        settings: Settings,
        projector: Projector,
        js: Any,
        *,
        until_caught_up: bool,
        on_batch: Callable[[Projector], Any] | None = None,
    ) -> None:
        self.settings = settings
        self.projector = projector
        self.js = js
        self.until_caught_up = until_caught_up
        self.on_batch = on_batch
        self.snapshots = Snapshotter(settings, projector)
        self.reader: StreamReader | None = None
        self.finished = asyncio.Event()
        self.failure: BaseException | None = None

    def stop(self) -> None:
        """Stop after the batch being written (SIGTERM): nothing more is read or applied."""
        self.finished.set()
        if self.reader is not None:
            self.reader.stop(discard=True)

    async def run(self) -> None:
        """Until caught up (with ``until_caught_up``), stopped, or a fatal error."""
        watchdog = asyncio.create_task(self._watch())
        try:
            while not self.finished.is_set():
                if self.failure is not None:
                    raise self.failure
                try:
                    await self._read_once()
                except BROKER_UNAVAILABLE as exc:
                    log.warning("NATS did not answer (%s); reading again in %.0f s", type(exc).__name__, RETRY_SECONDS)
                    await asyncio.sleep(RETRY_SECONDS)
        finally:
            self.finished.set()
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
            await self.snapshots.settle()  # stopped by a failure too: the store closes after
        await self.snapshots.finish()  # the last batch before stopping is in the snapshot too

    async def _read_once(self) -> None:
        info = await self.js.stream_info(self.settings.stream)
        self.projector.check_stream_created(info.created)
        self.projector.check_stream_end(info.state.last_seq)
        if self.until_caught_up and self.projector.last_seq >= info.state.last_seq:
            self.finished.set()
            return
        reader = StreamReader(
            self.js,
            self.settings.stream,
            start_seq=self.projector.last_seq + 1,
            batch_size=self.settings.batch_size,
            batch_bytes=self.settings.batch_bytes,
        )
        pipeline = Pipeline(self.projector, before_write=self._check_batch, after_write=self._applied)
        async with reader:
            self.reader = reader
            try:
                await pipeline.run(reader)
            finally:
                self.reader = None

    async def _check_batch(self, batch: list[StreamMessage]) -> None:  # noqa: ARG002 (the pipeline's hook)
        """Before a batch is written: the stream is still the one the projector started on (one
        deleted and created anew under it would mix two streams' sequences in its file). That no
        message was left out is the reader's to ensure."""
        try:
            info = await self.js.stream_info(self.settings.stream)
        except NotFoundError:
            raise ProjectionError(
                f"stream {self.settings.stream} no longer exists (it was deleted) while {self.projector.store.path} "
                f"was projected from it up to sequence {self.projector.last_seq}; nothing more is applied. A stream "
                f"created anew is another stream: project it into a new database file (--db)."
            ) from None
        self.projector.check_stream_created(info.created)

    async def _applied(self, batch: list[StreamMessage]) -> None:
        log.info("applied stream sequences up to %d (batch of %d)", self.projector.last_seq, len(batch))
        if self.on_batch is not None:
            self.on_batch(self.projector)
        await self.snapshots.refresh(wait=False)  # the next batch is not held up by the snapshot
        if self.until_caught_up and self.reader is not None and not self.reader.holds_messages():
            info = await self.js.stream_info(self.settings.stream)
            if self.projector.last_seq >= info.state.last_seq:
                self.finished.set()
                self.reader.stop()

    async def _watch(self) -> None:
        """Every half second: a full garbage collection now and then, the snapshot after a quiet
        spell, and once nothing was applied for QUIET_SECONDS, a check that the stream is the same
        one and did not come back shorter than the checkpoint (else the projector stops)."""
        seen = (self.projector.last_seq, time.monotonic())
        collected = time.monotonic()
        while not self.finished.is_set():
            await asyncio.sleep(0.5)
            if time.monotonic() - collected >= FULL_GC_SECONDS:
                gc.collect()
                collected = time.monotonic()
            await self.snapshots.refresh()
            if self.projector.last_seq != seen[0]:
                seen = (self.projector.last_seq, time.monotonic())
                continue
            if time.monotonic() - seen[1] < QUIET_SECONDS:
                continue
            try:
                info = await self.js.stream_info(self.settings.stream)
            except Exception:  # the broker is away: the reader's own errors say so
                continue
            try:
                self.projector.check_stream_created(info.created)
                self.projector.check_stream_end(info.state.last_seq)
            except ProjectionError as exc:  # another stream, or one that came back with fewer messages than applied
                self.failure = exc
                if self.reader is not None:
                    self.reader.stop(exc, discard=True)
                return
            seen = (self.projector.last_seq, time.monotonic())
