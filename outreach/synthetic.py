"""Realistic synthetic events, for the benchmark and the tests: many agencies, campaigns, counties and
plan tasks, with corrections and retractions. Deterministic for a given seed.

Events are produced as plain dicts (and their JSON), not models: generating a million of them must
not cost more than publishing them.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from schemas.events import Audience, InstitutionType, MaterialKind, SessionFormat
from schemas.reference import regions
from schemas.subjects import subject_for

RECORDED_FROM = datetime(2024, 1, 1, tzinfo=UTC)
OCCURRED_FROM = date(2016, 1, 1)
OCCURRED_DAYS = 3000


@dataclass(frozen=True)
class Synthetic:
    """One generated event: its subject, JSON payload and the decoded dict."""

    subject: str
    payload: bytes
    event: dict[str, Any]

    @property
    def event_id(self) -> str:
        return str(self.event["event_id"])


def generate(
    n: int, *, seed: int = 7, agencies_per_county: int = 2, campaigns: int = 20, plan_tasks: int = 12
) -> Iterator[Synthetic]:
    """Yield ``n`` events: definitions first, then actions with about 7% corrections and 3% retractions."""
    rng = random.Random(seed)
    uuids = random.Random(seed + 1)
    reg = regions()
    counties = sorted(reg.counties)
    munis_by_county: dict[str, list[str]] = {}
    for m in reg.municipalities.values():
        munis_by_county.setdefault(m.county, []).append(m.code)
    agencies = {c: [f"{c.lower()}-agency-{i}" for i in range(agencies_per_county)] for c in counties}
    campaign_ids = [f"campaign-{i:02d}" for i in range(campaigns)]
    task_refs = [
        f"plan-{2013 + i // 4}-{2015 + i // 4}/{['I', 'II', 'III', 'IV'][i % 4]}/{1 + i % 5}" for i in range(plan_tasks)
    ]
    # Facts each agency may still correct or retract: agency -> list of (event_id, event dict).
    open_facts: dict[str, list[dict[str, Any]]] = {}
    count = 0

    def new_id() -> str:
        return str(uuid.UUID(int=uuids.getrandbits(128), version=4))

    def envelope(kind: str, agency: str) -> dict[str, Any]:
        recorded = RECORDED_FROM + timedelta(seconds=count)
        version = 2 if kind == "session_held" else 1
        return {
            "event_id": new_id(),
            "event_type": kind,
            "schema_version": version,
            "agency": agency,
            "recorded_at": recorded.isoformat().replace("+00:00", "Z"),
        }

    def emit(event: dict[str, Any]) -> Synthetic:
        nonlocal count
        count += 1
        payload = json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()
        return Synthetic(subject_for(event["agency"], event["event_type"], event["event_id"]), payload, event)

    for i, campaign_id in enumerate(campaign_ids):
        if count >= n:
            return
        county = counties[i % len(counties)]
        agency = agencies[county][0]
        event = envelope("campaign_defined", agency)
        event.update(
            campaign_id=campaign_id,
            name=f"Campaign {i}",
            country=county[:2],
            lead_agency=agency,
            target_counties=[c for c in counties if c[:2] == county[:2]][:3],
        )
        yield emit(event)
    for ref in task_refs:
        if count >= n:
            return
        plan_id, part, task = ref.split("/")
        event = envelope("plan_task_defined", "pl-national-coordinator")
        years = plan_id.split("-")
        event.update(
            plan_id=plan_id,
            plan_title=f"National action plan {years[1]}-{years[2]}",
            country="PL",
            first_year=int(years[1]),
            last_year=int(years[2]),
            part=part,
            task=task,
            title=f"Task {task} of part {part}",
        )
        yield emit(event)

    while count < n:
        roll = rng.random()
        county = rng.choice(counties)
        agency = rng.choice(agencies[county])
        candidates = open_facts.get(agency)
        if roll < 0.07 and candidates:
            index = rng.randrange(len(candidates))
            original = candidates[index]
            event = envelope("event_corrected", agency)
            replacement = _action(rng, original["event_type"], dict(original), munis_by_county, campaign_ids, task_refs)
            event.update(corrects=original["event_id"], replacement=replacement, reason="figures revised")
            candidates[index] = replacement
            yield emit(event)
        elif roll < 0.10 and candidates:
            original = candidates.pop(rng.randrange(len(candidates)))
            event = envelope("event_retracted", agency)
            event.update(retracts=original["event_id"], reason="reported twice")
            yield emit(event)
        else:
            kind = "session_held" if roll < 0.75 else "materials_distributed" if roll < 0.97 else "team_established"
            event = envelope(kind, agency)
            event["county"] = county
            event = _action(rng, kind, event, munis_by_county, campaign_ids, task_refs)
            open_facts.setdefault(agency, []).append(event)
            yield emit(event)


def _action(
    rng: random.Random,
    kind: str,
    event: dict[str, Any],
    munis_by_county: dict[str, list[str]],
    campaign_ids: list[str],
    task_refs: list[str],
) -> dict[str, Any]:
    """Fill (or refill, for a correction) the fields of an outreach action."""
    county = event["county"]
    start = OCCURRED_FROM + timedelta(days=rng.randrange(OCCURRED_DAYS))
    event["occurred"] = start.isoformat() if rng.random() < 0.8 else f"{start}/{start + timedelta(days=1)}"
    munis = munis_by_county.get(county)
    if munis and rng.random() < 0.5:
        event["municipality"] = rng.choice(munis)
    else:
        event.pop("municipality", None)
    event["campaign_id"] = rng.choice(campaign_ids) if rng.random() < 0.7 else None
    event["plan_tasks"] = [rng.choice(task_refs)] if rng.random() < 0.3 else []
    if kind == "session_held":
        groups = rng.sample(list(Audience), rng.randint(1, 3))
        event["format"] = rng.choice(list(SessionFormat)).value
        event["participants"] = [
            {"audience": g.value, "count": None if rng.random() < 0.05 else rng.randint(3, 60), "estimated": False}
            for g in groups
        ]
        event["reported_total"] = None
    elif kind == "materials_distributed":
        event["kind"] = rng.choice(list(MaterialKind)).value
        event["quantity"] = rng.choice([100, 250, 500, 1000, 2000, 4000])
    else:
        event["team_name"] = f"Team {rng.randrange(10_000)}"
        event["member_institutions"] = [t.value for t in rng.sample(list(InstitutionType), 3)]
    return event
