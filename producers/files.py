"""``outreach publish FILE…``: validate whole files first, compare their rows with the stream
(``producers.rows``), then publish what may be published."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from producers.publisher import Failure, Publisher, PublishReport
from producers.rows import FilePlan, StreamView, plan_file
from schemas.errors import BrokerError, FileInvalid, Problem
from schemas.files import LoadedFile, load_events
from schemas.receipts import InForce, Receipt


@dataclass
class FilesReport:
    """The publish report, and the invalid lines that were skipped (only with ``skip_invalid``)."""

    published: PublishReport
    skipped: list[Problem] = field(default_factory=list)
    files: list[LoadedFile] = field(default_factory=list)
    receipts: list[Receipt] | None = None  # with ``publish --wait``: what the projector made of them
    unanswered: list[str] = field(default_factory=list)  # event_ids without a receipt by the deadline
    plans: list[FilePlan] = field(default_factory=list)  # each file's rows and what publishing does to them
    sent: bool = True  # False for a dry run


def load_files(paths: Sequence[str | Path], *, skip_invalid: bool) -> list[LoadedFile]:
    """Validate every file; unless ``skip_invalid``, any invalid line anywhere raises ``FileInvalid``."""
    loaded = [load_events(path) for path in paths]
    if not skip_invalid:
        for one in loaded:
            one.raise_if_invalid()
    return loaded


InForceAsker = Callable[[str], Awaitable[list[InForce]]]


async def publish_files(
    publisher: Publisher,
    paths: Sequence[str | Path],
    *,
    skip_invalid: bool = False,
    progress: Callable[[int, int], None] | None = None,
    in_force: InForceAsker | None = None,
    retract_missing: bool = False,
    dry_run: bool = False,
) -> FilesReport:
    """Validate all files, compare their rows with the stream, then publish; nothing is sent if
    validation fails, or, with ``retract_missing``, if the rows deleted from a file cannot be listed.
    ``in_force(agency)`` asks a running projector for the agency's events in force with a reference;
    without it, deleted rows are not looked for. ``progress`` is told (events handled, events to send)."""
    loaded = load_files(paths, skip_invalid=skip_invalid)
    report = FilesReport(PublishReport(), files=loaded, sent=not dry_run)
    view = StreamView(publisher.nc, publisher.stream, publisher.ack_timeout)
    for one in loaded:
        report.skipped.extend(Problem(p.field, p.message, p.value, p.line, p.sheet) for p in one.problems)
        report.plans.append(await plan_file(view, one, in_force=in_force, retract_missing=retract_missing))
    if retract_missing:
        for plan in report.plans:
            if plan.missing_unknown:
                raise BrokerError(
                    f"{plan.loaded.path}: --retract-missing: {plan.missing_unknown}; nothing was published"
                )
    if dry_run:
        return report
    total = sum(len(plan.sends()) for plan in report.plans)
    for plan in report.plans:
        for row in plan.refused():
            report.published.failed.append(Failure(row.event_id, f"reference {row.reference}: {row.detail}", row.line))
        sends = plan.sends()
        before = report.published.total

        def told(done: int, before: int = before) -> None:
            if progress is not None:
                progress(before + done, total)

        part = await publisher.publish(
            [s.event for s in sends],
            lines=[s.line for s in sends],  # type: ignore[misc]  # None for a deleted row's retraction
            progress=told,
            payloads=[s.payload for s in sends],
            headers=[s.headers for s in sends],
        )
        report.published.add(part)
    return report


__all__ = ["FileInvalid", "FilesReport", "load_files", "publish_files"]
