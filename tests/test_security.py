"""Each role gets only what it needs, enforced by a real nats-server running the generated config."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import APIError
from pydantic import SecretStr

from consumers.app import run_projector
from consumers.reader import read_stream
from outreach import auth
from producers.publisher import Publisher
from projections.query import run_query
from runtime.connection import connect
from runtime.server import EmbeddedServer
from runtime.settings import Settings
from runtime.stream import ensure_stream
from schemas.errors import BrokerError, SettingsInvalid
from schemas.parse import parse_event
from tests.conftest import async_wait_until

pytestmark = pytest.mark.integration

AGENCIES = ["al-a", "al-b"]
REFUSED = (NatsTimeout, NoRespondersError, APIError, asyncio.TimeoutError)


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[tuple[EmbeddedServer, Path]]:
    directory = tmp_path / "auth"
    config = auth.init(directory, AGENCIES)
    with EmbeddedServer(tmp_path / "nats", port=0, config_file=config) as server:
        yield server, directory


def creds(directory: Path, user: str, server: EmbeddedServer, db: Path | None = None) -> Settings:
    values = dict(line.split("=", 1) for line in (directory / "credentials" / f"{user}.env").read_text().split())
    return Settings(
        nats_url=server.url,
        nats_user=values["OUTREACH_NATS_USER"],
        nats_password=values["OUTREACH_NATS_PASSWORD"],
        nats_inbox_prefix=values["OUTREACH_NATS_INBOX_PREFIX"],
        db=db or Path("unused.duckdb"),
    )


class Refusals:
    """Collects the errors nats-server sends a connection (permission violations arrive here)."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    async def record(self, exc: Exception) -> None:
        self.errors.append(str(exc))

    async def wait_for(self, text: str, timeout: float = 5.0) -> None:
        """Wait until the server's refusal containing ``text`` has arrived, or fail."""
        await async_wait_until(
            lambda: any(text.lower() in e.lower() for e in self.errors), timeout, f"the server to refuse: {text}"
        )


async def as_user(settings: Settings) -> tuple[Any, Refusals]:
    refusals = Refusals()
    nc = await nats.connect(
        settings.nats_url,
        user=settings.nats_user,
        password=settings.nats_password.get_secret_value() if settings.nats_password else None,
        inbox_prefix=settings.nats_inbox_prefix,
        error_cb=refusals.record,
        max_reconnect_attempts=0,
    )
    return nc, refusals


def session(agency: str) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "session_held",
        "agency": agency,
        "recorded_at": "2025-01-01T00:00:00Z",
        "occurred": "2024-01-01",
        "county": "AL-06",
        "format": "workshop",
        "participants": [{"audience": "students", "count": 9}],
    }


async def admin_creates_stream(directory: Path, server: EmbeddedServer) -> None:
    nc = await connect(creds(directory, "admin", server), "admin")
    await ensure_stream(nc.jetstream(), "OUTREACH", 3600)
    await nc.close()


def test_init_writes_hashes_to_the_config_and_secrets_to_private_files(tmp_path: Path) -> None:
    directory = tmp_path / "auth"
    config = auth.init(directory, ["al-a"])
    text = config.read_text()
    files = sorted(p.name for p in (directory / "credentials").iterdir())
    assert files == ["admin.env", "al-a.env", "analyst.env", "auditor.env", "projector.env"]
    for path in (directory / "credentials").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        password = path.read_text().split("OUTREACH_NATS_PASSWORD=")[1].split()[0]
        assert len(password) >= 32
        assert password not in text
    assert text.count('"password": "$2b$10$') == 5
    assert stat.S_IMODE((directory / "users.json").stat().st_mode) == 0o600
    with pytest.raises(SettingsInvalid) as caught:
        auth.init(directory, ["al-b"])
    assert "exists; use `outreach auth add-agency` or `revoke`" in str(caught.value)
    with pytest.raises(SettingsInvalid):
        auth.init(tmp_path / "other", ["Not A Slug"])


async def test_an_anonymous_or_wrong_password_connection_is_refused(
    secured: tuple[EmbeddedServer, Path],
) -> None:
    server, directory = secured
    with pytest.raises(BrokerError) as anonymous:
        await connect(Settings(nats_url=server.url), "anonymous")
    assert "authorization violation" in str(anonymous.value).lower()
    wrong = creds(directory, "al-a", server).model_copy(update={"nats_password": SecretStr("not-it")})
    with pytest.raises(BrokerError) as caught:
        await connect(wrong, "wrong password")
    assert "authorization violation" in str(caught.value).lower()
    assert "not-it" not in str(caught.value)


async def test_an_agency_publishes_as_itself_only(secured: tuple[EmbeddedServer, Path]) -> None:
    server, directory = secured
    await admin_creates_stream(directory, server)
    nc, refusals = await as_user(creds(directory, "al-a", server))
    js = nc.jetstream()
    own = await Publisher(js).publish([parse_event(session("al-a"))])
    assert (own.stored, own.failed) == (1, [])
    with pytest.raises(REFUSED):
        await js.publish("outreach.events.al-b.session_held", json.dumps(session("al-b")).encode(), timeout=1)
    await refusals.wait_for('Permissions Violation for Publish to "outreach.events.al-b.session_held"')
    await nc.close()
    admin = await connect(creds(directory, "admin", server), "admin")
    info = await admin.jetstream().stream_info("OUTREACH")
    assert info.state.messages == 1
    await admin.close()


async def test_an_agency_cannot_delete_purge_or_read_others(secured: tuple[EmbeddedServer, Path]) -> None:
    server, directory = secured
    await admin_creates_stream(directory, server)
    nc, refusals = await as_user(creds(directory, "al-b", server))
    await Publisher(nc.jetstream()).publish([parse_event(session("al-b"))])
    js = nc.jetstream(timeout=1)
    for attempt in (
        js.delete_msg("OUTREACH", 1),
        js.purge_stream("OUTREACH"),
        js.delete_stream("OUTREACH"),
        js.stream_info("OUTREACH"),
    ):
        with pytest.raises(REFUSED):
            await attempt
    sub = await nc.subscribe("outreach.events.>")
    for subject in (
        "$JS.API.STREAM.MSG.DELETE.OUTREACH",
        "$JS.API.STREAM.PURGE.OUTREACH",
        "$JS.API.STREAM.DELETE.OUTREACH",
        "$JS.API.STREAM.INFO.OUTREACH",
    ):
        await refusals.wait_for(f'Permissions Violation for Publish to "{subject}"')
    await refusals.wait_for('Permissions Violation for Subscription to "outreach.events.>"')
    await sub.unsubscribe()
    await nc.close()
    admin = await connect(creds(directory, "admin", server), "admin")
    assert (await admin.jetstream().stream_info("OUTREACH")).state.messages == 1
    await admin.close()


async def test_the_auditor_replays_but_cannot_publish_or_delete(secured: tuple[EmbeddedServer, Path]) -> None:
    server, directory = secured
    await admin_creates_stream(directory, server)
    agency, _ = await as_user(creds(directory, "al-a", server))
    await Publisher(agency.jetstream()).publish([parse_event(session("al-a")) for _ in range(3)])
    await agency.close()

    auditor_settings = creds(directory, "auditor", server)
    nc, refusals = await as_user(auditor_settings)
    js = nc.jetstream(timeout=1)
    seen: list[int] = []
    await read_stream(
        js, "OUTREACH", start_seq=1, end_seq=3, batch_size=10, handle=lambda batch: seen.extend(m.seq for m in batch)
    )
    assert seen == [1, 2, 3]
    with pytest.raises(REFUSED):
        await js.publish("outreach.events.al-a.session_held", json.dumps(session("al-a")).encode(), timeout=1)
    with pytest.raises(REFUSED):
        await js.delete_msg("OUTREACH", 1)
    await refusals.wait_for('Permissions Violation for Publish to "outreach.events.al-a.session_held"')
    await refusals.wait_for('Permissions Violation for Publish to "$JS.API.STREAM.MSG.DELETE.OUTREACH"')
    await nc.close()


async def test_the_projector_user_projects_and_only_the_admin_creates_the_stream(
    secured: tuple[EmbeddedServer, Path], tmp_path: Path
) -> None:
    server, directory = secured
    projector = creds(directory, "projector", server, db=tmp_path / "p.duckdb")
    with pytest.raises(BrokerError) as caught:
        await run_projector(projector, until_caught_up=True)
    assert "cannot" in str(caught.value) and "OUTREACH" in str(caught.value)
    await admin_creates_stream(directory, server)
    agency, _ = await as_user(creds(directory, "al-a", server))
    await Publisher(agency.jetstream()).publish([parse_event(session("al-a")), parse_event(session("al-a"))])
    await agency.close()
    stats = await run_projector(projector, until_caught_up=True)
    assert (stats.accepted, stats.rejected) == (2, 0)
    assert run_query(projector.db, "SELECT participants FROM totals_by_county").rows == [(18,)]


def test_adding_and_revoking_an_agency_keeps_the_others(tmp_path: Path) -> None:
    directory = tmp_path / "auth"
    auth.init(directory, ["al-a"])
    before = (directory / "credentials" / "al-a.env").read_text()
    auth.add_agency(directory, "al-c")
    assert (directory / "credentials" / "al-a.env").read_text() == before
    assert '"outreach.events.al-c.>"' in (directory / "nats-server.conf").read_text()
    auth.revoke(directory, "al-c")
    assert not (directory / "credentials" / "al-c.env").exists()
    assert "al-c" not in (directory / "nats-server.conf").read_text()
    with pytest.raises(SettingsInvalid):
        auth.revoke(directory, "admin")
    assert os.path.exists(directory / "credentials" / "admin.env")


def test_an_agency_publishes_a_file_with_its_credentials_file(
    secured: tuple[EmbeddedServer, Path], tmp_path: Path
) -> None:
    import subprocess
    import sys

    server, directory = secured
    asyncio.run(admin_creates_stream(directory, server))
    values = dict(line.split("=", 1) for line in (directory / "credentials" / "al-a.env").read_text().split())
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
    env.update(values, OUTREACH_NATS_URL=server.url)
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps(session("al-a")) + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "outreach", "publish", str(path)], env=env, capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout) == (0, "1 event(s): 1 stored, 0 duplicate(s) already stored, 0 failed\n")
    assert values["OUTREACH_NATS_PASSWORD"] not in done.stdout + done.stderr
