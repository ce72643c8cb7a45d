"""``outreach auth``: a nats-server configuration with one least-privilege user per role.

Every agency has a NATS account of its own; the stream lives in the ``LEDGER`` account (admin,
projector, auditor), and analysts share the ``ANALYSTS`` account. An account sees nothing of
another but what is exported to it and imported by it::

    agency-<slug>  ──imports──▶  outreach.events.<slug>.>                 (its events, into the stream)
                                 $JS.API.DIRECT.GET.<stream>.outreach.events.<slug>.>  (read back its own)
                                 outreach.status.<slug>                   (the fate of its own events)
    ANALYSTS       ──imports──▶  outreach.query.<stream>                  (read-only SQL)
                                 outreach.copy.<stream>                   (a copy of the projection)

Because the imports are services, every reply crosses back into the asker's account on a private
``_R_`` subject: a JetStream acknowledgement or a query's answer can never be published on a
subject of the stream's account, whatever reply subject the asker sets. The query service is
imported with ``share``: the server tells the projector which account and user asked
(``Nats-Request-Info``), and the projector shares its query slots fairly between users; an analyst
gets a user of their own with ``add_analyst``. Within its account:

- an agency publishes only its own events, reads back only its own subjects, asks only for its
  own receipts, and receives only on its inbox; it cannot read the stream or touch it;
- the auditor and the projector read the stream (stream info, message get, their own consumers and
  flow control) and cannot publish events, delete messages or change the stream; the projector
  answers only on ``_R_`` reply subjects (replies to imported services);
- the analyst may only ask a running projector for read-only query results, and for a copy of its
  projection (written beside it, for reading commands that need more than its snapshot); the
  auditor may ask for that copy too, and the projector answers its inbox;
- the admin can do anything, and alone creates or changes the stream;
- no agency may publish ``coordinator_appointed`` (the admin publishes it, as agency ``admin``), and
  only an agency made a coordinator (``add-agency NAME --coordinates PL``) may publish
  ``report_submitted``: denied by subject. Which country a submission is of, and whose actions a
  link names, the projector checks (consumers/coordination.py): the broker sees no payload.

Passwords are generated, never typed; the server configuration holds only their bcrypt hashes.
Each user's credentials are written to ``credentials/<user>.env`` (mode 0600) as ``OUTREACH_*``
variables that every command reads. ``users.json`` keeps the hashes and roles so that agencies
can be added and revoked later without touching the others' passwords.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bcrypt

from schemas.errors import SettingsInvalid
from schemas.events import ADMIN_AGENCY
from schemas.subjects import PREFIX, agency_subjects, copy_subject, query_subject, status_subject

SLUG = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
ROLES = ("admin", "projector", "auditor", "analyst")
LEDGER = "LEDGER"  # the stream's account: admin, projector, auditor
ANALYSTS = "ANALYSTS"
CONFIG = "nats-server.conf"
STATE = "users.json"
APPOINTMENTS = uuid.UUID("6f1d9a52-3c1e-4d7b-9e0a-2f4b8c6d1e01")  # the namespace of appointments' event_ids


@dataclass(frozen=True)
class User:
    name: str
    role: str  # admin, projector, auditor or agency
    password_hash: str
    coordinates: tuple[str, ...] = ()  # an agency's: the countries it coordinates (`add-agency --coordinates`)

    @property
    def inbox_prefix(self) -> str:
        return f"_INBOX_{self.name}"

    @property
    def account(self) -> str:
        if self.role == "agency":
            return f"agency-{self.name}"
        return ANALYSTS if self.role == "analyst" else LEDGER


def direct_get_subjects(agency: str, stream: str) -> str:
    """The direct gets an agency may make: the last message on each of its own subjects."""
    return f"$JS.API.DIRECT.GET.{stream}.{agency_subjects(agency)}"


def permissions(user: User, stream: str, auditors: tuple[str, ...] = ()) -> dict[str, Any]:
    """The publish/subscribe permissions of one user; ``auditors``: the auditors' inbox prefixes, which
    the projector answers (an auditor's verify asks it for a copy from within the stream's account)."""
    inbox = f"{user.inbox_prefix}.>"
    if user.role == "admin":
        return {"publish": {"allow": [">"]}, "subscribe": {"allow": [">"]}}
    if user.role == "agency":
        own = [agency_subjects(user.name), direct_get_subjects(user.name, stream), status_subject(user.name)]
        return {"publish": {"allow": own, "deny": denied_types(user)}, "subscribe": {"allow": [inbox]}}
    if user.role == "analyst":
        return {"publish": {"allow": [query_subject(stream), copy_subject(stream)]}, "subscribe": {"allow": [inbox]}}
    readers = [
        "$JS.API.INFO",
        f"$JS.API.STREAM.INFO.{stream}",
        f"$JS.API.STREAM.MSG.GET.{stream}",
        f"$JS.API.DIRECT.GET.{stream}",
        f"$JS.API.CONSUMER.CREATE.{stream}",
        f"$JS.API.CONSUMER.CREATE.{stream}.>",
        f"$JS.API.CONSUMER.INFO.{stream}.>",
        f"$JS.API.CONSUMER.DELETE.{stream}.>",
        f"$JS.API.CONSUMER.MSG.NEXT.{stream}.>",
        f"$JS.FC.{stream}.>",
        f"$JS.ACK.{stream}.>",
    ]
    if user.role == "projector":
        # It answers analysts' queries and agencies' status requests, which arrive through the
        # accounts' service imports: replies go to _R_ subjects, and nowhere else.
        return {
            "publish": {"allow": [*readers, "_R_.>", *(f"{inbox}.>" for inbox in auditors)]},
            "subscribe": {"allow": [inbox, query_subject(stream), copy_subject(stream), status_subject("*")]},
        }
    # An auditor: its verify beside a running projector reads the copy the projector writes.
    return {"publish": {"allow": [*readers, copy_subject(stream)]}, "subscribe": {"allow": [inbox]}}


def denied_types(user: User) -> list[str]:
    """The event types an agency may not publish, by subject: appointments (the admin's alone) and,
    unless it coordinates a country, submissions. The broker sees subjects, not payloads: which
    country a submission is of, and whose actions a link names, the projector checks."""
    types = ["coordinator_appointed"] + ([] if user.coordinates else ["report_submitted"])
    return [f"{PREFIX}.{user.name}.{kind}{tail}" for kind in types for tail in ("", ".>")]


def appointment(agency: str, country: str, recorded_at: str | None = None) -> dict[str, Any]:
    """The ``coordinator_appointed`` event the admin publishes for ``agency`` and ``country``: its
    event_id is made from both, and ``recorded_at`` is the time ``add_agency`` recorded (now when
    not given), so publishing it again is the same event and stores nothing new."""
    event_id = uuid.uuid5(APPOINTMENTS, f"{country}/{agency}")
    return {
        "event_id": str(event_id),
        "event_type": "coordinator_appointed",
        "agency": ADMIN_AGENCY,
        "recorded_at": recorded_at or datetime.now(UTC).isoformat(timespec="seconds"),
        "coordinator": agency,
        "country": country,
        "reason": f"outreach auth add-agency {agency} --coordinates {country}",
    }


def appointments(directory: Path, agency: str) -> list[dict[str, Any]]:
    """The appointments of ``agency`` that ``add_agency`` recorded, as events to publish."""
    state, users = _load(directory)
    user = next((u for u in users if u.name == agency), None)
    when = state.get("appointed_at", {})
    return [appointment(agency, c, when.get(f"{c}/{agency}")) for c in (user.coordinates if user else ())]


def _hash(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10)).decode()


def _write_secret(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def _credentials(directory: Path, user: User, password: str, nats_url: str) -> Path:
    path = directory / "credentials" / f"{user.name}.env"
    agency = f"OUTREACH_AGENCY={user.name}\n" if user.role == "agency" else ""
    _write_secret(
        path,
        f"OUTREACH_NATS_URL={nats_url}\nOUTREACH_NATS_USER={user.name}\n"
        f"OUTREACH_NATS_PASSWORD={password}\nOUTREACH_NATS_INBOX_PREFIX={user.inbox_prefix}\n{agency}",
    )
    return path


def _load(directory: Path) -> tuple[dict[str, Any], list[User]]:
    path = directory / STATE
    try:
        state = json.loads(path.read_text())
    except OSError:
        raise SettingsInvalid(f"no {STATE} in {directory}; run `outreach auth init` first") from None
    return state, [User(**{**u, "coordinates": tuple(u.get("coordinates", ()))}) for u in state["users"]]


def _save(directory: Path, state: dict[str, Any], users: list[User]) -> Path:
    state["users"] = [{**u.__dict__, "coordinates": list(u.coordinates)} for u in users]
    _write_secret(directory / STATE, json.dumps(state, indent=1) + "\n")
    config = directory / CONFIG
    config.write_text(render(users, state["stream"]))
    return config


def render(users: list[User], stream: str) -> str:
    """The nats-server configuration: an account per agency, no anonymous access, hashes only."""
    agencies = [u for u in users if u.role == "agency"]
    exports: list[dict[str, Any]] = [
        {"service": query_subject(stream), "accounts": [ANALYSTS]},
        {"service": copy_subject(stream), "accounts": [ANALYSTS]},
    ]
    for agency in agencies:
        only = [agency.account]
        exports += [
            {"service": agency_subjects(agency.name), "accounts": only},
            {"service": direct_get_subjects(agency.name, stream), "accounts": only},
            {"service": status_subject(agency.name), "accounts": only},
        ]
    accounts = {
        LEDGER: {"jetstream": "enabled", "users": _entries(users, LEDGER, stream), "exports": exports},
        ANALYSTS: {
            "users": _entries(users, ANALYSTS, stream),
            # share: the server tells the projector which account and user asked (Nats-Request-Info),
            # and queries are shared fairly between users by it.
            "imports": [
                {"service": {"account": LEDGER, "subject": query_subject(stream)}, "share": True},
                {"service": {"account": LEDGER, "subject": copy_subject(stream)}},
            ],
        },
    }
    for agency in agencies:
        imports = [
            agency_subjects(agency.name),
            direct_get_subjects(agency.name, stream),
            status_subject(agency.name),
        ]
        accounts[agency.account] = {
            "users": _entries(users, agency.account, stream),
            "imports": [{"service": {"account": LEDGER, "subject": subject}} for subject in imports],
        }
    body = ",\n".join(f"  {json.dumps(name)}: {json.dumps(account)}" for name, account in accounts.items())
    return (
        "# Generated by `outreach auth`; edit users with `outreach auth add-agency|revoke`, then reload\n"
        "# the server (nats-server --signal reload, or restart it). No anonymous connections.\n"
        "# Each agency has an account of its own; see outreach/auth.py for what crosses between them.\n"
        "accounts {\n" + body + "\n}\n"
        "# Every write on disk before it is acknowledged: a killed server loses no event.\n"
        "jetstream { sync_interval: always }\n"
    )


def _entries(users: list[User], account: str, stream: str) -> list[dict[str, Any]]:
    auditors = tuple(u.inbox_prefix for u in users if u.role == "auditor")
    return [
        {"user": u.name, "password": u.password_hash, "permissions": permissions(u, stream, auditors)}
        for u in users
        if u.account == account
    ]


def init(
    directory: Path, agencies: list[str], stream: str = "OUTREACH", nats_url: str = "nats://127.0.0.1:4222"
) -> Path:
    """Generate users for the three roles and each agency; return the server configuration's path."""
    if (directory / STATE).exists():
        raise SettingsInvalid(f"{directory / STATE} exists; use `outreach auth add-agency` or `revoke`")
    for name in agencies:
        _check_agency(name)
    if len(set(agencies)) != len(agencies):
        raise SettingsInvalid("an agency is listed twice")
    users = []
    for name, role in [*((r, r) for r in ROLES), *((a, "agency") for a in agencies)]:
        password = secrets.token_urlsafe(24)
        user = User(name, role, _hash(password))
        _credentials(directory, user, password, nats_url)
        users.append(user)
    return _save(directory, {"stream": stream, "nats_url": nats_url}, users)


def add_agency(directory: Path, name: str, coordinates: tuple[str, ...] = ()) -> Path:
    """Add one agency with a new password; the others keep theirs. ``coordinates``: the countries
    it coordinates (an agency that has a user already is made a coordinator of them, and keeps its
    password). The appointment itself is an event the admin publishes (``appointment``)."""
    _check_agency(name)
    for country in coordinates:
        if not re.fullmatch(r"[A-Z]{2}", country):
            raise SettingsInvalid(f"--coordinates {country!r}: give a country code such as PL or AL")
    state, users = _load(directory)
    recorded = state.setdefault("appointed_at", {})
    for country in coordinates:
        recorded.setdefault(f"{country}/{name}", datetime.now(UTC).isoformat(timespec="seconds"))
    existing = next((u for u in users if u.name == name), None)
    if existing is not None:
        if not coordinates or existing.role != "agency":
            raise SettingsInvalid(f"{name} already has a user")
        merged = tuple(sorted({*existing.coordinates, *coordinates}))
        return _save(directory, state, [replace(u, coordinates=merged) if u is existing else u for u in users])
    password = secrets.token_urlsafe(24)
    user = User(name, "agency", _hash(password), tuple(sorted(set(coordinates))))
    _credentials(directory, user, password, state["nats_url"])
    return _save(directory, state, [*users, user])


def add_analyst(directory: Path, name: str) -> Path:
    """Add one analyst of their own, with a new password: the projector shares its query slots
    fairly between users, so analysts who share one user share one user's share."""
    _check_agency(name)
    state, users = _load(directory)
    if any(u.name == name for u in users):
        raise SettingsInvalid(f"{name} already has a user")
    password = secrets.token_urlsafe(24)
    user = User(name, "analyst", _hash(password))
    _credentials(directory, user, password, state["nats_url"])
    return _save(directory, state, [*users, user])


def revoke(directory: Path, name: str) -> Path:
    """Remove an agency's user, or an analyst added with ``add_analyst`` (an agency's events stay in
    the log, as every event does)."""
    state, users = _load(directory)
    kept = [u for u in users if not (u.name == name and u.role in ("agency", "analyst") and name not in ROLES)]
    if len(kept) == len(users):
        raise SettingsInvalid(f"no agency or added analyst user named {name}")
    (directory / "credentials" / f"{name}.env").unlink(missing_ok=True)
    return _save(directory, state, kept)


def _check_agency(name: str) -> None:
    if not SLUG.match(name) or len(name) > 64:
        raise SettingsInvalid(f"agency {name!r} is not a slug (lower-case letters, digits and single hyphens)")
    if name in ROLES:  # "admin" among them: the slug the admin publishes appointments as
        raise SettingsInvalid(f"{name!r} is a role, not an agency")
