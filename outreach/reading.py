"""What a reading command reads: the projection file, or, while a running projector holds it, the
projector's answer (``runtime.protocol``): a query answered on its side, its snapshot when that
carries what the command reads, else a whole copy it writes on request.

NATS is imported only when a projector is asked: ``outreach sql`` on a file starts without it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from projections.query import LockedByProjector, QueryLimits, QueryResult, run_query
from projections.snapshot import readable as snapshot_readable
from runtime.settings import Settings
from schemas.errors import ProjectionError
from schemas.subjects import copy_subject, query_subject

STARTING_S = 15.0  # a projector that is starting answers once its services are up
COPY_TIMEOUT_S = 600.0  # a copy of a projection of millions of events takes minutes on a small machine


@dataclass(frozen=True)
class Source:
    """The file to read, and what to tell the reader about it (None: the projection itself)."""

    path: Path
    note: str | None


def run_sql(settings: Settings, sql: str) -> QueryResult:
    """A read-only query on ``settings.db``, or, while a projector holds it, by that projector."""
    try:
        limits = QueryLimits(seconds=settings.query_timeout_s, max_rows=settings.query_max_rows)
        return run_query(settings.db, sql, limits=limits)
    except LockedByProjector:
        import asyncio

        return asyncio.run(ask_query(settings, sql))


async def ask_query(settings: Settings, sql: str) -> QueryResult:
    """The file is locked by a running projector: it answers read-only queries over NATS."""
    from runtime.protocol import decode_answer, encode_query

    subject = query_subject(settings.stream)
    # The projector stops a query at its own limit and says so; this time-out is for a projector gone.
    timeout = max(60, settings.query_timeout_s + 30)
    data = await ask_projector(settings, subject, encode_query(sql), timeout, "an analyst's")
    answer = decode_answer(data, subject)
    return QueryResult(answer.columns, answer.rows, answer.as_of_seq, answer.as_of_stored_at)


def readable(settings: Settings, carries: Callable[[Path], bool] | None = None) -> Source:
    """The projection to read: ``settings.db``; or, while a running projector holds it, its
    snapshot when that carries what the command reads (``carries``), else a whole copy that the
    projector writes on request. The note says which."""
    try:
        source, note = snapshot_readable(settings.db)
    except LockedByProjector:
        pass  # held by a projector that has written no snapshot yet
    else:
        if note is None:  # no projector holds it
            return Source(source, None)
        if carries is not None and carries(source):
            return Source(source, note)
    import asyncio

    from runtime.protocol import decode_copy

    subject = copy_subject(settings.stream)
    data = asyncio.run(ask_projector(settings, subject, b"", COPY_TIMEOUT_S, "an analyst's or an auditor's"))
    copy = decode_copy(data, subject)
    return Source(
        copy.path,
        f"{settings.db} is being written by a running projector: read the copy it wrote, {copy.path}, "
        f"as of stream sequence {copy.as_of_seq}",
    )


async def ask_projector(settings: Settings, subject: str, payload: bytes, timeout: float, who: str) -> bytes:
    """One request to the running projector that holds ``settings.db``, and its answer. A projector
    that is starting is waited for a moment; a request the broker refuses these credentials
    (``who`` may make it) is said at once, not after ``timeout``."""
    from runtime.connection import connect, redact
    from runtime.protocol import Unanswered, ask

    where = f"{subject} at {redact(settings.nats_url)}"
    errors: list[BaseException] = []
    nc = await connect(settings, "outreach-cli", errors)
    try:
        return await ask(nc, subject, payload, timeout=timeout, errors=errors, starting_s=STARTING_S)
    except Unanswered as exc:
        held = f"{settings.db} is locked by a running projector"
        if exc.why == "forbidden":
            raise ProjectionError(
                f"{held}, and these credentials may not ask it on {where}: {who} may (`outreach auth`)"
            ) from None
        if exc.why == "late":
            raise ProjectionError(f"{held}, which did not answer on {where} within {timeout:.0f} s") from None
        raise ProjectionError(f"{held}, and no projector answered on {where}") from None
    finally:
        await nc.close()
