"""What the projection holds of appointments and links in force, for the fold's coordination
rules (consumers/coordination.py): read only for a batch that needs it."""

from __future__ import annotations

import json
import uuid

import duckdb

EventKey = tuple[str, uuid.UUID]

SELECT_APPOINTMENTS = """
SELECT agency, fact_id, payload ->> 'country', payload ->> 'coordinator' FROM fact_versions
WHERE event_type = 'coordinator_appointed' AND superseded_seq IS NULL AND NOT retracted
"""
SELECT_LINKS = """
SELECT agency, fact_id, CAST(payload -> 'actions' AS VARCHAR) FROM fact_versions
WHERE event_type = 'actions_linked' AND superseded_seq IS NULL AND NOT retracted
"""
SELECT_COUNTRIES = """
WITH wanted AS (SELECT unnest(?::VARCHAR[]) AS agency, unnest(?::UUID[]) AS fact_id)
SELECT v.agency, v.fact_id, v.country FROM fact_versions v SEMI JOIN wanted w USING (agency, fact_id)
WHERE v.superseded_seq IS NULL
"""


def load_coordination(
    con: duckdb.DuckDBPyConnection, actions: list[EventKey]
) -> tuple[dict[EventKey, tuple[str, str]], dict[EventKey, tuple[EventKey, ...]], dict[EventKey, str]]:
    """The appointments in force (appointment -> (country, agency)), the links in force (link ->
    its actions) and the country of each of ``actions`` as it stands."""
    appointments = {(r[0], r[1]): (r[2], r[3]) for r in con.execute(SELECT_APPOINTMENTS).fetchall()}
    links = {
        (r[0], r[1]): tuple((a["agency"], uuid.UUID(a["event_id"])) for a in json.loads(r[2]))
        for r in con.execute(SELECT_LINKS).fetchall()
    }
    countries: dict[EventKey, str] = {}
    if actions:
        rows = con.execute(SELECT_COUNTRIES, [[k[0] for k in actions], [k[1] for k in actions]]).fetchall()
        countries = {(r[0], r[1]): r[2] for r in rows}
    return appointments, links, countries
