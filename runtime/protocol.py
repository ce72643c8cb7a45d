"""The request-reply protocol of a running projector's services, both sides of it.

    service  subject                    request               answer
    query    outreach.query.<stream>    SQL text, UTF-8       QueryAnswer as JSON, or a refusal
    copy     outreach.copy.<stream>     (empty)               CopyAnswer as JSON, or a refusal
    status   outreach.status.<agency>   StatusRequest, JSON   StatusReply, JSON (``error`` set: refused)

A refusal is ``{"error": "…", "refused": true|false}``: ``refused`` says the request was refused or
stopped (a query past its limit, a projector stopping) rather than failed. The answering side
(``consumers.queries``, ``consumers.app``) serves a subject with ``serve``, which answers only
requests whose reply subject is an inbox and names who asked as the broker says it (``asker``);
the asking side (the command line, ``producers.receipts``, the benchmark) sends with ``ask``, which
says why a request got no answer as an ``Unanswered`` error with a kind.

The services run on plain nats-py subscriptions, on the projector's one connection (the one its
follower reads the stream on), not as FastStream subscribers. FastStream does not fit them:
- its decoder JSON-decodes a body without a content type, so an analyst's SQL ``123`` would reach
  the handler as a number, and a request nested a hundred thousand deep fails in the decoder,
  before any handler could refuse it with an answer;
- a FastStream handler answers with its return value, as it returns; these services answer later,
  when a fair share of slots between askers (``consumers.fair``) lets the request run;
- a broker opens a connection of its own beside the projector's.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from schemas.errors import BrokerError, ProjectionError, QueryRefused
from schemas.receipts import StatusReply, StatusRequest

log = logging.getLogger("outreach.projector")

# Answers go only to inboxes: a client's own (_INBOX…) or, across accounts, the private subject a
# service import maps the asker's reply to (_R_.…). Any other reply subject could name a subject
# that a stream stores; such a request is refused and logged.
REPLY_PREFIXES = ("_INBOX", "_R_.")
REQUEST_INFO = "Nats-Request-Info"  # written by the server on a request through a shared service import
REPLY_ROOM = 4096  # of the broker's max_payload, kept for an answer's headers and framing
_unnamed = itertools.count()


# ---- what travels ------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueryAnswer:
    """A query's result as it travels: the rows, and what the projection had applied."""

    columns: list[str]
    rows: list[tuple[Any, ...]]
    as_of_seq: int | None
    as_of_stored_at: datetime | None


@dataclass(frozen=True)
class CopyAnswer:
    """Where the projector wrote a whole copy of its projection, and as of which sequence."""

    path: Path
    as_of_seq: int | None


def encode_query(sql: str) -> bytes:
    return sql.encode()


def decode_query(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def refusal(message: str, *, refused: bool = True) -> bytes:
    """An error answer; ``refused``: the request was refused or stopped, rather than failed."""
    return json.dumps({"error": message, "refused": refused}, ensure_ascii=False).encode()


def encode_answer(answer: QueryAnswer, max_bytes: int) -> bytes:
    """The answer as JSON, or ``QueryRefused`` when it is larger than one reply may be."""
    body = json.dumps(
        {
            "columns": answer.columns,
            "rows": answer.rows,
            "as_of_seq": answer.as_of_seq,
            "as_of_stored_at": answer.as_of_stored_at,
        },
        default=str,
        ensure_ascii=False,
    ).encode()
    if len(body) > max_bytes:
        raise QueryRefused(
            f"result too large: {len(answer.rows):,} rows, {len(body):,} bytes as JSON where one reply holds "
            f"{max_bytes:,}; add LIMIT, or use `outreach export`"
        )
    return body


def decode_answer(data: bytes, where: str) -> QueryAnswer:
    """A query's answer; its refusal as ``QueryRefused``, its failure as ``ProjectionError``."""
    answer = _json_object(data, where)
    _raise_refusal(answer, refused_as=QueryRefused)
    try:
        stored = answer["as_of_stored_at"]
        return QueryAnswer(
            list(answer["columns"]),
            [tuple(row) for row in answer["rows"]],
            answer["as_of_seq"],
            datetime.fromisoformat(stored) if stored else None,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ProjectionError(f"the answer on {where} is not a query's answer ({exc!r})") from None


def encode_copy(copy: CopyAnswer) -> bytes:
    return json.dumps({"path": str(copy.path), "as_of_seq": copy.as_of_seq}).encode()


def decode_copy(data: bytes, where: str) -> CopyAnswer:
    """Where the copy is; a refusal or failure as ``ProjectionError``."""
    answer = _json_object(data, where)
    _raise_refusal(answer, refused_as=ProjectionError)
    try:
        return CopyAnswer(Path(answer["path"]), answer["as_of_seq"])
    except (KeyError, TypeError) as exc:
        raise ProjectionError(f"the answer on {where} does not name a copy ({exc!r})") from None


def encode_status_request(request: StatusRequest) -> bytes:
    return request.model_dump_json().encode()


def decode_status_request(data: bytes) -> StatusRequest | str:
    """The request, or why it is invalid (what the refusal says)."""
    from pydantic import ValidationError

    try:
        return StatusRequest.model_validate_json(data or b"{}")
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(request)'}: {e['msg']}" for e in exc.errors())
        return f"invalid status request: {problems[:500]}"


def encode_status(reply: StatusReply) -> bytes:
    return reply.model_dump_json().encode()


def decode_status(data: bytes) -> StatusReply:
    """An agency's receipts; a refusal as ``BrokerError``."""
    reply = StatusReply.model_validate_json(data)
    if reply.error:
        raise BrokerError(f"the projector refused the status request: {reply.error}")
    return reply


def _json_object(data: bytes, where: str) -> dict[str, Any]:
    try:
        answer = json.loads(data)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise ProjectionError(f"the answer on {where} is not a JSON object: {data[:200]!r}")
    return answer


def _raise_refusal(answer: dict[str, Any], *, refused_as: type[Exception]) -> None:
    if "error" in answer:
        raise (refused_as if answer.get("refused") else ProjectionError)(str(answer["error"]))


# ---- the answering side ------------------------------------------------------------------------


def may_answer(reply: str | None) -> bool:
    """Whether a request's reply subject is an inbox; a request whose is not is logged, unanswered."""
    if reply and reply.startswith(REPLY_PREFIXES):
        return True
    log.warning("refused a request whose reply subject %r is not an inbox", (reply or "")[:200])
    return False


def asker(reply: str | None, headers: dict[str, str] | None) -> str:
    """Who asked, as the broker says it: ``account/user`` from the server's ``Nats-Request-Info``
    on a request that came through a service import (an ``_R_`` reply subject), else a name of its
    own for this one request. What the asker says of itself counts for nothing: the server writes
    that header over any of the same name the asker set."""
    info = (headers or {}).get(REQUEST_INFO)
    if info and reply and reply.startswith("_R_."):
        try:
            who = json.loads(info)
        except ValueError:
            who = None
        if isinstance(who, dict) and who.get("acc"):
            return f"{who['acc']}/{who.get('user') or who.get('id', '?')}"
    return f"(unnamed {next(_unnamed)})"


@dataclass(frozen=True)
class Request:
    """One request to answer: its subject and bytes, who asked, and how to answer it."""

    subject: str
    data: bytes
    asker: str
    answer: Callable[[bytes], Awaitable[object]]


Handler = Callable[[Request], Awaitable[None]]


class Serving:
    """A subject served: ``stop`` ends the subscription and waits for the requests being handled."""

    def __init__(self, subscription: Subscription, running: set[asyncio.Task[None]]) -> None:
        self._subscription = subscription
        self._running = running

    async def stop(self) -> None:
        with contextlib.suppress(Exception):  # a connection already closed has no subscription to end
            await self._subscription.unsubscribe()
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)


async def serve(nc: Client, subject: str, handle: Handler, *, at_once: int = 1) -> Serving:
    """Answer requests on ``subject`` with ``handle``, ``at_once`` of them at a time (the others
    wait in the subscription); a request whose reply subject is no inbox is dropped and logged."""
    room = asyncio.Semaphore(at_once)
    running: set[asyncio.Task[None]] = set()

    async def one(request: Request) -> None:
        try:
            await handle(request)
        except Exception:  # one request's failure never stops the service
            log.exception("could not answer a request on %s", request.subject)
        finally:
            room.release()

    async def received(msg: Msg) -> None:
        if not may_answer(msg.reply):
            return
        request = Request(msg.subject, msg.data, asker(msg.reply, msg.headers), msg.respond)
        await room.acquire()
        task = asyncio.create_task(one(request))
        running.add(task)
        task.add_done_callback(running.discard)

    return Serving(await nc.subscribe(subject, cb=received), running)


# ---- the asking side ---------------------------------------------------------------------------

Why = Literal["forbidden", "nobody", "late"]


class Unanswered(BrokerError):
    """A request got no answer: the broker refused these credentials the subject (``forbidden``),
    no service listens there (``nobody``), or none answered in time (``late``)."""

    def __init__(self, why: Why, subject: str, cause: str) -> None:
        super().__init__(f"no answer on {subject}: {why} ({cause})")
        self.why = why
        self.subject = subject
        self.cause = cause  # what nats-py raised, by name


POLL_S = 0.25  # how often a request that waits looks for the broker's refusal of it


async def ask(
    nc: Client,
    subject: str,
    payload: bytes,
    *,
    timeout: float,
    errors: Sequence[BaseException] = (),
    starting_s: float = 0.0,
) -> bytes:
    """Send one request and return its answer's bytes. A service that is starting (nobody
    listening yet) is asked again for ``starting_s``; a refusal the broker sends these credentials
    (collected in ``errors``, see ``runtime.connection.connect``) ends the wait at once."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + starting_s
    while True:
        sent = asyncio.ensure_future(nc.request(subject, payload, timeout=timeout))
        try:
            while not sent.done():
                await asyncio.wait({sent}, timeout=POLL_S)
                if not sent.done() and _forbidden(errors, subject):
                    raise Unanswered("forbidden", subject, "permissions violation")
            return sent.result().data
        except NoRespondersError:
            if loop.time() >= give_up:
                raise Unanswered("nobody", subject, "NoRespondersError") from None
        except (TimeoutError, NatsTimeoutError) as exc:
            raise Unanswered("late", subject, type(exc).__name__) from None
        finally:
            if not sent.done():
                sent.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await sent
        await asyncio.sleep(0.2)


def _forbidden(errors: Sequence[BaseException], subject: str) -> bool:
    """Whether the server refused these credentials publishing on ``subject``. nats-py reports it
    only as text (its own ``PERMISSIONS_ERR`` check is a string match too), asynchronously."""
    return any("permissions violation" in str(e).lower() and subject.lower() in str(e).lower() for e in errors)


__all__ = [
    "CopyAnswer",
    "QueryAnswer",
    "Request",
    "Serving",
    "Unanswered",
    "ask",
    "asker",
    "decode_answer",
    "decode_copy",
    "decode_query",
    "decode_status",
    "decode_status_request",
    "encode_answer",
    "encode_copy",
    "encode_query",
    "encode_status",
    "encode_status_request",
    "may_answer",
    "refusal",
    "serve",
]
