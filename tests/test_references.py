"""Rows with a reference: their identity, what publishing a file again does to each, rows deleted
from a file, and where each event came from. The integration tests run a real nats-server and fold
with the real projector; totals are checked against the oracle."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from typing import Any

import duckdb
import pytest
from nats.aio.client import Client
from pydantic import TypeAdapter

from consumers.app import run_projector
from producers.files import publish_files
from producers.publisher import Publisher
from producers.receipts import in_force as ask_in_force
from producers.rows import Origin, StreamView, changes, correction_id, plan_file, retraction_id
from projections.query import run_query
from projections.status import agency_status
from runtime.settings import Settings
from runtime.stream import ensure_stream
from schemas.errors import BrokerError
from schemas.events import Event
from schemas.files import load_events, reference_event_id
from schemas.parse import parse_event
from schemas.receipts import InForce, StatusRequest
from tests import oracle

AGENCY = "al-korce-committee"
HEADER = ["reference", "agency", "recorded_at", "county", "occurred", "event_type", "format", "participants.students"]


def csv_file(path: Path, rows: list[dict[str, str]], header: list[str] = HEADER) -> Path:
    lines = [",".join(header)] + [",".join(row.get(c, "") for c in header) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def row(reference: str, students: int, county: str = "AL-06", **more: str) -> dict[str, str]:
    return {
        "reference": reference,
        "agency": AGENCY,
        "recorded_at": "2025-01-10",
        "county": county,
        "occurred": "2024-11-05",
        "event_type": "session_held",
        "format": "school_session",
        "participants.students": str(students),
        **more,
    }


# ---- identity ----------------------------------------------------------------------------------


def test_a_rows_event_id_comes_from_its_agency_and_reference(tmp_path: Path) -> None:
    first = load_events(csv_file(tmp_path / "a.csv", [row("KOR-2025-014", 42)]))
    edited = load_events(csv_file(tmp_path / "b.csv", [row("KOR-2025-014", 45, county="AL-09")]))
    assert first.problems == [] and edited.problems == []
    [(_, event)], [(_, again)] = first.events, edited.events
    assert (
        event.event_id
        == again.event_id
        == uuid.uuid5(uuid.UUID("3c4f8e2a-7d15-5b9e-a0c6-5e1f2d3b4a69"), f"{AGENCY}\nKOR-2025-014")
    )
    assert reference_event_id("al-diber-committee", "KOR-2025-014") != event.event_id  # an agency's own
    assert event.reference == "KOR-2025-014"
    assert json.loads(first.payloads[0])["reference"] == "KOR-2025-014"  # carried in the event


def test_a_reference_refused_is_told_why(tmp_path: Path) -> None:
    header = ["event_id", *HEADER]
    rows = [
        {**row("KOR-1", 1), "event_id": str(uuid.uuid4())},
        row("KOR 2", 2),
        row("KOR-3", 3),
        row("KOR-3", 4),
    ]
    problems = [
        (p.line, p.field, p.message, p.value) for p in load_events(csv_file(tmp_path / "r.csv", rows, header)).problems
    ]
    assert problems == [
        (2, "event_id", "give an event_id or a reference, not both: the reference makes the event's id", None),
        (3, "event_id", problems[1][2], None),
        (
            3,
            "reference",
            "must be a short code of 1 to 64 letters, digits, '.', '_', '/' or '-', starting with a letter or digit, "
            "such as KOR-2025-014",
            '"KOR 2"',
        ),
        (5, "reference", "is given to two rows (line 4 has it too); give each row a reference of its own", '"KOR-3"'),
    ]
    assert problems[1][2].startswith("is missing")


def test_the_json_schema_documents_the_reference() -> None:
    schema = TypeAdapter(Event).json_schema()
    reference = schema["$defs"]["SessionHeld"]["properties"]["reference"]
    assert reference["anyOf"][0] == {"pattern": r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$", "type": "string"}
    assert reference["description"].startswith("The agency's own code for the row this event came from")
    old = {"event_id": str(uuid.uuid4()), "event_type": "materials_distributed", "agency": AGENCY,
           "recorded_at": "2025-01-10T00:00:00Z", "county": "AL-06", "occurred": "2024-11-05", "kind": "leaflet",
           "quantity": 5}  # fmt: skip
    assert parse_event(old).reference is None  # events without one stay valid


def test_a_withdrawn_row_is_not_published_as_a_fact(tmp_path: Path) -> None:
    header = [*HEADER, "withdrawn"]
    loaded = load_events(
        csv_file(tmp_path / "w.csv", [row("KOR-1", 1), row("KOR-2", 2, withdrawn="reported twice")], header)
    )
    assert loaded.problems == []
    assert [e.reference for _, e in loaded.events] == ["KOR-1"]
    assert [(line, e.reference, reason) for line, e, _, reason in loaded.withdrawn] == [(3, "KOR-2", "reported twice")]


# ---- what changed, and where it came from --------------------------------------------------------


def test_what_changed_is_told_field_by_field() -> None:
    before = parse_event({**_session(42), "venue": "Shkolla 1"})
    after = parse_event({**_session(45), "county": "AL-09", "participants": [
        {"audience": "students", "count": 45}, {"audience": "teachers", "count": 4, "estimated": True}]})  # fmt: skip
    assert changes(before, after) == [
        "county AL-06 → AL-09",
        "students 42 → 45",
        "teachers (empty) → ~4",
        "venue Shkolla 1 → (empty)",
    ]
    assert (
        changes(before, parse_event({**_session(42), "venue": "Shkolla 1", "recorded_at": "2025-02-01T08:00:00Z"}))
        == []
    )


def _session(students: int) -> dict[str, Any]:
    return {"event_id": str(reference_event_id(AGENCY, "KOR-1")), "event_type": "session_held", "agency": AGENCY,
            "recorded_at": "2025-01-10T00:00:00Z", "county": "AL-06", "occurred": "2024-11-05",
            "format": "school_session", "participants": [{"audience": "students", "count": students}]}  # fmt: skip


def test_an_origin_header_is_bounded_and_inert() -> None:
    origin = Origin.of("/home/someone/\x1b[31mreport\nX.xlsx", 2 * 10_000_000 + 4)
    assert (origin.file, origin.where) == ("[31mreportX.xlsx", "sheet materials_distributed, row 4")
    header = origin.header()
    assert header == {"Outreach-Origin": '{"file":"[31mreportX.xlsx","sheet":"materials_distributed","row":4}'}
    assert Origin.read(header) == origin
    assert Origin.read({"Outreach-Origin": '{"file":"a.csv","line":7}'}) == Origin("a.csv", None, 7)
    for bad in ('{"file":"a","sheet":"codes","row":2}', '{"file":"a","line":"7"}', '{"file":"a","line":true}',
                '{"file":5}', "[1]", "not json", '{"file":"' + "a" * 500 + '"}'):  # fmt: skip
        assert Origin.read({"Outreach-Origin": bad}) is None, bad
    assert Origin.read({"Outreach-Origin": '{"file":"a\\u0007\\u202e.csv"}'}) == Origin("a.csv")


def test_rows_without_a_reference_are_warned_of(tmp_path: Path) -> None:
    import openpyxl

    from producers.template import write_template
    from tests.test_intake import fill

    path = write_template(tmp_path / "old.xlsx")
    book = openpyxl.load_workbook(path)
    cells = {"agency": AGENCY, "recorded_at": "2025-01-10", "occurred": "2024-11-05", "county": "AL-06",
             "format": "workshop"}  # fmt: skip
    fill(book, "session_held", 2, cells)
    fill(book, "session_held", 3, {**cells, "venue": "Maliq"})
    book.save(path)
    loaded = load_events(path)
    plan = _run(plan_file(StreamView(None, "OUTREACH"), loaded))  # type: ignore[arg-type]  # nothing to read back
    assert plan.warnings() == [
        f"warning: {path}: 2 row(s) without a reference (sheet session_held, row 2, sheet session_held, row 3): their "
        "ids come from their content, so a row edited and published again will be counted twice; give every row a "
        "reference"
    ]
    assert [s.line for s in plan.sends()] == [10_000_002, 10_000_003]


def _run(coro: Any) -> Any:
    import asyncio

    return asyncio.run(coro)


# ---- publishing again, against a real stream -----------------------------------------------------


def facts_of(settings: Settings) -> dict[str, tuple[int, int, int, int, int]]:
    rows = run_query(
        settings.db,
        "SELECT county, events, sessions, participants, materials_distributed, teams_established "
        "FROM totals_by_county WHERE events > 0",
    ).rows
    return {r[0]: tuple(r[1:]) for r in rows}  # type: ignore[misc]


def from_projection(settings: Settings) -> Any:
    """The status service's list of an agency's events in force, read from the projection file
    itself (the same query a running projector answers with)."""

    async def ask(agency: str) -> list[InForce]:
        with duckdb.connect(str(settings.db), read_only=True) as cursor:
            return list(agency_status(cursor, agency, StatusRequest(in_force=True)).in_force)

    return ask


def oracle_event(reference: str, students: int, county: str = "AL-06") -> dict[str, Any]:
    return {"event_id": reference, "event_type": "session_held", "county": county,
            "participants": [{"audience": "students", "count": students}]}  # fmt: skip


async def test_a_csv_published_again_corrects_each_change_once_and_withdraws_on_request(
    nc: Client, settings: Settings, tmp_path: Path
) -> None:
    js = nc.jetstream()
    await ensure_stream(js, settings.stream, settings.duplicate_window_s)
    publisher = Publisher(js)
    header = [*HEADER, "withdrawn"]
    path = tmp_path / "korce.csv"
    log = [oracle_event("KOR-1", 42), oracle_event("KOR-2", 30)]

    async def publish(*rows: dict[str, str]) -> tuple[list[str], Any]:
        csv_file(path, list(rows), header)
        report = await publish_files(publisher, [path])
        await run_projector(settings, until_caught_up=True)
        return [line for plan in report.plans for line in plan.lines()], report.published

    lines, published = await publish(row("KOR-1", 42), row("KOR-2", 30))
    assert lines == [f"{path}: line 2, KOR-1: new", f"{path}: line 3, KOR-2: new"]
    assert facts_of(settings) == oracle.totals_by_county(log) == {"AL-06": (2, 2, 72, 0, 0)}

    # 42 → 45 → 42 → 45: each edit is a correction of its own, the latest in force.
    fact = reference_event_id(AGENCY, "KOR-1")
    for old, new in [(42, 45), (45, 42), (42, 45)]:
        lines, published = await publish(row("KOR-1", new), row("KOR-2", 30))
        assert lines == [
            f"{path}: line 2, KOR-1: corrected: students {old} → {new}",
            f"{path}: line 3, KOR-2: unchanged",
        ]
        assert (published.stored, published.duplicates, published.failed) == (1, 0, [])
        log.append({"event_type": "event_corrected", "corrects": "KOR-1", "replacement": oracle_event("KOR-1", new)})
        assert facts_of(settings) == oracle.totals_by_county(log)
    assert facts_of(settings) == {"AL-06": (2, 2, 75, 0, 0)}
    ids = run_query(
        settings.db,
        "SELECT CAST(event_id AS VARCHAR) FROM event_log WHERE event_type = 'event_corrected' ORDER BY stream_seq",
    ).rows
    assert ids == [(str(correction_id(fact, k)),) for k in (1, 2, 3)]

    # Published again unchanged: nothing is sent.
    lines, published = await publish(row("KOR-1", 45), row("KOR-2", 30))
    assert lines == [f"{path}: line 2, KOR-1: unchanged", f"{path}: line 3, KOR-2: unchanged"]
    assert published.total == 0

    # Withdrawn with a reason: retracted once.
    lines, published = await publish(row("KOR-1", 45), row("KOR-2", 30, withdrawn="reported twice"))
    assert lines == [f"{path}: line 2, KOR-1: unchanged", f"{path}: line 3, KOR-2: withdrawn: reported twice"]
    assert published.stored == 1
    log.append({"event_type": "event_retracted", "retracts": "KOR-2"})
    assert facts_of(settings) == oracle.totals_by_county(log) == {"AL-06": (1, 1, 45, 0, 0)}
    reason = run_query(
        settings.db, "SELECT payload->>'reason' FROM event_log WHERE event_type = 'event_retracted'"
    ).rows
    assert reason == [("reported twice",)]
    lines, published = await publish(row("KOR-1", 45), row("KOR-2", 30, withdrawn="reported twice"))
    assert lines[1] == f"{path}: line 3, KOR-2: withdrawn: retracted already"
    assert published.total == 0

    # The withdrawn row put back: refused, never counted again.
    lines, published = await publish(row("KOR-1", 45), row("KOR-2", 30))
    second = reference_event_id(AGENCY, "KOR-2")
    refusal = "it was withdrawn (retracted) and stays so; give the row a new reference to report it again"
    assert lines[1] == f"{path}: line 3, KOR-2: refused: {refusal}"
    assert [(f.event_id, f.reason, f.line) for f in published.failed] == [
        (str(second), f"reference KOR-2: {refusal}", 3)
    ]
    assert published.stored == 0
    assert facts_of(settings) == oracle.totals_by_county(log)
    assert str(retraction_id(second)) in {
        r[0] for r in run_query(settings.db, "SELECT CAST(event_id AS VARCHAR) FROM event_log").rows
    }


async def test_rows_deleted_from_a_file_are_listed_by_its_name_and_retracted_only_when_asked(
    nc: Client, settings: Settings, tmp_path: Path
) -> None:
    js = nc.jetstream()
    await ensure_stream(js, settings.stream, settings.duplicate_window_s)
    publisher = Publisher(js)
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    csv_file(a, [row("A-1", 10), row("A-2", 20)])
    csv_file(b, [row("B-1", 5, county="AL-09")])
    assert (await publish_files(publisher, [a, b])).published.stored == 3
    await run_projector(settings, until_caught_up=True)
    log = [oracle_event("A-1", 10), oracle_event("A-2", 20), oracle_event("B-1", 5, "AL-09")]

    csv_file(a, [row("A-2", 20)])  # A-1 deleted; b.csv's row is another file's, never listed here
    listed = await publish_files(publisher, [a], in_force=from_projection(settings))
    assert listed.plans[0].lines() == [
        f"{a}: line 2, A-2: unchanged",
        f"{a}: A-1 (was line 2): in the stream, not in this file; kept: publish with --retract-missing to retract "
        "it, or put its row back",
    ]
    assert listed.published.total == 0

    retracted = await publish_files(publisher, [a], in_force=from_projection(settings), retract_missing=True)
    assert retracted.plans[0].lines()[1] == f"{a}: A-1 (was line 2): in the stream, not in this file: retracted"
    assert retracted.published.stored == 1
    await run_projector(settings, until_caught_up=True)
    log.append({"event_type": "event_retracted", "retracts": "A-1"})
    assert facts_of(settings) == oracle.totals_by_county(log) == {"AL-06": (1, 1, 20, 0, 0), "AL-09": (1, 1, 5, 0, 0)}
    reason = run_query(
        settings.db, "SELECT payload->>'reason' FROM event_log WHERE event_type = 'event_retracted'"
    ).rows
    assert reason == [("deleted from a.csv (line 2), retracted by publishing it with --retract-missing",)]

    # Once retracted, it is no longer in force, so no longer listed.
    again = await publish_files(publisher, [a], in_force=from_projection(settings), retract_missing=True)
    assert again.plans[0].lines() == [f"{a}: line 2, A-2: unchanged"]


async def test_without_a_projector_deleted_rows_cannot_be_listed_and_nothing_is_retracted(
    nc: Client, settings: Settings, tmp_path: Path
) -> None:
    js = nc.jetstream()
    await ensure_stream(js, settings.stream, settings.duplicate_window_s)
    publisher = Publisher(js)
    path = csv_file(tmp_path / "a.csv", [row("A-1", 10)])

    def asker(agency: str) -> Any:
        return ask_in_force(nc, agency)

    report = await publish_files(publisher, [path], in_force=asker)
    assert report.published.stored == 1
    why = (
        "rows deleted from this file cannot be listed: no projector answered on outreach.status.al-korce-committee "
        "(NoRespondersError): receipts come from a running `outreach project`; is one running, and may these "
        "credentials ask for agency 'al-korce-committee'?; they are neither listed nor retracted (run `outreach "
        "project`, then publish again)"
    )
    assert report.plans[0].warnings() == [f"warning: {path}: {why}"]

    csv_file(path, [row("A-1", 11)])
    with pytest.raises(BrokerError) as refused:
        await publish_files(publisher, [path], in_force=asker, retract_missing=True)
    assert str(refused.value) == f"{path}: --retract-missing: {why}; nothing was published"
    info = await js.stream_info(settings.stream)
    assert info.state.messages == 1  # the correction was not sent either


async def test_a_row_moved_to_another_kind_is_refused_before_sending(
    nc: Client, settings: Settings, tmp_path: Path
) -> None:
    js = nc.jetstream()
    await ensure_stream(js, settings.stream, settings.duplicate_window_s)
    publisher = Publisher(js)
    path = csv_file(tmp_path / "a.csv", [row("A-1", 10)])
    assert (await publish_files(publisher, [path])).published.stored == 1
    header = ["reference", "agency", "recorded_at", "county", "occurred", "event_type", "kind", "quantity"]
    moved = {**row("A-1", 0), "event_type": "materials_distributed", "kind": "leaflet", "quantity": "50"}
    csv_file(path, [moved], header)
    report = await publish_files(publisher, [path])
    why = (
        "the stream holds it as a session_held, not a materials_distributed: give this row a new reference, and "
        "withdraw the old one (its row back on its sheet, with a reason in its withdrawn column)"
    )
    assert report.plans[0].lines() == [f"{path}: line 2, A-1: refused: {why}"]
    assert [(f.reason, f.line) for f in report.published.failed] == [(f"reference A-1: {why}", 2)]
    assert (await js.stream_info(settings.stream)).state.messages == 1


async def test_a_row_skipped_as_invalid_is_never_taken_for_a_deleted_one(
    nc: Client, settings: Settings, tmp_path: Path
) -> None:
    js = nc.jetstream()
    await ensure_stream(js, settings.stream, settings.duplicate_window_s)
    publisher = Publisher(js)
    path = csv_file(tmp_path / "a.csv", [row("A-1", 10), row("A-2", 20)])
    assert (await publish_files(publisher, [path])).published.stored == 2
    await run_projector(settings, until_caught_up=True)
    csv_file(path, [row("A-1", 10), row("A-2", 20, county="Korçë")])  # a typo in the row, not a deletion
    report = await publish_files(
        publisher, [path], skip_invalid=True, in_force=from_projection(settings), retract_missing=True
    )
    assert [str(p) for p in report.skipped] == [
        'line 3: county: must be the county\'s code, not its name: Korçë is AL-06 (got "Korçë")'
    ]
    assert report.plans[0].lines() == [f"{path}: line 2, A-1: unchanged"]
    assert report.published.total == 0


async def test_a_reference_used_in_two_files_is_told_when_one_corrects_the_other(
    nc: Client, settings: Settings, tmp_path: Path
) -> None:
    js = nc.jetstream()
    await ensure_stream(js, settings.stream, settings.duplicate_window_s)
    publisher = Publisher(js)
    first = csv_file(tmp_path / "march.csv", [row("KOR-7", 10), row("KOR-8", 20)])
    assert (await publish_files(publisher, [first])).published.stored == 2
    other = csv_file(tmp_path / "april.csv", [row("KOR-8", 21)])
    report = await publish_files(publisher, [other])
    assert report.plans[0].lines() == [
        f"{other}: line 2, KOR-8: corrected: students 20 → 21 (its row was published from march.csv, line 3)"
    ]
    assert report.published.stored == 1


async def test_references_added_to_a_published_workbook_never_count_its_rows_twice(
    nc: Client, settings: Settings, tmp_path: Path
) -> None:
    import openpyxl

    from producers.template import write_template
    from tests.test_intake import fill

    js = nc.jetstream()
    await ensure_stream(js, settings.stream, settings.duplicate_window_s)
    publisher = Publisher(js)
    path = write_template(tmp_path / "reporting.xlsx")
    book = openpyxl.load_workbook(path)
    cells = {"agency": AGENCY, "recorded_at": "2025-01-10", "occurred": "2024-11-05", "county": "AL-06",
             "format": "workshop", "participants.students": 12}  # fmt: skip
    fill(book, "session_held", 2, cells)
    fill(book, "session_held", 3, {**cells, "venue": "Maliq", "participants.students": 8})
    book.save(path)
    before = await publish_files(publisher, [path])
    assert before.published.stored == 2
    old = [e.event_id for _, e in before.files[0].events]

    fill(book, "session_held", 2, {"reference": "KOR-1"})  # references added, nothing else changed
    fill(book, "session_held", 3, {"reference": "KOR-2", "withdrawn": "held by another agency"})
    book.save(path)
    report = await publish_files(publisher, [path])
    assert report.plans[0].lines() == [
        f"{path}: sheet session_held, row 2, KOR-1: new: it was published without a reference as event {old[0]}, "
        "which is retracted",
        f"{path}: sheet session_held, row 3, KOR-2: withdrawn: held by another agency; it was published without a "
        f"reference as event {old[1]}, which is retracted",
    ]
    assert (report.published.stored, report.published.failed) == (3, [])
    await run_projector(settings, until_caught_up=True)
    log = [
        {**oracle_event(str(old[0]), 12)},
        {**oracle_event(str(old[1]), 8)},
        oracle_event("KOR-1", 12),
        {"event_type": "event_retracted", "retracts": str(old[0])},
        {"event_type": "event_retracted", "retracts": str(old[1])},
    ]
    assert facts_of(settings) == oracle.totals_by_county(log) == {"AL-06": (1, 1, 12, 0, 0)}
    again = await publish_files(publisher, [path])
    assert again.plans[0].lines() == [
        f"{path}: sheet session_held, row 2, KOR-1: unchanged",
        f"{path}: sheet session_held, row 3, KOR-2: withdrawn: never published, nothing to retract",
    ]
    assert again.published.total == 0


def test_a_receipts_extra_that_runs_out_of_the_pool_is_left_out_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    """The receipts' extras are joins over every action: one that does not fit the projector's pool
    is left out of the receipt, as one that takes too long is, and the next query still runs."""
    from projections import status

    cursor = duckdb.connect(config={"memory_limit": "10MB", "temp_directory": ""})
    heavy = "SELECT i, count(*) FROM range(3000000) t(i) GROUP BY i"
    with caplog.at_level(logging.WARNING, logger="outreach.projector"):
        assert status._bounded(cursor, "possible double reports", lambda: cursor.execute(heavy).fetchall()) is None
    assert [r.getMessage().split(": Out of Memory Error")[0] for r in caplog.records] == [
        "stopped finding the possible double reports of a receipt"
    ]
    assert cursor.execute("SELECT 42").fetchall() == [(42,)]
