"""The projector's index of the events its file holds: every (agency, event_id) of the event log,
with its stream sequence, its event type and whether its fact is retracted.

The fold asks, for every batch, which of the batch's event_ids are known. DuckDB keeps no index it
would not hold in memory, and a scan of the event log for every batch grows with the log. This
index keeps its memory fixed however long the log grows:

- its entries, sorted by event_id, are records of ``RECORD.itemsize`` bytes in a file beside the
  database: an unnamed temporary file, built from the database when the store opens and gone when
  the process ends. A lookup reads the one block of ``BLOCK`` records its event_id falls in, found
  in the first key of every block (16 bytes per ``BLOCK`` events, the only part that grows);
- a Bloom filter of ``FILTER_BYTES`` over the file's event_ids answers, without reading the file,
  nearly every event_id the file does not hold: new events, which are most of every batch. As the
  log grows past a few million events it lets more of them through to a block read, never fewer;
- the entries added since the file was last merged, at most ``MERGE_AT``, are in a dictionary.

The index is exact: the filter only decides whether the file is read, and the file keeps the whole
event_id and the agency. It is built from the database when the store opens and extended only with
batches the database has committed, so it says what the database says.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.errors import ProjectionError

MERGE_AT = 50_000  # events in the dictionary before they are merged into the file
BLOCK = 512  # records read for one lookup in the file
CHUNK = 1 << 17  # records read, merged and written at a time when the file is merged
LOAD_CHUNK = 250_000  # rows of the event log read at a time when the index is built
FILTER_BYTES = 8 * 1024 * 1024
FILTER_HASHES = 4
_LOW = (1 << 64) - 1

# A fact's state, as stored: a correction or retraction is no fact itself.
NOT_A_FACT, CURRENT, RETRACTED = -1, 0, 1

# One entry of the file.
RECORD = np.dtype(
    [("hi", "<u8"), ("lo", "<u8"), ("seq", "<u8"), ("agency", "<u4"), ("type", "u1"), ("state", "i1"), ("_", "V2")]
)
_STATE_OFFSET = RECORD.fields["state"][1]

# The event_id's halves from its hexadecimal digits (a cast of UUID to an integer is not in
# every DuckDB the project supports).
LOAD = """
SELECT l.agency,
       CAST('0x' || substr(replace(CAST(l.event_id AS VARCHAR), '-', ''), 1, 16) AS UBIGINT) AS hi,
       CAST('0x' || substr(replace(CAST(l.event_id AS VARCHAR), '-', ''), 17, 16) AS UBIGINT) AS lo,
       l.stream_seq, l.event_type,
       CASE WHEN v.retracted IS NULL THEN -1 WHEN v.retracted THEN 1 ELSE 0 END::TINYINT AS state
FROM event_log l
LEFT JOIN (SELECT fact_id, agency, retracted FROM fact_versions WHERE superseded_seq IS NULL) v
       ON v.fact_id = l.event_id AND v.agency = l.agency
"""

# splitmix64's finaliser, on arrays (unsigned arithmetic wraps in NumPy arrays).
_M1, _M2, _GOLDEN = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def _below(his: np.ndarray, los: np.ndarray, hi: np.uint64, lo: np.uint64) -> int:
    """How many of the keys (sorted by hi, then lo) are below (hi, lo)."""
    left, right = int(his.searchsorted(hi, "left")), int(his.searchsorted(hi, "right"))
    return left + int(los[left:right].searchsorted(lo, "left")) if right > left else left


def _at_most(his: np.ndarray, los: np.ndarray, hi: np.uint64, lo: np.uint64) -> int:
    """How many of the keys (sorted by hi, then lo) are at most (hi, lo)."""
    left, right = int(his.searchsorted(hi, "left")), int(his.searchsorted(hi, "right"))
    return left + int(los[left:right].searchsorted(lo, "right")) if right > left else left


def _positions(his: np.ndarray, los: np.ndarray, new_his: np.ndarray, new_los: np.ndarray) -> np.ndarray:
    """Where each of the new keys goes among the keys (both sorted by hi, then lo)."""
    left = np.searchsorted(his, new_his, "left")
    right = np.searchsorted(his, new_his, "right")
    for i in np.flatnonzero(right > left).tolist():  # an event_id whose high half is there already
        left[i] += np.searchsorted(los[left[i] : right[i]], new_los[i], "left")
    return left


@dataclass(frozen=True, slots=True)
class Entry:
    stream_seq: int
    event_type: str
    retracted: bool | None  # None: not a fact (a correction or retraction itself)


class KnownIndex:
    """The index; ``directory`` holds its file (the system's temporary directory if None)."""

    def __init__(self, directory: str | Path | None = None) -> None:
        self._directory = directory
        self._agencies: dict[str, int] = {}
        self._agency_names: list[str] = []
        self._types: dict[str, int] = {}
        self._type_names: list[str] = []
        self._file: IO[bytes] | None = None
        self._close_file: weakref.finalize | None = None  # closes the file when the index goes
        self._count = 0  # records in the file
        # The key of every BLOCK-th record of the file: its high 64 bits, then its low.
        self._fence_hi = np.empty(0, np.uint64)
        self._fence_lo = np.empty(0, np.uint64)
        self._filter = np.zeros(FILTER_BYTES, np.uint8)
        self._seed = np.uint64(int.from_bytes(os.urandom(8), "little"))
        # Added since the last merge: (agency, event_id) -> [stream_seq, type code, state].
        self._recent: dict[tuple[str, uuid.UUID], list[int]] = {}

    def __len__(self) -> int:
        return self._count + len(self._recent)

    @classmethod
    def load(cls, con: duckdb.DuckDBPyConnection, directory: str | Path | None = None) -> KnownIndex:
        """The index of everything the file's event log holds, read ``LOAD_CHUNK`` rows at a time."""
        index = cls(directory)
        with con.cursor() as cursor:
            for batch in cursor.sql(LOAD).to_arrow_reader(LOAD_CHUNK):
                if batch.num_rows:
                    index._merge(index._records(batch))
        return index

    def get(self, keys: list[tuple[str, uuid.UUID]]) -> dict[tuple[str, uuid.UUID], Entry]:
        """The entries of those keys the index holds."""
        found: dict[tuple[str, uuid.UUID], Entry] = {}
        rest = []
        for key in keys:
            recent = self._recent.get(key)
            if recent is not None:
                found[key] = self._entry(*recent)
            else:
                rest.append(key)
        if not rest or self._count == 0:
            return found
        his = np.fromiter((k[1].int >> 64 for k in rest), np.uint64, len(rest))
        los = np.fromiter((k[1].int & _LOW for k in rest), np.uint64, len(rest))
        maybe = np.flatnonzero(self._maybe(his, los))
        blocks = _positions(self._fence_hi, self._fence_lo, his[maybe], los[maybe])
        for i, block in zip(maybe.tolist(), blocks.tolist(), strict=True):
            code = self._agencies.get(rest[i][0])
            if code is None:
                continue
            hit = self._find(his[i], los[i], code, block)
            if hit is not None:
                record = hit[1]
                found[rest[i]] = self._entry(int(record["seq"]), int(record["type"]), int(record["state"]))
        return found

    def add(self, key: tuple[str, uuid.UUID], stream_seq: int, event_type: str, fact: bool) -> None:
        """An event the file has just committed to its log."""
        code = self._code(self._types, self._type_names, event_type)
        self._recent[key] = [stream_seq, code, CURRENT if fact else NOT_A_FACT]

    def retract(self, key: tuple[str, uuid.UUID]) -> None:
        """A fact the file has just committed a retraction of."""
        recent = self._recent.get(key)
        if recent is not None:
            recent[2] = RETRACTED
            return
        agency, event_id = key
        code = self._agencies.get(agency)
        hit = None if code is None else self._find(np.uint64(event_id.int >> 64), np.uint64(event_id.int & _LOW), code)
        if hit is None:
            raise KeyError(f"retracted event {key} is not in the index")
        assert self._file is not None
        with self._writing():
            os.pwrite(self._file.fileno(), np.int8(RETRACTED).tobytes(), hit[0] * RECORD.itemsize + _STATE_OFFSET)

    def settle(self) -> None:
        """Merge what was added into the file once there is enough of it."""
        if len(self._recent) < MERGE_AT:
            return
        n = len(self._recent)
        records = np.zeros(n, RECORD)
        records["hi"] = np.fromiter((k[1].int >> 64 for k in self._recent), np.uint64, n)
        records["lo"] = np.fromiter((k[1].int & _LOW for k in self._recent), np.uint64, n)
        codes = (self._code(self._agencies, self._agency_names, k[0]) for k in self._recent)
        records["agency"] = np.fromiter(codes, np.uint32, n)
        values = self._recent.values()
        records["seq"] = np.fromiter((v[0] for v in values), np.uint64, n)
        records["type"] = np.fromiter((v[1] for v in values), np.uint8, n)
        records["state"] = np.fromiter((v[2] for v in values), np.int8, n)
        self._merge(records)
        self._recent = {}

    def close(self) -> None:
        """Remove the file (it goes with the process in any case)."""
        if self._close_file is not None:
            self._close_file()
        self._file = self._close_file = None

    def _records(self, batch: pa.RecordBatch) -> np.ndarray:
        """Rows of ``LOAD`` as records, agencies and event types as codes without a Python string each."""
        records = np.zeros(batch.num_rows, RECORD)
        for name, column in (("hi", "hi"), ("lo", "lo"), ("seq", "stream_seq"), ("state", "state")):
            records[name] = batch.column(column).to_numpy()
        for name, column, codes, names in (
            ("agency", "agency", self._agencies, self._agency_names),
            ("type", "event_type", self._types, self._type_names),
        ):
            encoded = pc.dictionary_encode(batch.column(column))
            mapping = [self._code(codes, names, value) for value in encoded.dictionary.to_pylist()]
            records[name] = np.asarray(mapping, np.uint32)[encoded.indices.to_numpy()]
        return records

    def _merge(self, new: np.ndarray) -> None:
        """Merge records into the file: a new file written in one pass over the old, ``CHUNK``
        records at a time, the new records inserted where they belong."""
        new = new[np.lexsort((new["lo"], new["hi"]))]
        with self._writing():
            self._rewrite(new)
        self._remember(new["hi"], new["lo"])

    def _rewrite(self, new: np.ndarray) -> None:
        out = tempfile.TemporaryFile(dir=self._directory)  # noqa: SIM115 - it outlives this method: the index holds it
        fences_hi, fences_lo = [], []
        written = taken = 0
        try:
            for start in range(0, self._count, CHUNK):
                chunk = self._read(start, min(CHUNK, self._count - start))
                if start + CHUNK < self._count:
                    last = chunk[-1]
                    upto = taken + _at_most(new["hi"][taken:], new["lo"][taken:], last["hi"], last["lo"])
                else:
                    upto = len(new)
                part = new[taken:upto]
                if len(part):
                    at = _positions(chunk["hi"], chunk["lo"], part["hi"], part["lo"])
                    chunk = np.insert(chunk, at, part)
                taken = upto
                first = (-written) % BLOCK
                fences_hi.append(chunk["hi"][first::BLOCK].copy())
                fences_lo.append(chunk["lo"][first::BLOCK].copy())
                out.write(chunk.tobytes())
                written += len(chunk)
            if taken < len(new):  # the file was empty
                fences_hi.append(new["hi"][::BLOCK].copy())
                fences_lo.append(new["lo"][::BLOCK].copy())
                out.write(new.tobytes())
                written += len(new)
            out.flush()
        except BaseException:
            out.close()
            raise
        self.close()
        self._file, self._count = out, written
        self._close_file = weakref.finalize(self, out.close)
        self._fence_hi = np.concatenate(fences_hi)
        self._fence_lo = np.concatenate(fences_lo)

    def _read(self, start: int, n: int) -> np.ndarray:
        assert self._file is not None
        size = RECORD.itemsize
        data = os.pread(self._file.fileno(), n * size, start * size)
        if len(data) != n * size:
            raise ProjectionError(
                f"the index of known events beside the projection lost its file's records {start:,} to "
                f"{start + n:,} (read {len(data):,} of {n * size:,} bytes): something removed or truncated it. "
                f"Start the projector again: it builds the index anew from the projection"
            )
        return np.frombuffer(data, RECORD)

    def _find(
        self, hi: np.uint64, lo: np.uint64, agency_code: int, fences_below: int | None = None
    ) -> tuple[int, np.void] | None:
        """The position and record of (hi, lo, agency) in the file, or None. Its key's records start
        in the block of the last fence below it (``fences_below`` of them are), or at the next fence."""
        if fences_below is None:
            fences_below = _below(self._fence_hi, self._fence_lo, hi, lo)
        block = max(fences_below - 1, 0)
        while block * BLOCK < self._count:
            start = block * BLOCK
            records = self._read(start, min(BLOCK, self._count - start))
            i = _below(records["hi"], records["lo"], hi, lo)
            while i < len(records):
                record = records[i]
                if record["hi"] != hi or record["lo"] != lo:
                    return None
                if record["agency"] == agency_code:
                    return start + i, record
                i += 1
            block += 1  # the key's records may go on in the next block
        return None

    def _hashes(self, his: np.ndarray, los: np.ndarray) -> list[np.ndarray]:
        """The bit positions of each key in the filter."""
        first = _mix(his ^ _mix(los ^ self._seed))
        step = _mix(first ^ _GOLDEN) | np.uint64(1)
        bits = np.uint64(FILTER_BYTES * 8)
        return [(first + np.uint64(i) * step) % bits for i in range(FILTER_HASHES)]

    def _remember(self, his: np.ndarray, los: np.ndarray) -> None:
        positions = np.concatenate(self._hashes(his, los))
        positions.sort()
        at = positions >> np.uint64(3)
        bits = np.left_shift(1, positions & np.uint64(7)).astype(np.uint8)
        starts = np.flatnonzero(np.concatenate(([True], at[1:] != at[:-1])))  # one OR a byte
        self._filter[at[starts]] |= np.bitwise_or.reduceat(bits, starts)

    def _maybe(self, his: np.ndarray, los: np.ndarray) -> np.ndarray:
        """Whether each key may be in the file (False: certainly not)."""
        maybe = np.ones(len(his), bool)
        for positions in self._hashes(his, los):
            maybe &= (self._filter[positions >> np.uint64(3)] >> (positions & np.uint64(7)).astype(np.uint8)) & 1 == 1
        return maybe

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """A write of the file that fails says where, and what to do."""
        try:
            yield
        except OSError as exc:
            raise ProjectionError(
                f"cannot write the index of known events in {self._directory or tempfile.gettempdir()}: {exc}. "
                f"Free space there (it needs {RECORD.itemsize} bytes an event of the log), then start the "
                f"projector again: it resumes from its checkpoint"
            ) from None

    def _entry(self, stream_seq: int, type_code: int, state: int) -> Entry:
        return Entry(stream_seq, self._type_names[type_code], None if state == NOT_A_FACT else state == RETRACTED)

    @staticmethod
    def _code(codes: dict[str, int], names: list[str], name: str) -> int:
        code = codes.get(name)
        if code is None:
            code = codes[name] = len(names)
            names.append(name)
        return code
