"""The subject scheme: ``outreach.events.<agency>.<event_type>.<event_id>``.

The agency token is the publishing agency's slug; the broker lets each agency publish only below
``outreach.events.<its slug>.>``, and the projector checks that the envelope's ``agency``,
``event_type`` and ``event_id`` match the subject the event arrived on. One subject per event is
what scopes an event's identity by agency at the broker: an agency publishes with
``Nats-Expected-Last-Subject-Sequence: 0`` checked on ``outreach.events.<agency>.*.<event_id>``, so
the stream stores an event_id once per agency, whatever its type, for ever, and no other agency can
take that subject. The older form without the event_id
(``outreach.events.<agency>.<event_type>``) is still read.
"""

from __future__ import annotations

PREFIX = "outreach.events"
ALL_EVENTS = f"{PREFIX}.>"


def subject_for(agency: str, event_type: str, event_id: object) -> str:
    """The subject an agency publishes one event on."""
    return f"{PREFIX}.{agency}.{event_type}.{event_id}"


def event_id_subjects(agency: str, event_id: object) -> str:
    """Every subject one agency's event_id may be on, whatever its type: what the stream checks
    before storing an event (no event_id is used twice by an agency), and what is read back."""
    return f"{PREFIX}.{agency}.*.{event_id}"


def agency_subjects(agency: str) -> str:
    """Every subject one agency may publish on (for permissions)."""
    return f"{PREFIX}.{agency}.>"


def query_subject(stream: str) -> str:
    """Where a running projector answers analysts' read-only queries (request-reply)."""
    return f"outreach.query.{stream}"


def copy_subject(stream: str) -> str:
    """Where a running projector writes, on request, a whole copy of its projection beside it, for
    reading commands that need more than its snapshot (request-reply: the answer names the file)."""
    return f"outreach.copy.{stream}"


def status_subject(agency: str) -> str:
    """Where an agency asks a running projector for the fate of its own events (request-reply)."""
    return f"outreach.status.{agency}"


def parse_subject(subject: str) -> tuple[str, str, str | None] | None:
    """``(agency, event_type, event_id or None)`` from a subject, or None when it does not follow
    the scheme."""
    parts = subject.split(".")
    if len(parts) not in (4, 5) or f"{parts[0]}.{parts[1]}" != PREFIX:
        return None
    return parts[2], parts[3], parts[4] if len(parts) == 5 else None
