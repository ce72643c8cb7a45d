"""The projector's index of known events answers exactly what the event log says: after every
merge of its recent entries, and when it is built again from the file."""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

import projections.known
from consumers.delivery import StreamMessage
from consumers.projector import Projector
from outreach.synthetic import generate
from projections.known import Entry, KnownIndex
from projections.rows import KnownEvent
from projections.store import ProjectionStore
from schemas.errors import ProjectionError
from tests.test_fold import correction, messages, retraction

AT = datetime(2026, 1, 1, tzinfo=UTC)

# What the index stands in for: the event log and the current versions, asked in SQL.
ORACLE = """
WITH wanted AS (SELECT unnest(?::VARCHAR[]) AS agency, unnest(?::UUID[]) AS event_id)
SELECT f.event_id, f.stream_seq, f.content_hash, f.agency, f.event_type, v.retracted, f.payload
FROM (SELECT l.* FROM event_log l SEMI JOIN wanted w ON l.agency = w.agency AND l.event_id = w.event_id) f
LEFT JOIN (SELECT fact_id, agency, retracted FROM fact_versions WHERE superseded_seq IS NULL) v
       ON v.fact_id = f.event_id AND v.agency = f.agency
"""


def corpus() -> list[tuple[str, bytes]]:
    """Synthetic events with corrections and retractions, and what agencies do besides: the same
    event published again, the same event_id used by another agency, a changed re-send."""
    items = list(generate(3000, seed=13))
    out = [(item.subject, item.payload) for item in items]
    for item in items[100:2900:97]:
        out.append((item.subject, item.payload))  # the same event again: an ignored duplicate
        other = dict(item.event, agency="xx-squatter")  # another agency, the same event_id
        out.append(
            (f"outreach.events.xx-squatter.{other['event_type']}.{other['event_id']}", json.dumps(other).encode())
        )
        changed = dict(item.event, recorded_at="2024-12-31T00:00:00Z")  # a changed re-send: a conflict
        out.append((item.subject, json.dumps(changed).encode()))
    return out


def oracle(store: ProjectionStore, keys: list[tuple[str, uuid.UUID]]) -> dict[tuple[str, uuid.UUID], KnownEvent]:
    rows = store.con.execute(ORACLE, [[k[0] for k in keys], [k[1] for k in keys]]).fetchall()
    return {(r[3], r[0]): KnownEvent(r[0], int(r[1]), r[2], r[3], r[4], r[5], r[6]) for r in rows}


def test_the_index_answers_what_the_event_log_says(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(projections.known, "MERGE_AT", 500)  # merged several times along the way
    messages = [StreamMessage(i + 1, subject, data, AT) for i, (subject, data) in enumerate(corpus())]
    path = tmp_path / "p.duckdb"
    store = ProjectionStore(path)
    projector = Projector(store, "OUTREACH", AT)
    for start in range(0, len(messages), 97):
        projector.apply(messages[start : start + 97])
    assert (projector.stats.accepted, projector.stats.duplicates, projector.stats.rejected) == (3024, 29, 34)

    logged = store.con.execute("SELECT agency, event_id FROM event_log").fetchall()
    unknown = [("xx-squatter", uuid.uuid4()) for _ in range(50)] + [(logged[0][0], uuid.uuid4())]
    elsewhere = [("al-nobody", event_id) for _, event_id in logged[:50]]  # a known event_id, another agency
    keys = [(agency, event_id) for agency, event_id in logged] + unknown + elsewhere
    expected = oracle(store, keys)
    # 3,000 events and 24 of the squatter's (its 4 retractions and 1 correction of events it does not
    # have were rejected, as were the 29 changed re-sends); 303 corrections and retractions; 107
    # facts retracted.
    assert len(expected) == 3024
    assert sum(1 for known in expected.values() if known.agency == "xx-squatter") == 24
    assert sum(1 for known in expected.values() if known.retracted is None) == 303
    assert sum(1 for known in expected.values() if known.retracted) == 107

    assert store.lookup(keys, compare=set(keys)) == expected
    assert store.lookup(keys) == {
        key: KnownEvent(k.event_id, k.stream_seq, None, k.agency, k.event_type, k.retracted)
        for key, k in expected.items()
    }
    store.close()

    reopened = ProjectionStore(path)  # the index built from the file alone
    try:
        assert len(reopened.known) == 3024
        assert reopened.lookup(keys, compare=set(keys)) == expected
    finally:
        reopened.close()


def test_event_ids_an_agency_numbers_itself_are_found_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sequential event_ids share their high 64 bits: found by a search on the low ones too, among
    merged and recent entries, and told apart by agency."""
    monkeypatch.setattr(projections.known, "MERGE_AT", 300)
    index = KnownIndex()
    for i in range(2000):
        index.add(("al-a", uuid.UUID(int=i)), 2 * i + 1, "session_held", fact=True)
        if i % 2 == 0:
            index.add(
                ("al-b", uuid.UUID(int=i)), 2 * i + 2, "event_retracted" if i % 4 else "session_held", fact=i % 4 == 0
            )
        index.settle()
    assert len(index) == 3000
    for i in (0, 4, 1000, 1996):  # merged, then retracted: the arrays change in place
        index.retract(("al-a", uuid.UUID(int=i)))
    index.retract(("al-a", uuid.UUID(int=1999)))  # still among the recent entries
    keys = [(agency, uuid.UUID(int=i)) for agency in ("al-a", "al-b", "al-c") for i in range(2100)]
    found = index.get(keys)
    expected = {
        ("al-a", uuid.UUID(int=i)): Entry(2 * i + 1, "session_held", i in (0, 4, 1000, 1996, 1999)) for i in range(2000)
    }
    expected.update(
        {
            ("al-b", uuid.UUID(int=i)): Entry(2 * i + 2, "session_held", False)
            if i % 4 == 0
            else Entry(2 * i + 2, "event_retracted", None)
            for i in range(0, 2000, 2)
        }
    )
    assert found == expected


def test_event_ids_at_the_ends_of_the_uuid_range_are_stored_and_found_as_published(tmp_path: Path) -> None:
    """A UUID travels to DuckDB as the two halves of its integer: every bit of it comes back, in the
    log, the fact versions, the ignored duplicates and a retraction's reference, and in the index
    built again from the file."""
    base = next(item.event for item in generate(50, seed=3) if item.event["event_type"] == "session_held")
    ends = [uuid.UUID(int=n) for n in (0, 1, 2**63, 2**64 - 1, 2**64, 2**127, 2**128 - 1)]
    msgs = []
    for event_id in ends:
        event = dict(base, event_id=str(event_id))
        subject = f"outreach.events.{event['agency']}.session_held.{event_id}"
        msgs.append((subject, json.dumps(event).encode()))
    msgs.append(msgs[-1])  # the last published again: an ignored duplicate
    retraction = {
        "event_id": "5f0c2b8e-6b1a-4f3e-9a55-000000000001",
        "event_type": "event_retracted",
        "schema_version": 1,
        "agency": base["agency"],
        "recorded_at": base["recorded_at"],
        "retracts": str(ends[-1]),
        "reason": "entered twice",
    }
    msgs.append(
        (f"outreach.events.{base['agency']}.event_retracted.{retraction['event_id']}", json.dumps(retraction).encode())
    )
    store = ProjectionStore(tmp_path / "p.duckdb")
    projector = Projector(store, "OUTREACH", AT)
    assert projector.apply([StreamMessage(i + 1, s, d, AT) for i, (s, d) in enumerate(msgs)]) == 9
    con = store.con
    assert [r[0] for r in con.execute("SELECT event_id FROM event_log ORDER BY stream_seq").fetchall()] == [
        *ends,
        uuid.UUID(retraction["event_id"]),
    ]
    assert con.execute("SELECT refers_to FROM event_log WHERE refers_to IS NOT NULL").fetchall() == [(ends[-1],)]
    assert [r[0] for r in con.execute("SELECT fact_id FROM fact_versions ORDER BY version_seq").fetchall()] == [
        *ends,
        ends[-1],
    ]
    assert con.execute("SELECT stream_seq, event_id FROM ignored_duplicates").fetchall() == [(8, ends[-1])]
    store.close()
    again = ProjectionStore(tmp_path / "p.duckdb")
    found = again.known.get([(base["agency"], event_id) for event_id in ends])
    assert {key[1]: entry.retracted for key, entry in found.items()} == {
        **dict.fromkeys(ends[:-1], False),
        ends[-1]: True,
    }
    again.close()


def test_a_few_event_ids_sharing_their_high_half_are_told_apart_by_low_half_and_agency(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Up to eight rows with one high half are compared one by one rather than searched: a low
    half between two of them, or past the last, is not found, nor is another agency's."""
    monkeypatch.setattr(projections.known, "MERGE_AT", 1)
    index = KnownIndex()
    high = 7 << 64
    for n, low in enumerate((10, 20, 30)):
        index.add(("al-a", uuid.UUID(int=high + low)), n + 1, "session_held", fact=True)
        index.settle()
    index.add(("al-b", uuid.UUID(int=high + 20)), 4, "materials_distributed", fact=True)
    index.settle()
    index.add(("al-c", uuid.UUID(int=(8 << 64) + 5)), 5, "session_held", fact=True)
    index.settle()
    assert len(index._recent) == 0 and index._stored == 5
    asked = [
        (agency, uuid.UUID(int=high + low)) for agency in ("al-a", "al-b", "al-c") for low in (5, 10, 20, 25, 30, 31)
    ]
    assert index.get(asked) == {
        ("al-a", uuid.UUID(int=high + 10)): Entry(1, "session_held", False),
        ("al-a", uuid.UUID(int=high + 20)): Entry(2, "session_held", False),
        ("al-a", uuid.UUID(int=high + 30)): Entry(3, "session_held", False),
        ("al-b", uuid.UUID(int=high + 20)): Entry(4, "materials_distributed", False),
    }
    index.retract(("al-b", uuid.UUID(int=high + 20)))
    assert index.get([("al-b", uuid.UUID(int=high + 20)), ("al-a", uuid.UUID(int=high + 20))]) == {
        ("al-b", uuid.UUID(int=high + 20)): Entry(4, "materials_distributed", True),
        ("al-a", uuid.UUID(int=high + 20)): Entry(2, "session_held", False),
    }


def test_each_correction_supersedes_the_version_in_force_whichever_batch_or_file_made_it(tmp_path: Path) -> None:
    """A correction in a later batch, after the file was opened again, and a retraction after it
    each end the version the one before made, and only that one."""
    first = next(item.event for item in generate(50, seed=3) if item.event["event_type"] == "session_held")
    fix, fix_again = correction(first, 11), correction(first, 12)
    path = tmp_path / "p.duckdb"
    store = ProjectionStore(path)
    projector = Projector(store, "OUTREACH", AT)
    projector.apply(messages(first, first_seq=1))
    projector.apply(messages(fix, first_seq=2))
    store.close()
    store = ProjectionStore(path)  # the index built again from the file
    projector = Projector(store, "OUTREACH", AT)
    projector.apply(messages(fix_again, first_seq=3))
    projector.apply(messages(retraction(first), first_seq=4))
    assert store.con.execute(
        "SELECT version_seq, superseded_seq, retracted FROM fact_versions ORDER BY version_seq"
    ).fetchall() == [(1, 2, False), (2, 3, False), (3, 4, False), (4, None, True)]
    store.close()


@pytest.mark.parametrize("filter_bytes", [1, 1 << 16])
def test_the_file_answers_exactly_across_blocks_chunks_and_merges(
    monkeypatch: pytest.MonkeyPatch, filter_bytes: int
) -> None:
    """Blocks of 4 records, merges 8 records at a time and three runs, so that keys run across blocks,
    chunks and runs:
    many agencies under one event_id, an agency's sequential event_ids, random ones. With a filter
    of one byte every key asked reaches the file; with a larger one few do; the answers are the same."""
    monkeypatch.setattr(projections.known, "BLOCK", 4)
    monkeypatch.setattr(projections.known, "CHUNK", 8)
    monkeypatch.setattr(projections.known, "MERGE_AT", 7)
    monkeypatch.setattr(projections.known, "RATIO", 2)  # runs of 56, 28 and 14 records in the end
    monkeypatch.setattr(projections.known, "FILTER_BYTES", filter_bytes)
    rng = random.Random(5)
    shared = uuid.UUID(int=rng.getrandbits(128))
    keys = [(f"al-{n:02d}", shared) for n in range(13)]  # one event_id, thirteen agencies
    keys += [("pl-seq", uuid.UUID(int=(9 << 64) + n)) for n in range(30)]  # one high half
    keys += [(f"pl-{n % 3}", uuid.UUID(int=rng.getrandbits(128))) for n in range(60)]
    rng.shuffle(keys)
    index = KnownIndex()
    expected: dict[tuple[str, uuid.UUID], Entry] = {}
    for seq, key in enumerate(keys, start=1):
        fact = seq % 5 != 0
        index.add(key, seq, "session_held" if fact else "event_corrected", fact=fact)
        expected[key] = Entry(seq, "session_held" if fact else "event_corrected", False if fact else None)
        index.settle()
        if seq % 11 == 0:  # a fact retracted, in the file or among the recent entries
            target = next(k for k, e in expected.items() if e.retracted is False)
            index.retract(target)
            expected[target] = Entry(expected[target].stream_seq, "session_held", True)
    assert len(index) == len(keys) == 103
    assert index._stored == 98  # merged 14 times; the rest recent
    assert [run.count for run in index._runs] == [56, 28, 14]
    assert [len(run.fence_hi) for run in index._runs] == [14, 7, 4]
    absent = [("al-99", shared), ("pl-seq", uuid.UUID(int=(9 << 64) + 30)), ("pl-seq", uuid.UUID(int=(9 << 64) - 1))]
    absent += [(agency, uuid.UUID(int=rng.getrandbits(128))) for agency, _ in keys[:20]]
    assert index.get(keys + absent) == expected
    with pytest.raises(KeyError):
        index.retract(absent[0])
    index.close()


def test_what_the_index_holds_in_memory_does_not_grow_with_the_log(monkeypatch: pytest.MonkeyPatch) -> None:
    """The filter's bytes are fixed; of the files, only the first key of every block is in memory."""
    monkeypatch.setattr(projections.known, "MERGE_AT", 1000)
    index = KnownIndex()
    for seq in range(1, 5001):
        index.add(("al-a", uuid.UUID(int=seq * 7919)), seq, "session_held", fact=True)
        index.settle()
    assert index._filter.nbytes == projections.known.FILTER_BYTES
    assert [run.count for run in index._runs] == [4000, 1000] and len(index._recent) == 0
    assert [len(run.fence_hi) for run in index._runs] == [len(run.fence_lo) for run in index._runs] == [8, 2]
    index.close()


def test_a_merge_that_cannot_write_says_where_and_leaves_the_index_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk during a merge: a ProjectionError naming the directory, and every entry still found."""
    monkeypatch.setattr(projections.known, "MERGE_AT", 10)
    index = KnownIndex(tmp_path)
    keys = [("al-a", uuid.UUID(int=n * 7919)) for n in range(1, 21)]
    for seq, key in enumerate(keys[:10], start=1):
        index.add(key, seq, "session_held", fact=True)
    index.settle()  # one run of 10

    class Full:
        def __init__(self, *_: object, **__: object) -> None:
            self.closed = False

        def write(self, _: bytes) -> int:
            raise OSError(28, "No space left on device")

        def close(self) -> None:
            self.closed = True

    monkeypatch.setattr(projections.known.tempfile, "TemporaryFile", Full)
    for seq, key in enumerate(keys[10:], start=11):
        index.add(key, seq, "session_held", fact=True)
    with pytest.raises(ProjectionError, match=rf"cannot write the index of known events in {tmp_path}: .*No space"):
        index.settle()
    assert [run.count for run in index._runs] == [10] and len(index._recent) == 10
    assert index.get(keys) == {key: Entry(seq, "session_held", False) for seq, key in enumerate(keys, start=1)}
    index.close()
