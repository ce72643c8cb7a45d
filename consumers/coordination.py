"""The fold's rules for coordination events: who may appoint, submit and link, checked against the
log alone (the appointments and links it holds), never the server's configuration. Pure: no I/O.

- ``coordinator_appointed``: only the admin (agency ``admin``, a slug no agency may take).
- ``report_submitted``: only a coordinator of its country in force at that point of the log, as of
  a stream sequence before its own.
- ``actions_linked``: every action it names exists, is not retracted, is an outreach action, is in
  one country and is in no other link in force; an agency may link its own actions out of the
  totals (naming any agency's as the one that counts); a coordinator of the country may link any.
- ``event_retracted`` of a link or an appointment undoes it (the existing rule: only its publisher).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from projections.rows import KnownEvent
from schemas.events import ADMIN_AGENCY, ActionsLinked, CoordinatorAppointed, EventBase, ReportSubmitted

EventKey = tuple[str, uuid.UUID]
COORDINATION_TYPES = ("coordinator_appointed", "report_submitted", "actions_linked")
ACTION_TYPES = ("session_held", "materials_distributed", "team_established")


@dataclass(frozen=True, slots=True)
class Coordination:
    """What the log says, up to a point, of appointments and links (and the countries of the
    actions a batch's links name). Never changed: the fold, as it accepts a batch's events, goes on
    with the value ``accepted`` or ``retracted`` returns, and the mappings are read, never written."""

    appointments: Mapping[EventKey, tuple[str, str]] = field(default_factory=dict)  # appointment -> (country, agency)
    links: Mapping[EventKey, tuple[EventKey, ...]] = field(default_factory=dict)  # link in force -> its actions
    countries: Mapping[EventKey, str] = field(default_factory=dict)  # action -> its country, as it stands

    def coordinates(self, agency: str, country: str) -> bool:
        return (country, agency) in self.appointments.values()

    def link_of(self, action: EventKey) -> EventKey | None:
        for link, members in self.links.items():
            if action in members:
                return link
        return None


def members(event: ActionsLinked) -> tuple[EventKey, ...]:
    return tuple((a.agency, a.event_id) for a in event.actions)


def check(
    event: EventBase,
    seq: int,
    known: dict[EventKey, KnownEvent],
    batch_countries: dict[EventKey, str | None],
    coordination: Coordination,
) -> str | None:
    """Why the coordination event ``event`` (stored at ``seq``) is refused, or None."""
    if type(event) is CoordinatorAppointed:
        if event.agency != ADMIN_AGENCY:  # the model says so too; the rule has one home here
            return f"only the admin appoints coordinators; {event.agency!r} is not the admin"
        if coordination.coordinates(event.coordinator, event.country):
            return f"{event.coordinator} is already a coordinator of {event.country}"
        return None
    if type(event) is ReportSubmitted:
        if not coordination.coordinates(event.agency, event.country):
            return (
                f"agency {event.agency!r} is not a coordinator of {event.country}: only an agency the admin appointed "
                f"(coordinator_appointed; `outreach auth add-agency NAME --coordinates {event.country}`) submits "
                f"its figures"
            )
        if event.as_of_seq >= seq:
            return f"as_of_seq {event.as_of_seq} is not before the submission's own stream sequence {seq}"
        return None
    if type(event) is ActionsLinked:
        return _check_link(event, known, batch_countries, coordination)
    return None


def _check_link(
    event: ActionsLinked,
    known: dict[EventKey, KnownEvent],
    batch_countries: dict[EventKey, str | None],
    coordination: Coordination,
) -> str | None:
    countries = set()
    for key in members(event):
        name = f"{key[0]}/{key[1]}"
        found = known.get(key)
        if found is None:
            return f"unknown action: {name} is not in the log; link only actions that were published"
        if found.retracted is None or found.event_type not in ACTION_TYPES:
            return f"{name} is a {found.event_type}, not an outreach action; only actions are linked"
        if found.retracted:
            return f"{name} was retracted; a retracted action counts nowhere and needs no link"
        country = batch_countries.get(key) if key in batch_countries else coordination.countries.get(key)
        countries.add(country)
        link = coordination.link_of(key)
        if link is not None:
            return (
                f"{name} is already linked, by {link[0]}'s actions_linked {link[1]}; retract that link first "
                f"to link it otherwise"
            )
    if len(countries) != 1 or None in countries:
        named = ", ".join(sorted(str(c) for c in countries))
        return f"the actions are in more than one country ({named}); link actions of one country"
    (country,) = countries
    if coordination.coordinates(event.agency, country):
        return None
    counted = (event.counts.agency, event.counts.event_id)
    for key in members(event):
        if key != counted and key[0] != event.agency:
            return (
                f"links {key[0]}'s action {key[1]} out of the totals: only a coordinator of {country} links other "
                f"agencies' actions; an agency links its own action to another's, naming the other's as the one "
                f"that counts"
            )
    return None


def accepted(event: EventBase, key: EventKey, coordination: Coordination) -> Coordination:
    """The coordination after the coordination event ``event`` (identity ``key``) was accepted."""
    if type(event) is CoordinatorAppointed:
        appointment = (event.country, event.coordinator)
        return replace(coordination, appointments={**coordination.appointments, key: appointment})
    if type(event) is ActionsLinked:
        return replace(coordination, links={**coordination.links, key: members(event)})
    return coordination


def retracted(target: EventKey, coordination: Coordination) -> Coordination:
    """The coordination after ``target`` was retracted: an appointment or a link it was ends. The
    same value when it was neither (most retractions)."""
    if target in coordination.appointments:
        appointments = {k: v for k, v in coordination.appointments.items() if k != target}
        coordination = replace(coordination, appointments=appointments)
    if target in coordination.links:
        coordination = replace(coordination, links={k: v for k, v in coordination.links.items() if k != target})
    return coordination
