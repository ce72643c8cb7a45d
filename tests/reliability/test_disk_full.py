"""The projector's disk fills up (a file size limit the kernel enforces: every write past it fails
with "File too large"): it stops with a clear error, the file holds exactly the batches up to its
checkpoint, and once there is room again it resumes and ends exact."""

from __future__ import annotations

import re
import resource
from pathlib import Path

import pytest

from outreach.synthetic import generate
from projections.query import run_query
from projections.snapshot import snapshot_path
from runtime.server import EmbeddedServer
from tests import oracle
from tests.reliability.harness import (
    Processes,
    assert_exact,
    checkpoint,
    county_totals,
    create_stream,
    outreach_env,
)

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

FIRST, REST = 5_000, 35_000


def test_projector_stops_on_a_full_disk_and_resumes_exact(
    tmp_path: Path, processes: Processes, figures: list[str]
) -> None:
    events = [s.event for s in generate(FIRST + REST, seed=66)]
    server = processes.server(EmbeddedServer(tmp_path / "nats", port=0))
    create_stream(server.url)
    db = tmp_path / "projection.duckdb"
    env = outreach_env(server.url, db, batch_size="1000", snapshot_interval_s="0")

    processes.publish(tmp_path / "first.jsonl", events[:FIRST], env)
    projector = processes.outreach(["project", "--until-caught-up"], env)
    assert projector.finish(120) == 0, projector.stderr[-2000:]
    assert checkpoint(db) == FIRST
    processes.publish(tmp_path / "rest.jsonl", events[FIRST:], env)

    # Room for about 4 MiB more in any file: the backlog needs several times that.
    limit = db.stat().st_size + 4 * 1024 * 1024
    projector = processes.outreach(["-v", "project"], env)  # following: it must stop by itself
    resource.prlimit(projector.process.pid, resource.RLIMIT_FSIZE, (limit, limit))
    assert projector.finish(120) == 1
    error = projector.stderr.splitlines()[-1]
    failed = re.fullmatch(
        rf"error: writing the batch ending at stream sequence (\d+) to {re.escape(str(db))} failed; nothing of it "
        r"was kept and the checkpoint did not move: .*File too large\. Disk: the file system holding "
        rf"{re.escape(str(db))} is full, or the file reached a size limit\. Free space there \(or lift the limit\), "
        r"then start the projector again: it resumes from the checkpoint\.",
        error,
    )
    assert failed, error
    applied = [int(n) for n in re.findall(r"applied stream sequences up to (\d+)", projector.stderr)]
    stopped_at = checkpoint(db)
    assert stopped_at == applied[-1] == int(failed.group(1)) - 1000
    assert FIRST < stopped_at < FIRST + REST
    # The file holds exactly the events up to its checkpoint: nothing of the failed batch.
    assert run_query(db, "SELECT count(*), max(stream_seq) FROM event_log").rows == [(stopped_at, stopped_at)]
    assert county_totals(db) == oracle.totals_by_county(events[:stopped_at])

    projector = processes.outreach(["project", "--until-caught-up"], env)  # room again
    assert projector.finish(120) == 0, projector.stderr[-2000:]
    assert checkpoint(db) == FIRST + REST
    assert_exact(db, events)
    figures.append(f"disk full: stopped with the checkpoint at {stopped_at}, resumed to {FIRST + REST}")


def test_a_snapshot_that_cannot_be_written_does_not_stop_the_projector(tmp_path: Path, processes: Processes) -> None:
    events = [s.event for s in generate(3_000, seed=67)]
    server = processes.server(EmbeddedServer(tmp_path / "nats", port=0))
    create_stream(server.url)
    db = tmp_path / "projection.duckdb"
    snapshot_path(db).mkdir()  # the snapshot's place is taken: it cannot be replaced
    env = outreach_env(server.url, db, batch_size="500", snapshot_interval_s="0.01")
    processes.publish(tmp_path / "events.jsonl", events, env)
    projector = processes.outreach(["project", "--until-caught-up"], env)
    assert projector.finish(120) == 0, projector.stderr[-2000:]
    assert f"WARNING outreach.projector: the snapshot {snapshot_path(db)} was not refreshed" in projector.stderr
    assert_exact(db, events)
