"""Fuzzing the real parse and fold path: whatever a message holds, it ends in exactly one place
(accepted, an ignored duplicate, or rejected with a reason), nothing raises, and the batch is
stored by DuckDB. Hostile mutations of valid events are always rejected.

CI runs a few thousand examples. ``OUTREACH_FUZZ_EXAMPLES=100000 pytest -m fuzz`` runs the long
campaign whose figures are in BENCHMARKS.md.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nats.aio.client import Client

from consumers.delivery import StreamMessage
from consumers.projector import Projector
from outreach.synthetic import generate
from projections.query import run_query
from projections.store import ProjectionStore
from runtime.settings import Settings
from runtime.stream import ensure_stream
from tests import oracle, test_events
from tests.hostile import INVALID, hostile

EXAMPLES = int(os.environ.get("OUTREACH_FUZZ_EXAMPLES", "1000"))
# The suite's time limit (300 s a test) holds CI's thousand examples; a long campaign gets 50 ms an
# example (100,000 took 29 minutes here), so that it ends by itself rather than at the limit.
pytestmark = [pytest.mark.fuzz, pytest.mark.timeout(max(300, EXAMPLES // 20))]
CORPUS = [item for item in generate(400, seed=61)]
AT = datetime(2027, 1, 1, tzinfo=UTC)  # stored after every recorded_at of the corpus
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI never fails on a draw it has not seen
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@pytest.fixture(scope="module")
def projector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Projector]:
    """One real DuckDB file for every example: the valid corpus first, then the hostile ones."""
    store = ProjectionStore(tmp_path_factory.mktemp("fuzz") / "fuzz.duckdb")
    p = Projector(store, "OUTREACH", AT)
    p.apply([StreamMessage(i + 1, item.subject, item.payload, AT) for i, item in enumerate(CORPUS)])
    assert (p.stats.accepted, p.stats.rejected) == (len(CORPUS), 0)
    yield p
    store.close()


def _apply(projector: Projector, subjects_and_payloads: list[tuple[str, bytes]]) -> tuple[int, int, int]:
    """Apply one batch after the checkpoint; (accepted, rejected, duplicates) it added."""
    before = (projector.stats.accepted, projector.stats.rejected, projector.stats.duplicates)
    first = projector.last_seq + 1
    projector.apply([StreamMessage(first + i, s, p, AT) for i, (s, p) in enumerate(subjects_and_payloads)])
    after = (projector.stats.accepted, projector.stats.rejected, projector.stats.duplicates)
    return after[0] - before[0], after[1] - before[1], after[2] - before[2]


@FUZZ
@given(data=st.data())
def test_hostile_mutations_of_valid_events_are_each_rejected(projector: Projector, data: st.DataObject) -> None:
    rng = data.draw(st.randoms(use_true_random=False))
    picks = data.draw(st.lists(st.sampled_from(range(len(CORPUS))), min_size=1, max_size=8))
    batch = []
    for i in picks:
        kind = data.draw(st.sampled_from(sorted(INVALID)))
        batch.append((CORPUS[i].subject, INVALID[kind](CORPUS[i].payload, rng)))
    assert _apply(projector, batch) == (0, len(batch), 0)


@FUZZ
@given(payload=st.binary(max_size=3_000), subject=st.sampled_from(["outreach.events.al-a.session_held", "x", ""]))
def test_arbitrary_bytes_never_stop_the_fold(projector: Projector, payload: bytes, subject: str) -> None:
    accepted, rejected, duplicates = _apply(projector, [(subject, payload)])
    assert (accepted, rejected, duplicates) == (0, 1, 0)


@FUZZ
@given(data=st.data())
def test_any_value_in_any_field_ends_in_exactly_one_place(projector: Projector, data: st.DataObject) -> None:
    """A field replaced by any JSON value (which may or may not be valid): one outcome per message,
    and an accepted one is stored as the very bytes published (what the fold counted against what
    SQL reads from those bytes is the next test's, over the whole corpus)."""
    item = CORPUS[data.draw(st.integers(0, len(CORPUS) - 1))]
    obj = dict(item.event, event_id=str(data.draw(st.uuids())))  # a new event, unless event_id is the field
    subject = data.draw(st.sampled_from([f"outreach.events.{obj['agency']}.{obj['event_type']}", item.subject]))
    if subject != item.subject:
        subject += f".{obj['event_id']}"
    key = data.draw(st.sampled_from(sorted(obj)) | st.text(max_size=12))
    obj[key] = data.draw(json_values)
    payload = json.dumps(obj, allow_nan=True).encode()
    accepted, rejected, duplicates = _apply(projector, [(subject, payload)])
    assert accepted + rejected + duplicates == 1
    if accepted:
        stored = projector.store.con.execute(
            "SELECT payload FROM event_log WHERE stream_seq = ?", [projector.last_seq]
        ).fetchone()
        assert stored is not None and stored[0] == payload.decode()


def test_the_hostile_kinds_each_reject_for_their_own_reason() -> None:
    """Each mutation kind names what is wrong: a guard against a kind that is rejected by accident."""
    from consumers.fold import parse_batch

    rng = random.Random(3)
    session = next(item for item in CORPUS if item.event["event_type"] == "session_held")
    reasons = {}
    for kind, mutate in sorted(INVALID.items()):
        (parsed,) = parse_batch([StreamMessage(1, session.subject, mutate(session.payload, rng), AT)])
        assert parsed.event_id is None
        reasons[kind] = parsed.problem
    assert "is not valid JSON" in reasons["truncated"]
    assert "is given twice in one object" in reasons["duplicate key"]
    assert "digits; no field takes one so large" in reasons["huge number"]
    assert "count" in reasons["number as text"]
    assert "nested deeper than 8 levels" in reasons["deep nesting"]
    assert "lone surrogate" in reasons["lone surrogate or NUL"] or "NUL character" in reasons["lone surrogate or NUL"]
    assert "is not a field of this event type; check its spelling against `outreach schema`" in reasons["unknown field"]
    assert "is not valid UTF-8" in reasons["not UTF-8"]
    assert reasons["wrong type"].startswith("invalid: ")


# ---- the whole test corpus: what the fold counted is what the stored payload says ---------------


def _id(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


READ_FROM_PAYLOAD = """
WITH src AS (
    SELECT stream_seq,
           CASE WHEN event_type = 'event_corrected' THEN payload -> 'replacement' ELSE payload END AS p
    FROM event_log WHERE event_type <> 'event_retracted'
), typed AS (
    SELECT *, p ->> 'event_type' AS kind, p ->> 'schema_version' = '1' AS v1,
           CASE WHEN json_type(p -> 'occurred') = 'VARCHAR' THEN p ->> 'occurred' END AS occurred_text,
           CAST(json_extract(p, '$.participants[*].count') AS BIGINT[]) AS counts,
           CAST(json_extract(p, '$.participants[*].estimated') AS BOOLEAN[]) AS flags
    FROM src
)
SELECT stream_seq,
       coalesce(p ->> 'country', left(p ->> 'county', 2)) AS country,
       p ->> 'county' AS county,
       p ->> 'municipality' AS municipality,
       p ->> 'campaign_id' AS campaign_id,
       coalesce(CAST(p -> 'plan_tasks' AS VARCHAR[]), []) AS plan_tasks,
       CAST(coalesce(split_part(occurred_text, '/', 1), p -> 'occurred' ->> 'start') AS DATE) AS occurred_start,
       CAST(coalesce(nullif(split_part(occurred_text, '/', 2), ''), p -> 'occurred' ->> 'end') AS DATE) AS occurred_end,
       CASE WHEN kind = 'session_held' THEN coalesce(CAST(p ->> 'sessions' AS INTEGER), 1) ELSE 0 END AS sessions,
       CASE WHEN kind = 'session_held' THEN p ->> 'format' END AS session_format,
       CASE WHEN kind <> 'session_held' THEN 0
            WHEN v1 THEN coalesce(CAST(p ->> 'participants' AS BIGINT), 0)
            ELSE coalesce(CAST(p ->> 'reported_total' AS BIGINT), list_sum(counts), 0)
       END AS participants,
       CASE WHEN kind <> 'session_held' THEN false
            WHEN v1 THEN p ->> 'participants' IS NULL
            ELSE p ->> 'reported_total' IS NULL
                 AND (len(counts) = 0 OR list_bool_or(list_transform(counts, lambda c: c IS NULL)))
       END AS participants_unknown,
       CASE WHEN kind <> 'session_held' THEN false
            WHEN v1 THEN coalesce(CAST(p ->> 'estimated' AS BOOLEAN), false)
            ELSE coalesce(CAST(p ->> 'total_estimated' AS BOOLEAN), false) OR coalesce(list_bool_or(flags), false)
       END AS participants_estimated,
       CASE WHEN kind = 'materials_distributed' THEN coalesce(CAST(p ->> 'quantity' AS BIGINT), 0) ELSE 0
       END AS materials,
       CASE WHEN kind = 'materials_distributed' THEN p ->> 'kind' END AS material_kind,
       kind = 'materials_distributed' AND p ->> 'quantity' IS NULL AS materials_unknown,
       CASE WHEN kind = 'team_established' THEN 1 ELSE 0 END AS teams
FROM typed
"""
COUNTED_BY_FOLD = """
SELECT version_seq, country, county, municipality, campaign_id, plan_tasks, occurred_start, occurred_end, sessions,
       session_format, participants, participants_unknown, participants_estimated, materials, material_kind,
       materials_unknown, teams
FROM fact_versions WHERE NOT retracted
"""


def test_what_the_fold_counted_equals_what_sql_reads_from_each_stored_payload(tmp_path: Path) -> None:
    """Over the whole corpus the tests use (synthetic events with corrections and retractions, the
    seed reports, the golden v1 payload, the fuzz corpus): for every accepted event, every column
    the fold derived for the totals equals what DuckDB's own JSON reader reads from the payload as
    published."""
    corpus = [(item.subject, item.payload) for item in generate(5_000, seed=64)]
    corpus += [(item.subject, item.payload) for item in CORPUS]
    seeds = (Path(__file__).parent.parent / "schemas" / "data" / "seed_events.jsonl").read_bytes().splitlines()
    golden_v1 = json.loads((Path(__file__).parent / "golden" / "session_held_v1.json").read_text())
    # It is the v1 form of a seed event: under an id of its own, or it would conflict with that one.
    golden = json.dumps(dict(golden_v1, event_id="00000000-0000-4000-8000-00000000f001"))
    # The shapes the figures take that the rest may lack: estimates, unknown counts, aggregates.
    shapes = [
        test_events.session(
            event_id=_id(1),
            schema_version=3,
            sessions=2,
            participants=[{"audience": "students", "count": None}, {"audience": "teachers", "count": None}],
            reported_total=165,
            total_estimated=True,
        ),
        test_events.session(
            event_id=_id(2),
            participants=[
                {"audience": "students", "count": 40, "estimated": True},
                {"audience": "general_public", "count": None},
            ],
        ),
        test_events.session(event_id=_id(3), participants=[]),
        test_events.materials(event_id=_id(4), quantity=None),
        test_events.materials(event_id=_id(5), quantity=300, estimated=True, kind="poster"),
        dict(golden_v1, event_id=str(_id(6)), estimated=True),
        dict(golden_v1, event_id=str(_id(7)), participants=None),
    ]
    for raw in [*seeds, golden.encode(), *(json.dumps(shape).encode() for shape in shapes)]:
        event = json.loads(raw)
        corpus.append((f"outreach.events.{event['agency']}.{event['event_type']}.{event['event_id']}", raw))
    # The reading below, some twenty JSON extractions a row, needs 124-128 MB of DuckDB's pool over
    # these 5,400 events (2 MB of payloads): more than the projector's default, which is not what
    # this test is about.
    store = ProjectionStore(tmp_path / "corpus.duckdb", memory_limit="256MB")
    try:
        p = Projector(store, "OUTREACH", AT)
        for first in range(0, len(corpus), 1_000):
            chunk = corpus[first : first + 1_000]
            p.apply([StreamMessage(first + i + 1, s, data, AT) for i, (s, data) in enumerate(chunk)])
        reasons = store.con.execute("SELECT reason FROM rejected_events").fetchall()
        assert (p.stats.accepted, reasons) == (len(corpus), [])
        read = sorted(store.con.execute(READ_FROM_PAYLOAD).fetchall())
        counted = sorted(store.con.execute(COUNTED_BY_FOLD).fetchall())
        retracted = store.con.execute("SELECT count(*) FROM fact_versions WHERE retracted").fetchone()
    finally:
        store.close()
    assert retracted is not None and retracted[0] > 0  # the corpus has retractions; they carry no payload
    assert len(read) == len(counted) > 5_000
    assert read == counted


# ---- hostile messages among valid traffic, through a real `outreach project` --------------------

VALID = 6_000
HOSTILE = 1_500


@pytest.mark.integration
async def test_a_real_projector_rejects_every_hostile_message_and_counts_the_rest_exactly(
    nc: Client, settings: Settings
) -> None:
    rng = random.Random(63)
    valid = list(generate(VALID, seed=65))
    traffic: list[tuple[str, bytes, dict[str, str] | None]] = [
        (item.subject, item.payload, {"Nats-Expected-Last-Subject-Sequence": "0"}) for item in valid
    ]
    kinds: dict[str, int] = {}
    for _ in range(HOSTILE):
        source = rng.choice(valid)
        kind, payload = hostile(source.payload, rng)
        kinds[kind] = kinds.get(kind, 0) + 1
        at = rng.randint(0, len(traffic))
        # A raw client on the agency's own subjects, without the event's own subject or any header.
        subject = f"outreach.events.{source.event['agency']}.{source.event['event_type']}"
        traffic.insert(at, (subject, payload, None))
    js = nc.jetstream()
    await ensure_stream(js, settings.stream, settings.duplicate_window_s)
    for first in range(0, len(traffic), 1_000):
        acks = [await js.publish_async(s, p, headers=h) for s, p, h in traffic[first : first + 1_000]]
        await asyncio.gather(*acks)
    assert (await js.stream_info(settings.stream)).state.messages == VALID + HOSTILE

    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
    env.update(OUTREACH_NATS_URL=settings.nats_url, OUTREACH_DB=str(settings.db), OUTREACH_BATCH_SIZE="700")
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "outreach", "project", "--until-caught-up"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert len(kinds) == len(INVALID)  # every kind of hostile message was among them
    assert run_query(settings.db, "SELECT count(*) FROM rejected_events").rows == [(HOSTILE,)]
    assert run_query(settings.db, "SELECT count(*) FROM event_log").rows == [(VALID,)]
    assert run_query(settings.db, "SELECT max(last_seq) FROM checkpoint").rows == [(VALID + HOSTILE,)]
    got = {
        r[0]: tuple(r[1:])
        for r in run_query(
            settings.db,
            "SELECT county, events, sessions, participants, materials_distributed, teams_established "
            "FROM totals_by_county",
        ).rows
    }
    assert got == oracle.totals_by_county(item.event for item in valid)
