"""The DuckDB files made for analysts' tools (a projection's snapshot, its copy, a replay) are read
by DuckDB 1.1.3, installed in a virtual environment of its own: BI tools bundle older versions than
the projector's."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from consumers.app import run_projector
from consumers.replay import replay
from producers.publisher import Publisher
from projections.copy import write_copy
from projections.snapshot import snapshot_path
from projections.store import ProjectionStore
from runtime.connection import connect
from runtime.settings import Settings
from runtime.stream import ensure_stream
from schemas.parse import parse_event

pytestmark = pytest.mark.integration

OLDEST = "1.1.3"
READ = """
import json, sys
import duckdb
out = {"version": duckdb.__version__}
for path in sys.argv[1:]:
    con = duckdb.connect(path, read_only=True)
    out[path] = {
        "counties": con.execute(
            "SELECT county, events, sessions, participants, materials_distributed, teams_established "
            "FROM totals_by_county ORDER BY county").fetchall(),
        "campaigns": con.execute(
            "SELECT campaign_id, events, participants FROM totals_by_campaign "
            "WHERE campaign_id IS NOT NULL ORDER BY campaign_id").fetchall(),
        "cells": con.execute("SELECT sum(participants), sum(teams) FROM report_cells").fetchall(),
    }
    con.close()
print(json.dumps(out))
"""
# The demo's seed reports, as every file must give them.
COUNTIES = [
    ["AL-06", 7, 6, 97, 4000, 0],
    *([county, 1, 0, 0, 0, 1] for county in ("PL-06", "PL-08", "PL-12", "PL-14", "PL-20", "PL-24", "PL-32")),
]
CAMPAIGNS = [["al-irregular-migration-prevention", 7, 97], ["pl-improved-cooperation-structures", 0, 0]]


@pytest.fixture(scope="module")
def oldest_duckdb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Python with DuckDB 1.1.3 and nothing else of ours."""
    venv = tmp_path_factory.mktemp("duckdb-oldest") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=120)
    python = venv / "bin" / "python"
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", f"duckdb=={OLDEST}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot install duckdb=={OLDEST} from the package index: {done.stderr.strip()[-300:]}")
    return python


async def test_duckdb_1_1_reads_the_snapshot_the_copy_and_a_replay(
    oldest_duckdb: Path, settings: Settings, tmp_path: Path
) -> None:
    nc = await connect(settings, "outreach-tests")
    try:
        js = nc.jetstream()
        await ensure_stream(js, settings.stream, settings.duplicate_window_s)
        seeds = resources.files("schemas.data").joinpath("seed_events.jsonl").read_text(encoding="utf-8")
        events = [parse_event(json.loads(line)) for line in seeds.splitlines() if line.strip()]
        report = await Publisher(js).publish(iter(events))
        assert (report.stored, report.failed) == (17, [])
    finally:
        await nc.close()
    await run_projector(settings, until_caught_up=True)
    replayed = tmp_path / "replayed.duckdb"
    assert (await replay(settings, replayed)).accepted == 17
    store = ProjectionStore(settings.db)
    try:
        copied, as_of = write_copy(store.reader(), settings.db)
    finally:
        store.close()
    assert as_of == 17
    files = [snapshot_path(settings.db), copied, replayed]
    assert all(f.is_file() for f in files)

    done = subprocess.run(
        [str(oldest_duckdb), "-c", READ, *map(str, files)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    read = json.loads(done.stdout)
    assert read.pop("version") == OLDEST
    for path in files:
        assert read[str(path)] == {"counties": COUNTIES, "campaigns": CAMPAIGNS, "cells": [[97, 7]]}, path
