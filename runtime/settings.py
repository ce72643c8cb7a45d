"""One settings object, read once at start-up from flags and ``OUTREACH_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
# A batch is bounded by bytes as well as by count: a batch of the largest events (64 KiB) stays well
# within DuckDB's pool, which holds a batch until it is committed.
DEFAULT_BATCH_BYTES = 4 * 1024 * 1024


class Settings(BaseSettings):
    """Everything a command needs to know; tests build it directly."""

    model_config = SettingsConfigDict(env_prefix="OUTREACH_", extra="forbid", frozen=True)

    nats_url: str = Field(
        DEFAULT_NATS_URL,
        description="NATS server URL; several, comma-separated, for a cluster (any one of them may be down)",
    )
    nats_user: str | None = None
    nats_password: SecretStr | None = None
    nats_token: SecretStr | None = None
    nats_creds: Path | None = Field(None, description="NATS credentials file (JWT + NKey seed)")
    nats_inbox_prefix: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]+$", description="this user's inbox prefix")
    agency: str | None = Field(
        None, pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$", description="the agency these credentials publish as"
    )
    db: Path = Field(Path("outreach.duckdb"), description="DuckDB projection file")
    stream: str = Field("OUTREACH", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    stream_replicas: int = Field(1, ge=1, le=5, description="copies of the stream a cluster keeps (when creating it)")
    duplicate_window_s: float = Field(24 * 3600, gt=0, description="JetStream duplicate window")
    batch_size: int = Field(2500, ge=1, le=100_000, description="messages per projector batch")
    batch_bytes: int = Field(
        DEFAULT_BATCH_BYTES,
        ge=64 * 1024,
        le=1024 * 1024 * 1024,
        description="a projector batch ends once its messages hold this many bytes, whatever their number",
    )
    snapshot_interval_s: float = Field(
        5.0,
        ge=0,
        description="how often the projector refreshes the "
        "snapshot file of the totals for analysts' own tools; 0: never",
    )
    query_timeout_s: float = Field(
        30.0, gt=0, le=3600, description="an analyst's query running longer than this is stopped"
    )
    query_max_rows: int = Field(
        100_000, ge=1, le=10_000_000, description="an analyst's query returning more rows is refused"
    )
    # DuckDB's pool: the projector's batches, its analysts' queries and their spill share it
    # (BENCHMARKS.md gives the runs that chose the default).
    memory_limit_mb: int = Field(
        112,
        ge=16,
        le=1_000_000,
        description="DuckDB's buffer pool in the projector and in replay, in MB (analysts' queries through "
        "the projector share it)",
    )
    duckdb_threads: int = Field(
        1,
        ge=1,
        le=256,
        description="threads DuckDB gives one statement in the projector and in replay (analysts' queries "
        "through the projector each run on their own thread beside the writer, whatever this is)",
    )
    query_slots: int = Field(4, ge=1, le=64, description="analysts' queries the projector answers at once")
    publish_window: int = Field(1000, ge=1, le=10_000, description="unacknowledged events in flight")
    publish_timeout_s: float = Field(5.0, gt=0)
    publish_retries: int = Field(3, ge=0, le=20)

    @property
    def nats_servers(self) -> list[str]:
        """The server URLs to try, in order."""
        return [url.strip() for url in self.nats_url.split(",") if url.strip()]
