"""Turning bytes into events: limits on raw input, upcasting of old versions, clear problems.

``parse_event`` is the one entry point; producers call it before anything is sent and the projector
calls it on every message. Old schema versions are upcast to the current one here, and only here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import jiter
from pydantic import TypeAdapter, ValidationError

from schemas.errors import EventInvalid, Problem
from schemas.events import EVENT_TYPES, Event, EventBase, exact_int
from schemas.reference import county_named
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
        valid = _validate_fast(raw, stored_at)
        if valid is not None:
            return valid
        return _validate_object(decode_json(raw), stored_at)
    except EventInvalid:
        raise
    except Exception as exc:  # any other failure is this event's problem, named, never the caller's
        raise EventInvalid([Problem("(event)", f"cannot be read: {_describe(exc)}")]) from None


def _validate_fast(raw: bytes, stored_at: datetime | None) -> tuple[EventBase, int] | None:
    """A valid event, read by jiter (pydantic's JSON reader, in Rust, the fast path), or None. It
    vouches only for an event that passes every check and validates; anything else is read again
    by ``decode_json``, whose refusals name the problem, so both readings give one result. An event
    that validates holds no number of more than 30 digits (no field takes one), the one thing
    ``decode_json`` refuses that jiter reads."""
    try:
        text = raw.decode("utf-8")
        obj = jiter.from_json(raw, catch_duplicate_keys=True, allow_inf_nan=False)
        if not isinstance(obj, dict) or _refusal(text, obj) is not None:
            return None
        return _validate_object(obj, stored_at)
    except Exception:  # the slow reading tells what is wrong, and raises it
        return None


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
        raise EventInvalid(
            [Problem("(event)", f"is not valid JSON: {json_words(exc.msg)} at column {exc.colno}")]
        ) from None
    except RecursionError:
        raise EventInvalid([Problem("(event)", f"is nested deeper than {MAX_DEPTH} levels")]) from None
    except _HugeNumber as exc:
        raise EventInvalid([Problem("(event)", str(exc))]) from None
    except ValueError as exc:  # NaN, Infinity, or anything else the decoder refuses
        raise EventInvalid([Problem("(event)", f"is not valid JSON: {_describe(exc)}")]) from None
    if not isinstance(obj, allow):
        raise EventInvalid([Problem("(event)", f"must be a JSON object, not {type(obj).__name__}")])
    problem = _refusal(text, obj)
    if problem is not None:
        raise EventInvalid([problem])
    return obj


def _refusal(text: str, obj: Any) -> Problem | None:
    """Nesting too deep, or a NUL or lone surrogate in a text, in an object decoded from ``text``.
    Cheap tests first, each a scan in C: the walks run only when they could find something. The
    text is strict UTF-8 without raw control characters (the decoders refuse those), so a NUL or a
    lone surrogate can only have come in as a \\u escape."""
    if text.count("{") + text.count("[") > MAX_DEPTH and _deeper_than(obj, MAX_DEPTH):
        return Problem("(event)", f"is nested deeper than {MAX_DEPTH} levels")
    if "\\u" in text:
        return _check_values(obj)
    return None


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


JSON_WORDS = (
    ("Unterminated string", "a text in double quotes is not closed"),
    ("Expecting property name enclosed in double quotes", "a field name must be in double quotes"),
    ("Expecting ',' delimiter", "a comma is missing between two values"),
    ("Expecting ':' delimiter", "a colon is missing after a field name"),
    ("Expecting value", "a value is missing (or a text lacks its double quotes)"),
    ("Extra data", "something follows the event's closing brace"),
    ("Invalid control character", "a text holds a line break or another control character"),
    ("Invalid \\escape", "a backslash starts no known escape"),
)


def json_words(message: str) -> str:
    """The json module's message in plain words."""
    for start, words in JSON_WORDS:
        if message.startswith(start):
            return words
    return message


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
    if kind == "session_held" and version < 3 and "sessions" in obj:
        return Problem("sessions", f"is a field of session_held version 3, not {version}; give schema_version 3")
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
        value = err.get("input")
        message = plain_message(err["type"], err["msg"].removeprefix("Value error, "), err.get("ctx") or {}, value)
        if err["type"] == "missing" and field in MISSING_WORDS:
            message = MISSING_WORDS[field]
        shown = _show(value) if not isinstance(value, dict | list) and err["type"] != "missing" else None
        problems.append(Problem(field, message, shown, line))
    return problems


# What a field with a pattern takes, in words: no analyst or agency should read a regular expression.
PATTERN_WORDS = {
    r"^[a-z0-9]+(-[a-z0-9]+)*$": "must be a short name in lower-case letters and digits joined by single dashes, "
    "such as al-national-coordinator",
    r"^[A-Z]{2}-[0-9A-Z]{1,3}$": "must be a county code: the country's two capital letters, a dash and the "
    "county's code, such as AL-06 or PL-02",
    r"^[A-Z]{2}$": "must be a country's two capital letters, such as AL or PL",
    r"^[a-z0-9]+(-[a-z0-9]+)*/[IVXLC0-9]{1,6}/[0-9][0-9.a-z]{0,9}$": "must be a plan task: the plan's short "
    "name, its part and the task, joined by slashes, such as pl-nap-2013-2015/III/4",
    r"^[IVXLC0-9]{1,6}$": "must be a part of a plan in Roman numerals or digits, such as III",
    r"^[0-9][0-9.a-z]{0,9}$": "must be a task number, such as 4 or 2.1a",
    r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$": "must be a short code of 1 to 64 letters, digits, '.', '_', '/' or '-', "
    "starting with a letter or digit, such as KOR-2025-014",
    r"^[a-z]{2,3}$": "must be a language's two or three lower-case letters, such as sq or pl",
}
MISSING_WORDS = {  # what a missing field takes, where "is missing" would leave the agency guessing
    "event_id": "is missing: give each event an id of its own, a UUID such as 1b4e28ba-2fa1-11d2-883f-0016d3cca427, "
    "and keep it when the event is sent again (in a CSV file or workbook, a reference column makes one)",
}
DAY_FORMS = (
    "must be a date such as 2025-03-05 (year-month-day); a range is two dates with a slash, 2025-03-01/2025-03-15"
)
MESSAGES = {
    "missing": "is missing",
    "extra_forbidden": "is not a field of this event type; check its spelling against `outreach schema`",
    "uuid_parsing": "must be an event id: a UUID such as 1b4e28ba-2fa1-11d2-883f-0016d3cca427",
    "uuid_type": "must be an event id written as text (a UUID such as 1b4e28ba-2fa1-11d2-883f-0016d3cca427)",
    "string_type": "must be text in double quotes",
    "datetime_from_date_parsing": "must be a time such as 2025-03-05T10:00:00Z (date, T, time, time zone)",
    "datetime_parsing": "must be a time such as 2025-03-05T10:00:00Z (date, T, time, time zone)",
    "timezone_aware": "must give its time zone, such as 2025-03-05T10:00:00Z (Z: UTC) or 2025-03-05T11:00:00+01:00",
    "bool_type": "must be true or false, written without quotes",
    "bool_parsing": "must be true or false, written without quotes",
    "tuple_type": "must be a list in square brackets, [ … ]",
    "list_type": "must be a list in square brackets, [ … ]",
    "model_type": "must be an object in braces, { … }",
    "model_attributes_type": "must be an object in braces, { … }",
    "dict_type": "must be an object in braces, { … }",
}


def plain_message(kind: str, message: str, ctx: dict[str, Any], value: Any) -> str:
    """pydantic's message for an error, in plain words that name what would be accepted."""
    if kind == "string_pattern_mismatch":
        words = PATTERN_WORDS.get(str(ctx.get("pattern")), "is not in the form this field takes")
        if isinstance(value, str) and str(ctx.get("pattern")) == r"^[A-Z]{2}-[0-9A-Z]{1,3}$":
            county = county_named(value)
            if county is not None:
                return f"must be the county's code, not its name: {value} is {county.code}"
        return words
    if kind == "int_type":  # a strict whole number was given something else: say what, as exact_int does
        try:
            exact_int(value)
        except ValueError as exc:
            return str(exc)
    if kind.startswith("date_"):
        return DAY_FORMS
    if kind in MESSAGES:
        return MESSAGES[kind]
    if kind == "string_too_long":
        return f"is longer than {ctx.get('max_length')} characters"
    if kind == "string_too_short":
        return "is empty"
    if kind == "too_long":
        return f"lists more than {ctx.get('max_length')} entries"
    if kind == "too_short":
        least = ctx.get("min_length")
        return f"must list at least {least} {'entry' if least == 1 else 'entries'}"
    if kind in ("greater_than_equal", "greater_than"):
        return f"must be at least {ctx.get('ge', ctx.get('gt'))}"
    if kind in ("less_than_equal", "less_than"):
        return f"must be at most {ctx.get('le', ctx.get('lt'))}"
    if kind in ("enum", "literal_error"):
        return f"must be one of: {str(ctx.get('expected', '')).replace(' or ', ', ').replace(chr(39), '')}"
    return message


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
