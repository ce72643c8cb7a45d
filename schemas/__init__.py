"""Event contracts shared by every part of Outreach Ledger. Imports nothing from the other packages."""

from schemas.errors import EventInvalid, FileInvalid, OutreachError, Problem
from schemas.events import (
    EVENT_TYPES,
    Audience,
    AudienceCount,
    CampaignDefined,
    EventBase,
    EventCorrected,
    EventRetracted,
    MaterialsDistributed,
    Occurred,
    PlanTaskDefined,
    SessionHeld,
    TeamEstablished,
)
from schemas.parse import parse_event

__all__ = [
    "EVENT_TYPES",
    "Audience",
    "AudienceCount",
    "CampaignDefined",
    "EventBase",
    "EventCorrected",
    "EventInvalid",
    "EventRetracted",
    "FileInvalid",
    "MaterialsDistributed",
    "Occurred",
    "OutreachError",
    "PlanTaskDefined",
    "Problem",
    "SessionHeld",
    "TeamEstablished",
    "parse_event",
]
