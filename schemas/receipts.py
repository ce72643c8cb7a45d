"""Receipts: what became of an agency's events, as the projector tells the agency itself.

An agency asks on ``outreach.status.<its slug>`` (see ``schemas.subjects.status_subject``) with a
``StatusRequest``; a running projector answers with a ``StatusReply`` listing a ``Receipt`` per
stream message of that agency: accepted, an ignored duplicate, or rejected with the reason. The
broker lets each agency ask only on its own subject, so an agency learns only of its own events.

With ``in_force`` set, the reply lists instead the agency's events in force that carry a
``reference`` (a row of a file: see ``schemas.files``), originals not retracted, one ``InForce``
each: what a publisher compares a file with to find the rows deleted from it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

MAX_RECEIPTS = 200  # per reply: a reply stays far below the broker's 1 MiB message limit


class StatusRequest(BaseModel):
    """Which receipts to send: those after a stream sequence, stored since a time, and (when
    given) only for these event_ids; at most ``limit``, in stream order."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    after_seq: int = Field(0, ge=0)
    since: AwareDatetime | None = None
    event_ids: tuple[str, ...] | None = Field(None, max_length=10_000)
    limit: int = Field(MAX_RECEIPTS, ge=1, le=MAX_RECEIPTS)
    in_force: bool = False  # list the agency's events in force with a reference, not receipts
    duplicates: bool = False  # also list the possible double reports the agency's actions are in


class Receipt(BaseModel):
    model_config = ConfigDict(frozen=True)

    stream_seq: int
    event_id: str | None
    event_type: str | None
    fate: Literal["accepted", "duplicate", "rejected"]
    reason: str | None = None
    stored_at: datetime
    reference: str | None = None  # the row's reference, for an event from a file's row
    note: str | None = None  # e.g. "changes the AL 2017 figures submitted on 2018-03-01": accepted all the same


class InForce(BaseModel):
    """An original event of the agency with a reference, not retracted (corrected or not)."""

    model_config = ConfigDict(frozen=True)

    stream_seq: int
    event_id: str
    event_type: str
    reference: str


class PossibleDuplicate(BaseModel):
    """A pair of actions of different agencies that may be one action reported twice."""

    model_config = ConfigDict(frozen=True)

    action_a: str  # <agency>/<event_id>
    action_b: str
    score: int
    reason: str


class StatusReply(BaseModel):
    """The receipts, and how far the projector had got: ``as_of_seq`` is its checkpoint, so a
    message stored after it has no receipt yet. ``more`` says another page follows after the
    last receipt's sequence. ``error`` is set, and nothing else, when the request was refused."""

    model_config = ConfigDict(frozen=True)

    agency: str = ""
    as_of_seq: int = 0
    receipts: tuple[Receipt, ...] = ()
    in_force: tuple[InForce, ...] = ()
    possible_duplicates: tuple[PossibleDuplicate, ...] = ()  # asked with ``duplicates``; at most MAX_RECEIPTS
    possible_duplicates_refused: str | None = None  # why they are not listed, when they were asked for
    more: bool = False
    error: str | None = None
