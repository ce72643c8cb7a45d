"""Hostile payloads made from valid events, as a careless or malicious agency would send them.

Every kind in ``INVALID`` yields bytes that no correct parser may accept, whatever the event it
starts from, so a test can require that each one is rejected: cut short, a key given twice, a
number of thousands of digits, a count written as text, nesting thousands deep, a lone surrogate
or NUL in text, an unknown field, a required field of the wrong type, bytes that are not UTF-8.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

Mutator = Callable[[bytes, random.Random], bytes]


def _obj(payload: bytes) -> dict[str, Any]:
    return dict(json.loads(payload))


def _dump(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _with_raw(obj: dict[str, Any], key: str, raw_value: str) -> bytes:
    """``obj`` with ``key`` set to a JSON text written as is (a number json.dumps would refuse)."""
    obj = dict(obj)
    obj.pop(key, None)
    body = _dump(obj)
    return body[:-1] + f',"{key}":{raw_value}}}'.encode()


def truncated(payload: bytes, rng: random.Random) -> bytes:
    return payload[: rng.randint(1, len(payload) - 1)]


def duplicate_key(payload: bytes, rng: random.Random) -> bytes:
    obj = _obj(payload)
    key = rng.choice(sorted(obj))
    value = rng.choice([obj[key], 500, "al-other", None, [], {}])
    return b"{" + json.dumps(key).encode() + b":" + json.dumps(value).encode() + b"," + payload[1:]


def _count_target(obj: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Where a whole number goes: a count when the event has one, else its schema_version."""
    if obj.get("event_type") == "materials_distributed":
        return obj, "quantity"
    if obj.get("event_type") == "session_held" and obj.get("participants"):
        return obj["participants"][0], "count"
    return obj, "schema_version"


def huge_number(payload: bytes, rng: random.Random) -> bytes:
    digits = str(rng.randint(1, 9)) + "".join(rng.choice("0123456789") for _ in range(rng.randint(8, 6_000)))
    obj = _obj(payload)
    holder, key = _count_target(obj)
    if holder is obj:
        return _with_raw(obj, key, digits)
    holder[key] = 0
    marker = '"count":0'
    body = _dump(obj).decode()
    return body.replace(marker, f'"count":{digits}', 1).encode()


def number_as_text(payload: bytes, rng: random.Random) -> bytes:
    obj = _obj(payload)
    holder, key = _count_target(obj)
    current = holder.get(key)
    whole = current if isinstance(current, int) and not isinstance(current, bool) else 1
    holder[key] = rng.choice([str(whole), float(whole), True, f"{whole} people"])
    return _dump(obj)


def deep_nesting(payload: bytes, rng: random.Random) -> bytes:
    depth = rng.randint(9, 3_000)
    return _with_raw(_obj(payload), "source", "[" * depth + "]" * depth)


def bad_text(payload: bytes, rng: random.Random) -> bytes:
    obj = _obj(payload)
    obj["source"] = "report " + rng.choice(["\ud800", "\udfff", "\x00", "\udc80 x"]) + " end"
    return json.dumps(obj).encode()  # ensure_ascii: written as \\ud800 or \\u0000 escapes


def unknown_field(payload: bytes, rng: random.Random) -> bytes:
    obj = _obj(payload)
    obj[f"zz_{rng.randint(0, 10**6)}"] = rng.choice([1, "x", None, [1], {"a": 1}])
    return _dump(obj)


def wrong_type(payload: bytes, rng: random.Random) -> bytes:
    obj = _obj(payload)
    key = rng.choice(["event_id", "event_type", "agency", "recorded_at"])
    obj[key] = rng.choice([12, 1.5, True, None, [], {"x": 1}, ["a"]])
    return _dump(obj)


def not_utf8(payload: bytes, rng: random.Random) -> bytes:
    at = rng.randint(1, len(payload) - 1)
    return payload[:at] + rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80"]) + payload[at:]


INVALID: dict[str, Mutator] = {
    "truncated": truncated,
    "duplicate key": duplicate_key,
    "huge number": huge_number,
    "number as text": number_as_text,
    "deep nesting": deep_nesting,
    "lone surrogate or NUL": bad_text,
    "unknown field": unknown_field,
    "wrong type": wrong_type,
    "not UTF-8": not_utf8,
}


def hostile(payload: bytes, rng: random.Random) -> tuple[str, bytes]:
    """One hostile payload made from a valid one: (kind, bytes)."""
    kind = rng.choice(sorted(INVALID))
    return kind, INVALID[kind](payload, rng)
