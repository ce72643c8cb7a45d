"""The subject scheme: ``outreach.events.<agency>.<event_type>``.

The agency token is the publishing agency's slug; NATS permissions can then allow each agency to
publish only below ``outreach.events.<its slug>.>``, and the projector checks that the envelope's
``agency`` matches the subject it arrived on.
"""

from __future__ import annotations

PREFIX = "outreach.events"
ALL_EVENTS = f"{PREFIX}.>"


def subject_for(agency: str, event_type: str) -> str:
    """The subject an agency publishes an event of this type on."""
    return f"{PREFIX}.{agency}.{event_type}"


def agency_subjects(agency: str) -> str:
    """Every subject one agency may publish on (for permissions)."""
    return f"{PREFIX}.{agency}.>"


def query_subject(stream: str) -> str:
    """Where a running projector answers analysts' read-only queries (request-reply)."""
    return f"outreach.query.{stream}"


def parse_subject(subject: str) -> tuple[str, str] | None:
    """``(agency, event_type)`` from a subject, or None when it does not follow the scheme."""
    parts = subject.split(".")
    if len(parts) != 4 or f"{parts[0]}.{parts[1]}" != PREFIX:
        return None
    return parts[2], parts[3]
