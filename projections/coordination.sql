-- Coordinators, links, submissions and likely double reports (see README, For coordinators).
-- The totals placeholder in braces is replaced by projections/views.py TOTALS.

-- Coordinators in force: appointed by the admin (`coordinator_appointed`), not retracted.
CREATE OR REPLACE VIEW coordinators AS
SELECT payload ->> 'coordinator' AS agency, country, fact_key(agency, fact_id) AS appointment,
       version_stored_at AS appointed_at, payload ->> 'reason' AS reason
FROM facts WHERE event_type = 'coordinator_appointed';

-- Links in force, one row per action they name: `counts` is the one the totals keep.
CREATE OR REPLACE VIEW action_links AS
SELECT fact_key(agency, fact_id) AS link, agency AS linked_by, version_stored_at AS linked_at,
       payload ->> 'reason' AS reason, fact_key(m.agency, m.fact_id) AS action, m.counts
FROM (SELECT *, unnest(link_members(payload)) AS m FROM facts WHERE event_type = 'actions_linked')
ORDER BY link, action;

-- The versions of facts in force after stream sequence `seq` (NULL: now), retracted ones left out.
CREATE OR REPLACE MACRO facts_at_seq(seq) AS TABLE
SELECT * EXCLUDE (superseded_seq, superseded_stored_at)
FROM fact_versions
WHERE NOT retracted
  AND CASE WHEN seq IS NULL THEN superseded_seq IS NULL
           ELSE version_seq <= seq AND (superseded_seq IS NULL OR superseded_seq > seq) END;

-- The actions in force after stream sequence `seq`, each linked group counted once (as
-- `actions_as_of` by the time the stream stored them).
CREATE OR REPLACE MACRO actions_at_seq(seq) AS TABLE
SELECT a.* FROM facts_at_seq(seq) a
ANTI JOIN (SELECT m.agency, m.fact_id
           FROM (SELECT unnest(link_members(payload)) AS m FROM facts_at_seq(seq) WHERE event_type = 'actions_linked')
           WHERE NOT m.counts) x
       ON x.agency = a.agency AND x.fact_id = a.fact_id
WHERE a.event_type IN ('session_held', 'materials_distributed', 'team_established');

-- Whether an action is in a submission's scope: its country, started within the period, and
-- (a plan given) under a task of that plan.
CREATE OR REPLACE MACRO in_submission_scope(a_country, a_started, a_tasks, s_country, s_start, s_end, s_plan) AS
a_country = s_country AND a_started BETWEEN s_start AND s_end
AND (s_plan IS NULL OR len(list_filter(a_tasks, lambda t: starts_with(t, s_plan || '/'))) > 0);

-- A submission's figures after stream sequence `seq` (NULL: now): the totals of the actions in
-- its scope by county, by campaign and by plan task (of its plan, when it names one). Their
-- digest: schemas/submission.py.
CREATE OR REPLACE MACRO submission_figures_at(s_country, s_start, s_end, s_plan, seq) AS TABLE
WITH scoped AS (
    SELECT * FROM actions_at_seq(seq)
    WHERE in_submission_scope(country, occurred_start, plan_tasks, s_country, s_start, s_end, s_plan)),
keyed AS (
    SELECT 'county' AS dimension, county AS key, * FROM scoped
    UNION ALL BY NAME
    SELECT 'campaign' AS dimension, coalesce(campaign_id, '(no campaign)') AS key, * FROM scoped
    UNION ALL BY NAME
    SELECT 'plan_task' AS dimension, task AS key, * EXCLUDE (task)
    FROM (SELECT unnest(plan_tasks) AS task, * FROM scoped)
    WHERE s_plan IS NULL OR starts_with(task, s_plan || '/'))
SELECT a.dimension, a.key,
       {totals}
FROM keyed a
GROUP BY a.dimension, a.key
ORDER BY a.dimension, a.key;

-- Submissions (`report_submitted`) in force: their event_id is the submission's ID.
CREATE OR REPLACE VIEW submissions AS
SELECT fact_id AS submission_id, agency AS submitted_by, country,
       CAST(payload ->> 'period_start' AS DATE) AS period_start,
       CAST(payload ->> 'period_end' AS DATE) AS period_end,
       payload ->> 'plan_id' AS plan_id, payload ->> 'title' AS title, payload ->> 'submitted_to' AS submitted_to,
       CAST(payload ->> 'as_of_seq' AS UBIGINT) AS as_of_seq, payload ->> 'figures_sha256' AS figures_sha256,
       version_seq AS stream_seq, version_stored_at AS submitted_at
FROM facts WHERE event_type = 'report_submitted';

-- Every submission's figures as submitted: as of its stream sequence, whatever came later.
CREATE OR REPLACE VIEW submitted_figures AS
SELECT s.submission_id, f.*
FROM submissions s, LATERAL submission_figures_at(s.country, s.period_start, s.period_end, s.plan_id, s.as_of_seq) f;

-- Every figure of a submission that differs now from what was submitted, with the events stored
-- after the submission's sequence that touched the actions it sums (their originals published
-- late, corrections, retractions, links and their retractions), who published them and when.
CREATE OR REPLACE VIEW changes_since_submission AS
WITH now_figures AS (
    SELECT s.submission_id, f.*
    FROM submissions s, LATERAL submission_figures_at(s.country, s.period_start, s.period_end, s.plan_id, NULL) f),
both_figures AS (
    SELECT coalesce(t.submission_id, n.submission_id) AS submission_id,
           coalesce(t.dimension, n.dimension) AS dimension, coalesce(t.key, n.key) AS key,
           unnest([
               {'measure': 'events', 'submitted': coalesce(t.events, 0), 'current': coalesce(n.events, 0)},
               {'measure': 'sessions', 'submitted': coalesce(t.sessions, 0), 'current': coalesce(n.sessions, 0)},
               {'measure': 'participants', 'submitted': coalesce(t.participants, 0),
                'current': coalesce(n.participants, 0)},
               {'measure': 'sessions_participants_unknown', 'submitted': coalesce(t.sessions_participants_unknown, 0),
                'current': coalesce(n.sessions_participants_unknown, 0)},
               {'measure': 'sessions_participants_estimated',
                'submitted': coalesce(t.sessions_participants_estimated, 0),
                'current': coalesce(n.sessions_participants_estimated, 0)},
               {'measure': 'materials_distributed', 'submitted': coalesce(t.materials_distributed, 0),
                'current': coalesce(n.materials_distributed, 0)},
               {'measure': 'materials_unknown', 'submitted': coalesce(t.materials_unknown, 0),
                'current': coalesce(n.materials_unknown, 0)},
               {'measure': 'teams_established', 'submitted': coalesce(t.teams_established, 0),
                'current': coalesce(n.teams_established, 0)}
           ]) AS m
    FROM submitted_figures t
    FULL JOIN now_figures n USING (submission_id, dimension, key)),
changed AS (
    SELECT submission_id, dimension, key, m.measure AS measure, m.submitted AS submitted, m.current AS current
    FROM both_figures WHERE m.submitted <> m.current),
-- The versions in a submission's scope, then or now, of facts with an event after its sequence.
touched AS (
    SELECT s.submission_id, s.as_of_seq, v.agency, v.fact_id, v.county, v.campaign_id, v.plan_tasks, s.plan_id
    FROM submissions s
    JOIN fact_versions v
      ON v.event_type IN ('session_held', 'materials_distributed', 'team_established')
     AND in_submission_scope(v.country, v.occurred_start, v.plan_tasks, s.country, s.period_start, s.period_end,
                             s.plan_id)
     AND ((v.version_seq <= s.as_of_seq AND (v.superseded_seq IS NULL OR v.superseded_seq > s.as_of_seq))
          OR (v.superseded_seq IS NULL AND v.version_seq > s.as_of_seq))),
touched_keys AS (
    SELECT submission_id, as_of_seq, agency, fact_id, 'county' AS dimension, county AS key FROM touched
    UNION ALL
    SELECT submission_id, as_of_seq, agency, fact_id, 'campaign', coalesce(campaign_id, '(no campaign)') FROM touched
    UNION ALL
    SELECT submission_id, as_of_seq, agency, fact_id, 'plan_task', task
    FROM (SELECT *, unnest(plan_tasks) AS task FROM touched)
    WHERE plan_id IS NULL OR starts_with(task, plan_id || '/')),
later AS (  -- events after a submission about one fact: its own, and links naming it
    SELECT h.fact_id AS fact, h.stream_seq, h.event_id, h.event_type, h.agency, h.stored_at FROM event_history h),
events AS (
    SELECT k.submission_id, k.dimension, k.key,
           list(DISTINCT {'stream_seq': l.stream_seq, 'event_id': l.event_id, 'event_type': l.event_type,
                          'agency': l.agency, 'stored_at': l.stored_at}) AS events,
           list(DISTINCT l.agency ORDER BY l.agency) AS agencies,
           max(l.stored_at) AS last_changed_at
    FROM touched_keys k
    JOIN later l ON l.fact = fact_key(k.agency, k.fact_id) AND l.stream_seq > k.as_of_seq
    GROUP BY ALL)
SELECT c.submission_id, s.submitted_by, s.submitted_at, s.country, s.period_start, s.period_end, s.plan_id,
       c.dimension, c.key, c.measure, c.submitted, c.current, c.current - c.submitted AS change,
       list_sort(e.events) AS events, e.agencies, e.last_changed_at
FROM changed c
JOIN submissions s USING (submission_id)
LEFT JOIN events e USING (submission_id, dimension, key)
ORDER BY s.submitted_at, c.submission_id, c.dimension, c.key, c.measure;

-- Pairs of actions of different agencies that may be one action reported twice: the same county,
-- type and format (or kind of material), overlapping dates, and, where both give it, the same
-- municipality and venue. Actions longer than 31 days are not paired (a year's distribution of
-- leaflets is no session), which bounds the pairs. A linked action out of the totals is in no pair.
CREATE OR REPLACE VIEW possible_duplicates AS
WITH a AS (
    SELECT *, coalesce(session_format, material_kind, '') AS kind_key FROM actions
    WHERE coalesce(occurred_end, occurred_start) - occurred_start <= 31),
-- Two spans overlap when one starts on a day of the other: an equality join on that day, not a
-- comparison of every two actions of a county.
days AS (
    SELECT agency, fact_id, county, event_type, kind_key,
           CAST(unnest(generate_series(occurred_start, coalesce(occurred_end, occurred_start), INTERVAL 1 DAY))
                AS DATE) AS day
    FROM a),
hits AS (
    SELECT DISTINCT least(x.agency, d.agency) AS agency_a,
           CASE WHEN x.agency < d.agency THEN x.fact_id ELSE d.fact_id END AS fact_a,
           greatest(x.agency, d.agency) AS agency_b,
           CASE WHEN x.agency < d.agency THEN d.fact_id ELSE x.fact_id END AS fact_b
    FROM a x
    JOIN days d
      ON d.county = x.county AND d.event_type = x.event_type AND d.kind_key = x.kind_key
     AND d.day = x.occurred_start AND d.agency <> x.agency),
pairs AS (
    SELECT h.agency_a, h.fact_a, h.agency_b, h.fact_b,
           x.county, x.event_type, nullif(x.kind_key, '') AS kind,
           x.occurred_start AS start_a, y.occurred_start AS start_b,
           x.municipality AS municipality_a, y.municipality AS municipality_b,
           x.participants AS participants_a, y.participants AS participants_b,
           lower(trim(x.venue)) AS venue_a, lower(trim(y.venue)) AS venue_b,
           x.version_seq AS seq_a, y.version_seq AS seq_b
    FROM hits h
    JOIN a x ON x.agency = h.agency_a AND x.fact_id = h.fact_a
    JOIN a y ON y.agency = h.agency_b AND y.fact_id = h.fact_b
    WHERE x.municipality IS NULL OR y.municipality IS NULL OR x.municipality = y.municipality),
scored AS (
    SELECT p.*,
           p.start_a = p.start_b AS same_day,
           p.municipality_a IS NOT NULL AND p.municipality_a = p.municipality_b AS same_municipality,
           p.venue_a IS NOT NULL AND p.venue_a = p.venue_b AS same_venue
    FROM pairs p
    WHERE p.venue_a IS NULL OR p.venue_b IS NULL OR p.venue_a = p.venue_b)
SELECT fact_key(agency_a, fact_a) AS action_a, fact_key(agency_b, fact_b) AS action_b, agency_a, agency_b,
       county, event_type, kind, start_a, start_b, participants_a, participants_b,
       50 + CASE WHEN same_day THEN 20 ELSE 0 END + CASE WHEN same_municipality THEN 15 ELSE 0 END
          + CASE WHEN same_venue THEN 15 ELSE 0 END AS score,
       concat_ws('; ', 'same county ' || county, 'both ' || event_type || coalesce(' ' || kind, ''),
                 CASE WHEN same_day THEN 'same day ' || start_a ELSE 'dates overlap' END,
                 CASE WHEN same_municipality THEN 'same municipality ' || municipality_a END,
                 CASE WHEN same_venue THEN 'same venue' END) AS reason
FROM scored
ORDER BY score DESC, county, start_a, action_a, action_b;
