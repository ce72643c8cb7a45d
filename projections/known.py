"""The projector's index of the events its file holds: every (agency, event_id) of the event log,
with its stream sequence, its event type and whether its fact is retracted.

The fold asks, for every batch, which of the batch's event_ids are known. DuckDB keeps no index it
would not hold in memory, and a scan of the event log for every batch grows with the log. This
index keeps its memory fixed however long the log grows:

- its entries are records of ``RECORD.itemsize`` bytes in a few runs, each sorted by event_id in an
  unnamed temporary file beside the database: built from the database when the store opens, gone
  when the process ends. A lookup reads, in each run, the one block of ``BLOCK`` records its
  event_id falls in, found by the first key of every block (16 bytes per ``BLOCK`` events, the only
  part that grows with the log). A run is merged with the new records while it is less than
  ``RATIO`` times as large, so a run is rewritten a few times over the log's life, not once a merge;
- a Bloom filter of ``FILTER_BYTES`` over the files' event_ids answers, without reading a file,
  nearly every event_id they do not hold: new events, most of every batch. As the log grows past a
  few million events it lets more of them through to a block read, never fewer;
- the entries added since the last merge, at most ``MERGE_AT``, are in a dictionary.

The index is exact: the filter only decides whether the files are read, and the files keep the
whole event_id and the agency. It is built from the database when the store opens and extended
only with batches the database has committed, so it says what the database says.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.errors import ProjectionError

MERGE_AT = 50_000  # events in the dictionary before they are merged into the files
BLOCK = 512  # records read for one lookup in the file
CHUNK = 1 << 15  # records of a run read, merged and written at a time; a merge holds two a run
RATIO = 4  # a run is merged with the new records while it is less than RATIO times as many
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


def _key(record: np.void) -> tuple[int, int]:
    return int(record["hi"]), int(record["lo"])


def _insert(records: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Sorted records with sorted new ones inserted where they belong."""
    if not len(new):
        return records
    return np.insert(records, _positions(records["hi"], records["lo"], new["hi"], new["lo"]), new)


def _merged(a: Iterator[np.ndarray], b: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    """Two streams of sorted chunks as one sorted stream, holding a chunk of each at a time: of the
    two chunks in hand, the one whose last key is lower goes out with what of the other precedes it."""
    left, right = next(a, None), next(b, None)
    while left is not None and right is not None:
        if _key(left[-1]) > _key(right[-1]):
            a, b, left, right = b, a, right, left
        last = left[-1]
        cut = _at_most(right["hi"], right["lo"], last["hi"], last["lo"])
        yield _insert(left, right[:cut])
        left, right = next(a, None), right[cut:]
        if not len(right):
            right = next(b, None)
    for chunk, rest in ((left, a), (right, b)):
        if chunk is not None:
            yield chunk
            yield from rest


def _chunks(records: np.ndarray) -> Iterator[np.ndarray]:
    for start in range(0, len(records), CHUNK):
        yield records[start : start + CHUNK]


class _Run:
    """Records sorted by key in an unnamed temporary file, and the first key of every ``BLOCK``."""

    def __init__(self, directory: str | Path | None, chunks: Iterable[np.ndarray]) -> None:
        self.file = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115 - the run holds it until closed
        self.close = weakref.finalize(self, self.file.close)
        fences_hi, fences_lo = [], []
        self.count = 0
        try:
            for chunk in chunks:
                first = (-self.count) % BLOCK
                fences_hi.append(chunk["hi"][first::BLOCK].copy())
                fences_lo.append(chunk["lo"][first::BLOCK].copy())
                self.file.write(chunk.tobytes())
                self.count += len(chunk)
            self.file.flush()
        except BaseException:
            self.close()
            raise
        self.fd = self.file.fileno()
        self.fence_hi = np.concatenate(fences_hi) if fences_hi else np.empty(0, np.uint64)
        self.fence_lo = np.concatenate(fences_lo) if fences_lo else np.empty(0, np.uint64)

    def chunks(self) -> Iterator[np.ndarray]:
        for start in range(0, self.count, CHUNK):
            yield self.read(start, min(CHUNK, self.count - start))

    def read(self, start: int, n: int) -> np.ndarray:
        size = RECORD.itemsize
        data = os.pread(self.fd, n * size, start * size)
        if len(data) != n * size:
            raise ProjectionError(
                f"the index of known events lost its file's records {start:,} to {start + n:,} (read "
                f"{len(data):,} of {n * size:,} bytes): something removed or truncated it. Start the projector "
                f"again: it builds the index anew from the projection"
            )
        return np.frombuffer(data, RECORD)

    def find(
        self, hi: np.uint64, lo: np.uint64, agency_code: int, fences_below: int | None = None
    ) -> tuple[int, np.void] | None:
        """The position and record of (hi, lo, agency), or None. Its key's records start in the
        block of the last fence below it (``fences_below`` of them are), or at the next fence."""
        if fences_below is None:
            fences_below = _below(self.fence_hi, self.fence_lo, hi, lo)
        block = max(fences_below - 1, 0)
        while block * BLOCK < self.count:
            start = block * BLOCK
            records = self.read(start, min(BLOCK, self.count - start))
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

    def retract(self, position: int) -> None:
        os.pwrite(self.fd, np.int8(RETRACTED).tobytes(), position * RECORD.itemsize + _STATE_OFFSET)


@dataclass(frozen=True, slots=True)
class Entry:
    stream_seq: int
    event_type: str
    retracted: bool | None  # None: not a fact (a correction or retraction itself)


class KnownIndex:
    """The index; ``directory`` holds its files (the system's temporary directory if None)."""

    def __init__(self, directory: str | Path | None = None) -> None:
        self._directory = directory
        self._agencies: dict[str, int] = {}
        self._agency_names: list[str] = []
        self._types: dict[str, int] = {}
        self._type_names: list[str] = []
        # Sorted runs of records, each at least RATIO times the size of the next.
        self._runs: list[_Run] = []
        self._filter = np.zeros(FILTER_BYTES, np.uint8)
        self._seed = np.uint64(int.from_bytes(os.urandom(8), "little"))
        # Added since the last merge: (agency, event_id) -> [stream_seq, type code, state].
        self._recent: dict[tuple[str, uuid.UUID], list[int]] = {}

    def __len__(self) -> int:
        return self._stored + len(self._recent)

    @property
    def _stored(self) -> int:
        return sum(run.count for run in self._runs)

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
        if not rest or not self._runs:
            return found
        his = np.fromiter((k[1].int >> 64 for k in rest), np.uint64, len(rest))
        los = np.fromiter((k[1].int & _LOW for k in rest), np.uint64, len(rest))
        maybe = np.flatnonzero(self._maybe(his, los))
        blocks = [_positions(run.fence_hi, run.fence_lo, his[maybe], los[maybe]).tolist() for run in self._runs]
        for n, i in enumerate(maybe.tolist()):
            code = self._agencies.get(rest[i][0])
            if code is None:
                continue
            for run, below in zip(self._runs, blocks, strict=True):
                hit = run.find(his[i], los[i], code, below[n])
                if hit is not None:
                    record = hit[1]
                    found[rest[i]] = self._entry(int(record["seq"]), int(record["type"]), int(record["state"]))
                    break
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
        if code is not None:
            hi, lo = np.uint64(event_id.int >> 64), np.uint64(event_id.int & _LOW)
            for run in self._runs:
                hit = run.find(hi, lo, code)
                if hit is not None:
                    with self._writing():
                        run.retract(hit[0])
                    return
        raise KeyError(f"retracted event {key} is not in the index")

    def settle(self) -> None:
        """Merge what was added into the files once there is enough of it."""
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
        """Remove the files (they go with the process in any case)."""
        for run in self._runs:
            run.close()
        self._runs = []

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
        """New records as a run of their own, merged in one pass with the smallest runs while these
        are less than ``RATIO`` times as large: each record is rewritten a few times over the log's
        life, not once a merge, and a lookup reads a block of a few runs."""
        new = new[np.lexsort((new["lo"], new["hi"]))]
        stream, count, keep = _chunks(new), len(new), len(self._runs)
        while keep and self._runs[keep - 1].count < RATIO * count:
            keep -= 1
            stream, count = _merged(self._runs[keep].chunks(), stream), count + self._runs[keep].count
        with self._writing():  # on failure the runs stay as they were
            run = _Run(self._directory, stream)
        merged, self._runs = self._runs[keep:], [*self._runs[:keep], run]
        for old in merged:
            old.close()
        self._remember(new["hi"], new["lo"])

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
