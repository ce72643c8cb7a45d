"""The projection's views, as SQL: ``views.sql``, ``slices.sql`` and ``coordination.sql``, with the
totals every ``totals_by_*`` view carries written once, here, and put in their placeholders."""

from __future__ import annotations

from importlib import resources

# The totals every totals_by_* view carries, in this order.
TOTALS = """\
count(a.fact_id) AS events,
       CAST(coalesce(sum(a.sessions), 0) AS BIGINT) AS sessions,
       CAST(coalesce(sum(a.participants), 0) AS BIGINT) AS participants,
       coalesce(sum(a.sessions) FILTER (WHERE a.participants_unknown), 0)::BIGINT AS sessions_participants_unknown,
       coalesce(sum(a.sessions) FILTER (WHERE a.participants_estimated), 0)::BIGINT AS sessions_participants_estimated,
       CAST(coalesce(sum(a.materials), 0) AS BIGINT) AS materials_distributed,
       count(*) FILTER (WHERE a.materials_unknown) AS materials_unknown,
       CAST(coalesce(sum(a.teams), 0) AS BIGINT) AS teams_established,
       min(a.occurred_start) AS first_activity,
       max(coalesce(a.occurred_end, a.occurred_start)) AS last_activity"""

# The same totals read from a pre-aggregated row ``g`` that may be missing (a campaign or plan
# task with no action yet): counts become 0, dates stay NULL.
TOTAL_NAMES = [line.rsplit(" AS ", 1)[1].rstrip(",") for line in TOTALS.splitlines()]
TOTALS_OR_ZERO = ",\n       ".join(
    f"g.{name}" if name.endswith("_activity") else f"coalesce(g.{name}, 0) AS {name}" for name in TOTAL_NAMES
)

# The same totals summed again from rows ``p`` of partial totals (one per key and county).
TOTALS_OF_PARTIALS = ",\n       ".join(
    f"min(p.{name}) AS {name}"
    if name == "first_activity"
    else f"max(p.{name}) AS {name}"
    if name == "last_activity"
    else f"CAST(sum(p.{name}) AS BIGINT) AS {name}"
    for name in TOTAL_NAMES
)

# The kept totals count the actions of a month by day: 31 counts, day 1 first.
DAYS = 31
NO_DAYS = f"CAST(list_transform(range({DAYS}), lambda d: 0) AS INTEGER[])"


def by_day(day: str) -> str:
    """The aggregate of a month's actions counted by the day of the month of ``day``."""
    counts = ", ".join(f"count(*) FILTER (WHERE day({day}) = {d})" for d in range(1, DAYS + 1))
    return f"CAST(list_value({counts}) AS INTEGER[])"


def first_day(month: str, counts: str) -> str:
    """The first day of ``month`` whose count in ``counts`` is above 0 (NULL: none)."""
    return f"{month} + CAST(list_position(list_transform({counts}, lambda n: n > 0), true) - 1 AS INTEGER)"


def last_day(month: str, counts: str) -> str:
    """The last day of ``month`` whose count in ``counts`` is above 0 (NULL: none)."""
    found = f"list_position(list_reverse(list_transform({counts}, lambda n: n > 0)), true)"
    return f"{month} + CAST({DAYS} - {found} AS INTEGER)"


_SQL_DIR = resources.files("projections")
# Every view and table macro of a projection, made after its tables (``projections.schema``).
VIEWS_SQL = (
    _SQL_DIR.joinpath("views.sql")
    .read_text("utf-8")
    .replace("{totals}", TOTALS)
    .replace("{totals_or_zero}", TOTALS_OR_ZERO)
    .replace("{totals_of_partials}", TOTALS_OF_PARTIALS)
    .replace("{by_day:occurred_start}", by_day("occurred_start"))
    .replace("{by_day:coalesce(occurred_end, occurred_start)}", by_day("coalesce(occurred_end, occurred_start)"))
    .replace("{no_days}", NO_DAYS)
    .replace("{first_day:month:starts}", first_day("month", "starts"))
    .replace("{last_day:month:lasts}", last_day("month", "lasts"))
)
VIEWS_SQL += (
    _SQL_DIR.joinpath("slices.sql")
    .read_text("utf-8")
    .replace("{totals}", TOTALS)
    .replace("{totals_of_partials}", TOTALS_OF_PARTIALS)
)
VIEWS_SQL += _SQL_DIR.joinpath("coordination.sql").read_text("utf-8").replace("{totals}", TOTALS)
