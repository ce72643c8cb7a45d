-- The projection's tables. Written only by the projector, in one transaction per batch.
-- Every stream sequence the projector has seen lands in exactly one of event_log,
-- rejected_events or ignored_duplicates; checkpoint.last_seq is the highest of them.

CREATE TABLE IF NOT EXISTS checkpoint (
    stream          VARCHAR PRIMARY KEY,
    stream_created  TIMESTAMPTZ NOT NULL,   -- detects a stream deleted and created anew
    last_seq        UBIGINT NOT NULL,       -- last stream sequence applied
    last_stored_at  TIMESTAMPTZ,            -- storage time of that message
    digest          VARCHAR NOT NULL,       -- running digest of the stream up to last_seq (see README)
    updated_at      TIMESTAMPTZ NOT NULL
);

-- One row per applied batch: the digest as it stood at each checkpoint.
CREATE TABLE IF NOT EXISTS checkpoint_log (
    stream          VARCHAR NOT NULL,
    last_seq        UBIGINT NOT NULL,
    last_stored_at  TIMESTAMPTZ,
    digest          VARCHAR NOT NULL,
    applied_at      TIMESTAMPTZ NOT NULL
);

-- Stream sequences the projector expected and never received: deleted from the stream.
CREATE TABLE IF NOT EXISTS stream_gaps (
    first_missing   UBIGINT NOT NULL,
    last_missing    UBIGINT NOT NULL,
    noticed_at      TIMESTAMPTZ NOT NULL
);

-- The full log of accepted events, as published (payload is the exact JSON that was sent).
-- stream_seq and event_id are unique by construction (the checkpoint admits each sequence once,
-- the fold each event_id once). They are not declared as keys: DuckDB keeps key indexes in
-- memory, which would make the projector's memory grow with the log.
CREATE TABLE IF NOT EXISTS event_log (
    stream_seq      UBIGINT NOT NULL,
    event_id        UUID NOT NULL,
    subject         VARCHAR NOT NULL,
    event_type      VARCHAR NOT NULL,
    schema_version  INTEGER NOT NULL,
    agency          VARCHAR NOT NULL,
    stored_at       TIMESTAMPTZ NOT NULL,   -- when JetStream stored it: "recorded" for auditors
    recorded_at     TIMESTAMPTZ NOT NULL,   -- when the agency says it recorded it
    occurred_start  DATE,
    occurred_end    DATE,
    refers_to       UUID,                   -- the event a correction or retraction is about
    content_hash    VARCHAR NOT NULL,       -- sha256 of the validated, upcast event
    payload         JSON NOT NULL
);

CREATE TABLE IF NOT EXISTS rejected_events (
    stream_seq      UBIGINT NOT NULL,
    subject         VARCHAR NOT NULL,
    stored_at       TIMESTAMPTZ NOT NULL,
    event_id        VARCHAR,                -- when one could be read
    reason          VARCHAR NOT NULL,
    payload         BLOB NOT NULL           -- raw bytes, exactly as received: the first 4,096 of them
);
-- The whole message's length and sha256 (its bytes are in the stream at stream_seq). Files made
-- before these were kept hold whole payloads, from which they are derived.
ALTER TABLE rejected_events ADD COLUMN IF NOT EXISTS payload_bytes UBIGINT;
ALTER TABLE rejected_events ADD COLUMN IF NOT EXISTS payload_sha256 VARCHAR;
UPDATE rejected_events SET payload_bytes = octet_length(payload), payload_sha256 = sha256(payload)
WHERE payload_bytes IS NULL;

-- The same event_id published again with identical content after the broker's duplicate window.
CREATE TABLE IF NOT EXISTS ignored_duplicates (
    stream_seq      UBIGINT NOT NULL,
    event_id        UUID NOT NULL,
    stored_at       TIMESTAMPTZ NOT NULL,
    agency          VARCHAR                 -- the publishing agency: an event is (agency, event_id)
);
ALTER TABLE ignored_duplicates ADD COLUMN IF NOT EXISTS agency VARCHAR;  -- files made before it was kept

-- Every version of every fact (an event that is not a correction or retraction). A correction adds
-- a version; a retraction adds a version with retracted = true. A version is in force from
-- version_seq until superseded_seq (exclusive); the current one has superseded_seq NULL.
CREATE TABLE IF NOT EXISTS fact_versions (
    fact_id                 UUID NOT NULL,      -- the original event's event_id
    version_seq             UBIGINT NOT NULL,   -- stream sequence of the event that made this version
    version_stored_at       TIMESTAMPTZ NOT NULL,
    superseded_seq          UBIGINT,
    superseded_stored_at    TIMESTAMPTZ,
    retracted               BOOLEAN NOT NULL,
    event_type              VARCHAR NOT NULL,
    agency                  VARCHAR NOT NULL,
    country                 VARCHAR,
    county                  VARCHAR,
    municipality            VARCHAR,
    campaign_id             VARCHAR,
    plan_tasks              VARCHAR[] NOT NULL,
    occurred_start          DATE,
    occurred_end            DATE,
    sessions                INTEGER NOT NULL,
    session_format          VARCHAR,
    participants            BIGINT NOT NULL,    -- known participants (reported total, else breakdown sum)
    participants_unknown    BOOLEAN NOT NULL,   -- some participants were not counted
    participants_estimated  BOOLEAN NOT NULL,
    materials               BIGINT NOT NULL,
    material_kind           VARCHAR,
    materials_unknown       BOOLEAN NOT NULL,
    teams                   INTEGER NOT NULL,
    audiences               STRUCT(audience VARCHAR, count BIGINT, estimated BOOLEAN)[],  -- sessions only
    payload                 JSON,               -- definitions only: the campaign or plan task, upcast
    venue                   VARCHAR             -- actions only: where, as the agency wrote it
);
-- Files made before venues were kept: NULL (possible_duplicates then does not compare venues).
ALTER TABLE fact_versions ADD COLUMN IF NOT EXISTS venue VARCHAR;

-- The totals, kept by the projector in each batch's transaction (projections/totals.py), so that
-- reading them costs the same at any length of the log: the outreach actions in force, each linked
-- group counted once (the `actions` view), summed by campaign (scope 'campaign', key its
-- campaign_id, NULL for none) and by plan task (scope 'plan_task', key its task_ref), county and
-- month. `starts` and `lasts` count the actions by the day of the month they start and end (their
-- last day: the end, else the start), so that the first and last day with any action stay exact
-- when one is corrected or retracted. The sums count the actions that start in the month; a row
-- may count only actions that end in it. A row whose counts all went back to 0 stays, counting
-- nothing (rows are as many as the cells ever reached, never more than the log's actions).
CREATE TABLE IF NOT EXISTS totals_cells (
    scope                           VARCHAR NOT NULL,
    key                             VARCHAR,
    country                         VARCHAR,
    county                          VARCHAR,
    month                           DATE,
    events                          BIGINT NOT NULL,
    sessions                        BIGINT NOT NULL,
    participants                    BIGINT NOT NULL,
    sessions_participants_unknown   BIGINT NOT NULL,
    sessions_participants_estimated BIGINT NOT NULL,
    materials_distributed           BIGINT NOT NULL,
    materials_unknown               BIGINT NOT NULL,
    teams_established               BIGINT NOT NULL,
    starts                          INTEGER[] NOT NULL,   -- 31 counts: the actions starting on day 1..31
    lasts                           INTEGER[] NOT NULL,   -- 31 counts: the actions whose last day it is
    first_activity                  DATE,                 -- the first day of `starts` with an action
    last_activity                   DATE                  -- the last day of `lasts` with an action
);
