"""Every process a reliability scenario starts ends with it, whatever happens; the figures the
scenarios measure are printed at the end of the test run."""

from __future__ import annotations

from typing import Any

import pytest

FIGURES: list[str] = []


@pytest.fixture
def figures() -> list[str]:
    """Lines a scenario reports (kills made, re-sends recognised, lag, memory)."""
    return FIGURES


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.section("reliability figures")
        for line in FIGURES:
            terminalreporter.write_line(line)
