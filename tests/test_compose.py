"""Static checks of compose.yaml, the Dockerfile and .dockerignore: no container engine runs here,
so these catch the mistakes an operator would otherwise meet at `docker compose up`."""

from __future__ import annotations

import json
import shlex
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from outreach import cli

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
NATS_CLIENT_PORT = 4222


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text("utf-8"))
    assert isinstance(data, dict), "compose.yaml must be a mapping"
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def _command(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def _named_mounts(service: dict[str, Any]) -> dict[str, str]:
    """Mount point -> named volume, for the service's named-volume mounts (bind mounts left out)."""
    mounts: dict[str, str] = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, _, rest = volume.partition(":")
            target = rest.split(":", 1)[0]
        else:
            if volume.get("type", "volume") != "volume":
                continue
            source, target = volume.get("source", ""), volume["target"]
        if source and not source.startswith(("/", ".", "~", "$")):
            mounts[target] = source
    return mounts


def _volume_for(service: dict[str, Any], path: str) -> str | None:
    """The named volume that holds ``path`` inside the service's container, if any."""
    p = PurePosixPath(path)
    for target, name in _named_mounts(service).items():
        if p == PurePosixPath(target) or PurePosixPath(target) in p.parents:
            return name
    return None


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text("utf-8").splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    assert not pending, "the Dockerfile ends in a line continuation"
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def _last(instruction: str) -> str:
    found = [args for name, args in _dockerfile_instructions() if name == instruction]
    assert found, f"the Dockerfile has no {instruction}"
    return found[-1]


# ---- compose.yaml --------------------------------------------------------------------------------


def test_exactly_the_two_services(services: dict[str, Any]) -> None:
    assert set(services) == {"nats", "projector"}


def test_nats_is_the_official_alpine_image(services: dict[str, Any]) -> None:
    image = services["nats"]["image"]
    assert image.startswith("nats:")
    assert "alpine" in image.split(":", 1)[1], "the health check needs the alpine variant's shell and wget"


def test_nats_runs_jetstream_on_a_named_volume(compose: dict[str, Any], services: dict[str, Any]) -> None:
    nats = services["nats"]
    command = _command(nats)
    assert "-js" in command
    store_flags = [i for i, part in enumerate(command) if part in ("-sd", "--store_dir")]
    assert len(store_flags) == 1, "give the JetStream store directory exactly once"
    store_dir = command[store_flags[0] + 1]
    mounts = _named_mounts(nats)
    assert store_dir in mounts, f"the store dir {store_dir} must be the mount point of a named volume"
    assert mounts[store_dir] in (compose.get("volumes") or {})


def test_nats_writes_every_event_to_disk_before_acknowledging_it(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    nats = services["nats"]
    command = _command(nats)
    path = command[command.index("-c") + 1]
    [mount] = [c for c in nats["configs"] if c["target"] == path]
    assert compose["configs"][mount["source"]]["content"].strip() == "jetstream { sync_interval: always }"


def test_nats_monitoring_port_serves_the_health_check(services: dict[str, Any]) -> None:
    nats = services["nats"]
    command = _command(nats)
    assert "-m" in command
    assert command[command.index("-m") + 1] == "8222"
    health = nats["healthcheck"]
    test = health["test"]
    text = test if isinstance(test, str) else " ".join(test)
    assert "http://127.0.0.1:8222/healthz?js-enabled-only=true" in text
    assert "wget" in text
    assert {"interval", "timeout", "retries"} <= set(health)
    assert int(health["retries"]) >= 1


def test_nats_client_port_is_published(services: dict[str, Any]) -> None:
    ports = [str(port) for port in services["nats"]["ports"]]
    assert ports == [f"127.0.0.1:{NATS_CLIENT_PORT}:{NATS_CLIENT_PORT}"]


def test_both_services_restart_unless_stopped(services: dict[str, Any]) -> None:
    assert {name: service.get("restart") for name, service in services.items()} == {
        "nats": "unless-stopped",
        "projector": "unless-stopped",
    }


def test_projector_builds_from_the_repository_dockerfile(services: dict[str, Any]) -> None:
    build = services["projector"]["build"]
    context = build if isinstance(build, str) else build["context"]
    assert context == "."
    dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    assert (COMPOSE.parent / context / dockerfile).is_file()


def test_projector_runs_outreach_project(services: dict[str, Any]) -> None:
    assert _command(services["projector"]) == ["outreach", "project"]


def test_projector_reaches_nats_by_service_name(services: dict[str, Any]) -> None:
    url = urlsplit(_environment(services["projector"])["OUTREACH_NATS_URL"])
    assert (url.scheme, url.hostname, url.port) == ("nats", "nats", NATS_CLIENT_PORT)
    assert url.hostname in services


def test_projection_database_is_on_a_named_volume(compose: dict[str, Any], services: dict[str, Any]) -> None:
    projector = services["projector"]
    db = _environment(projector)["OUTREACH_DB"]
    assert db == "/data/outreach.duckdb"
    volume = _volume_for(projector, db)
    assert volume is not None, f"{db} would be lost with the container: put it on a named volume"
    assert volume in (compose.get("volumes") or {})
    assert volume != _volume_for(services["nats"], "/data"), "the projection and the stream need their own volumes"


def test_projector_waits_for_a_healthy_nats(services: dict[str, Any]) -> None:
    assert services["projector"]["depends_on"] == {"nats": {"condition": "service_healthy"}}
    assert "healthcheck" in services["nats"]


def test_every_named_volume_is_declared_and_used(compose: dict[str, Any], services: dict[str, Any]) -> None:
    used = {name for service in services.values() for name in _named_mounts(service).values()}
    declared = set(compose.get("volumes") or {})
    assert used == {"nats-data", "projection-data"}
    assert used == declared


# ---- Dockerfile and .dockerignore ----------------------------------------------------------------


def test_dockerfile_base_image_and_install() -> None:
    instructions = _dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    runs = [args for name, args in instructions if name == "RUN"]
    assert any("pip install --no-cache-dir ." in run for run in runs)


def test_dockerfile_runs_as_a_non_root_user_in_data() -> None:
    user = _last("USER")
    assert user.split(":", 1)[0] not in ("root", "0")
    assert _last("WORKDIR") == "/data"


def test_dockerfile_cmd_is_the_declared_console_script() -> None:
    cmd = json.loads(_last("CMD"))
    assert cmd == ["outreach", "project"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]["scripts"]
    assert scripts.get(cmd[0]) == "outreach.cli:main"
    assert cli._parser().parse_args(cmd[1:]).func is cli.cmd_project


def test_dockerignore_keeps_local_state_out_of_the_image() -> None:
    patterns = {line.strip() for line in DOCKERIGNORE.read_text("utf-8").splitlines()}
    patterns.discard("")
    assert {".git", ".venv", "venv", "**/*.duckdb", "**/__pycache__", ".pytest_cache", "test-artifacts"} <= patterns
    assert not patterns & {"pyproject.toml", "outreach", "schemas", "*"}, "the build needs the source"
