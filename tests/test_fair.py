"""The fair share of workers between askers, on its own: turns, the cap per asker, the waiting line."""

from __future__ import annotations

import asyncio

from consumers.fair import FairShare


class Jobs:
    """Jobs that run until released, recording the order they started in and the refusals."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.refused: list[tuple[str, str]] = []
        self.release: dict[str, asyncio.Event] = {}

    def submit(self, share: FairShare, asker: str, name: str) -> None:
        self.release[name] = asyncio.Event()

        async def job() -> None:
            self.started.append(name)
            await self.release[name].wait()

        async def refuse(reason: str) -> None:
            self.refused.append((name, reason))

        share.submit(asker, job, refuse)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_askers_take_turns_and_one_asker_never_holds_every_worker() -> None:
    share = FairShare(workers=4, per_asker=2, waiting=3, wait_s=None, what="queries")
    jobs = Jobs()
    for n in range(6):  # a1..a6: two run, three wait, the sixth is refused at once
        jobs.submit(share, "a", f"a{n + 1}")
    for n in range(3):
        jobs.submit(share, "b", f"b{n + 1}")
    jobs.submit(share, "c", "c1")
    await settle()
    assert jobs.started == ["a1", "a2", "b1", "b2"]
    assert jobs.refused == [
        (
            "a6",
            "you have 2 queries running and 3 waiting, as many as one asker may; wait for their answers, then ask "
            "again",
        )
    ]
    jobs.release["a1"].set()  # c, with none running, goes before a, though its request came last
    await settle()
    assert jobs.started[4:] == ["c1"]
    jobs.release["b1"].set()
    jobs.release["c1"].set()
    await settle()
    assert jobs.started[5:] == ["a3", "b3"]
    for event in jobs.release.values():
        event.set()
    await settle()
    assert jobs.started[7:] == ["a4", "a5"]
    await share.close()


async def test_a_request_that_waits_too_long_is_refused_and_says_whose_slots_were_full() -> None:
    share = FairShare(workers=2, per_asker=1, waiting=4, wait_s=0.05, what="queries")
    jobs = Jobs()
    jobs.submit(share, "a", "a1")
    jobs.submit(share, "a", "a2")  # a's one slot is taken
    jobs.submit(share, "b", "b1")
    jobs.submit(share, "c", "c1")  # both workers are taken
    await asyncio.sleep(0.2)
    assert jobs.started == ["a1", "b1"]
    assert sorted(jobs.refused) == [
        (
            "a2",
            "you have 1 queries running already, as many as one asker runs at once (of 2 in all), and none ended "
            "within 0.05 s; ask again once one has",
        ),
        (
            "c1",
            "the projector is answering 2 queries already, as many as it runs at once, and none ended within 0.05 s; "
            "ask again in a moment",
        ),
    ]
    for event in jobs.release.values():
        event.set()
    await share.close()
