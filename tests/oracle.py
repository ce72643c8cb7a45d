"""An independent oracle: totals computed straight from the published event dicts.

It shares no code with the projector: it keeps the current version of each fact in a dict,
replaces it on a correction, drops it on a retraction, and adds up.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

ACTIONS = {"session_held", "materials_distributed", "team_established"}


def current_facts(events: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    facts: dict[str, dict[str, Any]] = {}
    for e in events:
        kind = e["event_type"]
        if kind == "event_corrected":
            facts[e["corrects"]] = e["replacement"]
        elif kind == "event_retracted":
            del facts[e["retracts"]]
        else:
            facts[e["event_id"]] = e
    return facts


def counted_facts(events: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The current facts without the actions a link in force (``actions_linked``, not retracted)
    takes out of the totals: every action it names but the one that counts."""
    events = list(events)
    facts = current_facts(events)
    for link in facts.copy().values():
        if link["event_type"] == "actions_linked":
            counts = link["counts"]["event_id"]
            for action in link["actions"]:
                if action["event_id"] != counts:
                    facts.pop(action["event_id"], None)
    return facts


def participants(e: dict[str, Any]) -> int:
    if e.get("reported_total") is not None:
        return e["reported_total"]
    return sum(p["count"] or 0 for p in e.get("participants", []))


def totals_by_county(events: Iterable[dict[str, Any]]) -> dict[str, tuple[int, int, int, int, int]]:
    """county -> (events, sessions, participants, materials_distributed, teams_established)."""
    acc: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    for e in counted_facts(events).values():
        if e["event_type"] not in ACTIONS:
            continue
        row = acc[e["county"]]
        row[0] += 1
        if e["event_type"] == "session_held":
            row[1] += e.get("sessions", 1)
            row[2] += participants(e)
        elif e["event_type"] == "materials_distributed":
            row[3] += e["quantity"] or 0
        else:
            row[4] += 1
    return {county: (r[0], r[1], r[2], r[3], r[4]) for county, r in acc.items()}


def totals_by_month(events: Iterable[dict[str, Any]]) -> dict[tuple[str, str], tuple[int, int, int, int, int]]:
    """(first day of the month an action started, county) -> the same totals as ``totals_by_county``."""
    by_month: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in current_facts(events).values():
        if e["event_type"] in ACTIONS:
            by_month[e["occurred"][:7] + "-01"].append(e)
    return {
        (month, county): row
        for month, facts in by_month.items()
        for county, row in totals_by_county(facts).items()  # facts only: nothing here corrects
    }
