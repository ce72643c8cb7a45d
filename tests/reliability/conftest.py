"""Every process a reliability scenario starts ends with it, whatever happens."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.reliability.harness import Processes


@pytest.fixture
def processes() -> Iterator[Processes]:
    procs = Processes()
    try:
        yield procs
    finally:
        procs.close()
