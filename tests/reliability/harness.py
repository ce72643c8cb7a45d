"""What the reliability scenarios share: real `outreach` processes with their output collected as it
comes, a three-server JetStream cluster, the stream's state, and the exact checks at the end.

Every scenario computes its expected totals with ``tests.oracle`` from the events it published,
never from what the projector wrote.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import duckdb

from projections.query import run_query
from projections.snapshot import snapshot_path
from runtime.connection import connect
from runtime.server import ClusterNode, EmbeddedServer
from runtime.settings import Settings
from runtime.stream import ensure_stream
from tests import oracle

STREAM = "OUTREACH"


def outreach_env(url: str, db: Path, **settings: str) -> dict[str, str]:
    """The environment of an `outreach` process: this one's, without any OUTREACH_* of the
    developer's, plus the server, the database and ``settings`` (OUTREACH_<NAME>=value)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
    env.update(OUTREACH_NATS_URL=url, OUTREACH_DB=str(db))
    env.update({f"OUTREACH_{k.upper()}": v for k, v in settings.items()})
    return env


class Outreach:
    """A running `outreach` command whose stdout and stderr lines are collected as they come."""

    def __init__(self, args: list[str], env: dict[str, str], **popen: Any) -> None:
        self.args = args
        self.process = subprocess.Popen(
            [sys.executable, "-m", "outreach", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            **popen,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [
            threading.Thread(target=self._collect, args=(self.process.stdout, self.out), daemon=True),
            threading.Thread(target=self._collect, args=(self.process.stderr, self.err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _collect(pipe: Any, lines: list[str]) -> None:
        for line in pipe:
            lines.append(line)
        pipe.close()

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def wait_for_stderr(self, predicate: Callable[[str], bool], timeout: float, what: str) -> str:
        """The first stderr line (from ``start``) for which ``predicate`` holds."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            lines = self.err[seen:]
            for line in lines:
                if predicate(line):
                    return line
            seen += len(lines)
            if not self.running and seen == len(self.err):
                self.finish(5)
                raise AssertionError(f"`outreach {self.args[0]}` ended before {what}: {self.stderr[-2000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}: {self.stderr[-2000:]}")
            time.sleep(0.005)

    def kill(self) -> None:
        """SIGKILL, as a crash or the kernel's OOM killer would."""
        if self.running:
            self.process.kill()
        self.finish(30)

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, as an operator or an orchestrator would, and wait for it to end."""
        if self.running:
            self.process.send_signal(signal.SIGTERM)
        return self.finish(timeout)

    def finish(self, timeout: float) -> int:
        """Wait for the process to end by itself; kill it if it has not within ``timeout``."""
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"`outreach {' '.join(self.args)}` did not end within {timeout}s") from None
        finally:
            for reader in self._readers:
                reader.join(10)
        return self.process.returncode

    @property
    def stdout(self) -> str:
        return "".join(self.out)

    @property
    def stderr(self) -> str:
        return "".join(self.err)


class Processes:
    """Every process a scenario starts, so that all of them end with it, whatever happens."""

    def __init__(self) -> None:
        self.started: list[Outreach] = []
        self.servers: list[EmbeddedServer] = []

    def outreach(self, args: list[str], env: dict[str, str], **popen: Any) -> Outreach:
        proc = Outreach(args, env, **popen)
        self.started.append(proc)
        return proc

    def publish(self, path: Path, events: list[dict[str, Any]], env: dict[str, str], timeout: float = 180) -> None:
        """Write ``events`` to ``path`` and `outreach publish` it to the end: every one stored anew."""
        proc = self.outreach(["publish", str(write_jsonl(path, events))], env)
        proc.finish(timeout)
        assert published(proc) == (len(events), 0)

    def publish_files(self, directory: Path, files: list[list[dict[str, Any]]], env: dict[str, str]) -> list[Outreach]:
        """One `outreach publish` per list of events, all running at once."""
        return [
            self.outreach(["publish", str(write_jsonl(directory / f"publisher-{n}.jsonl", events))], env)
            for n, events in enumerate(files)
        ]

    def server(self, server: EmbeddedServer) -> EmbeddedServer:
        self.servers.append(server)
        return server.start()

    def close(self) -> None:
        for proc in self.started:
            if proc.running:
                proc.process.kill()
            proc.process.wait()
        for server in self.servers:
            server.stop()


def write_jsonl(path: Path, events: Iterable[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


def by_agency_group(events: list[dict[str, Any]], groups: int) -> list[list[dict[str, Any]]]:
    """The events split among ``groups`` publishers, each owning some agencies, as agencies do;
    each group keeps the events' order."""
    agencies = sorted({e["agency"] for e in events})
    owner = {agency: i % groups for i, agency in enumerate(agencies)}
    split: list[list[dict[str, Any]]] = [[] for _ in range(groups)]
    for e in events:
        split[owner[e["agency"]]].append(e)
    return split


def published(proc: Outreach) -> tuple[int, int]:
    """(stored, duplicates) from `outreach publish`'s report, after it ended with success."""
    out = proc.stdout
    assert proc.process.returncode == 0, proc.stderr[-2000:]
    assert out.endswith(" 0 failed\n"), out
    stored = int(out.split(" stored")[0].split(": ")[1])
    duplicates = int(out.split(" duplicate(s)")[0].split(", ")[-1])
    return stored, duplicates


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _stream_state(url: str) -> Any:
    nc = await connect(Settings(nats_url=url), "reliability-probe")
    try:
        return (await nc.jetstream().stream_info(STREAM)).state
    finally:
        await nc.close()


def stream_messages(url: str) -> int:
    """How many messages the stream holds; -1 while no server answers."""
    try:
        return run(_stream_state(url)).messages
    except Exception:
        return -1


def create_stream(url: str, duplicate_window_s: float = 3600, replicas: int = 1, timeout: float = 30) -> None:
    """Create the stream as the admin would; a cluster may need a moment to elect its leader."""

    async def create() -> None:
        nc = await connect(Settings(nats_url=url), "reliability-admin")
        try:
            await ensure_stream(nc.jetstream(timeout=10), STREAM, duplicate_window_s, replicas)
        finally:
            await nc.close()

    deadline = time.monotonic() + timeout
    while True:
        try:
            run(create())
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def wait_for_stream(url: str, count: int, publishers: list[Outreach], timeout: float = 120) -> None:
    """Wait until the stream holds ``count`` messages while every publisher is still at work."""
    deadline = time.monotonic() + timeout
    while stream_messages(url) < count:
        assert time.monotonic() < deadline, f"the stream did not reach {count} messages in {timeout}s"
        for p in publishers:
            assert p.running, f"a publisher ended before the stream held {count}: {p.stderr[-2000:]}"


def checkpoint(db: Path) -> int:
    """The projection's checkpoint, read while no projector holds the file; 0 before the first batch."""
    if not db.exists():
        return 0
    con = duckdb.connect(str(db), read_only=True)
    try:
        row = con.execute("SELECT last_seq FROM checkpoint WHERE stream = ?", [STREAM]).fetchone()
        return int(row[0]) if row else 0
    finally:
        con.close()


def snapshot_seq(db: Path) -> int:
    """As of which stream sequence the running projector's snapshot file is; 0 before it has one."""
    try:
        con = duckdb.connect(str(snapshot_path(db)), read_only=True)
    except duckdb.Error:
        return 0
    try:
        row = con.execute("SELECT as_of_seq FROM snapshot_info").fetchone()
        return int(row[0]) if row else 0
    finally:
        con.close()


def wait_for_projection(projector: Outreach, db: Path, seq: int, timeout: float) -> None:
    """Wait until the running projector has applied up to ``seq`` (read from its snapshot file)."""
    deadline = time.monotonic() + timeout
    while snapshot_seq(db) < seq:
        assert time.monotonic() < deadline, f"the projector stopped at {snapshot_seq(db)} of {seq}"
        assert projector.running, projector.stderr[-2000:]
        time.sleep(0.05)


def county_totals(db: Path) -> dict[str, tuple[int, ...]]:
    rows = run_query(
        db,
        "SELECT county, events, sessions, participants, materials_distributed, teams_established FROM totals_by_county",
    ).rows
    return {r[0]: tuple(r[1:]) for r in rows}


def assert_exact(db: Path, events: list[dict[str, Any]], *, duplicates: int = 0, rejected: int = 0) -> None:
    """Totals as the oracle computes them from ``events``; each event logged once, ``rejected``
    messages rejected, and ``duplicates`` re-sent copies recognised as such."""
    assert county_totals(db) == oracle.totals_by_county(events)
    assert run_query(db, "SELECT count(*), count(DISTINCT event_id) FROM event_log").rows == [
        (len(events), len(events))
    ]
    assert run_query(db, "SELECT count(*) FROM rejected_events").rows == [(rejected,)]
    assert run_query(db, "SELECT count(*) FROM ignored_duplicates").rows == [(duplicates,)]


def unread_bytes(port: int) -> int:
    """Bytes clients sent to the server on ``port`` that it has not read yet (Linux's socket
    receive queues, from /proc/net/tcp): while the server is frozen, what it will store unacknowledged."""
    total = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "01":  # ESTABLISHED
                total += int(fields[4].split(":")[1], 16)
    return total


def free_ports(n: int) -> list[int]:
    """``n`` ports free right now on loopback (a cluster's servers must know each other's)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Cluster:
    """Three nats-server processes on loopback forming one JetStream cluster."""

    def __init__(self, directory: Path, processes: Processes, size: int = 3) -> None:
        ports = free_ports(2 * size)
        self.client_ports, route_ports = ports[:size], ports[size:]
        routes = tuple(f"nats://127.0.0.1:{p}" for p in route_ports)
        self.servers = [
            EmbeddedServer(
                directory / f"n{i}",
                port=self.client_ports[i],
                cluster=ClusterNode(f"n{i}", routes[i], tuple(r for r in routes if r != routes[i])),
            )
            for i in range(size)
        ]
        processes.servers.extend(self.servers)

    @property
    def url(self) -> str:
        return ",".join(f"nats://127.0.0.1:{p}" for p in self.client_ports)

    def start(self) -> Cluster:
        for server in self.servers:
            server.start()
        return self

    def stream_leader(self) -> int:
        """Which server leads the stream's replicas."""

        async def leader() -> str:
            nc = await connect(Settings(nats_url=self.url), "reliability-probe")
            try:
                info = await nc.jetstream().stream_info(STREAM)
                assert info.cluster is not None and info.cluster.leader, "the stream has no leader"
                return info.cluster.leader
            finally:
                await nc.close()

        return int(run(leader()).removeprefix("n"))
