"""What a projection file holds: its tables (``schema.sql``, the one place their columns and their
types are declared), the reference tables of counties and municipalities, and its views
(``projections.views``)."""

from __future__ import annotations

from importlib import resources

import duckdb

from projections.views import VIEWS_SQL
from schemas.reference import regions

# The on-disk format of the files made for analysts' own tools (the snapshot, the copy, a replay):
# the one DuckDB 1.1 and every later version read, as BI tools bundle older versions. The live
# projection keeps the newest format: in the older one a checkpoint of a full write-ahead log holds
# a row group's strings in memory at once, more than the projector's buffer pool has left, and
# fails. A replay is built in the newest format and copied into the older one when done.
STORAGE_VERSION = "v1.1.0"

SCHEMA_SQL = resources.files("projections").joinpath("schema.sql").read_text("utf-8")

# Made anew at every start from the reference data this version carries (``schemas.reference``).
REFERENCE_SQL = """
CREATE OR REPLACE TABLE counties (
    code VARCHAR PRIMARY KEY, country VARCHAR, name VARCHAR, name_en VARCHAR, kind VARCHAR);
CREATE OR REPLACE TABLE municipalities (code VARCHAR PRIMARY KEY, county VARCHAR, name VARCHAR);
"""
INSERT_COUNTIES = "INSERT INTO counties SELECT unnest(?), unnest(?), unnest(?), unnest(?), unnest(?)"
INSERT_MUNICIPALITIES = "INSERT INTO municipalities SELECT unnest(?), unnest(?), unnest(?)"


def create_projection(con: duckdb.DuckDBPyConnection) -> None:
    """Make every table that is missing (and add the columns later versions added), the reference
    tables with their rows, and every view, on ``con``, in the caller's transaction."""
    con.execute(SCHEMA_SQL)
    write_reference_tables(con)
    con.execute(VIEWS_SQL)


def write_reference_tables(con: duckdb.DuckDBPyConnection) -> None:
    """The counties and municipalities tables, made anew with this version's reference data."""
    reg = regions()
    counties = list(reg.counties.values())
    munis = list(reg.municipalities.values())
    con.execute(REFERENCE_SQL)
    con.execute(
        INSERT_COUNTIES,
        [
            [c.code for c in counties],
            [c.country for c in counties],
            [c.name for c in counties],
            [c.name_en for c in counties],
            [c.kind for c in counties],
        ],
    )
    con.execute(INSERT_MUNICIPALITIES, [[m.code for m in munis], [m.county for m in munis], [m.name for m in munis]])
