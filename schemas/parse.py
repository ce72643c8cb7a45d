"""Turning bytes into events: limits on raw input, upcasting of old versions, clear problems.

``parse_event`` is the one entry point; producers call it before anything is sent and the projector
calls it on every message. Old schema versions are upcast to the current one here, and only here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError

from schemas.errors import EventInvalid, Problem
from schemas.events import EVENT_TYPES, Event, EventBase
from schemas.upcast import CURRENT_VERSIONS, upcast

MAX_EVENT_BYTES = 64 * 1024
MAX_DEPTH = 8

EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(Event)


def parse_event(data: bytes | str | Mapping[str, Any], *, stored_at: datetime | None = None) -> EventBase:
    """Validate one event (JSON text or an already decoded object); raise ``EventInvalid``.

    "In the future" is judged against ``stored_at`` when given (the stream's storage time: the
    projector's way, the same in any year), else against this machine's clock (a producer's way)."""
    return parse_event_versioned(data, stored_at=stored_at)[0]


def parse_event_versioned(
    data: bytes | str | Mapping[str, Any], *, stored_at: datetime | None = None
) -> tuple[EventBase, int]:
    """Like ``parse_event``, and also the schema_version as published (before upcasting).

    Whatever the input holds, the only exception raised is ``EventInvalid``: a hostile payload
    (a number of thousands of digits, a duplicate key, a lone surrogate) is a problem of that
    event, never an error of the caller."""
    try:
        if isinstance(data, Mapping):
            obj = dict(data)
            problem = _check_values(obj)
            if problem:
                raise EventInvalid([problem])
            return _validate_object(obj, stored_at)
        raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
        if len(raw) > MAX_EVENT_BYTES:
            raise EventInvalid([Problem("(event)", f"is {len(raw):,} bytes; the limit is {MAX_EVENT_BYTES:,}")])
        return _validate_object(decode_json(raw), stored_at)
    except EventInvalid:
        raise
    except Exception as exc:  # any other failure is this event's problem, named, never the caller's
        raise EventInvalid([Problem("(event)", f"cannot be read: {_describe(exc)}")]) from None


class _DuplicateKey(ValueError):
    pass


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object that names each key once: of ``{"count": 1, "count": 500}`` one reader
    would count 1 and another 500, so such an object is refused rather than read either way."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return obj


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


class _HugeNumber(ValueError):
    pass


def _whole_number(text: str) -> int:
    # No field takes more than 10,000,000; a number of thousands of digits is refused before it
    # costs a conversion (Python refuses those over 4,300 digits anyway).
    if len(text) > 30:
        raise _HugeNumber(f"has a number of {len(text.lstrip('-')):,} digits; no field takes one so large")
    return int(text)


def decode_json(raw: bytes, allow: tuple[type, ...] = (dict,)) -> Any:
    """Decode one JSON object (or a value of an ``allow``ed type) as strict JSON: refuses invalid
    UTF-8, duplicate keys, NaN and Infinity, numbers of more than 4,300 digits, lone surrogates
    and NUL characters in strings, and nesting deeper than ``MAX_DEPTH``."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EventInvalid([Problem("(event)", f"is not valid UTF-8 (byte {exc.start})")]) from None
    try:
        obj = json.loads(text, object_pairs_hook=_object, parse_constant=_no_constant, parse_int=_whole_number)
    except _DuplicateKey as exc:
        field = _show(str(exc))
        raise EventInvalid([Problem(field, "is given twice in one object; give each field once")]) from None
    except json.JSONDecodeError as exc:
        raise EventInvalid([Problem("(event)", f"is not valid JSON: {exc.msg} at column {exc.colno}")]) from None
    except RecursionError:
        raise EventInvalid([Problem("(event)", f"is nested deeper than {MAX_DEPTH} levels")]) from None
    except _HugeNumber as exc:
        raise EventInvalid([Problem("(event)", str(exc))]) from None
    except ValueError as exc:  # NaN, Infinity, or anything else the decoder refuses
        raise EventInvalid([Problem("(event)", f"is not valid JSON: {_describe(exc)}")]) from None
    if not isinstance(obj, allow):
        raise EventInvalid([Problem("(event)", f"must be a JSON object, not {type(obj).__name__}")])
    # Cheap tests first, each a scan in C: the walks below run only when they could find something.
    # The text is strict UTF-8 without raw control characters (the decoder refuses those), so a NUL
    # or a lone surrogate can only have come in as a \u escape.
    if text.count("{") + text.count("[") > MAX_DEPTH and _deeper_than(obj, MAX_DEPTH):
        raise EventInvalid([Problem("(event)", f"is nested deeper than {MAX_DEPTH} levels")])
    if "\\u" in text and (problem := _check_values(obj)):
        raise EventInvalid([problem])
    return obj


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether containers nest more than ``limit`` levels deep (strings are not visited)."""
    level = [(value, 1)]  # the object itself is level 1
    while level:
        item, depth = level.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            level.extend((v, depth + 1) for v in item.values() if isinstance(v, dict | list))
        elif isinstance(item, list):
            level.extend((v, depth + 1) for v in item if isinstance(v, dict | list))
    return False


def _check_values(value: Any, level: int = 0, where: str = "(event)") -> Problem | None:
    """Nesting no deeper than ``MAX_DEPTH``, and strings without lone surrogates or NUL
    characters, which other JSON readers (DuckDB's among them) refuse or cut short."""
    if level > MAX_DEPTH:
        return Problem("(event)", f"is nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        if "\x00" in value:
            return Problem(where, "contains a NUL character (\\u0000), which is not allowed in text")
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return Problem(where, "contains a lone surrogate (\\ud800 to \\udfff), which is not text")
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            inner = str(key)[:60] if where == "(event)" else f"{where}.{str(key)[:60]}"
            problem = _check_values(key, level + 1, inner) or _check_values(item, level + 1, inner)
            if problem:
                return problem
    elif isinstance(value, list):
        for index, item in enumerate(value):
            problem = _check_values(item, level + 1, f"{where}.{index}")
            if problem:
                return problem
    return None


def _validate_object(obj: dict[str, Any], stored_at: datetime | None = None) -> tuple[EventBase, int]:
    version_problem = _check_version(obj)
    if version_problem:
        raise EventInvalid([version_problem])
    published = obj.get("schema_version", CURRENT_VERSIONS[obj["event_type"]])
    try:
        context = {"stored_at": stored_at} if stored_at is not None else None
        return EVENT_ADAPTER.validate_python(upcast(obj), context=context), published
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
        field = ".".join(str(p) for p in loc)[:200] or "(event)"
        message = err["msg"].removeprefix("Value error, ")
        value = err.get("input")
        shown = _show(value) if not isinstance(value, dict | list) and err["type"] != "missing" else None
        problems.append(Problem(field, message, shown, line))
    return problems


def _show(value: Any) -> str:
    """A value as the user wrote it, cut to 80 characters; safe for any value (a number of
    100,000 digits is shown by its size, not converted to text)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value).bit_length() > 256:
        return f"a number of about {int(abs(value).bit_length() * 0.30103) + 1:,} digits"
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (ValueError, TypeError, RecursionError):
        text = type(value).__name__
    return text if len(text) <= 80 else text[:77] + "..."


def _describe(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    text = text if len(text) <= 200 else text[:197] + "..."
    return f"{text} ({type(exc).__name__})" if text else type(exc).__name__
