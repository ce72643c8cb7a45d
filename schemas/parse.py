"""Turning bytes into events: limits on raw input, upcasting of old versions, clear problems.

``parse_event`` is the one entry point; producers call it before anything is sent and the projector
calls it on every message. Old schema versions are upcast to the current one here, and only here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import TypeAdapter, ValidationError

from schemas.errors import EventInvalid, Problem
from schemas.events import EVENT_TYPES, Event, EventBase
from schemas.upcast import CURRENT_VERSIONS, upcast

MAX_EVENT_BYTES = 64 * 1024
MAX_DEPTH = 8

EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(Event)


def parse_event(data: bytes | str | Mapping[str, Any]) -> EventBase:
    """Validate one event (JSON text or an already decoded object); raise ``EventInvalid``."""
    return parse_event_versioned(data)[0]


def parse_event_versioned(data: bytes | str | Mapping[str, Any]) -> tuple[EventBase, int]:
    """Like ``parse_event``, and also the schema_version as published (before upcasting)."""
    if isinstance(data, Mapping):
        return _validate_object(dict(data))
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if len(raw) > MAX_EVENT_BYTES:
        raise EventInvalid([Problem("(event)", f"is {len(raw):,} bytes; the limit is {MAX_EVENT_BYTES:,}")])
    try:
        # Fast path: a current-version event validates straight from JSON.
        event = EVENT_ADAPTER.validate_json(raw)
        return event, event.schema_version
    except ValidationError:
        pass
    return _validate_object(decode_json(raw))


def decode_json(raw: bytes, allow: tuple[type, ...] = (dict,)) -> Any:
    """Decode one JSON object (or a value of an ``allow``ed type), refusing invalid UTF-8 and deep nesting."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EventInvalid([Problem("(event)", f"is not valid UTF-8 (byte {exc.start})")]) from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EventInvalid([Problem("(event)", f"is not valid JSON: {exc.msg} at column {exc.colno}")]) from None
    except RecursionError:
        raise EventInvalid([Problem("(event)", f"is nested deeper than {MAX_DEPTH} levels")]) from None
    if not isinstance(obj, allow):
        raise EventInvalid([Problem("(event)", f"must be a JSON object, not {type(obj).__name__}")])
    if _depth(obj) > MAX_DEPTH:
        raise EventInvalid([Problem("(event)", f"is nested deeper than {MAX_DEPTH} levels")])
    return obj


def _depth(value: Any, level: int = 0) -> int:
    if level > MAX_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level + 1)
    return level


def _validate_object(obj: dict[str, Any]) -> tuple[EventBase, int]:
    version_problem = _check_version(obj)
    if version_problem:
        raise EventInvalid([version_problem])
    published = obj.get("schema_version", CURRENT_VERSIONS[obj["event_type"]])
    try:
        return EVENT_ADAPTER.validate_python(upcast(obj)), published
    except ValidationError as exc:
        raise EventInvalid(problems_from(exc)) from None


def _check_version(obj: dict[str, Any]) -> Problem | None:
    kind = obj.get("event_type")
    if kind is None:
        return Problem("event_type", f"is missing; one of: {', '.join(EVENT_TYPES)}")
    if not isinstance(kind, str) or kind not in EVENT_TYPES:
        return Problem("event_type", f"is not a known event type; one of: {', '.join(EVENT_TYPES)}", _show(kind))
    version = obj.get("schema_version", CURRENT_VERSIONS[kind])
    supported = range(1, CURRENT_VERSIONS[kind] + 1)
    if isinstance(version, bool) or not isinstance(version, int) or version not in supported:
        listed = ", ".join(str(v) for v in supported)
        return Problem("schema_version", f"is not a supported version of {kind} (supported: {listed})", _show(version))
    return None


def problems_from(exc: ValidationError, line: int | None = None) -> list[Problem]:
    """Translate pydantic's errors into problems naming field, message and offending value."""
    problems = []
    for err in exc.errors(include_url=False):
        loc = list(err["loc"])
        if loc and isinstance(loc[0], str) and loc[0] in EVENT_TYPES:
            loc = loc[1:]  # the discriminated union's tag, not a field
        # A nested discriminated union (a correction's replacement) adds its tag too.
        loc = [
            part for i, part in enumerate(loc) if not (i > 0 and loc[i - 1] == "replacement" and part in EVENT_TYPES)
        ]
        field = ".".join(str(p) for p in loc) or "(event)"
        message = err["msg"].removeprefix("Value error, ")
        value = err.get("input")
        shown = _show(value) if not isinstance(value, dict | list) and err["type"] != "missing" else None
        problems.append(Problem(field, message, shown, line))
    return problems


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 80 else text[:77] + "..."
