"""What the publishing commands do, apart from printing: an agency's files published (and the
projector's receipts waited for), a few events published (an appointment, a submission), an
agency's receipts asked for, and the stream made sure of."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from producers.files import FilesReport
from producers.rows import Origin
from runtime.connection import connect
from runtime.settings import Settings
from schemas.errors import OutreachError
from schemas.receipts import PossibleDuplicate, Receipt

Progress = Callable[[int, int], None]  # events sent, events to send


async def ensure_stream(settings: Settings) -> None:
    """Create the stream if it is missing, and check it keeps history immutable."""
    from runtime.stream import ensure_stream as ensure

    nc = await connect(settings, "outreach-admin")
    try:
        await ensure(nc.jetstream(), settings.stream, settings.duplicate_window_s, settings.stream_replicas)
    finally:
        await nc.close()


async def publish(
    settings: Settings,
    files: Sequence[Path],
    skip_invalid: bool,
    wait: float | None = None,
    retract_missing: bool = False,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> FilesReport:
    """Validate and publish files; with ``wait``, then wait that long for the projector's
    receipts of what was sent (``settings.agency``'s)."""
    from producers.files import load_files, publish_files
    from producers.publisher import Publisher
    from producers.receipts import in_force, wait_for_receipts

    load_files(files, skip_invalid=skip_invalid)  # fail before connecting when a file is invalid
    nc = await connect(settings, "outreach-publisher")
    try:
        # Publishing needs no right on the stream itself (agencies have none): the admin creates it.
        js = nc.jetstream(publish_async_max_pending=settings.publish_window)
        publisher = Publisher(
            js,
            stream=settings.stream,
            window=settings.publish_window,
            ack_timeout=settings.publish_timeout_s,
            retries=settings.publish_retries,
        )
        report = await publish_files(
            publisher,
            files,
            skip_invalid=skip_invalid,
            progress=progress,
            in_force=lambda agency: in_force(nc, agency),
            retract_missing=retract_missing,
            dry_run=dry_run,
        )
        if wait is not None:
            published = [str(s.event.event_id) for plan in report.plans for s in plan.sends()]
            failed = {f.event_id for f in report.published.failed}
            wanted = [e for e in published if e not in failed]
            report.receipts, report.unanswered = await wait_for_receipts(
                nc, agency_of(settings), wanted, report.published.last_seq, wait
            )
        return report
    finally:
        await nc.close()


async def publish_events(settings: Settings, events: list[dict[str, Any]]) -> Any:
    """Validate and publish a few events (an appointment, a submission); the publisher's report."""
    from producers.publisher import Publisher
    from schemas.parse import parse_event

    parsed = [parse_event(e) for e in events]
    nc = await connect(settings, "outreach-cli")
    try:
        publisher = Publisher(nc.jetstream(), stream=settings.stream, ack_timeout=settings.publish_timeout_s, retries=1)
        return await publisher.publish(parsed)
    finally:
        await nc.close()


def agency_of(settings: Settings) -> str:
    """The agency the settings act for, or ``SettingsInvalid`` saying how to name it."""
    from schemas.errors import SettingsInvalid

    agency = settings.agency or settings.nats_user
    if not agency:
        raise SettingsInvalid("which agency? give --agency SLUG or OUTREACH_AGENCY (agency credentials carry it)")
    return agency


@dataclass(frozen=True)
class AgencyStatus:
    """An agency's receipts, as a running projector gave them."""

    found: list[Receipt]  # every receipt asked for
    as_of_seq: int  # the projector's checkpoint when it answered
    shown: list[Receipt]  # those to show (only the rejected ones, when asked so)
    origins: dict[int, Origin]  # stream_seq -> the file, sheet and row the event came from
    pairs: list[PossibleDuplicate]  # the possible double reports its actions are in
    pairs_refused: str | None  # why they could not be listed
    warnings: list[str] = field(default_factory=list)


async def agency_status(
    settings: Settings, agency: str, since: datetime | None, after_seq: int, rejected: bool
) -> AgencyStatus:
    """The fate of the agency's events, the rows they came from, and its possible double reports."""
    from producers.receipts import possible_duplicates, receipts
    from producers.rows import StreamView, origins

    nc = await connect(settings, "outreach-status")
    try:
        found, as_of = await receipts(nc, agency, after_seq=after_seq, since=since)
        shown = [r for r in found if r.fate == "rejected"] if rejected else found
        view = StreamView(nc, settings.stream, settings.publish_timeout_s)
        warnings = []
        try:
            where = await origins(view, agency, shown)
        except OutreachError as exc:  # receipts without their rows, rather than no receipts at all
            warnings.append(f"{exc}; the rows the events came from are not shown")
            where = {}
        pairs, refused = await possible_duplicates(nc, agency)
        return AgencyStatus(found, as_of, shown, where, pairs, refused, warnings)
    finally:
        await nc.close()
