"""The projector SIGKILLed again and again while it works through a backlog: every kill loses at
most the batch it was writing, and each restart resumes from the checkpoint in the file."""

from __future__ import annotations

import itertools
import random
import time
from pathlib import Path

import pytest

from outreach.synthetic import generate
from runtime.server import EmbeddedServer
from tests.reliability.harness import (
    Processes,
    assert_exact,
    checkpoint,
    create_stream,
    outreach_env,
)

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

BACKLOG = 60_000
KILLS = 24


def test_projector_killed_24_times_in_a_backlog_ends_exact(
    tmp_path: Path, processes: Processes, figures: list[str]
) -> None:
    rng = random.Random(24)
    events = [s.event for s in generate(BACKLOG, seed=24)]
    server = processes.server(EmbeddedServer(tmp_path / "nats", port=0))
    create_stream(server.url)
    db = tmp_path / "projection.duckdb"
    env = outreach_env(server.url, db, batch_size="500", snapshot_interval_s="0")
    processes.publish(tmp_path / "backlog.jsonl", events, env)

    checkpoints = [0]
    deadline = time.monotonic() + 240
    while len(checkpoints) <= KILLS:
        assert time.monotonic() < deadline, f"only {len(checkpoints) - 1} kills in time"
        projector = processes.outreach(["-v", "project", "--until-caught-up"], env)
        if rng.random() < 0.25:  # anywhere in start-up: connecting, opening the file, first fetch
            time.sleep(rng.uniform(0, 0.6))
        else:  # while applying: mid-batch, mid-commit, between batches
            projector.wait_for_stderr(lambda line: "applied stream sequences" in line, 60, "a first batch")
            time.sleep(rng.uniform(0, 0.3))
        assert projector.running, f"the projector finished the backlog before kill {len(checkpoints)}"
        projector.kill()
        checkpoints.append(checkpoint(db))  # the file opens after every kill
        assert checkpoints[-1] >= checkpoints[-2], checkpoints

    moved = sum(after > before for before, after in itertools.pairwise(checkpoints))
    assert moved >= KILLS // 2, checkpoints  # most kills landed mid-backlog, not before any work
    assert checkpoints[-1] < BACKLOG, checkpoints

    last = processes.outreach(["project", "--until-caught-up"], env)
    assert last.finish(180) == 0, last.stderr[-2000:]
    assert checkpoint(db) == BACKLOG
    assert_exact(db, events)

    verify = processes.outreach(["verify"], env)
    assert verify.finish(180) == 0, verify.stdout[-2000:] + verify.stderr[-2000:]
    figures.append(f"projector killed {KILLS} times; checkpoints after each kill: {checkpoints[1:]}")
