"""Comparing two projection files: the live one and one rebuilt from the stream.

First the totals an analyst reads, cell by cell: each difference names the view, the key and the
column, with both values and the stream sequences of the events behind that cell. Then every table
the fold writes, row by row, which also catches what no total shows (a payload changed in the log).
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from schemas.errors import ProjectionError

# Every table the projector writes, with the columns that must be equal (times of writing
# excluded) and the rows compared: the kept totals' cells that count something (a cell whose
# actions all went is kept at 0 by a live projector, and never made by a replay).
COMPARED = {
    "event_log": ("*", "true"),
    "rejected_events": ("*", "true"),
    "ignored_duplicates": ("*", "true"),
    "fact_versions": ("*", "true"),
    "stream_gaps": ("first_missing, last_missing", "true"),
    "totals_cells": ("*", "events > 0 OR list_max(starts) > 0 OR list_max(lasts) > 0"),
}
ONLY_IN = """
SELECT count(*) OVER () AS n, * FROM (
    SELECT {columns} FROM {a}.{table} WHERE {rows} EXCEPT ALL SELECT {columns} FROM {b}.{table} WHERE {rows})
ORDER BY ALL LIMIT ?
"""


# Each totals view, the columns that identify a row, and how to find the facts (in `actions`)
# behind a row: a condition on the key's values, in order.
TOTALS_VIEWS: dict[str, tuple[tuple[str, ...], str]] = {
    "totals_by_county": (("county",), "county = ?"),
    # The actions of no campaign are a row per country.
    "totals_by_campaign": (
        ("campaign_id", "country"),
        "campaign_id IS NOT DISTINCT FROM ? AND (campaign_id IS NOT NULL OR country IS NOT DISTINCT FROM ?)",
    ),
    "totals_by_plan_task": (("task_ref",), "list_contains(plan_tasks, ?)"),
    "totals_by_month": (("month", "county"), "CAST(date_trunc('month', occurred_start) AS DATE) = ? AND county = ?"),
    "totals_by_audience": (
        ("county", "audience"),
        "county = ? AND event_type = 'session_held' "
        "AND list_contains(list_transform(audiences, lambda g: g.audience), ?)",
    ),
}
SEQUENCES_SHOWN = 20


def compare(live: Path, rebuilt: Path, limit: int = 10) -> list[str]:
    """Each difference between the two files, as a sentence (empty: equal): the totals cell by
    cell first, then the projection tables row by row."""
    return compare_totals(live, rebuilt, limit) + compare_tables(live, rebuilt, limit)


def compare_totals(live: Path, rebuilt: Path, limit: int = 10) -> list[str]:
    """Every totals cell that differs: "totals_by_county AL-10 participants: projection 143, fold
    of the log 43", with the stream sequences of the fact versions behind it (at most ``limit``
    cells a view)."""
    con = _attach(live, rebuilt)
    try:
        differences: list[str] = []
        for view, (keys, behind) in TOTALS_VIEWS.items():
            sides = {name: _rows(con, name, view, keys) for name in ("live", "rebuilt")}
            columns = [c for c in sides["live"][0] if c not in keys]
            shown = 0
            for key in sorted(set(sides["live"][1]) | set(sides["rebuilt"][1]), key=_sortable):
                a, b = sides["live"][1].get(key), sides["rebuilt"][1].get(key)
                if a == b:
                    continue
                label = f"{view} {' '.join('(none)' if k is None else str(k) for k in key)}"
                if a is None or b is None:
                    where = "the live projection" if b is None else "the fold of the log"
                    cells = [f"{label}: a row only in {where}"]
                else:
                    cells = [
                        f"{label} {column}: projection {_value(x)}, fold of the log {_value(y)}"
                        for column, x, y in zip(columns, a, b, strict=True)
                        if x != y
                    ]
                sequences = _behind(con, behind, key)
                differences.extend(f"{cell}; {sequences}" for cell in cells)
                shown += 1
                if shown >= limit:
                    break
        return differences
    finally:
        con.close()


def _rows(
    con: duckdb.DuckDBPyConnection, name: str, view: str, keys: tuple[str, ...]
) -> tuple[list[str], dict[tuple[object, ...], tuple[object, ...]]]:
    macro = con.execute(
        "SELECT count(*) FROM duckdb_functions() WHERE database_name = ? AND function_name = ?", [name, f"{view}_as_of"]
    ).fetchone()
    if macro and macro[0]:  # what the fact versions add up to: the kept totals are compared as a table
        con.execute(f"USE {name}")
        try:
            cursor = con.execute(f"SELECT * FROM {view}_as_of(NULL)")
            columns, found = [d[0] for d in cursor.description], cursor.fetchall()
        finally:
            con.execute("USE memory")
    else:  # a snapshot: its copy of the view
        cursor = con.execute(f"SELECT * FROM {name}.main.{view}")
        columns, found = [d[0] for d in cursor.description], cursor.fetchall()
    at = [columns.index(k) for k in keys]
    rows = {}
    for row in found:
        rows[tuple(row[i] for i in at)] = tuple(v for i, v in enumerate(row) if i not in at)
    return columns, rows


def _behind(con: duckdb.DuckDBPyConnection, condition: str, key: tuple[object, ...]) -> str:
    """The stream sequences of the fact versions in force behind one totals row, on both sides."""
    found = {}
    for name in ("live", "rebuilt"):
        has = con.execute(
            "SELECT count(*) FROM duckdb_views() WHERE database_name = ? AND view_name = 'actions'", [name]
        ).fetchone()
        if has and has[0]:  # a snapshot has no facts: only the log's side is shown
            sql = f"SELECT version_seq FROM {name}.main.actions WHERE {condition} ORDER BY version_seq"
            found[name] = [int(r[0]) for r in con.execute(sql, list(key)).fetchall()]
    if "live" not in found:
        return f"events behind it in the log: {_sequences(found['rebuilt'])}"
    if found["live"] == found["rebuilt"]:
        return f"events behind it: {_sequences(found['live'])}"
    return f"events behind it: {_sequences(found['live'])} in the projection, {_sequences(found['rebuilt'])} in the log"


def _sequences(seqs: list[int]) -> str:
    if not seqs:
        return "none"
    shown = ", ".join(str(s) for s in seqs[:SEQUENCES_SHOWN])
    more = f" and {len(seqs) - SEQUENCES_SHOWN} more" if len(seqs) > SEQUENCES_SHOWN else ""
    return f"stream sequence{'s' if len(seqs) > 1 else ''} {shown}{more}"


def _value(value: object) -> str:
    return "NULL" if value is None else str(value)


def _sortable(key: tuple[object, ...]) -> tuple[str, ...]:
    return tuple("" if k is None else str(k) for k in key)


def _attach(live: Path, rebuilt: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for name, path in (("live", live), ("rebuilt", rebuilt)):
        try:
            con.execute(f"ATTACH '{_quoted(path)}' AS {name} (READ_ONLY)")
        except duckdb.Error as exc:
            con.close()
            raise ProjectionError(f"cannot open {path} to compare it: {exc}") from None
    return con


def compare_tables(live: Path, rebuilt: Path, limit: int = 10) -> list[str]:
    """Each difference between the two files' projection tables, row by row (empty: equal)."""
    con = _attach(live, rebuilt)
    try:
        differences = []
        for table, (columns, compared) in COMPARED.items():
            for a, b, where in (
                ("live", "rebuilt", "only in the live projection"),
                ("rebuilt", "live", "only in the projection rebuilt from the stream"),
            ):
                sql = ONLY_IN.format(columns=columns, a=a, b=b, table=table, rows=compared)
                rows = con.execute(sql, [limit]).fetchall()
                if rows:
                    differences.append(f"{table}: {rows[0][0]} row(s) {where}, e.g.:")
                    differences.extend(f"    {_short(row[1:])}" for row in rows)
        return differences
    finally:
        con.close()


def _quoted(path: Path) -> str:
    return str(path).replace("'", "''")


def _short(row: tuple[object, ...]) -> str:
    text = ", ".join("NULL" if v is None else str(v) for v in row)
    return text if len(text) <= 300 else text[:297] + "..."
