"""What a process measures of itself, and commands run as functions in a process of their own
(the benchmark's replay and live projector: a child's peak memory is its own)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from runtime.memory import peak_rss_mib
from runtime.settings import Settings

Command = Literal["replay", "project"]


@dataclass(frozen=True)
class Measured:
    """What a command in a process of its own applied, that process's peak memory, and the peak of
    the process a replay copies its file in (0 for the projector)."""

    messages: int
    peak_rss_mib: float
    copy_peak_rss_mib: float


def in_a_process(command: Command, settings: Settings, db: Path, until_seq: int | None = None) -> Measured:
    """``replay`` into ``db`` (up to ``until_seq``), or ``project`` into it until caught up, in a
    new process; raise ``RuntimeError`` with its error when it fails."""
    import multiprocessing
    import queue

    ctx = multiprocessing.get_context("spawn")
    answers: Any = ctx.Queue()
    child = ctx.Process(target=_run, args=(command, settings, db, until_seq, answers))
    child.start()
    try:
        while True:
            try:
                outcome = answers.get(timeout=1.0)
                break
            except queue.Empty:
                if not child.is_alive():
                    ended = f"{command} into {db} ended with status {child.exitcode}, saying nothing"
                    raise RuntimeError(ended) from None
    finally:
        child.join()
    if isinstance(outcome, str):
        raise RuntimeError(f"{command} into {db} failed: {outcome}")
    return outcome  # type: ignore[no-any-return]


def _run(command: Command, settings: Settings, db: Path, until_seq: int | None, answers: Any) -> None:
    """In the child: the command, with the settings of the whole interpreter its ``outreach``
    command makes, and its outcome (a ``Measured``, or why it failed) to the parent."""
    import asyncio

    from runtime.interpreter import tune_gc
    from runtime.memory import data_bound_mib, limit_data, tune_allocators

    if command == "project":
        tune_allocators()  # as `outreach project` does, before DuckDB and pyarrow are loaded
    tune_gc()  # as `outreach replay` and `outreach project` do
    try:
        if command == "replay":
            from consumers.replay import replay

            stats = asyncio.run(replay(settings, db, until_seq=until_seq))
        else:
            from consumers.app import run_projector

            limit_data(data_bound_mib(settings.memory_limit_mb))  # as `outreach project` does
            stats = asyncio.run(run_projector(settings.model_copy(update={"db": db}), until_caught_up=True))
    except BaseException as exc:  # reported to the parent, which raises it, with where it came from
        import traceback

        answers.put(f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
        return
    answers.put(Measured(stats.messages, peak_rss_mib(), getattr(stats, "copy_peak_rss_mib", 0.0)))
