"""Event dicts for tests: one session, by default 10 students in Korçë (AL-06) on 2024-05-01."""

from __future__ import annotations

import uuid
from typing import Any


def session(agency: str = "al-a", county: str = "AL-06", students: int = 10, **extra: Any) -> dict[str, Any]:
    event = {
        "event_id": str(uuid.uuid4()),
        "event_type": "session_held",
        "agency": agency,
        "recorded_at": "2025-01-01T00:00:00Z",
        "occurred": "2024-05-01",
        "county": county,
        "format": "workshop",
        "participants": [{"audience": "students", "count": students}],
    }
    event.update(extra)
    return event
