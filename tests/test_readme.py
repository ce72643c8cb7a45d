"""The README's examples are real: every JSON example is a valid event, one of each type."""

from __future__ import annotations

import json
import re
from pathlib import Path

from schemas.events import EVENT_TYPES
from schemas.parse import parse_event

README = Path(__file__).resolve().parent.parent / "README.md"


def test_every_json_example_in_the_readme_is_a_valid_event_and_every_type_has_one() -> None:
    blocks = re.findall(r"```json\n(.*?)```", README.read_text("utf-8"), flags=re.S)
    events = [parse_event(json.loads(block)) for block in blocks]
    assert sorted({e.event_type for e in events}) == sorted(EVENT_TYPES)


def test_the_readme_shows_the_two_commands_ci_runs() -> None:
    text = README.read_text("utf-8")
    ci = (README.parent / ".ci" / "run").read_text("utf-8")
    assert "python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/outreach demo" in text
    test_command = "python3 -m venv .venv && .venv/bin/pip install -e '.[dev]' && .venv/bin/python -m pytest"
    assert test_command in text
    assert (
        "python3 -m venv .venv\n.venv/bin/pip install --quiet --disable-pip-version-check -e '.[dev]'\n"
        ".venv/bin/python -m pytest\n" in ci
    )
