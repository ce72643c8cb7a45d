"""A projection copied into the older on-disk format, for analysts' tools, in the projector's pool."""

from __future__ import annotations

from pathlib import Path

import duckdb

from projections.copy import copy_file
from projections.schema import STORAGE_VERSION
from projections.store import ProjectionStore

EVENTS = 150_000
# Each event's payload about 600 bytes, as an ordinary session's: 150,000 of them are 90 MB of
# text, more than the 112 MB pool holds in one row group of DuckDB's default size.
FILL = """
INSERT INTO event_log SELECT i, uuid(), 'outreach.events.a.session_held.' || i, 'session_held', 1, 'a',
    TIMESTAMPTZ '2025-01-01 00:00:00+00' + to_seconds(i), TIMESTAMPTZ '2025-01-01 00:00:00+00', DATE '2025-01-01',
    NULL, NULL, md5(i::VARCHAR), to_json({'notes': repeat(md5(i::VARCHAR), 18)})::JSON
FROM range(?) t(i)
"""
TAG = "SELECT tags['storage_version'] FROM duckdb_databases() WHERE database_name = current_database()"
SUMMARY = "SELECT count(*), sum(stream_seq), sum(length(payload::VARCHAR)), max(content_hash) FROM event_log"


def test_a_large_replay_is_copied_into_the_older_format_within_the_projectors_pool(tmp_path: Path) -> None:
    source, target = tmp_path / "replay.duckdb", tmp_path / "outreach.duckdb"
    ProjectionStore(source).close()
    with duckdb.connect(str(source)) as con:
        con.execute(FILL, [EVENTS])
        expected = con.execute(SUMMARY).fetchone()
    copy_file(source, target, "112MB")
    with duckdb.connect(str(target), read_only=True) as con:
        assert con.execute(SUMMARY).fetchone() == expected
        assert expected[0] == EVENTS
        assert con.execute("SELECT count(*) FROM totals_by_county").fetchone() == (0,)
        copied = con.execute(TAG).fetchone()
    with duckdb.connect() as con:  # the format DuckDB writes when asked for STORAGE_VERSION
        con.execute(f"ATTACH ? AS older (STORAGE_VERSION '{STORAGE_VERSION}')", [str(tmp_path / "older.duckdb")])
        con.execute("USE older")
        assert copied == con.execute(TAG).fetchone() != (duckdb.__version__,)
    assert not target.with_name(target.name + ".partial").exists()
