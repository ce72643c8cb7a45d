"""Fixtures: a real nats-server on a free port with a temporary store, and a real DuckDB file."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from nats.aio.client import Client

from runtime.connection import connect
from runtime.server import EmbeddedServer
from runtime.settings import Settings
from tests.reliability.harness import Processes


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    """A nats-server with JetStream on port 0, storing under the test's temporary directory."""
    server = EmbeddedServer(tmp_path / "nats", port=0).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def processes() -> Iterator[Processes]:
    """Real ``outreach`` and ``nats-server`` processes a test starts, each stopped when it ends."""
    procs = Processes()
    try:
        yield procs
    finally:
        procs.close()


@pytest.fixture
def settings(nats_server: EmbeddedServer, tmp_path: Path) -> Settings:
    return Settings(nats_url=nats_server.url, db=tmp_path / "outreach.duckdb", stream="OUTREACH")


@pytest.fixture
async def nc(settings: Settings) -> AsyncIterator[Client]:
    client = await connect(settings, "outreach-tests")
    try:
        yield client
    finally:
        await client.close()


def wait_until(condition: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    """Poll ``condition`` until it holds; fail the test with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


async def async_wait_until(condition: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


def build_demo(directory: Path) -> Path:
    """Run `outreach demo` into ``directory`` as a user would; return its projection file."""
    import os
    import subprocess
    import sys

    clean = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
    done = subprocess.run(
        [sys.executable, "-m", "outreach", "demo", "--data-dir", str(directory)],
        cwd=directory,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return directory / "outreach.duckdb"
