"""``outreach publish FILE…``: validate whole files first, then publish what may be published."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from producers.publisher import Publisher, PublishReport
from schemas.errors import FileInvalid, Problem
from schemas.files import LoadedFile, load_events
from schemas.receipts import Receipt


@dataclass
class FilesReport:
    """The publish report, and the invalid lines that were skipped (only with ``skip_invalid``)."""

    published: PublishReport
    skipped: list[Problem] = field(default_factory=list)
    files: list[LoadedFile] = field(default_factory=list)
    receipts: list[Receipt] | None = None  # with ``publish --wait``: what the projector made of them
    unanswered: list[str] = field(default_factory=list)  # event_ids without a receipt by the deadline


def load_files(paths: Sequence[str | Path], *, skip_invalid: bool) -> list[LoadedFile]:
    """Validate every file; unless ``skip_invalid``, any invalid line anywhere raises ``FileInvalid``."""
    loaded = [load_events(path) for path in paths]
    if not skip_invalid:
        for one in loaded:
            one.raise_if_invalid()
    return loaded


async def publish_files(
    publisher: Publisher,
    paths: Sequence[str | Path],
    *,
    skip_invalid: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> FilesReport:
    """Validate all files, then publish their events; nothing is sent if validation fails.
    ``progress`` is told (events handled, events in all files) as publishing goes."""
    loaded = load_files(paths, skip_invalid=skip_invalid)
    report = FilesReport(PublishReport(), files=loaded)
    total = sum(len(one.events) for one in loaded)
    for one in loaded:
        report.skipped.extend(Problem(p.field, p.message, p.value, p.line, p.sheet) for p in one.problems)
        before = report.published.total

        def told(done: int, before: int = before) -> None:
            if progress is not None:
                progress(before + done, total)

        part = await publisher.publish(
            [e for _, e in one.events],
            lines=[line for line, _ in one.events],
            progress=told,
            payloads=one.payloads,
        )
        report.published.add(part)
    return report


__all__ = ["FileInvalid", "FilesReport", "load_files", "publish_files"]
