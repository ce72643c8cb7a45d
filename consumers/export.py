"""``outreach export-log``: the full event log, with stream metadata, as Parquet or JSON Lines.

Read from the stream itself (not from a projection), so an auditor takes away exactly what the
broker holds: every message, accepted or not, with its sequence, subject, storage time, message
id, payload and the payload's sha256 (the same hash the running digest chains).
"""

from __future__ import annotations

import base64
import hashlib
import tempfile
from pathlib import Path

import duckdb

from consumers.delivery import StreamMessage
from consumers.reader import read_stream
from runtime.connection import connect
from runtime.settings import Settings
from runtime.stream import read_stream_info
from schemas.errors import SettingsInvalid

FORMATS = {".parquet": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}
CREATE = """
CREATE TABLE log (stream VARCHAR, stream_seq UBIGINT, subject VARCHAR, stored_at TIMESTAMPTZ, msg_id VARCHAR,
                  payload VARCHAR, payload_base64 VARCHAR, payload_sha256 VARCHAR)
"""
INSERT = """
INSERT INTO log SELECT ?, unnest(?::UBIGINT[]), unnest(?::VARCHAR[]), unnest(?::TIMESTAMPTZ[]),
                       unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), unnest(?::VARCHAR[])
"""


def format_of(out: Path, fmt: str | None) -> str:
    chosen = fmt or FORMATS.get(out.suffix.lower())
    if chosen not in ("parquet", "jsonl"):
        raise SettingsInvalid(f"cannot tell the format of {out}: name it .parquet or .jsonl, or give --format")
    return chosen


async def export_log(settings: Settings, out: Path, fmt: str | None = None) -> int:
    """Write every message of the stream to ``out``; return how many."""
    chosen = format_of(out, fmt)
    nc = await connect(settings, "outreach-export")
    try:
        js = nc.jetstream()
        info = await read_stream_info(js, settings.stream)
        with tempfile.TemporaryDirectory(prefix="outreach-export-") as tmp:
            con = duckdb.connect(str(Path(tmp) / "log.duckdb"))
            con.execute(CREATE)

            def insert(batch: list[StreamMessage]) -> None:
                texts, b64 = [], []
                for m in batch:
                    try:
                        texts.append(m.data.decode("utf-8"))
                        b64.append(None)
                    except UnicodeDecodeError:
                        texts.append(None)
                        b64.append(base64.b64encode(m.data).decode())
                con.execute(
                    INSERT,
                    [
                        settings.stream,
                        [m.seq for m in batch],
                        [m.subject for m in batch],
                        [m.stored_at for m in batch],
                        [m.msg_id for m in batch],
                        texts,
                        b64,
                        [hashlib.sha256(m.data).hexdigest() for m in batch],
                    ],
                )

            if info.state.messages:
                await read_stream(
                    js,
                    settings.stream,
                    start_seq=info.state.first_seq,
                    end_seq=info.state.last_seq,
                    batch_size=settings.batch_size,
                    batch_bytes=settings.batch_bytes,
                    handle=insert,
                )
            count = con.execute("SELECT count(*) FROM log").fetchone()
            target = str(out).replace("'", "''")
            options = "FORMAT parquet, COMPRESSION zstd" if chosen == "parquet" else "FORMAT json"
            out.parent.mkdir(parents=True, exist_ok=True)
            con.execute(f"COPY (SELECT * FROM log ORDER BY stream_seq) TO '{target}' ({options})")
            con.close()
    finally:
        await nc.close()
    return int(count[0]) if count else 0
