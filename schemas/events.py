"""Event contracts: what an agency may say happened.

Every event is one JSON object: the envelope fields (``EventBase``) and the fields of its type,
told apart by ``event_type``. Events are frozen and reject unknown fields. Outreach actions
(``session_held``, ``materials_distributed``, ``team_established``) must say where (``county``)
and when (``occurred``); definitions (``campaign_defined``, ``plan_task_defined``) may omit both.
A correction carries the full replacement of an earlier event; a retraction withdraws one. Neither
changes the log: the original stays in the stream forever.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from schemas.reference import check_county, check_municipality, regions

# A recorded time may run this far ahead of "now" before we call it "in the future".
CLOCK_SKEW = timedelta(minutes=5)
# An occurred date may be "tomorrow" in UTC for an agency east of Greenwich.
DATE_SKEW = timedelta(days=1)
MAX_COUNT = 10_000_000


def exact_int(value: Any) -> Any:
    """A JSON integer, nothing else: ``"5"``, ``5.0`` and ``true`` are refused, so that what the fold
    counts is exactly what any JSON reader (DuckDB's included) reads from the stored payload. Files
    whose cells are text (CSV) convert them explicitly before validation."""
    if isinstance(value, bool):
        raise ValueError("must be a whole number, not true/false")
    if isinstance(value, float):
        raise ValueError("must be a whole number such as 12, not a decimal number")
    if isinstance(value, str):
        raise ValueError("must be a whole number such as 12, written without quotes")
    if not isinstance(value, int):
        raise ValueError("must be a whole number such as 12")
    return value


def wall_clock() -> datetime:
    """This machine's time: what a producer checks its own events against."""
    return datetime.now(UTC)


def judged_at(info: ValidationInfo) -> tuple[datetime, bool]:
    """The moment "the future" is judged against, and whether it is the stream's storage time.

    The projector validates with ``context={"stored_at": …}``: the time the stream stored the
    message, so the same log folds to the same rows in any year. Producers validate without it, on
    their own clock, before anything is sent."""
    stored_at = info.context.get("stored_at") if isinstance(info.context, dict) else None
    return (stored_at, True) if stored_at is not None else (wall_clock(), False)


def _date_text(value: Any) -> Any:
    """Dates and times are text on the wire: a number would otherwise be read as seconds since 1970."""
    if isinstance(value, str | date):  # a datetime is a date too
        return value
    raise ValueError('must be a date written as text, e.g. "2024-03-05" (a time: "2024-03-05T10:00:00Z")')


Day = Annotated[date, BeforeValidator(_date_text)]
Moment = Annotated[AwareDatetime, BeforeValidator(_date_text)]

# Whole numbers and flags are strict on the wire: JSON integers and JSON true/false only. pydantic-core
# refuses "5", 5.0 and true itself (``int_type``); ``plain_message`` words it as ``exact_int`` does.
WholeNumber = Annotated[int, Strict()]
Count = Annotated[WholeNumber, Field(ge=0, le=MAX_COUNT)]
Flag = Annotated[bool, Strict()]
MAX_SESSIONS = 10_000  # sessions one entry may report
V1 = Annotated[Literal[1], BeforeValidator(exact_int)]
V2 = Annotated[Literal[2], BeforeValidator(exact_int)]
V3 = Annotated[Literal[3], BeforeValidator(exact_int)]
SLUG_PATTERN = r"^[a-z0-9]+(-[a-z0-9]+)*$"
Slug = Annotated[str, StringConstraints(pattern=SLUG_PATTERN, max_length=64)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
CountyCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}-[0-9A-Z]{1,3}$")]
CountryCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
# A national-action-plan task: "<plan id>/<part>/<task>", e.g. "pl-nap-2013-2015/III/4".
# A row's reference in an agency's workbook or CSV, e.g. "KOR-2025-014": letters, digits and . _ / -.
REFERENCE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$"
Reference = Annotated[str, StringConstraints(pattern=REFERENCE_PATTERN)]
PlanTaskRef = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*/[IVXLC0-9]{1,6}/[0-9][0-9.a-z]{0,9}$")]


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=False)


class Occurred(Frozen):
    """When something happened: one day (``start``), or a range of days (``start`` to ``end``).

    JSON accepts ``"2017-12-21"`` as a short form of ``{"start": "2017-12-21"}``, and the ISO 8601
    interval ``"2017-12-20/2017-12-21"`` for ``{"start": "2017-12-20", "end": "2017-12-21"}``.
    """

    start: Day
    end: Day | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        if isinstance(value, str):
            start, slash, end = value.partition("/")
            if slash and not end:
                raise ValueError(f"range {value!r} has no end; write one date, or start/end")
            return {"start": start, "end": end} if slash else {"start": start}
        if not isinstance(value, dict | BaseModel):
            raise ValueError(
                'must be a date written as text, such as "2025-03-05", or a range, "2025-03-01/2025-03-15"'
            )
        return value

    @model_validator(mode="after")
    def _ordered(self) -> Occurred:
        if self.end is not None and self.end < self.start:
            raise ValueError(f"range ends ({self.end}) before it starts ({self.start})")
        return self

    @property
    def last_day(self) -> date:
        return self.end or self.start


class EventBase(Frozen):
    """The envelope every event carries."""

    event_id: uuid.UUID = Field(description="Chosen by the publisher, reused on every retry.")
    event_type: str
    schema_version: int
    agency: Slug = Field(description="The publishing agency, e.g. 'al-national-coordinator'.")
    recorded_at: Moment = Field(description="When the agency recorded the event.")
    occurred: Occurred | None = Field(None, description="When it happened: a date or a range.")
    county: CountyCode | None = Field(None, description="ISO 3166-2 code, e.g. 'AL-06'.")
    municipality: ShortText | None = Field(None, description="A name, or a code like 'AL-06-maliq'.")
    venue: ShortText | None = None
    campaign_id: Slug | None = None
    plan_tasks: tuple[PlanTaskRef, ...] = ()
    partners: tuple[Slug, ...] = Field((), description="Co-organising agencies.")
    source: Text | None = Field(None, description="Provenance: a citation, a URL, a note.")
    reference: Reference | None = Field(
        None,
        description="The agency's own code for the row this event came from (e.g. 'KOR-2025-014'): "
        "a file's rows with a reference get their event_id from (agency, reference), and a correction "
        "or retraction made from a row carries it too. 1 to 64 letters, digits, '.', '_', '/' or '-'.",
    )

    @field_validator("recorded_at")
    @classmethod
    def _not_future_recorded(cls, value: datetime, info: ValidationInfo) -> datetime:
        now, stored = judged_at(info)
        if value > now + CLOCK_SKEW:
            if stored:
                raise ValueError(
                    f"is later than when the stream stored the event ({now.isoformat()}), beyond the "
                    f"{CLOCK_SKEW.seconds // 60} minutes' clock skew allowed: the agency's clock is ahead"
                )
            raise ValueError("is in the future")
        return value

    @field_validator("county")
    @classmethod
    def _known_county(cls, value: str | None) -> str | None:
        if value is not None and (problem := check_county(value)):
            raise ValueError(problem)
        return value

    @field_validator("plan_tasks", "partners")
    @classmethod
    def _unique(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("lists the same entry twice")
        return value

    @field_validator("occurred")
    @classmethod
    def _not_future_occurred(cls, value: Occurred | None, info: ValidationInfo) -> Occurred | None:
        now, stored = judged_at(info)
        if value is not None and value.last_day > now.date() + DATE_SKEW:
            when = f"after the day the stream stored it ({now.date()})" if stored else "in the future"
            raise ValueError(f"{value.last_day} is {when}")
        return value

    @model_validator(mode="after")
    def _envelope(self) -> EventBase:
        if self.municipality is not None:
            if self.county is None:
                raise ValueError("a municipality needs a county")
            if problem := check_municipality(self.municipality, self.county):
                raise ValueError(problem)
        if self.agency in self.partners:
            raise ValueError("partners list the publishing agency itself")
        return self


class Action(EventBase):
    """An outreach action: it must say where and when."""

    county: CountyCode
    occurred: Occurred


# ---- definitions -------------------------------------------------------------------------------


class CampaignDefined(EventBase):
    """A campaign (project, programme) that outreach actions can belong to via ``campaign_id``."""

    event_type: Literal["campaign_defined"]
    schema_version: V1 = 1
    campaign_id: Slug
    name: ShortText = Field(description="In the original language.")
    name_en: ShortText | None = None
    country: CountryCode
    lead_agency: Slug
    funder: ShortText | None = None
    starts: Day | None = None
    ends: Day | None = None
    target_counties: tuple[CountyCode, ...] = ()

    @field_validator("lead_agency")
    @classmethod
    def _lead_is_definer(cls, value: str, info: ValidationInfo) -> str:
        """A campaign's lead is the agency that defines it: a definition in another agency's name
        would put that agency's name to a campaign it never declared (and take the campaign_id)."""
        agency = info.data.get("agency")
        if agency is not None and value != agency:
            raise ValueError(
                f"names another agency than {agency}, which defines the campaign: a campaign's lead is the "
                f"agency that defines it; let {value} define it, or give lead_agency {agency} and list {value} "
                f"in partners"
            )
        return value

    @model_validator(mode="after")
    def _campaign(self) -> CampaignDefined:
        if self.country not in regions().countries:
            known = ", ".join(sorted(regions().countries))
            raise ValueError(f"country {self.country} has no reference data; known: {known}")
        if self.starts and self.ends and self.ends < self.starts:
            raise ValueError(f"campaign ends ({self.ends}) before it starts ({self.starts})")
        for code in self.target_counties:
            if problem := check_county(code, self.country):
                raise ValueError(f"target_counties {code}: {problem}")
        if len(set(self.target_counties)) != len(self.target_counties):
            raise ValueError("target_counties lists the same county twice")
        return self


class PlanTaskDefined(EventBase):
    """One task of a national action plan, referred to by actions as ``<plan_id>/<part>/<task>``."""

    event_type: Literal["plan_task_defined"]
    schema_version: V1 = 1
    plan_id: Slug
    plan_title: ShortText
    country: CountryCode
    first_year: Annotated[WholeNumber, Field(ge=1990, le=2100)]
    last_year: Annotated[WholeNumber, Field(ge=1990, le=2100)]
    part: Annotated[str, StringConstraints(pattern=r"^[IVXLC0-9]{1,6}$")]
    task: Annotated[str, StringConstraints(pattern=r"^[0-9][0-9.a-z]{0,9}$")]
    title: Text

    @model_validator(mode="after")
    def _years(self) -> PlanTaskDefined:
        if self.last_year < self.first_year:
            raise ValueError(f"last_year {self.last_year} is before first_year {self.first_year}")
        return self

    @property
    def task_ref(self) -> str:
        return f"{self.plan_id}/{self.part}/{self.task}"


# ---- outreach actions ----------------------------------------------------------------------------


class SessionFormat(StrEnum):
    workshop = "workshop"
    information_meeting = "information_meeting"
    training = "training"
    school_session = "school_session"
    civil_society_meeting = "civil_society_meeting"
    public_talks = "public_talks"
    round_table = "round_table"
    other = "other"


class Audience(StrEnum):
    students = "students"
    teachers = "teachers"
    officials = "officials"
    civil_society = "civil_society"
    police = "police"
    border_guard = "border_guard"
    social_workers = "social_workers"
    employment_office_staff = "employment_office_staff"
    general_public = "general_public"
    other = "other"


class AudienceCount(Frozen):
    """Participants of one audience group; ``count`` null means they attended, number unknown."""

    audience: Audience
    count: Count | None
    estimated: Flag = False

    @model_validator(mode="after")
    def _estimate_needs_number(self) -> AudienceCount:
        if self.count is None and self.estimated:
            raise ValueError("an unknown count cannot be an estimate; give the estimated number")
        return self


class SessionHeld(Action):
    """A meeting, workshop, training, school visit or public talk, with its participants; or, as
    reports often give them, several sessions together (``sessions``) with the participants of all
    of them: "2 meetings, about 165 pupils, teachers and social workers" is one entry."""

    event_type: Literal["session_held"]
    schema_version: V3 = 3
    sessions: Annotated[WholeNumber, Field(ge=1, le=MAX_SESSIONS)] = Field(
        1, description="How many sessions this entry reports; its participants are all of theirs together."
    )
    format: SessionFormat
    title: ShortText | None = None
    participants: tuple[AudienceCount, ...] = ()
    reported_total: Count | None = Field(None, description="May exceed the breakdown, never fall short of it.")
    total_estimated: Flag = False

    @model_validator(mode="after")
    def _participants(self) -> SessionHeld:
        groups = [p.audience for p in self.participants]
        if len(set(groups)) != len(groups):
            raise ValueError("participants list the same audience group twice")
        known = sum(p.count or 0 for p in self.participants)
        if self.reported_total is not None and self.reported_total < known:
            raise ValueError(f"reported_total {self.reported_total} is less than the breakdown's sum {known}")
        if self.total_estimated and self.reported_total is None:
            raise ValueError("total_estimated needs a reported_total")
        return self

    @property
    def participants_known(self) -> int:
        """The best known number of participants: the reported total, else the breakdown's sum."""
        if self.reported_total is not None:
            return self.reported_total
        return sum(p.count or 0 for p in self.participants)

    @property
    def participants_unknown(self) -> bool:
        """True when some participants were not counted (no total, and a group without a number)."""
        if self.reported_total is not None:
            return False
        return not self.participants or any(p.count is None for p in self.participants)

    @property
    def participants_estimated(self) -> bool:
        return self.total_estimated or any(p.estimated for p in self.participants)


class MaterialKind(StrEnum):
    leaflet = "leaflet"
    poster = "poster"
    brochure = "brochure"
    other = "other"


class MaterialsDistributed(Action):
    """Leaflets, posters and the like, counted in items distributed; quantity null when unknown."""

    event_type: Literal["materials_distributed"]
    schema_version: V1 = 1
    kind: MaterialKind
    quantity: Count | None
    estimated: Flag = False
    title: ShortText | None = None
    language: Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}$")] | None = None

    @model_validator(mode="after")
    def _estimate_needs_number(self) -> MaterialsDistributed:
        if self.quantity is None and self.estimated:
            raise ValueError("an unknown quantity cannot be an estimate; give the estimated number")
        return self


class InstitutionType(StrEnum):
    voivodeship_office = "voivodeship_office"
    regional_government = "regional_government"
    local_government = "local_government"
    police = "police"
    border_guard = "border_guard"
    prosecutor = "prosecutor"
    labour_inspection = "labour_inspection"
    education = "education"
    social_services = "social_services"
    employment_office = "employment_office"
    ngo = "ngo"
    international_organisation = "international_organisation"
    other = "other"


class TeamEstablished(Action):
    """A regional anti-trafficking team set up; ``occurred`` is the date (or month) it was established."""

    event_type: Literal["team_established"]
    schema_version: V1 = 1
    team_name: ShortText
    member_institutions: tuple[InstitutionType, ...] = ()

    @field_validator("member_institutions")
    @classmethod
    def _unique_members(cls, value: tuple[InstitutionType, ...]) -> tuple[InstitutionType, ...]:
        if len(set(value)) != len(value):
            raise ValueError("lists the same institution type twice")
        return value


Fact = Annotated[
    CampaignDefined | PlanTaskDefined | SessionHeld | MaterialsDistributed | TeamEstablished,
    Field(discriminator="event_type"),
]

# ---- corrections and retractions -----------------------------------------------------------------


class EventCorrected(EventBase):
    """Supersedes an earlier event with a full replacement (same ``event_id``, type and agency)."""

    event_type: Literal["event_corrected"]
    schema_version: V1 = 1
    corrects: uuid.UUID
    replacement: Fact
    reason: Text | None = None

    @model_validator(mode="after")
    def _replacement(self) -> EventCorrected:
        if self.replacement.event_id != self.corrects:
            raise ValueError(f"replacement.event_id {self.replacement.event_id} must equal corrects {self.corrects}")
        if self.replacement.agency != self.agency:
            raise ValueError(f"replacement.agency {self.replacement.agency!r} must equal agency {self.agency!r}")
        if self.corrects == self.event_id:
            raise ValueError("a correction needs an event_id of its own, not the corrected event's")
        return self


class EventRetracted(EventBase):
    """Withdraws an earlier event; it stays in the log and no longer counts in any total."""

    event_type: Literal["event_retracted"]
    schema_version: V1 = 1
    retracts: uuid.UUID
    reason: Text

    @model_validator(mode="after")
    def _not_self(self) -> EventRetracted:
        if self.retracts == self.event_id:
            raise ValueError("a retraction needs an event_id of its own")
        return self


# ---- coordination --------------------------------------------------------------------------------
# Published by the admin (``coordinator_appointed``) and by coordinating agencies (``report_submitted``,
# ``actions_linked`` of other agencies' actions). Who may publish each is checked by the broker where
# the subject shows it and by the projector always (consumers/coordination.py).

ADMIN_AGENCY = "admin"  # the agency slug the admin publishes as; no agency may take it (outreach/auth.py)
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
MAX_LINKED = 20  # actions one link may join


class CoordinatorAppointed(EventBase):
    """The admin names an agency as a coordinator of a country: it may submit that country's
    figures and link any of its agencies' actions. Retracted (by the admin), the appointment ends."""

    event_type: Literal["coordinator_appointed"]
    schema_version: V1 = 1
    coordinator: Slug = Field(description="The agency appointed.")
    country: CountryCode
    reason: Text | None = None

    @model_validator(mode="after")
    def _appointment(self) -> CoordinatorAppointed:
        if self.agency != ADMIN_AGENCY:
            raise ValueError(f"is published by the admin only (agency {ADMIN_AGENCY!r}), not by {self.agency!r}")
        if self.coordinator == ADMIN_AGENCY:
            raise ValueError(f"coordinator {ADMIN_AGENCY!r} is the admin, not an agency")
        if self.country not in regions().countries:
            known = ", ".join(sorted(regions().countries))
            raise ValueError(f"country {self.country} has no reference data; known: {known}")
        return self


class ReportSubmitted(EventBase):
    """A coordinator's submission of a country's figures for a period (and a plan): the scope,
    the stream sequence the figures are as of, and the sha256 of the figures (``schemas.submission``).
    Its ``event_id`` is the submission's ID."""

    event_type: Literal["report_submitted"]
    schema_version: V1 = 1
    country: CountryCode
    period_start: Day = Field(description="The first day of the period: actions that started on it or later.")
    period_end: Day = Field(description="The last day of the period: actions that started on it or earlier.")
    plan_id: Slug | None = Field(None, description="Only the actions under a task of this plan, when given.")
    title: ShortText
    submitted_to: ShortText | None = Field(None, description="Parliament, a monitoring body, a donor.")
    as_of_seq: Annotated[WholeNumber, Field(ge=0, le=2**63 - 1)] = Field(
        description="The figures as of this stream sequence."
    )
    figures_sha256: Sha256 = Field(description="sha256 of the figures' canonical JSON (schemas/submission.py).")

    @model_validator(mode="after")
    def _scope(self) -> ReportSubmitted:
        if self.period_end < self.period_start:
            raise ValueError(f"period ends ({self.period_end}) before it starts ({self.period_start})")
        if self.country not in regions().countries:
            known = ", ".join(sorted(regions().countries))
            raise ValueError(f"country {self.country} has no reference data; known: {known}")
        return self


class ActionRef(Frozen):
    """One agency's action, by its identity: the agency and the action's event_id."""

    agency: Slug
    event_id: uuid.UUID


class ActionsLinked(EventBase):
    """Declares actions of different agencies one and the same action: ``counts`` stays in the
    totals, the others drop out of them (and stay in the history, linked). An agency may link its
    own action to another's; a coordinator of the country may link any of its actions. Undone by an
    ``event_retracted`` of this event, by the agency that published it."""

    event_type: Literal["actions_linked"]
    schema_version: V1 = 1
    actions: tuple[ActionRef, ...] = Field(min_length=2, max_length=MAX_LINKED)
    counts: ActionRef = Field(description="The one of ``actions`` that counts.")
    reason: Text

    @model_validator(mode="after")
    def _group(self) -> ActionsLinked:
        keys = [(a.agency, a.event_id) for a in self.actions]
        if len(set(keys)) != len(keys):
            raise ValueError("actions lists the same action twice")
        if (self.counts.agency, self.counts.event_id) not in keys:
            raise ValueError("counts must be one of actions")
        return self


Event = Annotated[
    CampaignDefined
    | PlanTaskDefined
    | SessionHeld
    | MaterialsDistributed
    | TeamEstablished
    | EventCorrected
    | EventRetracted
    | CoordinatorAppointed
    | ReportSubmitted
    | ActionsLinked,
    Field(discriminator="event_type"),
]

EVENT_TYPES: dict[str, type[EventBase]] = {
    "campaign_defined": CampaignDefined,
    "plan_task_defined": PlanTaskDefined,
    "session_held": SessionHeld,
    "materials_distributed": MaterialsDistributed,
    "team_established": TeamEstablished,
    "event_corrected": EventCorrected,
    "event_retracted": EventRetracted,
    "coordinator_appointed": CoordinatorAppointed,
    "report_submitted": ReportSubmitted,
    "actions_linked": ActionsLinked,
}
