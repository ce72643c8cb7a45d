"""A batch goes into a table as Arrow columns of the table's own types, read from the database:
schema.sql declares the projection's column types, and no copy of them lives in Python."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, NamedTuple

import duckdb
import pyarrow as pa
import pytest

from projections.batch_insert import BatchInsert
from schemas.errors import ProjectionError

TABLE = """
CREATE TABLE actions (
    id UUID NOT NULL, seq UBIGINT NOT NULL, stored_at TIMESTAMPTZ NOT NULL, day DATE, tags VARCHAR[] NOT NULL,
    audiences STRUCT(audience VARCHAR, count BIGINT, estimated BOOLEAN)[], body JSON, raw BLOB,
    written_by VARCHAR DEFAULT 'nobody'
)"""
ID = uuid.UUID("c471e584-856d-5b45-8630-2ce2b5cc39b0")
AT = datetime(2017, 12, 4, 9, 30, tzinfo=UTC)


class Action(NamedTuple):
    id: uuid.UUID
    seq: int
    stored_at: datetime
    day: date | None
    tags: list[str]
    audiences: list[dict[str, Any]] | None
    body: str | None
    raw: bytes | None


@dataclass(frozen=True, slots=True)
class Tagged:
    seq: int
    id: uuid.UUID
    stored_at: datetime
    tags: list[str]


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect(str(tmp_path / "batch.duckdb"))
    try:
        con.execute(TABLE)
        yield con
    finally:
        con.close()


def test_rows_go_into_the_columns_of_their_names_as_they_were(con: duckdb.DuckDBPyConnection) -> None:
    full = (
        ID,
        2**64 - 1,
        AT,
        date(2017, 12, 4),
        ["pl-nap-2013-2015/III/4"],
        [{"audience": "pupils", "count": 40, "estimated": False}],
        '{"venue": "Shkolla \\"Naim Frashëri\\""}',
        b"\x00\xff",
    )
    empty = (uuid.UUID(int=1), 0, AT, None, [], None, None, None)
    BatchInsert(con, "actions", Action).write(con, [Action(*full), Action(*empty)])
    got = con.execute("SELECT * FROM actions ORDER BY seq").fetchall()
    assert got == [(*empty, "nobody"), (*full, "nobody")]


def test_a_dataclass_row_is_read_by_field_name_into_any_column_order(con: duckdb.DuckDBPyConnection) -> None:
    BatchInsert(con, "actions", Tagged).write(con, [Tagged(7, ID, AT, ["a", "b"])])
    got = con.execute("SELECT id, seq, stored_at, tags, body FROM actions").fetchall()
    assert got == [(ID, 7, AT, ["a", "b"], None)]


def test_the_columns_types_are_the_tables_own(con: duckdb.DuckDBPyConnection) -> None:
    """The same row type sent to a table that declares other types is sent in those types."""
    insert = BatchInsert(con, "actions", Tagged)
    con.execute("CREATE TABLE narrow (seq INTEGER, id UUID, stored_at TIMESTAMPTZ, tags BIGINT[])")
    narrow = BatchInsert(con, "narrow", Tagged)
    row = [Tagged(7, ID, AT, [])]
    assert insert.arrow(row).schema.field("seq").type == pa.uint64()
    assert insert.arrow(row).schema.field("tags").type == pa.list_(pa.string())
    assert narrow.arrow(row).schema.field("seq").type == pa.int32()
    assert narrow.arrow(row).schema.field("tags").type == pa.list_(pa.int64())
    assert narrow.arrow(row).column_names == ["seq", "id_hi", "id_lo", "stored_at", "tags"]


def test_a_field_without_a_column_is_refused_naming_both(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE TABLE short (seq UBIGINT, stored_at TIMESTAMPTZ)")
    with pytest.raises(ProjectionError) as refused:
        BatchInsert(con, "short", Tagged)
    assert str(refused.value) == (
        "the table short has no column id, tags for the Tagged rows written into it: "
        "projections/schema.sql and projections/rows.py disagree"
    )


def test_a_column_of_a_type_batches_cannot_send_is_refused_at_once(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE TABLE measured (seq DOUBLE, id UUID, stored_at TIMESTAMPTZ, tags VARCHAR[])")
    with pytest.raises(ProjectionError) as refused:
        BatchInsert(con, "measured", Tagged)
    assert str(refused.value) == (
        "a projection's column is of DuckDB type DOUBLE, which batches cannot send yet: "
        "give it an Arrow type in projections/batch_insert.py"
    )


POOL = """
import pyarrow as pa
before = pa.default_memory_pool().backend_name
import consumers.app, consumers.replay, projections.store
imported = pa.default_memory_pool().backend_name
from projections.batch_insert import use_system_memory_pool
use_system_memory_pool()
print(before, imported, pa.default_memory_pool().backend_name)
"""


def test_arrows_memory_pool_is_set_by_the_entry_point_never_by_an_import() -> None:
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    out = subprocess.run([sys.executable, "-c", POOL], capture_output=True, text=True, check=True, env=env, timeout=60)
    before, imported, after = out.stdout.split()
    assert before != "system"
    assert imported == before
    assert after == "system"
