-- Views analysts rely on; their names and columns are a stable interface.
-- The totals placeholder in braces is replaced by projections/store.py TOTALS, a constant.

-- The current version of every fact that is not retracted.
CREATE OR REPLACE VIEW facts AS
SELECT * EXCLUDE (superseded_seq, superseded_stored_at)
FROM fact_versions
WHERE superseded_seq IS NULL AND NOT retracted;

-- Outreach actions: what the totals count.
CREATE OR REPLACE VIEW actions AS
SELECT * FROM facts
WHERE event_type IN ('session_held', 'materials_distributed', 'team_established');

CREATE OR REPLACE VIEW campaigns AS
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
FROM facts
WHERE event_type = 'campaign_defined'
QUALIFY row_number() OVER (PARTITION BY payload ->> 'campaign_id' ORDER BY version_seq DESC) = 1;

CREATE OR REPLACE VIEW plan_tasks AS
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
FROM facts
WHERE event_type = 'plan_task_defined'
QUALIFY row_number() OVER (PARTITION BY task_ref ORDER BY version_seq DESC) = 1;

CREATE OR REPLACE VIEW totals_by_county AS
SELECT c.code AS county, c.name AS county_name, c.name_en AS county_name_en, c.country,
       {totals}
FROM actions a
JOIN counties c ON c.code = a.county
GROUP BY ALL
ORDER BY county;

CREATE OR REPLACE VIEW totals_by_campaign AS
WITH keys AS (SELECT campaign_id FROM campaigns UNION SELECT campaign_id FROM actions)
SELECT k.campaign_id, c.name, c.name_en, c.country, c.lead_agency, c.funder,
       {totals},
       count(DISTINCT a.county) AS counties_reached
FROM keys k
LEFT JOIN campaigns c ON c.campaign_id = k.campaign_id
LEFT JOIN actions a ON a.campaign_id IS NOT DISTINCT FROM k.campaign_id
GROUP BY ALL
ORDER BY k.campaign_id NULLS LAST;

CREATE OR REPLACE VIEW totals_by_plan_task AS
WITH tasked AS (SELECT unnest(plan_tasks) AS task_ref, * EXCLUDE (plan_tasks) FROM actions),
     keys AS (SELECT task_ref FROM plan_tasks UNION SELECT task_ref FROM tasked)
SELECT k.task_ref, p.plan_id, p.plan_title, p.part, p.task, p.title,
       {totals},
       count(DISTINCT a.county) AS counties_reached
FROM keys k
LEFT JOIN plan_tasks p ON p.task_ref = k.task_ref
LEFT JOIN tasked a ON a.task_ref = k.task_ref
GROUP BY ALL
ORDER BY k.task_ref;

-- Totals by the month an action started, per county.
CREATE OR REPLACE VIEW totals_by_month AS
SELECT CAST(date_trunc('month', a.occurred_start) AS DATE) AS month, a.county,
       {totals}
FROM actions a
GROUP BY ALL
ORDER BY month, county;

-- Participants of sessions by audience group, per county.
CREATE OR REPLACE VIEW totals_by_audience AS
SELECT county, g.audience AS audience,
       count(*) AS sessions,
       CAST(coalesce(sum(g.count), 0) AS BIGINT) AS participants,
       count(*) FILTER (WHERE g.count IS NULL) AS sessions_uncounted,
       count(*) FILTER (WHERE g.estimated) AS sessions_estimated
FROM (SELECT county, unnest(audiences) AS g FROM actions WHERE event_type = 'session_held')
GROUP BY ALL
ORDER BY county, audience;
