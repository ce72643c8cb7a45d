"""An agency asks a running projector what became of its own events (``schemas.receipts``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import datetime

from nats.aio.client import Client

from runtime.protocol import Unanswered, decode_status, encode_status_request
from runtime.protocol import ask as ask_service
from schemas.errors import BrokerError
from schemas.receipts import InForce, PossibleDuplicate, Receipt, StatusReply, StatusRequest
from schemas.subjects import status_subject

ASK_TIMEOUT_S = 10.0
IDS_PER_REQUEST = 1_000


async def ask(nc: Client, agency: str, request: StatusRequest) -> StatusReply:
    """One request, one page of receipts; a ``BrokerError`` when no projector answers or it refuses."""
    subject = status_subject(agency)
    try:
        data = await ask_service(nc, subject, encode_status_request(request), timeout=ASK_TIMEOUT_S)
    except Unanswered as exc:
        raise BrokerError(
            f"no projector answered on {subject} ({exc.cause}): receipts come from a running "
            f"`outreach project`; is one running, and may these credentials ask for agency {agency!r}?"
        ) from None
    return decode_status(data)


async def receipts(
    nc: Client,
    agency: str,
    *,
    after_seq: int = 0,
    since: datetime | None = None,
    event_ids: Sequence[str] | None = None,
) -> tuple[list[Receipt], int]:
    """Every receipt asked for, page after page, and the projector's checkpoint when answering."""
    found: list[Receipt] = []
    as_of = 0
    chunks = (
        [None]
        if event_ids is None
        else [event_ids[i : i + IDS_PER_REQUEST] for i in range(0, len(event_ids), IDS_PER_REQUEST)]
    )
    for chunk in chunks:
        after = after_seq
        while True:
            request = StatusRequest(after_seq=after, since=since, event_ids=tuple(chunk) if chunk is not None else None)
            reply = await ask(nc, agency, request)
            as_of = reply.as_of_seq
            found.extend(reply.receipts)
            if not reply.more or not reply.receipts:
                break
            after = reply.receipts[-1].stream_seq
    found.sort(key=lambda r: r.stream_seq)
    return found, as_of


async def in_force(nc: Client, agency: str) -> list[InForce]:
    """The agency's events in force with a reference, from a running projector (a ``BrokerError``
    when none answers)."""
    found: list[InForce] = []
    after = 0
    while True:
        reply = await ask(nc, agency, StatusRequest(after_seq=after, in_force=True))
        found.extend(reply.in_force)
        if not reply.more or not reply.in_force:
            return found
        after = reply.in_force[-1].stream_seq


async def wait_for_receipts(
    nc: Client, agency: str, event_ids: Sequence[str], last_seq: int | None, timeout_s: float
) -> tuple[list[Receipt], list[str]]:
    """Wait until the projector has applied the stream up to ``last_seq`` and has a receipt for
    each event_id; return the receipts and the event_ids still without one at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            found, as_of = await receipts(nc, agency, event_ids=event_ids)
        except BrokerError:
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.2)  # a projector starting, or restarting: ask again
            continue
        have = {r.event_id for r in found}
        missing = [e for e in event_ids if e not in have]
        if (not missing and as_of >= (last_seq or 0)) or time.monotonic() >= deadline:
            return found, missing
        await asyncio.sleep(0.2)  # polling a service that answers from the projection: no message to wait on


async def possible_duplicates(nc: Client, agency: str) -> tuple[list[PossibleDuplicate], str | None]:
    """The possible double reports the agency's actions are in, from a running projector, or why
    it could not list them."""
    reply = await ask(nc, agency, StatusRequest(after_seq=2**62, duplicates=True, limit=1))
    return list(reply.possible_duplicates), reply.possible_duplicates_refused
