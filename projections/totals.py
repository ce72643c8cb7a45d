"""The totals the projector keeps (``totals_cells``, schema.sql), changed in each batch's
transaction by what the batch changed, so that reading them costs the same at any length of the log.

An action counts while its current version is an outreach action, not retracted, and not linked
away (a link in force names it and counts another one: ``linked_away_as_of``, views.sql). A batch
changes that only for the facts it gives a new version and for the actions of the links it adds or
retracts: each such fact takes back from the cells what it counted before the batch and adds what
it counts after. ``totals_cells_as_of`` (views.sql) computes the same rows from the actions in force;
a file made before the totals were kept gets them from it once, when the projector opens it.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterable
from datetime import date
from typing import Any, NamedTuple

import duckdb
import pyarrow as pa

from projections.batch_insert import registered
from projections.rows import FactVersion
from projections.views import DAYS, TOTAL_NAMES, first_day, last_day

ACTION_TYPES = frozenset(("session_held", "materials_distributed", "team_established"))

FactKey = tuple[str, uuid.UUID]  # (agency, fact_id): a fact's identity
Cell = tuple[str, str | None, str | None, str | None, date | None]  # scope, key, country, county, month
# The totals a cell sums, in the order every totals view carries them (its first and last day aside).
SUMS = tuple(name for name in TOTAL_NAMES if not name.endswith("_activity"))


class Counted(NamedTuple):
    """What the totals read of one version of a fact."""

    event_type: str
    retracted: bool
    country: str | None
    county: str | None
    campaign_id: str | None
    plan_tasks: tuple[str, ...] | list[str]
    occurred_start: date | None
    occurred_end: date | None
    sessions: int
    participants: int
    participants_unknown: bool
    participants_estimated: bool
    materials: int
    materials_unknown: bool
    teams: int
    payload: str | None  # a link's: the actions it names and the one that counts

    @classmethod
    def of(cls, v: FactVersion) -> Counted:
        return cls(
            v.event_type,
            v.retracted,
            v.country,
            v.county,
            v.campaign_id,
            v.plan_tasks,
            v.occurred_start,
            v.occurred_end,
            v.sessions,
            v.participants,
            v.participants_unknown,
            v.participants_estimated,
            v.materials,
            v.materials_unknown,
            v.teams,
            v.payload,
        )

    def is_action(self) -> bool:
        return self.event_type in ACTION_TYPES and not self.retracted

    def is_link(self) -> bool:
        return self.event_type == "actions_linked" and not self.retracted and self.payload is not None


# The columns of fact_versions a Counted is read from, in its order.
COUNTED_COLUMNS = ", ".join(f"fact_versions.{name}" for name in Counted._fields)

SELECT_LINKED_AWAY = "SELECT agency, fact_id FROM linked_away_as_of(NULL)"
SELECT_CURRENT = f"""
WITH wanted AS (SELECT unnest(?::VARCHAR[]) AS agency, unnest(?::UUID[]) AS fact_id)
SELECT fact_versions.agency, fact_versions.fact_id, {COUNTED_COLUMNS}
FROM fact_versions SEMI JOIN wanted w ON fact_versions.agency = w.agency AND fact_versions.fact_id = w.fact_id
WHERE fact_versions.superseded_seq IS NULL
"""
_WANTED = "totals_wanted"  # the cells a batch changes, registered as an Arrow table while it is written
_SAME_CELL = """t.scope = w.scope AND t.key IS NOT DISTINCT FROM w.key AND t.country IS NOT DISTINCT FROM w.country
    AND t.county IS NOT DISTINCT FROM w.county AND t.month IS NOT DISTINCT FROM w.month"""
_CHANGES = pa.schema(
    [
        ("scope", pa.string()),
        ("key", pa.string()),
        ("country", pa.string()),
        ("county", pa.string()),
        ("month", pa.date32()),
    ]
    + [(name, pa.int64()) for name in SUMS]
    + [("starts", pa.list_(pa.int32())), ("lasts", pa.list_(pa.int32()))]
)
_MERGED = {
    "starts": f"list_transform(range(1, {DAYS + 1}), lambda i: t.starts[i] + w.starts[i])",
    "lasts": f"list_transform(range(1, {DAYS + 1}), lambda i: t.lasts[i] + w.lasts[i])",
}


# What DuckDB's error says when a batch would take a cell's count of actions below zero.
TOTALS_MISMATCH = "would go below zero: they no longer match the actions in force"
_BELOW_ZERO = (
    "error('the kept totals of ' || t.scope || ' ' || coalesce(t.key, '(none)') || ', ' || coalesce(t.county, "
    f"'(none)') || ', ' || coalesce(CAST(t.month AS VARCHAR), '(none)') || ' {TOTALS_MISMATCH}')"
)
# The cells a batch changes, in the batch's transaction: those there gain the changes (a count of
# actions below zero is a bug, and the batch is refused for it), the others are added.
ADD_TO_CELLS = (
    f"UPDATE totals_cells t SET events = CASE WHEN t.events + w.events < 0 THEN {_BELOW_ZERO} "
    "ELSE t.events + w.events END, "
    + ", ".join(f"{name} = t.{name} + w.{name}" for name in SUMS[1:])
    + f", starts = {_MERGED['starts']}, lasts = {_MERGED['lasts']}, "
    f"first_activity = {first_day('t.month', _MERGED['starts'])}, "
    f"last_activity = {last_day('t.month', _MERGED['lasts'])} "
    f"FROM {_WANTED} w WHERE {_SAME_CELL}"
)
NEW_CELLS = (
    f"INSERT INTO totals_cells SELECT w.*, {first_day('w.month', 'w.starts')}, {last_day('w.month', 'w.lasts')} "
    f"FROM {_WANTED} w ANTI JOIN totals_cells t ON {_SAME_CELL}"
)
BACKFILL = "INSERT INTO totals_cells SELECT * FROM totals_cells_as_of(NULL)"


def linked_away_by(link: Counted) -> list[FactKey]:
    """The actions a link in force takes out of the totals: those it names but the one that counts."""
    assert link.payload is not None
    payload = json.loads(link.payload)
    counts = payload["counts"]
    counted = (counts["agency"], str(counts["event_id"]))
    return [
        (a["agency"], uuid.UUID(str(a["event_id"])))
        for a in payload["actions"]
        if (a["agency"], str(a["event_id"])) != counted
    ]


def load_linked_away(con: duckdb.DuckDBPyConnection) -> Counter[FactKey]:
    """The actions the links in force take out of the totals, each with how many links do."""
    return Counter((r[0], r[1]) for r in con.execute(SELECT_LINKED_AWAY).fetchall())


class _Change:
    """What a batch adds to (or takes from) one cell."""

    __slots__ = ("lasts", "starts", "sums")

    def __init__(self) -> None:
        self.sums = [0] * len(SUMS)
        self.starts = [0] * DAYS
        self.lasts = [0] * DAYS


def cell_changes(
    before: dict[FactKey, Counted],
    after: dict[FactKey, Counted],
    away_before: Counter[FactKey],
    away_after: Counter[FactKey],
) -> dict[Cell, _Change]:
    """What the cells gain and lose: each fact in ``before`` (its version before the batch) or
    ``after`` (its version after; absent: unchanged) takes back what it counted and adds what it
    counts, given the actions linked away before and after."""
    changes: dict[Cell, _Change] = {}
    for fact in before.keys() | after.keys():
        old = before.get(fact)
        new = after.get(fact, old)
        counted_before = old is not None and old.is_action() and away_before[fact] == 0
        counted_after = new is not None and new.is_action() and away_after[fact] == 0
        if old is new and counted_before == counted_after:
            continue
        if counted_before:
            assert old is not None
            _add(changes, old, -1)
        if counted_after:
            assert new is not None
            _add(changes, new, 1)
    return changes


def _add(changes: dict[Cell, _Change], v: Counted, sign: int) -> None:
    start, end = v.occurred_start, v.occurred_end
    last = end if end is not None else start
    sums = (
        1,
        v.sessions,
        v.participants,
        v.sessions if v.participants_unknown else 0,
        v.sessions if v.participants_estimated else 0,
        v.materials,
        1 if v.materials_unknown else 0,
        v.teams,
    )
    scopes = [("campaign", v.campaign_id)] + [("plan_task", task) for task in v.plan_tasks]
    for scope, key in scopes:
        cell = (scope, key, v.country, v.county, start.replace(day=1) if start is not None else None)
        change = changes.get(cell) or changes.setdefault(cell, _Change())
        for i, value in enumerate(sums):
            change.sums[i] += sign * value
        if start is None or last is None:
            continue
        change.starts[start.day - 1] += sign
        last_cell = (scope, key, v.country, v.county, last.replace(day=1))
        change = changes.get(last_cell) or changes.setdefault(last_cell, _Change())
        change.lasts[last.day - 1] += sign


def write_changes(con: duckdb.DuckDBPyConnection, changes: dict[Cell, _Change]) -> None:
    """Add ``changes`` to ``totals_cells`` in the caller's transaction."""
    if not changes:
        return
    cells = list(changes)
    values = changes.values()
    columns: list[list[Any]] = [list(column) for column in zip(*cells, strict=True)]
    columns += [list(column) for column in zip(*(c.sums for c in values), strict=True)]
    columns += [[c.starts for c in values], [c.lasts for c in values]]
    arrays = [pa.array(column, f.type) for column, f in zip(columns, _CHANGES, strict=True)]
    with registered(con, _WANTED, pa.Table.from_arrays(arrays, schema=_CHANGES)):
        con.execute(ADD_TO_CELLS)
        con.execute(NEW_CELLS)


class KeptTotals:
    """The store's side of the kept totals: the actions the links in force take out (read once,
    then followed batch by batch) and the change each batch makes, in the batch's transaction."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.linked_away = load_linked_away(con)

    @staticmethod
    def current(con: duckdb.DuckDBPyConnection, facts: list[FactKey]) -> list[tuple[Any, ...]]:
        """The versions in force of these facts, as rows of agency, fact_id and ``Counted``'s
        columns: read before a batch supersedes them, for ``write``."""
        return con.execute(SELECT_CURRENT, [[f[0] for f in facts], [f[1] for f in facts]]).fetchall()

    def write(
        self,
        con: duckdb.DuckDBPyConnection,
        superseded: Iterable[tuple[Any, ...]],
        versions: Iterable[FactVersion],
    ) -> Counter[FactKey]:
        """Write what a batch changes in the totals, given the versions it superseded in the file
        (``current``'s rows, read before they were superseded) and the versions it made; return the
        actions linked away after it, which ``settle`` keeps once the batch is committed."""
        before = {(r[0], r[1]): Counted(*r[2:]) for r in superseded}
        after = {(v.agency, v.fact_id): Counted.of(v) for v in versions if v.superseded_seq is None}
        away = Counter(self.linked_away)
        for link in before.values():  # a link superseded is a link retracted (a link is never corrected)
            if link.is_link():
                away.subtract(linked_away_by(link))
        for link in after.values():
            if link.is_link():
                away.update(linked_away_by(link))
        away = +away  # only the actions some link still takes out
        relinked = (self.linked_away.keys() ^ away.keys()) - before.keys() - after.keys()
        if relinked:  # actions a link added or retracted in this batch takes out or puts back, as they stand
            before.update({(r[0], r[1]): Counted(*r[2:]) for r in self.current(con, sorted(relinked))})
        write_changes(con, cell_changes(before, after, self.linked_away, away))
        return away

    def settle(self, away: Counter[FactKey]) -> None:
        """The batch is committed: its links are the ones in force."""
        self.linked_away = away
