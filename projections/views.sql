-- Views analysts rely on; their names and columns are a stable interface.
-- The totals placeholder in braces is replaced by projections/views.py TOTALS, a constant.
--
-- Two clocks: `occurred` is when something happened (the agency's claim); `stored_at` is when the
-- stream stored the event (the system's own clock). Every view has a table macro of the same name
-- with `_as_of(known)`: the same figures as the system knew them at time `known`, exactly what
-- `outreach replay --as-of known` rebuilds. The plain views are the `_as_of(NULL)` ones: now.

-- The versions of facts in force at `known` (NULL: now), retracted ones left out.
CREATE OR REPLACE MACRO facts_as_of(known) AS TABLE
SELECT * EXCLUDE (superseded_seq, superseded_stored_at)
FROM fact_versions
WHERE NOT retracted
  AND CASE WHEN known IS NULL THEN superseded_seq IS NULL
           ELSE version_stored_at <= known
                AND (superseded_stored_at IS NULL OR superseded_stored_at > known) END;

-- The actions a link (`actions_linked`) names, each with whether it is the one that counts.
CREATE OR REPLACE MACRO link_members(payload) AS
list_transform(from_json(payload -> 'actions', '[{"agency":"VARCHAR","event_id":"VARCHAR"}]'),
               lambda m: {'agency': m.agency, 'fact_id': CAST(m.event_id AS UUID),
                          'counts': m.agency = (payload ->> '$.counts.agency')
                                    AND m.event_id = (payload ->> '$.counts.event_id')});

-- Actions linked out of the totals at `known`: those of a link in force that do not count.
CREATE OR REPLACE MACRO linked_away_as_of(known) AS TABLE
SELECT m.agency, m.fact_id
FROM (SELECT unnest(link_members(payload)) AS m FROM facts_as_of(known) WHERE event_type = 'actions_linked')
WHERE NOT m.counts;

-- The outreach actions in force, each linked group counted once: every totals view sums these.
CREATE OR REPLACE MACRO actions_as_of(known) AS TABLE
SELECT a.* FROM facts_as_of(known) a
ANTI JOIN linked_away_as_of(known) x ON x.agency = a.agency AND x.fact_id = a.fact_id
WHERE a.event_type IN ('session_held', 'materials_distributed', 'team_established');

CREATE OR REPLACE MACRO campaigns_as_of(known) AS TABLE
SELECT payload ->> 'campaign_id' AS campaign_id,
       payload ->> 'name' AS name,
       payload ->> 'name_en' AS name_en,
       country,
       payload ->> 'lead_agency' AS lead_agency,
       payload ->> 'funder' AS funder,
       CAST(payload ->> 'starts' AS DATE) AS starts,
       CAST(payload ->> 'ends' AS DATE) AS ends,
       agency AS defined_by,
       fact_id
FROM facts_as_of(known)
WHERE event_type = 'campaign_defined'
QUALIFY row_number() OVER (PARTITION BY payload ->> 'campaign_id' ORDER BY version_seq DESC) = 1;

CREATE OR REPLACE MACRO plan_tasks_as_of(known) AS TABLE
SELECT concat_ws('/', payload ->> 'plan_id', payload ->> 'part', payload ->> 'task') AS task_ref,
       payload ->> 'plan_id' AS plan_id,
       payload ->> 'plan_title' AS plan_title,
       country,
       CAST(payload ->> 'first_year' AS INTEGER) AS first_year,
       CAST(payload ->> 'last_year' AS INTEGER) AS last_year,
       payload ->> 'part' AS part,
       payload ->> 'task' AS task,
       payload ->> 'title' AS title,
       agency AS defined_by,
       fact_id
FROM facts_as_of(known)
WHERE event_type = 'plan_task_defined'
QUALIFY row_number() OVER (PARTITION BY task_ref ORDER BY version_seq DESC) = 1;

-- Aggregated by the county's code, then joined to its names: grouping the actions by one key, not
-- four, is most of the view's time.
CREATE OR REPLACE MACRO totals_by_county_as_of(known) AS TABLE
WITH g AS (SELECT a.county, {totals} FROM actions_as_of(known) a GROUP BY a.county)
SELECT c.code AS county, c.name AS county_name, c.name_en AS county_name_en, c.country, g.* EXCLUDE (county)
FROM g
JOIN counties c ON c.code = g.county
ORDER BY county;

-- Aggregated by key and county first, then by key (the counties reached are the rows of the first:
-- a distinct count over every action costs more than the totals), then joined to the definitions:
-- one pass over the actions. `defined_by` is the agency whose definition stands; a definition's
-- lead_agency is always its definer. The actions of no campaign (campaign_id NULL) are a row per
-- country, which `country` names: one country's actions are never added to another's.
CREATE OR REPLACE MACRO totals_by_campaign_as_of(known) AS TABLE
WITH p AS (SELECT a.campaign_id, CASE WHEN a.campaign_id IS NULL THEN a.country END AS no_campaign_country,
                  a.county, {totals}
           FROM actions_as_of(known) a GROUP BY a.campaign_id, no_campaign_country, a.county),
     g AS (SELECT p.campaign_id, p.no_campaign_country, {totals_of_partials}, count(p.county) AS counties_reached
           FROM p GROUP BY p.campaign_id, p.no_campaign_country),
     camps AS (SELECT * FROM campaigns_as_of(known))
SELECT coalesce(c.campaign_id, g.campaign_id) AS campaign_id, c.name, c.name_en,
       coalesce(c.country, g.no_campaign_country) AS country, c.lead_agency,
       c.defined_by, c.funder,
       {totals_or_zero},
       coalesce(g.counties_reached, 0) AS counties_reached
FROM g
FULL JOIN camps c ON c.campaign_id = g.campaign_id
ORDER BY campaign_id NULLS LAST, country;

CREATE OR REPLACE MACRO totals_by_plan_task_as_of(known) AS TABLE
WITH p AS (SELECT a.task_ref, a.county, {totals}
           FROM (SELECT unnest(plan_tasks) AS task_ref, * EXCLUDE (plan_tasks) FROM actions_as_of(known)) a
           GROUP BY a.task_ref, a.county),
     g AS (SELECT p.task_ref, {totals_of_partials}, count(p.county) AS counties_reached FROM p GROUP BY p.task_ref),
     tasks AS (SELECT * FROM plan_tasks_as_of(known))
SELECT coalesce(p.task_ref, g.task_ref) AS task_ref, p.plan_id, p.plan_title, p.part, p.task, p.title,
       {totals_or_zero},
       coalesce(g.counties_reached, 0) AS counties_reached
FROM g
FULL JOIN tasks p ON p.task_ref = g.task_ref
ORDER BY task_ref;

-- What `totals_cells` holds, computed from the actions in force at `known`: how a replay and a file
-- made before the projector kept its totals get them, and what tests hold the kept totals to. Each
-- month's counts by day are 31 filtered counts of one grouping (the placeholders in braces are
-- replaced by projections/views.py).
CREATE OR REPLACE MACRO totals_cells_as_of(known) AS TABLE
WITH a AS (
    SELECT 'campaign' AS scope, campaign_id AS key, * EXCLUDE (plan_tasks) FROM actions_as_of(known)
    UNION ALL BY NAME
    SELECT 'plan_task' AS scope, unnest(plan_tasks) AS key, * EXCLUDE (plan_tasks) FROM actions_as_of(known)
), s AS (
    SELECT scope, key, country, county, CAST(date_trunc('month', occurred_start) AS DATE) AS month,
           count(*) AS events,
           CAST(sum(sessions) AS BIGINT) AS sessions,
           CAST(sum(participants) AS BIGINT) AS participants,
           CAST(coalesce(sum(sessions) FILTER (WHERE participants_unknown), 0) AS BIGINT) AS sessions_participants_unknown,
           CAST(coalesce(sum(sessions) FILTER (WHERE participants_estimated), 0) AS BIGINT) AS sessions_participants_estimated,
           CAST(sum(materials) AS BIGINT) AS materials_distributed,
           count(*) FILTER (WHERE materials_unknown) AS materials_unknown,
           CAST(sum(teams) AS BIGINT) AS teams_established,
           {by_day:occurred_start} AS starts
    FROM a GROUP BY ALL
), l AS (
    SELECT scope, key, country, county,
           CAST(date_trunc('month', coalesce(occurred_end, occurred_start)) AS DATE) AS month,
           {by_day:coalesce(occurred_end, occurred_start)} AS lasts
    FROM a WHERE occurred_start IS NOT NULL GROUP BY ALL
), cells AS (
    SELECT coalesce(s.scope, l.scope) AS scope, coalesce(s.key, l.key) AS key,
           coalesce(s.country, l.country) AS country, coalesce(s.county, l.county) AS county,
           coalesce(s.month, l.month) AS month,
           coalesce(s.events, 0) AS events, coalesce(s.sessions, 0) AS sessions,
           coalesce(s.participants, 0) AS participants,
           coalesce(s.sessions_participants_unknown, 0) AS sessions_participants_unknown,
           coalesce(s.sessions_participants_estimated, 0) AS sessions_participants_estimated,
           coalesce(s.materials_distributed, 0) AS materials_distributed,
           coalesce(s.materials_unknown, 0) AS materials_unknown,
           coalesce(s.teams_established, 0) AS teams_established,
           coalesce(s.starts, {no_days}) AS starts,
           coalesce(l.lasts, {no_days}) AS lasts
    FROM s
    FULL JOIN l ON l.scope = s.scope AND l.key IS NOT DISTINCT FROM s.key AND l.country IS NOT DISTINCT FROM s.country
         AND l.county IS NOT DISTINCT FROM s.county AND l.month IS NOT DISTINCT FROM s.month
)
SELECT *, {first_day:month:starts} AS first_activity, {last_day:month:lasts} AS last_activity FROM cells;

-- Totals by the month an action started, per county.
CREATE OR REPLACE MACRO totals_by_month_as_of(known) AS TABLE
SELECT CAST(date_trunc('month', a.occurred_start) AS DATE) AS month, a.county,
       {totals}
FROM actions_as_of(known) a
GROUP BY ALL
ORDER BY month, county;

-- Participants of sessions by audience group, per county.
CREATE OR REPLACE MACRO totals_by_audience_as_of(known) AS TABLE
SELECT county, g.audience AS audience,
       CAST(sum(n) AS BIGINT) AS sessions,
       CAST(coalesce(sum(g.count), 0) AS BIGINT) AS participants,
       CAST(coalesce(sum(n) FILTER (WHERE g.count IS NULL), 0) AS BIGINT) AS sessions_uncounted,
       CAST(coalesce(sum(n) FILTER (WHERE g.estimated), 0) AS BIGINT) AS sessions_estimated
FROM (SELECT county, sessions AS n, unnest(audiences) AS g FROM actions_as_of(known) WHERE event_type = 'session_held')
GROUP BY ALL
ORDER BY county, audience;

CREATE OR REPLACE VIEW facts AS SELECT * FROM facts_as_of(NULL);
CREATE OR REPLACE VIEW actions AS SELECT * FROM actions_as_of(NULL);
CREATE OR REPLACE VIEW campaigns AS SELECT * FROM campaigns_as_of(NULL);
-- Each campaign's partner agencies, as its latest definition lists them (for the report).
CREATE OR REPLACE VIEW campaign_partners AS
SELECT payload ->> 'campaign_id' AS campaign_id,
       CAST(coalesce(payload -> 'partners', '[]') AS VARCHAR[]) AS partners
FROM facts_as_of(NULL)
WHERE event_type = 'campaign_defined'
QUALIFY row_number() OVER (PARTITION BY payload ->> 'campaign_id' ORDER BY version_seq DESC) = 1;
CREATE OR REPLACE VIEW plan_tasks AS SELECT * FROM plan_tasks_as_of(NULL);
-- The totals as they stand now read the totals the projector keeps (`totals_cells`), not every
-- action: the same rows as their `_as_of(NULL)`, at a cost that does not grow with the log.
CREATE OR REPLACE VIEW totals_by_county AS
WITH g AS (SELECT p.county, {totals_of_partials} FROM totals_cells p WHERE p.scope = 'campaign'
           GROUP BY p.county HAVING sum(p.events) > 0)
SELECT c.code AS county, c.name AS county_name, c.name_en AS county_name_en, c.country, g.* EXCLUDE (county)
FROM g
JOIN counties c ON c.code = g.county
ORDER BY county;
CREATE OR REPLACE VIEW totals_by_campaign AS
WITH q AS (SELECT p.key AS campaign_id, CASE WHEN p.key IS NULL THEN p.country END AS no_campaign_country,
                  p.county, {totals_of_partials}
           FROM totals_cells p WHERE p.scope = 'campaign'
           GROUP BY p.key, no_campaign_country, p.county HAVING sum(p.events) > 0),
     g AS (SELECT p.campaign_id, p.no_campaign_country, {totals_of_partials}, count(p.county) AS counties_reached
           FROM q p GROUP BY p.campaign_id, p.no_campaign_country)
SELECT coalesce(c.campaign_id, g.campaign_id) AS campaign_id, c.name, c.name_en,
       coalesce(c.country, g.no_campaign_country) AS country, c.lead_agency,
       c.defined_by, c.funder,
       {totals_or_zero},
       coalesce(g.counties_reached, 0) AS counties_reached
FROM g
FULL JOIN campaigns c ON c.campaign_id = g.campaign_id
ORDER BY campaign_id NULLS LAST, country;
CREATE OR REPLACE VIEW totals_by_plan_task AS
WITH q AS (SELECT p.key AS task_ref, p.county, {totals_of_partials}
           FROM totals_cells p WHERE p.scope = 'plan_task'
           GROUP BY p.key, p.county HAVING sum(p.events) > 0),
     g AS (SELECT p.task_ref, {totals_of_partials}, count(p.county) AS counties_reached FROM q p GROUP BY p.task_ref)
SELECT coalesce(p.task_ref, g.task_ref) AS task_ref, p.plan_id, p.plan_title, p.part, p.task, p.title,
       {totals_or_zero},
       coalesce(g.counties_reached, 0) AS counties_reached
FROM g
FULL JOIN plan_tasks p ON p.task_ref = g.task_ref
ORDER BY task_ref;
CREATE OR REPLACE VIEW totals_by_month AS SELECT * FROM totals_by_month_as_of(NULL);
CREATE OR REPLACE VIEW totals_by_audience AS SELECT * FROM totals_by_audience_as_of(NULL);

-- A fact's identity in the auditors' views: its agency and its event_id, `<agency>/<event_id>`.
-- Two agencies may use one event_id; each has its own fact, and one's events are never in the
-- other's history. (An agency corrects or retracts only its own events, so a correction's agency
-- is its fact's.)
CREATE OR REPLACE MACRO fact_key(agency, event_id) AS agency || '/' || CAST(event_id AS VARCHAR);

-- For auditors: every event about a fact (the original, its corrections, its retraction), in
-- stream order, with who published it and when it was recorded and stored.
-- A link (`actions_linked`), and its retraction, is in the history of every action it names too.
CREATE OR REPLACE VIEW event_history AS
WITH links AS (SELECT *, unnest(link_members(payload)) AS m FROM event_log WHERE event_type = 'actions_linked')
SELECT fact_key(l.agency, coalesce(l.refers_to, l.event_id)) AS fact_id,
       l.stream_seq, l.event_id, l.event_type, l.agency, l.recorded_at, l.stored_at,
       l.payload ->> 'reason' AS reason,
       l.payload
FROM event_log l
UNION ALL
SELECT fact_key(m.agency, m.fact_id), stream_seq, event_id, event_type, agency, recorded_at, stored_at,
       payload ->> 'reason', payload
FROM links
UNION ALL
SELECT fact_key(k.m.agency, k.m.fact_id), r.stream_seq, r.event_id, r.event_type, r.agency, r.recorded_at, r.stored_at,
       r.payload ->> 'reason', r.payload
FROM event_log r JOIN links k ON k.agency = r.agency AND k.event_id = r.refers_to
WHERE r.event_type = 'event_retracted'
ORDER BY fact_id, stream_seq;

-- Every correction and retraction with the difference it made to the totals of its fact.
CREATE OR REPLACE VIEW corrections AS
SELECT fact_key(v.agency, v.fact_id) AS fact_id,
       v.version_seq AS stream_seq,
       CASE WHEN v.retracted THEN 'event_retracted' ELSE 'event_corrected' END AS kind,
       l.event_id, l.agency, l.recorded_at, l.stored_at, l.payload ->> 'reason' AS reason,
       p.county AS county_before, CASE WHEN v.retracted THEN NULL ELSE v.county END AS county_after,
       v.sessions - p.sessions AS sessions_change,
       v.participants - p.participants AS participants_change,
       v.materials - p.materials AS materials_change,
       v.teams - p.teams AS teams_change
FROM fact_versions v
JOIN fact_versions p ON p.fact_id = v.fact_id AND p.agency = v.agency AND p.superseded_seq = v.version_seq
JOIN event_log l ON l.stream_seq = v.version_seq
ORDER BY stream_seq;

-- The report's grain: actions summed by country, county, campaign, the day they started, type,
-- material kind and plan tasks. Every figure of `outreach report`, under any of its filters, is a
-- sum over these rows; they are few enough for the snapshot, so that a report made beside a running
-- projector is exact.
CREATE OR REPLACE VIEW report_cells AS
SELECT a.country, a.county, a.campaign_id, a.occurred_start AS started, a.event_type, a.material_kind,
       a.plan_tasks,
       count(*) AS events,
       CAST(sum(a.sessions) AS BIGINT) AS sessions,
       CAST(sum(a.participants) AS BIGINT) AS participants,
       CAST(coalesce(sum(a.sessions) FILTER (WHERE a.participants_unknown), 0) AS BIGINT) AS sessions_uncounted,
       CAST(coalesce(sum(a.sessions) FILTER (WHERE a.participants_estimated), 0) AS BIGINT) AS sessions_estimated,
       CAST(sum(a.materials) AS BIGINT) AS materials,
       count(*) FILTER (WHERE a.materials_unknown) AS materials_unknown,
       CAST(sum(a.teams) AS BIGINT) AS teams
FROM actions a
GROUP BY ALL;

-- The notes on data quality of the whole log, one row: small enough for the snapshot. Corrections
-- and retractions are the versions that superseded another, as `corrections` lists them, counted
-- without its join to the log (one row there for each version): at 1,000,000 events 28 ms against
-- 54, and no hash table of the log's sequences beside the projector's writes.
CREATE OR REPLACE VIEW data_quality AS
WITH a AS (
    SELECT CAST(coalesce(sum(sessions) FILTER (WHERE event_type = 'session_held' AND participants_estimated), 0)
                AS BIGINT) AS sessions_estimated,
           CAST(coalesce(sum(sessions) FILTER (WHERE participants_unknown), 0) AS BIGINT) AS sessions_uncounted,
           count(*) FILTER (WHERE materials_unknown) AS materials_unknown
    FROM actions),
c AS (
    SELECT count(*) FILTER (WHERE NOT v.retracted) AS corrections,
           count(*) FILTER (WHERE v.retracted) AS retractions
    FROM fact_versions v
    JOIN fact_versions p ON p.fact_id = v.fact_id AND p.agency = v.agency AND p.superseded_seq = v.version_seq)
SELECT a.*, c.*, (SELECT count(*) FROM rejected_events) AS rejected
FROM a, c;
