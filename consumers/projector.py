"""The projector's core: a batch of stream messages in, one DuckDB transaction out.

Exactly-once effects come from the checkpoint, not from acknowledgements: the checkpoint (last
stream sequence applied) is written in the same transaction as the batch, messages at or below it
are skipped, and reading resumes right after it. Whatever the broker redelivers or forgets about
its consumers, every stream sequence is applied once.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from consumers.coordination import Coordination
from consumers.delivery import StreamMessage
from consumers.fold import (
    GENESIS,
    Parsed,
    fold_batch,
    parse_batch,
    published_ids,
    referenced_definitions,
    referenced_ids,
)
from projections.coordination import load_coordination
from projections.rows import BatchUpdate
from projections.store import ProjectionStore, WriteOutOfMemory
from schemas.errors import ProjectionError

log = logging.getLogger("outreach.projector")
# A batch that could not be written for want of memory is written again after these pauses (an
# analyst's query may hold the memory for a moment, until it is refused); then the failure stops
# the projector, with its remedy.
MEMORY_RETRY_S = (0.1, 0.5, 2.0, 5.0, 10.0)


@dataclass
class ProjectorStats:
    batches: int = 0
    messages: int = 0
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    skipped: int = 0  # at or below the checkpoint: applied before


class Projector:
    """Applies batches to one projection file, in stream order, each with its checkpoint."""

    def __init__(self, store: ProjectionStore, stream: str, stream_created: datetime) -> None:
        self.store = store
        self.stream = stream
        self.stream_created = stream_created
        self.stats = ProjectorStats()
        # Called when a batch runs out of memory, before it is written again: it stops what else holds
        # the memory (analysts' queries, in the live projector) and returns how many it stopped.
        self.make_room: Callable[[], int] | None = None
        checkpoint = store.checkpoint(stream)
        if checkpoint is not None:
            self._check_created(checkpoint.stream_created, stream_created)
        self.last_seq = checkpoint.last_seq if checkpoint else 0
        self.digest = checkpoint.digest if checkpoint else GENESIS

    def check_stream_created(self, stream_created: datetime) -> None:
        """Refuse a stream other than the one this projector started on: deleted and created anew
        while it runs, its sequences start again at 1 and mean other events."""
        self._check_created(self.stream_created, stream_created)

    def _check_created(self, projected: datetime, now: datetime) -> None:
        if projected != now:
            raise ProjectionError(
                f"{self.store.path} was projected from a stream {self.stream} created at {projected}, "
                f"but the stream now was created at {now}: it was deleted and created anew. "
                f"Project into a new database file (--db) and compare with `outreach sql`."
            )

    def check_stream_end(self, stream_last_seq: int) -> None:
        """Refuse a stream that ends before the checkpoint: it lost messages this projection has
        applied (a server restored from an older backup, or one that lost writes), and the events
        published next would take sequences the projector has already passed, never to be counted."""
        if stream_last_seq < self.last_seq:
            raise ProjectionError(
                f"stream {self.stream} ends at sequence {stream_last_seq}, but {self.store.path} has applied "
                f"up to sequence {self.last_seq}: the stream lost messages the projection holds (a server "
                f"restored from an older backup, or one that lost writes). Events published from now on would "
                f"take sequences the projector has passed and never be counted, so it stops. The lost events "
                f"are still in this file's event_log; `outreach verify` compares the two."
            )

    def apply(self, msgs: list[StreamMessage]) -> int:
        """Apply the messages after the checkpoint; return how many were new."""
        return self.apply_parsed(parse_batch([m for m in msgs if m.seq > self.last_seq]), len(msgs))

    def apply_parsed(self, parsed: list[Parsed], received: int | None = None) -> int:
        """Apply messages already parsed (``parse_batch``, which needs no database and so can run
        while the previous batch is written); those at or below the checkpoint are skipped."""
        received = len(parsed) if received is None else received
        parsed = [p for p in parsed if p.msg.seq > self.last_seq]
        self.stats.skipped += received - len(parsed)
        if not parsed:
            return 0
        referenced = referenced_ids(parsed)
        update = fold_batch(
            parsed,
            self.store.lookup(referenced, compare=published_ids(parsed)),
            self.store.owners(referenced_definitions(parsed)),
            self._coordination(parsed, referenced),
            after_seq=self.last_seq,
            digest=self.digest,
        )
        self._write(update)
        self.last_seq = update.last_seq
        self.digest = update.digest
        self.stats.batches += 1
        self.stats.messages += len(parsed)
        self.stats.accepted += len(update.log)
        self.stats.rejected += len(update.rejected)
        self.stats.duplicates += len(update.duplicates)
        return len(parsed)

    def _write(self, update: BatchUpdate) -> None:
        for pause in MEMORY_RETRY_S:
            try:
                self.store.apply(update, self.stream, self.stream_created, self.last_seq)
                return
            except WriteOutOfMemory as exc:
                stopped = self.make_room() if self.make_room is not None else 0
                log.warning(
                    "writing the batch ending at stream sequence %d ran out of memory (%s); nothing of it was "
                    "kept, %d analysts' queries running were stopped, and it is written again in %g s",
                    update.last_seq,
                    exc.detail,
                    stopped,
                    pause,
                )
                time.sleep(pause)
        self.store.apply(update, self.stream, self.stream_created, self.last_seq)

    def _coordination(self, parsed: list[Parsed], referenced: list[tuple[str, uuid.UUID]]) -> Coordination | None:
        """The appointments and links in force, for a batch with a coordination event or a
        retraction (which may undo one); None for the others."""
        if not any(p.coordination is not None or p.event_type == "event_retracted" for p in parsed):
            return None
        appointments, links, countries = load_coordination(self.store.con, referenced)
        return Coordination(appointments, links, countries)
