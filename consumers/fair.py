"""Requests from many askers shared fairly among a few workers.

An asker is who the broker says asked (``runtime.protocol.asker``). Each asker's requests wait in
a line of their own; a free worker takes the next request of the asker with the fewest running, askers with as many
taking turns (round robin), so one asker's crowd delays another's request by at most the requests
already running. An asker
runs at most ``per_asker`` requests at once, fewer than the workers, so that one asker's runaway
queries never hold every worker; at most ``waiting`` of its requests wait, and a request that
waited ``wait_s`` without a worker is refused.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

Job = Callable[[], Awaitable[None]]
Refuse = Callable[[str], Awaitable[None]]


@dataclass
class _Waiting:
    job: Job
    refuse: Refuse
    since: float = field(default_factory=time.monotonic)


class FairShare:
    """A fixed number of workers shared in turn between askers; see the module's docstring."""

    def __init__(self, workers: int, per_asker: int, waiting: int, wait_s: float | None, what: str) -> None:
        self.workers = workers
        self.per_asker = max(1, min(per_asker, workers))
        self.waiting = waiting
        self.wait_s = wait_s
        self.what = what  # "queries", "status requests": as the refusals say it
        self.lines: dict[str, deque[_Waiting]] = {}  # askers with requests waiting, in turn order
        self.running: dict[str, int] = {}
        self.busy = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.closed = False

    def submit(self, asker: str, job: Job, refuse: Refuse) -> None:
        """Queue ``job`` for ``asker``; ``refuse`` answers it instead when it may not wait or run."""
        line = self.lines.get(asker)
        if self.closed:
            self._spawn(refuse("the projector is stopping; ask again once it is back"))
            return
        if line is not None and len(line) >= self.waiting:
            self._spawn(
                refuse(
                    f"you have {self.running.get(asker, 0)} {self.what} running and {len(line)} waiting, as many as "
                    f"one asker may; wait for their answers, then ask again"
                )
            )
            return
        waiting = _Waiting(job, refuse)
        self.lines.setdefault(asker, deque()).append(waiting)
        if self.wait_s is not None:
            asyncio.get_running_loop().call_later(self.wait_s, self._expire, asker, waiting)
        self._dispatch()

    def _expire(self, asker: str, waiting: _Waiting) -> None:
        line = self.lines.get(asker)
        if line is None or waiting not in line:
            return  # it has run
        line.remove(waiting)
        if not line:
            del self.lines[asker]
        mine = self.running.get(asker, 0)
        if mine >= self.per_asker:
            reason = (
                f"you have {mine} {self.what} running already, as many as one asker runs at once (of "
                f"{self.workers} in all), and none ended within {self.wait_s:g} s; ask again once one has"
            )
        else:
            reason = (
                f"the projector is answering {self.busy} {self.what} already, as many as it runs at once, and "
                f"none ended within {self.wait_s:g} s; ask again in a moment"
            )
        self._spawn(waiting.refuse(reason))

    def _dispatch(self) -> None:
        """Start the next asker's next request while a worker is free, askers in turn."""
        while self.busy < self.workers:
            # The asker with the fewest running goes first, and among equals the one whose turn it is.
            free = [a for a in self.lines if self.running.get(a, 0) < self.per_asker]
            if not free:
                return
            asker = min(free, key=lambda a: self.running.get(a, 0))
            line = self.lines.pop(asker)  # taken out, and put back last: the next asker's turn comes first
            waiting = line.popleft()
            if line:
                self.lines[asker] = line
            self.busy += 1
            self.running[asker] = self.running.get(asker, 0) + 1
            self._spawn(self._run(asker, waiting.job))

    async def _run(self, asker: str, job: Job) -> None:
        try:
            await job()
        finally:
            self.busy -= 1
            self.running[asker] -= 1
            if not self.running[asker]:
                del self.running[asker]
            self._dispatch()

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def close(self) -> None:
        """Refuse what waits; let what runs end (the caller interrupts it)."""
        self.closed = True
        lines, self.lines = self.lines, {}
        for line in lines.values():
            for waiting in line:
                self._spawn(waiting.refuse("the projector is stopping; ask again once it is back"))
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
