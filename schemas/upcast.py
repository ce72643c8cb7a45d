"""Old versions of event types, upcast to the current one. The only place that knows old shapes.

How to evolve an event type:

1. Keep the old shape readable: write a function ``<type>_v<N>_to_v<N+1>(obj) -> obj`` here that
   turns a decoded old payload into the next version, without inventing data.
2. Bump ``schema_version`` in the model (``schemas/events.py``) and here in ``CURRENT_VERSIONS``.
3. Keep a real old payload as a golden file under ``tests/golden/`` and test that it upcasts.

The log keeps the old payloads as they were published; upcasting happens every time they are read.

History:

- ``session_held`` v1 carried one audience group as flat fields: ``audience``, ``participants``
  (a number or null) and ``estimated``. v2 carries a list of groups and an optional reported total.
- ``session_held`` v3 adds ``sessions``: how many sessions the entry reports (an aggregate such as
  "2 meetings, 165 participants"). Every v2 entry was one session.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

CURRENT_VERSIONS: dict[str, int] = {
    "campaign_defined": 1,
    "plan_task_defined": 1,
    "session_held": 3,
    "materials_distributed": 1,
    "team_established": 1,
    "event_corrected": 1,
    "event_retracted": 1,
    "coordinator_appointed": 1,
    "report_submitted": 1,
    "actions_linked": 1,
}


def session_held_v1_to_v2(obj: dict[str, Any]) -> dict[str, Any]:
    if "audience" not in obj:
        return {**obj, "schema_version": 2}  # nothing to move; v2 validation judges what is there
    new = {k: v for k, v in obj.items() if k not in ("audience", "participants", "estimated")}
    new["schema_version"] = 2
    group = {"audience": obj["audience"], "count": obj.get("participants"), "estimated": obj.get("estimated", False)}
    new["participants"] = [group]
    return new


_NOT_GIVEN = object()


def session_held_v2_to_v3(obj: dict[str, Any]) -> dict[str, Any]:
    """A v2 entry is one session. ``sessions`` is no v2 field: one given is kept under a name v3
    refuses, so a v2 payload that was refused stays refused."""
    new = dict(obj)  # a copy in C, then one key out: half the time of a comprehension
    given = new.pop("sessions", _NOT_GIVEN)
    new["schema_version"] = 3
    new["sessions"] = 1
    if given is not _NOT_GIVEN:
        new["sessions_in_version_2"] = given
    return new


UPCASTERS: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {
    ("session_held", 1): session_held_v1_to_v2,
    ("session_held", 2): session_held_v2_to_v3,
}


def upcast(obj: dict[str, Any]) -> dict[str, Any]:
    """Bring a decoded event (and a correction's replacement) up to the current version."""
    kind = obj.get("event_type")
    while isinstance(kind, str) and type(version := obj.get("schema_version")) is int:
        step = UPCASTERS.get((kind, version))
        if step is None:
            break
        obj = step(obj)
    replacement = obj.get("replacement")
    if kind == "event_corrected" and isinstance(replacement, dict):
        obj = {**obj, "replacement": upcast(replacement)}
    return obj
