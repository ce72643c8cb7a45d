"""The services' wire format, both sides (``runtime.protocol``): what one side encodes, the other
decodes to the same values; refusals and answers no version writes are errors that say where."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from runtime.protocol import (
    CopyAnswer,
    QueryAnswer,
    asker,
    decode_answer,
    decode_copy,
    decode_status_request,
    encode_answer,
    encode_copy,
    refusal,
)
from schemas.errors import ProjectionError, QueryRefused
from schemas.receipts import StatusRequest

WHERE = "outreach.query.OUTREACH"


def test_a_query_answer_reads_back_as_it_was_written() -> None:
    stored = datetime(2026, 12, 7, 17, 23, 19, 793698, tzinfo=UTC)
    answer = QueryAnswer(["county", "participants"], [("AL-06", 97), ("AL-01", None)], 17, stored)
    data = encode_answer(answer, 1024)
    assert data == (
        b'{"columns": ["county", "participants"], "rows": [["AL-06", 97], ["AL-01", null]], "as_of_seq": 17, '
        b'"as_of_stored_at": "2026-12-07 17:23:19.793698+00:00"}'
    )
    assert decode_answer(data, WHERE) == answer


def test_an_answer_larger_than_one_reply_is_refused_with_its_size() -> None:
    answer = QueryAnswer(["x"], [("y" * 100,)] * 20, None, None)
    with pytest.raises(QueryRefused) as refused:
        encode_answer(answer, 1000)
    assert str(refused.value) == (
        "result too large: 20 rows, 2,192 bytes as JSON where one reply holds 1,000; "
        "add LIMIT, or use `outreach export`"
    )


def test_refusals_and_failures_are_told_apart() -> None:
    with pytest.raises(QueryRefused) as refused:
        decode_answer(refusal("the query ran longer than 30 s and was stopped"), WHERE)
    assert str(refused.value) == "the query ran longer than 30 s and was stopped"
    with pytest.raises(ProjectionError) as failed:
        decode_answer(refusal("Catalog Error: no such table", refused=False), WHERE)
    assert str(failed.value) == "Catalog Error: no such table"
    assert not isinstance(failed.value, QueryRefused)
    with pytest.raises(ProjectionError) as stopping:
        decode_copy(refusal("the projector is stopping; ask again once it is back"), "outreach.copy.OUTREACH")
    assert str(stopping.value) == "the projector is stopping; ask again once it is back"


def test_an_answer_no_version_writes_is_an_error_naming_the_subject() -> None:
    with pytest.raises(ProjectionError) as wrong:
        decode_answer(b"[1, 2]", WHERE)
    assert str(wrong.value) == "the answer on outreach.query.OUTREACH is not a JSON object: b'[1, 2]'"
    with pytest.raises(ProjectionError) as wrong:
        decode_answer(b'{"columns": ["a"]}', WHERE)
    assert str(wrong.value) == (
        "the answer on outreach.query.OUTREACH is not a query's answer (KeyError('as_of_stored_at'))"
    )


def test_a_copy_answer_reads_back_as_it_was_written() -> None:
    copy = CopyAnswer(Path("/data/outreach.copy.duckdb"), 51)
    assert decode_copy(encode_copy(copy), "outreach.copy.OUTREACH") == copy


def test_a_status_request_nested_past_any_reason_is_refused_in_a_sentence() -> None:
    assert decode_status_request(b"") == StatusRequest()
    assert decode_status_request(b'{"after_seq": 5}') == StatusRequest(after_seq=5)
    nested = decode_status_request(b'{"event_ids": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    assert isinstance(nested, str) and nested.startswith("invalid status request: ")
    assert len(nested) <= len("invalid status request: ") + 500


def test_who_asked_is_what_the_server_wrote_on_a_service_import_only() -> None:
    info = {"Nats-Request-Info": '{"acc": "ANALYSTS", "user": "jana"}'}
    assert asker("_R_.abc.def", info) == "ANALYSTS/jana"
    # A client's own inbox: the header is the asker's own claim, and counts for nothing.
    assert asker("_INBOX.xyz", info).startswith("(unnamed ")
    assert asker("_R_.abc.def", {"Nats-Request-Info": "not json"}).startswith("(unnamed ")
