"""A batch of rows into one table of the projection, as Arrow columns.

The rows go to DuckDB as Arrow columns: built in C++ from the Python values, and read by DuckDB
without a call back into Python a value, as a list parameter would need. Each column's type is the
table's own, read from the database once its tables are made: ``schema.sql`` declares the types,
and nothing here repeats them. A UUID travels as the two halves of its 128-bit integer (read from
the UUID without a call; its text is a call a value), JSON as text; the INSERT casts both back.
"""

from __future__ import annotations

import contextlib
import operator
from collections.abc import Callable, Iterator, Sequence
from dataclasses import fields
from typing import Any

import duckdb
import pyarrow as pa

from schemas.errors import ProjectionError

_BATCH = "arrow_batch"  # the name a batch is registered under while it is inserted
_HALF = (1 << 64) - 1
# The Arrow type of each DuckDB type the projection's tables use, by DuckDB's type id (JSON's is
# varchar); lists and structs are built from their children's.
_ARROW_TYPES = {
    "ubigint": pa.uint64(),
    "bigint": pa.int64(),
    "integer": pa.int32(),
    "boolean": pa.bool_(),
    "varchar": pa.string(),
    "blob": pa.binary(),
    "date": pa.date32(),
    "timestamp with time zone": pa.timestamp("us", tz="UTC"),
}
_UUID = "CAST((CAST({name}_hi AS UHUGEINT) << 64) | CAST({name}_lo AS UHUGEINT) AS UUID)"
_JSON = "CAST({name} AS JSON)"


def use_system_memory_pool() -> None:
    """Arrow allocates from the system's allocator, which gives freed memory back, instead of its
    own, which keeps it for later. Process-wide: called once, at the start of a process that writes
    batches (the projector, a replay)."""
    pa.set_memory_pool(pa.system_memory_pool())


def arrow_type(duckdb_type: duckdb.DuckDBPyType) -> pa.DataType:
    """The Arrow type a column of ``duckdb_type`` is sent as (a UUID's halves aside)."""
    if duckdb_type.id == "list":
        return pa.list_(arrow_type(duckdb_type.children[0][1]))
    if duckdb_type.id == "struct":
        return pa.struct([(name, arrow_type(child)) for name, child in duckdb_type.children])
    try:
        return _ARROW_TYPES[duckdb_type.id]
    except KeyError:
        raise ProjectionError(
            f"a projection's column is of DuckDB type {duckdb_type}, which batches cannot send yet: "
            f"give it an Arrow type in projections/batch_insert.py"
        ) from None


def field_names(row_type: type) -> tuple[str, ...]:
    """The fields of a row type (a named tuple or a dataclass), in order."""
    return tuple(row_type._fields) if hasattr(row_type, "_fields") else tuple(f.name for f in fields(row_type))


class BatchInsert:
    """Rows of one row type into one table: each field into the column of its name, in the type the
    table has in the database. Made after ``schema.sql`` has run on the connection, so that a file of
    an earlier version has the columns added since."""

    def __init__(self, con: duckdb.DuckDBPyConnection, table: str, row_type: type) -> None:
        names = field_names(row_type)
        relation = con.table(table)
        declared = dict(zip(relation.columns, relation.types, strict=True))
        missing = [name for name in names if name not in declared]
        if missing:
            raise ProjectionError(
                f"the table {table} has no column {', '.join(missing)} for the {row_type.__name__} rows "
                f"written into it: projections/schema.sql and projections/rows.py disagree"
            )
        # None for a UUID: its two halves are built apart.
        self.columns: list[tuple[str, pa.DataType | None]] = [
            (name, None if declared[name].id == "uuid" else arrow_type(declared[name])) for name in names
        ]
        values = ", ".join(
            (_UUID if declared[name].id == "uuid" else _JSON if str(declared[name]) == "JSON" else "{name}").format(
                name=name
            )
            for name in names
        )
        self.sql = f"INSERT INTO {table} ({', '.join(names)}) SELECT {values} FROM {_BATCH}"
        # A named tuple's rows are already their columns' values; a dataclass's are read by name.
        self._values: Callable[[Any], Sequence[Any]] | None = (
            None if hasattr(row_type, "_fields") else operator.attrgetter(*names)
        )

    def arrow(self, rows: list[Any]) -> pa.Table:
        """Rows to an Arrow table of the columns, one pass per column."""
        columns = zip(*(rows if self._values is None else map(self._values, rows)), strict=True)
        arrays, names = [], []
        for column, (name, t) in zip(columns, self.columns, strict=True):
            if t is None:
                arrays.append(pa.array([None if v is None else v.int >> 64 for v in column], pa.uint64()))
                arrays.append(pa.array([None if v is None else v.int & _HALF for v in column], pa.uint64()))
                names += [f"{name}_hi", f"{name}_lo"]
            else:
                arrays.append(pa.array(column, t))
                names.append(name)
        return pa.Table.from_arrays(arrays, names=names)

    def write(self, con: duckdb.DuckDBPyConnection, rows: list[Any]) -> None:
        """Insert ``rows`` through ``con``, in its transaction; nothing for no rows."""
        if not rows:
            return
        with registered(con, _BATCH, self.arrow(rows)):
            con.execute(self.sql)


@contextlib.contextmanager
def registered(con: duckdb.DuckDBPyConnection, name: str, table: pa.Table) -> Iterator[None]:
    """``table`` read as ``name`` through ``con`` while the block runs. A statement that fails in
    the block leaves the transaction refusing everything until it is rolled back, the unregistering
    too: the block's own failure is the one raised, and the rollback takes the registration with it."""
    con.register(name, table)
    try:
        yield
    finally:
        with contextlib.suppress(duckdb.Error):
            con.unregister(name)
