-- More views for analysts: the totals sliced by quarter, year, agency and campaign × county, and
-- each campaign's coverage of its target counties. Loaded after views.sql (it uses facts_as_of,
-- actions_as_of and the counties table), with the same totals placeholder in braces replaced by
-- projections/views.py TOTALS. As in views.sql, every view has a table macro `…_as_of(known)`
-- and the plain view is the `_as_of(NULL)` one: now.

-- Totals by the quarter an action started (the quarter's first day), per county.
CREATE OR REPLACE MACRO totals_by_quarter_as_of(known) AS TABLE
SELECT CAST(date_trunc('quarter', a.occurred_start) AS DATE) AS quarter, a.county,
       {totals}
FROM actions_as_of(known) a
GROUP BY ALL
ORDER BY quarter, county;

-- Totals by the year an action started, per county.
CREATE OR REPLACE MACRO totals_by_year_as_of(known) AS TABLE
SELECT CAST(year(a.occurred_start) AS INTEGER) AS year, a.county,
       {totals}
FROM actions_as_of(known) a
GROUP BY ALL
ORDER BY year, county;

-- Totals by the agency that published the action (only that agency may correct or retract it).
CREATE OR REPLACE MACRO totals_by_agency_as_of(known) AS TABLE
SELECT a.agency,
       {totals}
FROM actions_as_of(known) a
GROUP BY ALL
ORDER BY agency;

-- Totals by campaign and county; campaign_id NULL: actions with no campaign, as in totals_by_campaign.
CREATE OR REPLACE MACRO totals_by_campaign_county_as_of(known) AS TABLE
SELECT a.campaign_id, a.county,
       {totals}
FROM actions_as_of(known) a
GROUP BY ALL
ORDER BY campaign_id NULLS LAST, county;

-- One row per campaign × target county (its definition's target_counties) × year in which the
-- campaign had any action, with the actions in that county that year: 0 shows a gap in coverage.
-- Actions outside the target counties are not here (they are in totals_by_campaign_county); a
-- campaign with no action yet has no year, hence no row.
CREATE OR REPLACE MACRO campaign_coverage_as_of(known) AS TABLE
WITH defs AS (
    SELECT payload ->> 'campaign_id' AS campaign_id, payload -> 'target_counties' AS target_counties
    FROM facts_as_of(known)
    WHERE event_type = 'campaign_defined'
    QUALIFY row_number() OVER (PARTITION BY payload ->> 'campaign_id' ORDER BY version_seq DESC) = 1
), targets AS (
    SELECT DISTINCT campaign_id, unnest(coalesce(from_json(target_counties, '["VARCHAR"]'), [])) AS county
    FROM defs
), acts AS (
    SELECT campaign_id, county, CAST(year(occurred_start) AS INTEGER) AS year
    FROM actions_as_of(known)
    WHERE campaign_id IS NOT NULL
), years AS (
    SELECT DISTINCT campaign_id, year FROM acts
), counted AS (
    SELECT campaign_id, county, year, count(*) AS actions FROM acts GROUP BY ALL
)
SELECT t.campaign_id, t.county, c.name AS county_name, y.year, coalesce(n.actions, 0) AS actions
FROM targets t
JOIN years y ON y.campaign_id = t.campaign_id
LEFT JOIN counted n ON n.campaign_id = t.campaign_id AND n.county = t.county AND n.year = y.year
LEFT JOIN counties c ON c.code = t.county
ORDER BY campaign_id, county, year;

CREATE OR REPLACE VIEW totals_by_quarter AS SELECT * FROM totals_by_quarter_as_of(NULL);
CREATE OR REPLACE VIEW totals_by_year AS SELECT * FROM totals_by_year_as_of(NULL);
CREATE OR REPLACE VIEW totals_by_agency AS SELECT * FROM totals_by_agency_as_of(NULL);
-- Now: read from the totals the projector keeps (`totals_cells`), as totals_by_campaign is.
CREATE OR REPLACE VIEW totals_by_campaign_county AS
SELECT p.key AS campaign_id, p.county, {totals_of_partials}
FROM totals_cells p WHERE p.scope = 'campaign'
GROUP BY p.key, p.county HAVING sum(p.events) > 0
ORDER BY campaign_id NULLS LAST, county;
CREATE OR REPLACE VIEW campaign_coverage AS SELECT * FROM campaign_coverage_as_of(NULL);
