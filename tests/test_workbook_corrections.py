"""A workbook edited and published again corrects its figures, never counts them twice: rows with a
reference, against a real nats-server and a live projector, totals checked against the oracle."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from projections.query import run_query
from runtime.settings import Settings
from schemas.files import load_events, reference_event_id
from tests import oracle
from tests.test_intake import fill

AGENCY = "al-korce-committee"
CLEAN = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}


def outreach(*args: str, settings: Settings, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**CLEAN, "OUTREACH_NATS_URL": settings.nats_url, "OUTREACH_AGENCY": AGENCY, "OUTREACH_DB": str(settings.db)}
    return subprocess.run(
        [sys.executable, "-m", "outreach", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def projector(settings: Settings) -> Iterator[subprocess.Popen[str]]:
    """`outreach project` following the stream, as an operator runs it."""
    assert outreach("stream", settings=settings).returncode == 0
    env = {**CLEAN, "OUTREACH_NATS_URL": settings.nats_url, "OUTREACH_DB": str(settings.db)}
    process = subprocess.Popen(
        [sys.executable, "-m", "outreach", "project"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield process
    finally:
        process.terminate()
        process.communicate(timeout=60)


SESSION = {"agency": AGENCY, "recorded_at": datetime(2025, 1, 10), "county": "AL-06", "format": "school_session"}
ROWS: dict[str, tuple[str, int, dict[str, Any]]] = {  # reference -> sheet, row, cells
    "KOR-2025-001": ("session_held", 2, {**SESSION, "occurred": "2024-11-05", "participants.students": 42}),
    "KOR-2025-002": (
        "session_held",
        3,
        {**SESSION, "occurred": "2024-11-06", "participants.students": 30, "participants.teachers": 4},
    ),
    "KOR-2025-003": (
        "materials_distributed",
        2,
        {
            "agency": AGENCY,
            "recorded_at": datetime(2025, 1, 10),
            "occurred": "2024-11-05",
            "county": "AL-09",
            "kind": "leaflet",
            "quantity": 400,
        },
    ),
}


def as_event(reference: str, cells: dict[str, Any], sheet: str) -> dict[str, Any]:
    """What the oracle needs of a row: its facts, in the events' own field names."""
    event: dict[str, Any] = {"event_id": reference, "event_type": sheet, "county": cells["county"]}
    if sheet == "session_held":
        event["participants"] = [
            {"audience": c.split(".", 1)[1], "count": n} for c, n in cells.items() if c.startswith("participants.")
        ]
    else:
        event["quantity"] = cells["quantity"]
    return event


def totals(settings: Settings) -> dict[str, tuple[int, int, int, int, int]]:
    done = outreach(
        "sql",
        "--format",
        "json",
        "SELECT county, events, sessions, participants, materials_distributed, teams_established "
        "FROM totals_by_county WHERE events > 0",
        settings=settings,
    )
    assert done.returncode == 0, done.stderr
    return {r["county"]: tuple(r[k] for k in list(r)[1:]) for r in json.loads(done.stdout)}  # type: ignore[misc]


def test_a_workbook_edited_and_published_again_corrects_and_retracts_only_when_asked(
    settings: Settings, tmp_path: Path, projector: subprocess.Popen[str]
) -> None:
    path = tmp_path / "reporting.xlsx"
    assert outreach("template", "--out", str(path), settings=settings).returncode == 0
    book = openpyxl.load_workbook(path)
    assert [c.value for c in book["session_held"][1]][:2] == ["reference", "event_id"]
    for reference, (sheet, row, cells) in ROWS.items():
        fill(book, sheet, row, {"reference": reference, **cells})
    book.save(path)
    log: list[dict[str, Any]] = [as_event(ref, cells, sheet) for ref, (sheet, _, cells) in ROWS.items()]

    # 1. Published: every row new.
    done = outreach("publish", "--wait", "60", str(path), settings=settings)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[:5] == [
        f"{path}: sheet session_held, row 2, KOR-2025-001: new",
        f"{path}: sheet session_held, row 3, KOR-2025-002: new",
        f"{path}: sheet materials_distributed, row 2, KOR-2025-003: new",
        "3 event(s): 3 stored, 0 duplicate(s) already stored, 0 failed",
        "projector: 3 accepted, 0 duplicate(s), 0 rejected, 0 without a receipt yet",
    ]
    table = done.stdout.splitlines()[5:]
    assert table[0].split() == ["stream_seq", "fate", "event_type", "event_id", "reference", "file", "where", "reason"]
    first = reference_event_id(AGENCY, "KOR-2025-001")
    assert table[2].split() == [
        "1", "accepted", "session_held", str(first), "KOR-2025-001", "reporting.xlsx", "sheet", "session_held,", "row",
        "2",
    ]  # fmt: skip
    assert totals(settings) == oracle.totals_by_county(log) == {"AL-06": (2, 2, 76, 0, 0), "AL-09": (1, 0, 0, 400, 0)}

    # 2. A typo fixed: 42 students were 45. The dry run tells the plan, and sends nothing.
    fill(book, "session_held", 2, {"participants.students": 45})
    book.save(path)
    plan = [
        f"{path}: sheet session_held, row 2, KOR-2025-001: corrected: students 42 → 45",
        f"{path}: sheet session_held, row 3, KOR-2025-002: unchanged",
        f"{path}: sheet materials_distributed, row 2, KOR-2025-003: unchanged",
    ]
    done = outreach("publish", "--dry-run", str(path), settings=settings)
    assert (done.returncode, done.stdout.splitlines()) == (
        0,
        [*plan, "dry run: nothing was sent; 1 event(s) would be sent, 0 row(s) refused"],
    ), done.stderr
    done = outreach("publish", "--wait", "60", str(path), settings=settings)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[:5] == [
        *plan,
        "1 event(s): 1 stored, 0 duplicate(s) already stored, 0 failed",
        "projector: 1 accepted, 0 duplicate(s), 0 rejected, 0 without a receipt yet",
    ]
    _, _, cells = ROWS["KOR-2025-001"]
    log.append(
        {
            "event_type": "event_corrected",
            "corrects": "KOR-2025-001",
            "replacement": as_event("KOR-2025-001", {**cells, "participants.students": 45}, "session_held"),
        }
    )
    assert totals(settings) == oracle.totals_by_county(log) == {"AL-06": (2, 2, 79, 0, 0), "AL-09": (1, 0, 0, 400, 0)}

    # Published once more, unchanged: nothing is sent, nothing counted twice.
    done = outreach("publish", str(path), settings=settings)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"{path}: sheet session_held, row 2, KOR-2025-001: unchanged",
        *plan[1:],
        "0 event(s): 0 stored, 0 duplicate(s) already stored, 0 failed",
    ]

    # 3. A row deleted: listed, kept; retracted only with --retract-missing.
    book["session_held"].delete_rows(3)
    book.save(path)
    done = outreach("publish", str(path), settings=settings)
    assert done.returncode == 0, done.stderr
    missing = f"{path}: KOR-2025-002 (was sheet session_held, row 3): in the stream, not in this workbook"
    assert done.stdout.splitlines() == [
        f"{path}: sheet session_held, row 2, KOR-2025-001: unchanged",
        plan[2],
        f"{missing}; kept: publish with --retract-missing to retract it, or put its row back",
        "0 event(s): 0 stored, 0 duplicate(s) already stored, 0 failed",
    ]
    assert totals(settings) == oracle.totals_by_county(log)
    done = outreach("publish", "--retract-missing", "--wait", "60", str(path), settings=settings)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[:5] == [
        f"{path}: sheet session_held, row 2, KOR-2025-001: unchanged",
        plan[2],
        f"{missing}: retracted",
        "1 event(s): 1 stored, 0 duplicate(s) already stored, 0 failed",
        "projector: 1 accepted, 0 duplicate(s), 0 rejected, 0 without a receipt yet",
    ]
    log.append({"event_type": "event_retracted", "retracts": "KOR-2025-002"})
    assert totals(settings) == oracle.totals_by_county(log) == {"AL-06": (1, 1, 45, 0, 0), "AL-09": (1, 0, 0, 400, 0)}

    # Receipts name the row each event came from.
    done = outreach("status", settings=settings)
    assert done.returncode == 0, done.stderr
    rows = [line.split(None, 4) for line in done.stdout.splitlines()[2:-1]]
    assert [(r[0], r[1], r[2], r[4].split("  ")[0]) for r in rows] == [
        ("1", "accepted", "session_held", "KOR-2025-001"),
        ("2", "accepted", "session_held", "KOR-2025-002"),
        ("3", "accepted", "materials_distributed", "KOR-2025-003"),
        ("4", "accepted", "event_corrected", "KOR-2025-001"),
        ("5", "accepted", "event_retracted", "KOR-2025-002"),
    ]
    assert "reporting.xlsx  sheet session_held, row 3" in done.stdout.splitlines()[3]

    projector.terminate()
    projector.communicate(timeout=60)
    logged = run_query(
        settings.db,
        "SELECT event_type, payload->>'reference', CAST(refers_to AS VARCHAR) FROM event_log ORDER BY stream_seq",
    ).rows
    second = reference_event_id(AGENCY, "KOR-2025-002")
    assert logged == [
        ("session_held", "KOR-2025-001", None),
        ("session_held", "KOR-2025-002", None),
        ("materials_distributed", "KOR-2025-003", None),
        ("event_corrected", "KOR-2025-001", str(first)),
        ("event_retracted", "KOR-2025-002", str(second)),
    ]
    assert load_events(path).problems == []
