"""The command line, end to end, in subprocesses, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from runtime.server import EmbeddedServer

pytestmark = pytest.mark.e2e

COMMANDS = [
    "server",
    "publish",
    "validate",
    "project",
    "replay",
    "verify",
    "export-log",
    "sql",
    "demo",
    "bench",
    "schema",
    "auth",
    "stream",
    "export",
    "report",
]


def outreach(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
    return subprocess.run(
        [sys.executable, "-m", "outreach", *args],
        cwd=cwd,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def table_row(output: str, first_cell: str) -> list[str]:
    """The cells of the printed table row that starts with ``first_cell``."""
    for line in output.splitlines():
        if line.startswith(first_cell + " "):
            return line.split()
    raise AssertionError(f"no row starting with {first_cell!r} in:\n{output}")


# The `outreach` script pip installs beside this interpreter, as a user runs it without activating the venv.
SCRIPT = Path(sys.executable).with_name("outreach")


def without_the_venv() -> dict[str, str]:
    """The environment of a shell in which the venv is not activated: its bin directory not on PATH."""
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and Path(p) != SCRIPT.parent]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_") and k != "VIRTUAL_ENV"}
    return {**env, "PATH": os.pathsep.join(path)}


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory in which `outreach demo` has run once, by the venv's script, the venv not activated."""
    cwd = tmp_path_factory.mktemp("demo")
    assert SCRIPT.is_file(), f"{SCRIPT}: install the project with pip install -e ."
    done = subprocess.run(
        [str(SCRIPT), "demo"], cwd=cwd, env=without_the_venv(), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    (cwd / "first-run.txt").write_text(done.stdout)
    return cwd


def test_demo_prints_the_seed_totals(demo_dir: Path) -> None:
    out = (demo_dir / "first-run.txt").read_text()
    assert "published the seed reports: 17 event(s), 17 stored, 0 already stored, 0 failed" in out
    # county, name, events, sessions, participants, sessions with unknown counts, materials, teams
    assert table_row(out, "AL-06") == ["AL-06", "Korçë", "7", "6", "97", "2", "4000", "0"]
    assert table_row(out, "PL-12") == ["PL-12", "małopolskie", "1", "0", "0", "0", "0", "1"]
    task = table_row(out, "pl-nap-2013-2015/III/4")
    assert task[-5:] == ["6", "6", "6", "2014-01-26", "2015-02-09"]
    assert (demo_dir / "outreach-demo" / "outreach.duckdb").is_file()
    # The headers are the views' column names; the actions of no campaign are labelled.
    assert table_row(out, "county") == [
        "county",
        "county_name",
        "events",
        "sessions",
        "participants",
        "sessions_participants_unknown",
        "materials_distributed",
        "teams_established",
    ]
    # One row of no campaign per country: the seeds' actions of no campaign are the seven Polish teams.
    assert table_row(out, "(no campaign)") == ["(no", "campaign)", "PL", "7", "0", "0", "0", "7", "7"]


def test_the_demos_last_hint_runs_without_an_activated_venv(demo_dir: Path) -> None:
    import shlex

    out = (demo_dir / "first-run.txt").read_text().splitlines()
    hint = f'{SCRIPT} sql --db outreach-demo/outreach.duckdb "SELECT * FROM totals_by_county"'
    assert out[-2:] == [
        "The projection is in outreach-demo/outreach.duckdb. Query it with, for example:",
        f"  {hint}",
    ]
    done = subprocess.run(
        shlex.split(out[-1]), cwd=demo_dir, env=without_the_venv(), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert table_row(done.stdout, "AL-06")[:3] == ["AL-06", "Korçë", "Korçë"]


def test_demo_again_stores_nothing_new_and_prints_the_same_totals(demo_dir: Path) -> None:
    again = outreach("demo", cwd=demo_dir)
    assert again.returncode == 0, again.stderr
    assert "17 event(s), 0 stored, 17 already stored, 0 failed" in again.stdout
    assert "projected 0 new message(s)" in again.stdout
    assert table_row(again.stdout, "AL-06") == ["AL-06", "Korçë", "7", "6", "97", "2", "4000", "0"]


def test_sql_prints_csv_and_json(demo_dir: Path) -> None:
    db = str(demo_dir / "outreach-demo" / "outreach.duckdb")
    query = "SELECT county, participants, materials_distributed FROM totals_by_county WHERE county = 'AL-06'"
    as_csv = outreach("sql", "--db", db, "--format", "csv", query)
    assert as_csv.stdout == "county,participants,materials_distributed\nAL-06,97,4000\n"
    as_json = outreach("sql", "--db", db, "--format", "json", query)
    assert json.loads(as_json.stdout) == [{"county": "AL-06", "participants": 97, "materials_distributed": 4000}]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("INSERT INTO event_log SELECT * FROM event_log", "INSERT statements are refused"),
        ("UPDATE fact_versions SET participants = 0", "UPDATE statements are refused"),
        ("DELETE FROM event_log", "DELETE statements are refused"),
        ("CREATE TABLE x (a INT)", "CREATE statements are refused"),
        ("COPY event_log TO 'leak.csv'", "COPY statements are refused"),
        ("ATTACH 'other.duckdb' AS other", "ATTACH statements are refused"),
        ("SELECT * FROM read_csv('/etc/passwd')", "files, the network and extensions are out of reach"),
        ("SELECT * FROM read_text('/etc/hostname')", "files, the network and extensions are out of reach"),
        ("INSTALL httpfs", "LOAD statements are refused"),
        ("SET enable_external_access = true", "SET statements are refused"),
        ("EXPLAIN ANALYZE CHECKPOINT", "EXPLAIN of anything but a SELECT is refused"),
        ("EXPLAIN ANALYZE CREATE TABLE x AS SELECT 1", "EXPLAIN of anything but a SELECT is refused"),
    ],
)
def test_sql_refuses_anything_but_reading(demo_dir: Path, query: str, message: str) -> None:
    db = demo_dir / "outreach-demo" / "outreach.duckdb"
    done = outreach("sql", "--db", str(db), query, cwd=demo_dir)
    assert done.returncode == 1
    assert message in done.stderr
    assert done.stderr.startswith("error: ")
    assert "Traceback" not in done.stderr
    assert not (demo_dir / "leak.csv").exists()


@pytest.mark.parametrize("name", ["totals.csv", "totals.parquet", "totals.xlsx"])
def test_reading_commands_given_an_export_instead_of_the_projection_say_so(demo_dir: Path, name: str) -> None:
    db = demo_dir / "outreach-demo" / "outreach.duckdb"
    made = outreach("export", "--db", str(db), "--view", "totals_by_county", "--out", name, cwd=demo_dir)
    assert made.returncode == 0, made.stderr
    said = (
        f"error: {name} is not a projection: it holds no DuckDB database (an export or a log is read with other "
        "tools); give the projection's file, such as outreach.duckdb\n"
    )
    for command in (["sql", "SELECT 1"], ["verify"], ["report", "--out", "r.html"], ["export", "--out", "x.csv"]):
        done = outreach(*command, "--db", name, cwd=demo_dir)
        assert (done.returncode, done.stderr) == (1, said), command
    assert not (demo_dir / "r.html").exists() and not (demo_dir / "x.csv").exists()


def test_sql_on_a_missing_database_says_what_to_do(tmp_path: Path) -> None:
    done = outreach("sql", "--db", str(tmp_path / "none.duckdb"), "SELECT 1")
    assert done.returncode == 1
    assert done.stderr == (
        f"error: no projection database at {tmp_path / 'none.duckdb'}; "
        "run `outreach project` (or `outreach demo`) first\n"
    )


def test_publish_refuses_a_file_with_invalid_lines_and_names_them(tmp_path: Path) -> None:
    good = {
        "event_id": str(uuid.uuid4()),
        "event_type": "materials_distributed",
        "agency": "al-a",
        "recorded_at": "2025-01-01T00:00:00Z",
        "occurred": "2024-01-01",
        "county": "AL-06",
        "kind": "leaflet",
        "quantity": 100,
    }
    bad = dict(good, event_id=str(uuid.uuid4()), county="AL-99", quantity="many")
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with EmbeddedServer(tmp_path / "nats", port=0) as server:
        created = outreach("stream", "--nats", server.url)
        assert created.stdout == "stream OUTREACH is in place, with immutable history\n"
        refused = outreach("publish", "--nats", server.url, str(path))
        assert refused.returncode == 1
        assert "line 2: county: unknown county code for Albania" in refused.stderr
        assert "line 2: quantity: must be a whole number such as 12, written without quotes" in refused.stderr
        assert "nothing was published" in refused.stderr

        skipped = outreach("publish", "--nats", server.url, "--skip-invalid", str(path))
        assert skipped.returncode == 0, skipped.stderr
        assert skipped.stdout == "1 event(s): 1 stored, 0 duplicate(s) already stored, 0 failed\n"
        assert "skipped: " in skipped.stderr and "line 2: county" in skipped.stderr

        projected = outreach("project", "--nats", server.url, "--db", str(tmp_path / "p.duckdb"), "--until-caught-up")
        assert projected.returncode == 0, projected.stderr
        assert projected.stderr.splitlines()[0] == (
            f"project: stream OUTREACH into {tmp_path / 'p.duckdb'}, from sequence 1"
        )
        assert projected.stdout.startswith("applied 1 message(s) in 1 batch(es): 1 accepted, 0 rejected")


def test_publish_without_a_server_says_where_it_tried(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    done = outreach("publish", "--nats", "nats://user:secret@127.0.0.1:1", str(path))
    assert done.returncode == 1
    assert done.stderr.startswith("error: cannot connect to NATS at nats://***@127.0.0.1:1")
    assert "secret" not in done.stderr


def test_validate_lists_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text(
        "event_id,event_type,agency,recorded_at,occurred,county,format,participants.students,participants.teachers\n"
        f"{uuid.uuid4()},session_held,al-a,2025-01-01T00:00:00Z,2017-12-20/2017-12-21,AL-06,school_session,30,7\n"
        f"{uuid.uuid4()},session_held,al-a,2025-01-01T00:00:00Z,2017-12-21,AL-06,lecture,~10,unknown\n"
        f"{uuid.uuid4()},session_held,al-a,2025-01-01T00:00:00Z,2017-12-22/2017-12-21,AL-06,workshop,5,\n"
    )
    done = outreach("validate", str(path))
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{path}: line 3: format: must be one of: workshop")
    assert lines[1] == (f"{path}: line 4: occurred: range ends (2017-12-21) before it starts (2017-12-22)")
    assert done.stderr == f"{path}: 1 valid event(s), 2 invalid\n"


def test_schema_exports_every_event_type(tmp_path: Path) -> None:
    done = outreach("schema", "--out", str(tmp_path / "json"))
    assert done.returncode == 0
    names = sorted(p.name for p in (tmp_path / "json").iterdir())
    assert names == sorted(
        f"{t}.schema.json"
        for t in [
            "campaign_defined",
            "plan_task_defined",
            "session_held",
            "materials_distributed",
            "team_established",
            "event_corrected",
            "event_retracted",
            "coordinator_appointed",
            "report_submitted",
            "actions_linked",
        ]
    )
    session = json.loads((tmp_path / "json" / "session_held.schema.json").read_text())
    assert session["additionalProperties"] is False
    assert set(session["required"]) == {
        "event_id",
        "event_type",
        "agency",
        "recorded_at",
        "occurred",
        "county",
        "format",
    }
    combined = json.loads(outreach("schema").stdout)
    assert sorted(combined["discriminator"]["mapping"]) == sorted(t[:-12] for t in names)


def test_help_lists_every_command_and_each_has_an_example() -> None:
    top = outreach("--help")
    for command in COMMANDS:
        assert command in top.stdout
        sub = outreach(command, "--help")
        assert sub.returncode == 0
        assert "example" in sub.stdout
    publish = outreach("publish", "--help").stdout
    assert "validate files of events (JSON Lines, CSV or xlsx) and publish them" in publish
    template = outreach("template", "--help").stdout
    assert "--lang {en,sq,pl}" in template and "--agency AGENCY" in template


def test_server_runs_in_the_foreground_creates_the_stream_and_stops_on_sigterm(tmp_path: Path) -> None:
    import asyncio
    import signal as signals

    from runtime.connection import connect
    from runtime.settings import Settings

    command = [sys.executable, "-m", "outreach", "server", "--port", "0", "--data-dir", str(tmp_path / "data")]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("nats-server with JetStream listening on nats://127.0.0.1:")
        url = first.split(" listening on ")[1].split(",")[0]

        async def stream_subjects() -> list[str]:
            nc = await connect(Settings(nats_url=url), "test")
            try:
                info = await nc.jetstream().stream_info("OUTREACH")
                return list(info.config.subjects or [])
            finally:
                await nc.close()

        assert asyncio.run(stream_subjects()) == ["outreach.events.>"]
        proc.send_signal(signals.SIGTERM)
        assert proc.wait(30) == 0
    assert (tmp_path / "data" / "jetstream").is_dir()


def test_a_cluster_server_needs_its_name_its_cluster_url_and_routes(tmp_path: Path) -> None:
    done = outreach("server", "--port", "0", "--data-dir", str(tmp_path), "--cluster", "nats://127.0.0.1:6222")
    assert done.returncode == 1
    assert done.stderr == "error: a cluster server needs all of --server-name, --cluster and --routes\n"


def test_several_server_urls_are_tried_in_turn(tmp_path: Path) -> None:
    """A cluster's clients list every server: one that is down is skipped."""
    with EmbeddedServer(tmp_path / "nats", port=0) as server:
        urls = f"nats://127.0.0.1:1, {server.url}"
        done = outreach("stream", "--nats", urls, "--replicas", "1")
        assert done.returncode == 0, done.stderr
        assert done.stdout == "stream OUTREACH is in place, with immutable history\n"
