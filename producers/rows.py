"""Publishing a file's rows again: what each row with a reference does to the stream.

A row with a reference (``schemas.files``) has the same event_id in every version of the file. Before
anything is sent, each such row is compared with what the stream holds for it, read back by direct
gets on the agency's own subjects: the original, then its corrections made from a file, whose
event_ids are fixed (the k-th is ``correction_id(fact, k)``), then its retraction
(``retraction_id(fact)``). Only the facts are compared, not ``recorded_at``. A row is

- *new*: nothing is stored for it; it is published;
- *unchanged*: its facts are those in force; nothing is sent;
- *corrected*: an ``event_corrected`` of the stored event is published, the next of its chain, so a
  retried publish finds it stored and sends nothing; the report says what changed;
- *withdrawn*: its ``withdrawn`` cell holds a reason; an ``event_retracted`` is published.

Rows deleted from the file are found with a running projector's help: it lists the agency's events
in force with a reference (``StatusRequest(in_force=True)``), and those whose original was
published from a file of this name (the ``Outreach-Origin`` header stored with it) and whose
reference the file no longer has are *in the stream, not in this file*. They are retracted only
when asked (``retract_missing``). Without a projector they cannot be listed, and the plan says so.
"""

from __future__ import annotations

import asyncio
import json
import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from nats.aio.client import Client
from nats.aio.msg import Msg

from schemas.errors import BrokerError, EventInvalid
from schemas.events import EventBase, EventCorrected, wall_clock
from schemas.files import ROWS_A_SHEET, SHEETS, LoadedFile
from schemas.parse import parse_event
from schemas.subjects import subject_for

ORIGIN_HEADER = "Outreach-Origin"
MAX_FILE_NAME = 120  # characters of a file's name kept in the header
MAX_ORIGIN_BYTES = 400  # a stored header longer than this is not read
MAX_REASON = 2000
LOOKUPS_AT_ONCE = 64  # direct gets in flight
MAX_CORRECTIONS = 1_000  # corrections of one row read back; a row corrected more often is refused
CHAIN_NAMESPACE = uuid.UUID("9b2e6f14-3a7c-5d08-b1e4-7c6a2f9d0e35")


def correction_id(fact_id: uuid.UUID, k: int) -> uuid.UUID:
    """The event_id of the k-th correction (1, 2, …) of a fact made by publishing a file again."""
    return uuid.uuid5(CHAIN_NAMESPACE, f"corrects\n{fact_id}\n{k}")


def retraction_id(fact_id: uuid.UUID) -> uuid.UUID:
    """The event_id of the retraction of a fact made from a file (withdrawn, or deleted and retracted)."""
    return uuid.uuid5(CHAIN_NAMESPACE, f"retracts\n{fact_id}")


# ---- where an event came from --------------------------------------------------------------------


def clean(text: str, limit: int) -> str:
    """Printable characters only: what a terminal is handed is inert."""
    kept = "".join(c for c in text if unicodedata.category(c)[0] not in "CZ" or c == " ")
    return kept[:limit]


@dataclass(frozen=True)
class Origin:
    """A file's name and, within it, a sheet and row (a workbook) or a line (CSV, JSON Lines)."""

    file: str
    sheet: str | None = None
    number: int | None = None

    @classmethod
    def of(cls, path: str, line: int | None) -> Origin:
        name = clean(Path(path).name, MAX_FILE_NAME)
        if line is None:
            return cls(name)
        if line >= ROWS_A_SHEET:
            return cls(name, SHEETS[line // ROWS_A_SHEET - 1], line % ROWS_A_SHEET)
        return cls(name, None, line)

    @property
    def where(self) -> str:
        if self.number is None:
            return ""
        return f"sheet {self.sheet}, row {self.number}" if self.sheet else f"line {self.number}"

    def header(self) -> dict[str, str]:
        body: dict[str, Any] = {"file": self.file}
        if self.number is not None:
            if self.sheet:
                body["sheet"], body["row"] = self.sheet, self.number
            else:
                body["line"] = self.number
        return {ORIGIN_HEADER: json.dumps(body, ensure_ascii=True, separators=(",", ":"))}

    @classmethod
    def read(cls, headers: dict[str, str] | None) -> Origin | None:
        """The origin a stored message's header gives, or None; anything odd in it is dropped."""
        text = (headers or {}).get(ORIGIN_HEADER)
        if not text or len(text) > MAX_ORIGIN_BYTES:
            return None
        try:
            body = json.loads(text)
        except ValueError:
            return None
        if not isinstance(body, dict) or not isinstance(body.get("file"), str):
            return None
        sheet = body.get("sheet")
        number = body.get("row") if sheet is not None else body.get("line")
        if sheet is not None and sheet not in SHEETS:
            return None
        if number is not None and (type(number) is not int or not 0 < number < ROWS_A_SHEET):
            return None
        return cls(clean(body["file"], MAX_FILE_NAME), sheet, number)


# ---- what the stream holds for a fact ------------------------------------------------------------


@dataclass(frozen=True)
class Stored:
    """A fact as the stream holds it: the version in force, how many corrections made it, whether
    it is retracted, and where its original came from."""

    current: EventBase | None  # None: a stored version could not be read
    corrections: int
    retracted: bool
    origin: Origin | None
    problem: str | None = None


class StreamView:
    """Reads an agency's own messages back by direct get on their subjects."""

    def __init__(self, nc: Client, stream: str, timeout: float = 5.0) -> None:
        self.nc = nc
        self.stream = stream
        self.timeout = timeout
        self.slots = asyncio.Semaphore(LOOKUPS_AT_ONCE)

    async def get(self, subject: str) -> Msg | None:
        async with self.slots:
            try:
                msg = await self.nc.request(f"$JS.API.DIRECT.GET.{self.stream}.{subject}", b"", timeout=self.timeout)
            except Exception as exc:  # no responder, a timeout, a permission
                raise BrokerError(
                    f"could not read back {subject} from stream {self.stream} ({type(exc).__name__}): the publisher "
                    f"compares each row with what is stored before sending; is the server up, and may these "
                    f"credentials read their own subjects?"
                ) from None
        status = (msg.headers or {}).get("Status")
        if status == "404":
            return None
        if status is not None:
            description = (msg.headers or {}).get("Description", "")
            raise BrokerError(f"could not read back {subject}: the stream answered {status} {description[:200]}")
        return msg

    async def fact(self, agency: str, event_type: str, fact_id: uuid.UUID) -> Stored | None:
        """What is stored for a fact, or None when nothing is. The original is looked for under
        every event type (a row moved to another sheet keeps its event_id), its own type first."""
        original = await self.get(subject_for(agency, "*", fact_id))
        if original is None:
            return None
        if (original.headers or {}).get("Nats-Subject") != subject_for(agency, event_type, fact_id):
            original = await self.get(subject_for(agency, event_type, fact_id)) or original
        origin = Origin.read(original.headers)
        current, problem = _read(original.data)
        k = 0
        while k < MAX_CORRECTIONS:
            found = await self.get(subject_for(agency, "event_corrected", correction_id(fact_id, k + 1)))
            if found is None:
                break
            k += 1
            correction, problem = _read(found.data)
            current = correction.replacement if type(correction) is EventCorrected else None
        else:
            current, problem = None, f"it has been corrected {MAX_CORRECTIONS:,} times; give it a new reference"
        retracted = await self.get(subject_for(agency, "event_retracted", retraction_id(fact_id))) is not None
        return Stored(current, k, retracted, origin, problem)


def _read(data: bytes) -> tuple[Any, str | None]:
    try:
        return parse_event(data), None
    except EventInvalid as exc:
        return None, "; ".join(str(p) for p in exc.problems)[:500]


# ---- what changed ------------------------------------------------------------------------------

NOT_FACTS = {"event_id", "recorded_at", "schema_version", "reference"}


def facts(event: EventBase) -> dict[str, str]:
    """An event's facts as flat text: one entry per field, one per audience group."""
    out: dict[str, str] = {}
    for name, value in event.model_dump(mode="json", exclude=NOT_FACTS).items():
        if name == "participants":
            for group in value:
                count = group["count"]
                out[group["audience"]] = "unknown" if count is None else f"{'~' if group['estimated'] else ''}{count}"
        elif name == "occurred" and isinstance(value, dict):
            out[name] = value["start"] + (f"/{value['end']}" if value.get("end") else "")
        elif isinstance(value, list):
            out[name] = ";".join(str(v) for v in value)
        elif value is not None and value != []:
            out[name] = str(value)
    return out


def changes(before: EventBase, after: EventBase) -> list[str]:
    """What differs, as ``students 42 → 45``; a field left empty is ``(empty)``."""
    old, new = facts(before), facts(after)
    return [
        f"{name} {old.get(name, '(empty)')} → {new.get(name, '(empty)')}"
        for name in [*new, *(n for n in old if n not in new)]
        if old.get(name) != new.get(name)
    ]


# ---- the plan ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Send:
    """One event to publish, with its payload, its line in the file and its origin header."""

    event: EventBase
    payload: bytes
    line: int | None
    headers: dict[str, str]


# What publishing does to a row: see the module's docstring; "missing" is a row deleted from the
# file (retracted or kept), "refused" one that cannot be published (nothing is sent for it).
Fate = Literal["new", "unchanged", "corrected", "withdrawn", "missing", "refused"]


@dataclass(frozen=True)
class RowFate:
    reference: str | None
    origin: Origin
    fate: Fate
    detail: str = ""
    send: Send | None = None
    line: int | None = None  # the row's line in this file (None: a row deleted from it)
    event_id: str = ""  # the fact's
    replaces: Send | None = None  # the retraction of what this row was published as before it had a reference

    def text(self, path: str, noun: str) -> str:
        ref = f", {self.reference}" if self.reference else ""
        if self.fate == "missing":
            was = f" (was {self.origin.where})" if self.origin.where else ""
            return f"{path}: {self.reference}{was}: in the stream, not in this {noun}{self.detail}"
        return f"{path}: {self.origin.where}{ref}: {self.fate}{': ' + self.detail if self.detail else ''}"


@dataclass
class FilePlan:
    """What publishing one file does, row by row."""

    loaded: LoadedFile
    rows: list[RowFate] = field(default_factory=list)  # rows with a reference, and withdrawn rows
    plain: list[Send] = field(default_factory=list)  # events without a reference, published as they are
    missing_unknown: str | None = None  # why rows deleted from the file could not be listed

    @property
    def noun(self) -> str:
        return "workbook" if self.loaded.path.lower().endswith(".xlsx") else "file"

    def sends(self) -> list[Send]:
        planned = [s for r in self.rows for s in (r.send, r.replaces) if s is not None]
        return sorted([*self.plain, *planned], key=lambda s: s.line if s.line is not None else 1 << 62)

    def refused(self) -> list[RowFate]:
        return [r for r in self.rows if r.fate == "refused"]

    def lines(self) -> list[str]:
        """Each row's fate, one line a row."""
        return [r.text(self.loaded.path, self.noun) for r in self.rows]

    def warnings(self) -> list[str]:
        out = []
        if self.loaded.unreferenced:
            lines = self.loaded.unreferenced
            rows = ", ".join(Origin.of(self.loaded.path, line).where for line in lines[:5])
            more = f" and {len(lines) - 5} more" if len(lines) > 5 else ""
            out.append(
                f"warning: {self.loaded.path}: {len(lines)} row(s) without a reference ({rows}{more}): "
                f"their ids come from their content, so a row edited and published again will be counted twice; "
                f"give every row a reference"
            )
        if self.missing_unknown:
            out.append(f"warning: {self.loaded.path}: {self.missing_unknown}")
        return out


async def plan_file(
    view: StreamView,
    loaded: LoadedFile,
    *,
    in_force: Any = None,
    retract_missing: bool = False,
) -> FilePlan:
    """Compare a file's rows with the stream. ``in_force(agency)`` lists an agency's events in force
    with a reference (``producers.receipts.in_force``); a ``BrokerError`` from it means no projector."""
    plan = FilePlan(loaded)
    referenced = [(line, e, p) for (line, e), p in zip(loaded.events, loaded.payloads, strict=True)]
    if not loaded.tabular:
        plan.plain = [Send(e, p, line, Origin.of(loaded.path, line).header()) for line, e, p in referenced]
        return plan
    plan.plain = [
        Send(e, p, line, Origin.of(loaded.path, line).header()) for line, e, p in referenced if e.reference is None
    ]
    rows = [(line, e, p, None) for line, e, p in referenced if e.reference is not None]
    rows += [(line, e, p, reason) for line, e, p, reason in loaded.withdrawn]
    rows.sort(key=lambda r: r[0])
    stored = await asyncio.gather(*(view.fact(e.agency, e.event_type, e.event_id) for _, e, _, _ in rows))
    for (line, event, payload, reason), held in zip(rows, stored, strict=True):
        plan.rows.append(_row_fate(loaded.path, line, event, payload, reason, held))
    await _before_references(view, plan, rows, stored)
    agencies = sorted({e.agency for _, e, _, _ in rows})
    if agencies and in_force is not None:
        await _missing(view, plan, agencies, {e.event_id for _, e, _, _ in rows}, in_force, retract_missing)
    return plan


async def _before_references(view: StreamView, plan: FilePlan, rows: list[Any], stored: list[Stored | None]) -> None:
    """A workbook row given a reference after it was published without one had an event_id made
    from its content: that event is retracted as the row's new one is published, so that adding
    references to a workbook never counts its rows twice."""
    loaded = plan.loaded
    found = [
        (i, loaded.content_ids[r[0]]) for i, r in enumerate(rows) if stored[i] is None and r[0] in loaded.content_ids
    ]
    before = await asyncio.gather(*(view.fact(rows[i][1].agency, rows[i][1].event_type, old) for i, old in found))
    for (i, old), held in zip(found, before, strict=True):
        if held is None or held.retracted:
            continue
        fate, event, withdrawn = plan.rows[i], rows[i][1], rows[i][3]
        note = f"it was published without a reference as event {old}, which is retracted"
        reason = (
            withdrawn or f"the same row ({fate.origin.file}, {fate.origin.where}) given reference {event.reference}"
        )
        retraction = _retraction(event.agency, old, event.reference, reason, fate.origin, fate.line)
        detail = f"{withdrawn}; {note}" if withdrawn else note
        plan.rows[i] = RowFate(
            fate.reference, fate.origin, fate.fate, detail, fate.send, fate.line, fate.event_id, retraction
        )


def _row_fate(
    path: str, line: int, event: EventBase, payload: bytes, reason: str | None, held: Stored | None
) -> RowFate:
    origin = Origin.of(path, line)
    ref = event.reference
    if reason is not None:
        if held is None:
            return _fate(line, event, ref, origin, "withdrawn", "never published, nothing to retract")
        if held.retracted:
            return _fate(line, event, ref, origin, "withdrawn", "retracted already")
        send = _retraction(event.agency, event.event_id, ref, reason, origin, line)
        return _fate(line, event, ref, origin, "withdrawn", reason, send)
    if held is None:
        return _fate(line, event, ref, origin, "new", "", Send(event, payload, line, origin.header()))
    if held.retracted:
        return _fate(
            line,
            event,
            ref,
            origin,
            "refused",
            "it was withdrawn (retracted) and stays so; give the row a new reference to report it again",
        )
    if held.current is None:
        return _fate(
            line, event, ref, origin, "refused", f"what the stream holds for it cannot be read: {held.problem}"
        )
    if type(held.current) is not type(event):
        return _fate(
            line,
            event,
            ref,
            origin,
            "refused",
            f"the stream holds it as a {held.current.event_type}, not a {event.event_type}: give this row a new "
            f"reference, and withdraw the old one (its row back on its sheet, with a reason in its withdrawn column)",
        )
    changed = changes(held.current, event)
    if not changed:
        return _fate(line, event, ref, origin, "unchanged")
    detail = ", ".join(changed)
    if held.origin is not None and held.origin.file != origin.file:
        # References are the agency's, across its files: say so when two files use the same one.
        where = f", {held.origin.where}" if held.origin.where else ""
        detail += f" (its row was published from {held.origin.file}{where})"
    correction = {
        "event_id": str(correction_id(event.event_id, held.corrections + 1)),
        "event_type": "event_corrected",
        "agency": event.agency,
        "recorded_at": wall_clock().isoformat(),
        "reference": ref,
        "corrects": str(event.event_id),
        "replacement": json.loads(payload),
        "reason": _reason(f"{origin.file}, {origin.where} changed: {detail}"),
    }
    return _fate(line, event, ref, origin, "corrected", detail, _send(correction, line, origin))


def _fate(line: int, event: EventBase, *args: Any) -> RowFate:
    return RowFate(*args, line=line, event_id=str(event.event_id))


def _retraction(
    agency: str, fact_id: uuid.UUID, reference: str | None, reason: str, origin: Origin, line: int | None = None
) -> Send:
    retraction = {
        "event_id": str(retraction_id(fact_id)),
        "event_type": "event_retracted",
        "agency": agency,
        "recorded_at": wall_clock().isoformat(),
        "reference": reference,
        "retracts": str(fact_id),
        "reason": _reason(reason),
    }
    return _send(retraction, line, origin)


def _send(obj: dict[str, Any], line: int | None, origin: Origin) -> Send:
    payload = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
    return Send(parse_event(payload), payload, line, origin.header())


def _reason(text: str) -> str:
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 1] + "…"


async def _missing(
    view: StreamView,
    plan: FilePlan,
    agencies: Sequence[str],
    present: set[uuid.UUID],
    in_force: Any,
    retract_missing: bool,
) -> None:
    name = Origin.of(plan.loaded.path, None).file
    for agency in agencies:
        try:
            listed = await in_force(agency)
        except BrokerError as exc:
            plan.missing_unknown = (
                f"rows deleted from this {plan.noun} cannot be listed: {exc}; they are neither listed nor "
                f"retracted (run `outreach project`, then publish again)"
            )
            return
        # A row of the file skipped as invalid still names its reference: never taken for deleted.
        candidates = [
            f for f in listed if uuid.UUID(f.event_id) not in present and f.reference not in plan.loaded.references
        ]
        originals = await asyncio.gather(*(view.get(subject_for(agency, f.event_type, f.event_id)) for f in candidates))
        for fact, msg in zip(candidates, originals, strict=True):
            origin = Origin.read(msg.headers) if msg is not None else None
            if origin is None or origin.file != name:
                continue  # another file's row, or one published otherwise
            if retract_missing:
                where = origin.where or "a row"
                reason = f"deleted from {name} ({where}), retracted by publishing it with --retract-missing"
                send = _retraction(agency, uuid.UUID(fact.event_id), fact.reference, reason, origin)
                plan.rows.append(
                    RowFate(fact.reference, origin, "missing", ": retracted", send, event_id=fact.event_id)
                )
            else:
                hint = "; kept: publish with --retract-missing to retract it, or put its row back"
                plan.rows.append(RowFate(fact.reference, origin, "missing", hint, event_id=fact.event_id))


# ---- receipts' origins ---------------------------------------------------------------------------

MAX_ORIGINS = 2_000  # receipts whose origin `outreach status` reads back, the latest ones


async def origins(view: StreamView, agency: str, receipts: Sequence[Any]) -> dict[int, Origin]:
    """stream sequence -> where in a file the event came from, read from the header stored with
    each of the last ``MAX_ORIGINS`` receipts' messages (events on subjects of their own)."""
    wanted = [r for r in receipts if r.event_id and r.event_type and _is_uuid(r.event_id)][-MAX_ORIGINS:]
    found = await asyncio.gather(*(view.get(subject_for(agency, r.event_type, r.event_id)) for r in wanted))
    out: dict[int, Origin] = {}
    for receipt, msg in zip(wanted, found, strict=True):
        origin = Origin.read(msg.headers) if msg is not None else None
        seq = (msg.headers or {}).get("Nats-Sequence") if msg is not None else None
        if origin is not None and seq == str(receipt.stream_seq):
            out[receipt.stream_seq] = origin
    return out


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
