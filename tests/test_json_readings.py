"""An event's JSON is read two ways: by jiter, for the common case, and by ``decode_json``, which
names every refusal. Whatever a payload holds, ``parse_event_versioned`` gives what the second
reading alone would give: the same event and version, or the same problems."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from outreach.synthetic import generate
from schemas.errors import EventInvalid
from schemas.parse import _validate_fast, _validate_object, decode_json, parse_event_versioned
from tests.hostile import INVALID

STORED_AT = datetime(2026, 1, 1, tzinfo=UTC)
VALID = [item.payload for item in generate(300, seed=23)]
SESSION = next(json.loads(p) for p in VALID if b'"session_held"' in p)
NO_TOTAL = {k: v for k, v in SESSION.items() if k != "reported_total"}


def _raw(obj: dict[str, Any], extra: str) -> bytes:
    """``obj`` with a member written as raw JSON text."""
    return json.dumps(obj).encode()[:-1] + b", " + extra.encode() + b"}"


# Payloads the fast reading must leave to decode_json, one for each thing only decode_json refuses
# or words: a duplicate key (even with the same value), a number of 30 or 31 digits where a count
# goes, NaN and Infinity, NUL (escaped or raw) and lone surrogates, raw control characters, nesting
# past 8 levels, not an object, a byte order mark, and bytes that are not UTF-8.
EDGES = {
    "same key twice, same value": _raw(SESSION, f'"agency": "{SESSION["agency"]}"'),
    "31-digit count": _raw(NO_TOTAL, '"reported_total": ' + "9" * 31),
    "30-digit count": _raw(NO_TOTAL, '"reported_total": ' + "9" * 30),
    "NaN": _raw(NO_TOTAL, '"reported_total": NaN'),
    "Infinity": _raw(NO_TOTAL, '"reported_total": -Infinity'),
    "NUL": json.dumps({**SESSION, "source": "a\x00b"}).encode(),
    "lone trailing surrogate": json.dumps({**SESSION, "source": "a\udc00b"}).encode(),
    "nested 9 deep": _raw({k: v for k, v in SESSION.items() if k != "source"}, '"source": ' + "[" * 9 + "]" * 9),
    "a list": b"[1, 2]",
    "raw NUL byte in a text": json.dumps(SESSION).encode().replace(b'"agency": "', b'"agency": "\x00', 1),
    "raw line break in a text": json.dumps(SESSION).encode().replace(b'"agency": "', b'"agency": "\n', 1),
    "byte order mark": b"\xef\xbb\xbf" + json.dumps(SESSION).encode(),
    "overlong encoding": json.dumps(SESSION).encode().replace(b'"agency": "', b'"agency": "\xc1\xa5', 1),
}


def _slow(raw: bytes) -> tuple[Any, int] | list[str]:
    try:
        return _validate_object(decode_json(raw), STORED_AT)
    except EventInvalid as exc:
        return [str(p) for p in exc.problems]


def _read(raw: bytes) -> tuple[Any, int] | list[str]:
    try:
        return parse_event_versioned(raw, stored_at=STORED_AT)
    except EventInvalid as exc:
        return [str(p) for p in exc.problems]


def test_valid_events_are_read_by_the_fast_reading_as_decode_json_reads_them() -> None:
    fast = [_validate_fast(raw, STORED_AT) for raw in VALID]
    assert sum(result is not None for result in fast) == 300
    assert fast == [_slow(raw) for raw in VALID]
    old = (Path(__file__).parent / "golden" / "session_held_v1.json").read_bytes()  # upcast the same way
    assert _validate_fast(old, STORED_AT) == _slow(old)
    assert _validate_fast(old, STORED_AT)[1] == 1
    # Not-ASCII text written as \u escapes (json.dumps' default) or as UTF-8 reads the same.
    for ensure_ascii in (True, False):
        raw = json.dumps({**SESSION, "source": "Qarku i Korçës, Łódź 😀"}, ensure_ascii=ensure_ascii).encode()
        assert _validate_fast(raw, STORED_AT) == _slow(raw)
        assert _validate_fast(raw, STORED_AT) is not None


@pytest.mark.parametrize("name", sorted(EDGES))
def test_what_only_decode_json_refuses_or_upcasts_is_left_to_it(name: str) -> None:
    raw = EDGES[name]
    assert _validate_fast(raw, STORED_AT) is None
    assert _read(raw) == _slow(raw)


def test_every_kind_of_hostile_payload_reads_as_decode_json_reads_it() -> None:
    rng = random.Random(5)
    kinds: dict[str, int] = {}
    for kind, mutate in sorted(INVALID.items()):
        for payload in VALID[:40]:
            raw = mutate(payload, rng)
            result = _read(raw)
            assert result == _slow(raw), (kind, raw[:200])
            assert isinstance(result, list), (kind, raw[:200])  # every hostile kind is refused
            kinds[kind] = kinds.get(kind, 0) + 1
    assert kinds == dict.fromkeys(INVALID, 40)
