"""Comparing two projection files row by row: the live one and one rebuilt from the stream."""

from __future__ import annotations

from pathlib import Path

import duckdb

from schemas.errors import ProjectionError

# Every table the fold writes, with the columns that must be equal (times of writing excluded).
COMPARED = {
    "event_log": "*",
    "rejected_events": "*",
    "ignored_duplicates": "*",
    "fact_versions": "*",
    "stream_gaps": "first_missing, last_missing",
}
ONLY_IN = """
SELECT count(*) OVER () AS n, * FROM (SELECT {columns} FROM {a}.{table} EXCEPT ALL SELECT {columns} FROM {b}.{table})
ORDER BY ALL LIMIT ?
"""


def compare(live: Path, rebuilt: Path, limit: int = 10) -> list[str]:
    """Each difference between the two files' projection tables, as a sentence (empty: equal)."""
    con = duckdb.connect()
    try:
        for name, path in (("live", live), ("rebuilt", rebuilt)):
            try:
                con.execute(f"ATTACH '{_quoted(path)}' AS {name} (READ_ONLY)")
            except duckdb.Error as exc:
                raise ProjectionError(f"cannot open {path} to compare it: {exc}") from None
        differences = []
        for table, columns in COMPARED.items():
            for a, b, where in (
                ("live", "rebuilt", "only in the live projection"),
                ("rebuilt", "live", "only in the projection rebuilt from the stream"),
            ):
                rows = con.execute(ONLY_IN.format(columns=columns, a=a, b=b, table=table), [limit]).fetchall()
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
