"""Settings of the whole interpreter, each made once by the command that needs it (``outreach/cli.py``),
never by a library function: tests and other callers keep the interpreter as they found it.

Each is kept because alternated runs showed it pays beyond noise (BENCHMARKS.md, "Settings of the
whole interpreter").
"""

from __future__ import annotations

import gc


def tune_gc() -> None:
    """Young-generation collections only past what a few batches (or a whole file) of parsed events
    hold, so that a collection does not walk every object in flight again and again. Cyclic garbage
    still triggers one past the threshold; a long-running projector adds full collections of its own
    (``consumers.live``)."""
    gc.set_threshold(500_000, 10, 10)
