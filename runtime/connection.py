"""Connecting to NATS with the configured credentials, with errors that never show a secret."""

from __future__ import annotations

import re
from typing import Any

import nats
from nats.aio.client import Client

from runtime.settings import Settings
from schemas.errors import BrokerError

INITIAL_ATTEMPTS = 3


def redact(url: str) -> str:
    """A URL with any ``user:password@`` or ``token@`` part hidden."""
    return re.sub(r"//[^@/]+@", "//***@", url)


def connect_options(settings: Settings, name: str) -> dict[str, Any]:
    """Keyword arguments for ``nats.connect``."""
    options: dict[str, Any] = {
        "servers": settings.nats_servers,
        "name": name,
        "connect_timeout": 5,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.5,
    }
    if settings.nats_user:
        options["user"] = settings.nats_user
    if settings.nats_password:
        options["password"] = settings.nats_password.get_secret_value()
    if settings.nats_token:
        options["token"] = settings.nats_token.get_secret_value()
    if settings.nats_creds:
        options["user_credentials"] = str(settings.nats_creds)
    if settings.nats_inbox_prefix:
        options["inbox_prefix"] = settings.nats_inbox_prefix
    return options


async def connect(settings: Settings, name: str, errors: list[BaseException] | None = None) -> Client:
    """Connect, or raise ``BrokerError`` saying where we tried and what to do. ``errors`` collects
    what the server reports later, asynchronously (a permissions violation, say)."""
    options = connect_options(settings, name)
    # nats-py applies max_reconnect_attempts to the first connection too: try a few times, then
    # report; once connected, reconnect for ever (a restarted server must not stop a projector).
    options["max_reconnect_attempts"] = INITIAL_ATTEMPTS
    seen: list[BaseException] = errors if errors is not None else []

    async def remember(exc: Exception) -> None:
        # nats-py reports connection errors here as well as raising them; we report them once.
        seen.append(exc)

    try:
        nc = await nats.connect(**options, allow_reconnect=True, error_cb=remember)
    except Exception as exc:  # nats-py raises several unrelated types here
        if any("authorization violation" in str(e).lower() for e in seen):
            raise BrokerError(
                f"NATS at {redact(settings.nats_url)} refused the credentials (authorization violation): "
                f"check the user and password (OUTREACH_NATS_USER, OUTREACH_NATS_PASSWORD) or token"
            ) from None
        raise BrokerError(
            f"cannot connect to NATS at {redact(settings.nats_url)}: {_describe(exc)}. "
            f"Is a server running there? `outreach server` starts one; `--nats URL` or OUTREACH_NATS_URL "
            f"points elsewhere."
        ) from None
    nc.options["max_reconnect_attempts"] = -1
    return nc


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return redact(text)
