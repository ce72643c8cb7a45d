"""A country's counties as an inline SVG choropleth: each county one shape, shaded by its value,
named, and its value printed on it, so that the map reads on paper as on screen.

The boundaries are Natural Earth's (public domain), extracted and simplified once by
``tools/boundaries.py`` into ``projections/data/counties.json`` (source and licence beside them).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from functools import cache
from html import escape
from importlib import resources
from typing import Any

SIZE = 560  # the longer side of a map, in its units; its names are 11 of them
LEGEND_ROW = 40
LEGEND_WIDTH = 400  # the legend's five items in a row
SHADES = ("#deebf7", "#9ecae1", "#4292c6", "#08519c")  # light to dark; the two darkest take white text
NONE = "#f2f2f2"  # no action there


@cache
def boundaries() -> dict[str, Any]:
    text = resources.files("projections.data").joinpath("counties.json").read_text(encoding="utf-8")
    return json.loads(text)["counties"]  # type: ignore[no-any-return]


def has_map(country: str) -> bool:
    return any(c["country"] == country for c in boundaries().values())


def _steps(top: int) -> list[int]:
    """The lower bounds of the shades above 0: equal steps up to ``top``, rounded to whole numbers."""
    if top <= len(SHADES):
        return list(range(1, top + 1))
    return [1, *(math.ceil(top * i / len(SHADES)) for i in range(1, len(SHADES)))]


def county_map(
    country: str,
    values: dict[str, int],
    names: dict[str, str],
    label: str,
    none_label: str,
    number: Callable[[int], str],
) -> str:
    """The SVG of ``country``'s counties; ``values`` by county code (absent: no action there)."""
    shapes = {code: c for code, c in boundaries().items() if c["country"] == country}
    xs = [x for c in shapes.values() for ring in c["rings"] for x, _ in ring]
    ys = [y for c in shapes.values() for ring in c["rings"] for _, y in ring]
    squeeze = math.cos(math.radians((min(ys) + max(ys)) / 2))  # equirectangular, true at the middle
    span_x, span_y = (max(xs) - min(xs)) * squeeze, max(ys) - min(ys)
    scale = (SIZE - 20) / max(span_x, span_y)  # a tall country as large as a wide one
    drawn = span_x * scale + 20
    width = max(drawn, LEGEND_WIDTH)
    left = (width - drawn) / 2 + 10
    height = round(span_y * scale + 20)

    def point(x: float, y: float) -> str:
        return f"{(x - min(xs)) * squeeze * scale + left:.1f},{(max(ys) - y) * scale + 10:.1f}"

    top = max(values.values(), default=0)
    steps = _steps(top) if top else []

    def shade(value: int | None) -> int | None:
        if not value:
            return None
        return max(i for i, low in enumerate(steps) if value >= low) + (len(SHADES) - len(steps))

    paths, labels = [], []
    for code in sorted(shapes):
        c = shapes[code]
        value = values.get(code)
        level = shade(value)
        fill = SHADES[level] if level is not None else NONE
        d = " ".join("M" + " L".join(point(x, y) for x, y in ring[:-1]) + " Z" for ring in c["rings"])
        name = names.get(code, code)
        told = number(value) if value else none_label
        paths.append(
            f'<path class="county" d="{d}" fill="{fill}" data-county="{escape(code)}" '
            f'data-value="{value or 0}"><title>{escape(name)}: {escape(told)}</title></path>'
        )
        x, y = (float(v) for v in point(*c["label"]).split(","))
        dark = " dark" if level is not None and level >= 2 else ""
        labels.append(
            f'<text class="map-label{dark}" x="{x:.1f}" y="{y:.1f}" text-anchor="middle" data-county="{escape(code)}">'
            f'<tspan x="{x:.1f}" dy="-0.2em">{escape(name)}</tspan>'
            f'<tspan class="map-value" x="{x:.1f}" dy="1.15em">{escape(number(value) if value else "–")}</tspan></text>'
        )
    legend = _legend(steps, top, label, none_label, number, height)
    return (
        f'<svg id="map-{escape(country)}" class="map" viewBox="0 0 {width:.0f} {height + LEGEND_ROW}" role="img" '
        f'aria-label="{escape(label)}">\n' + "\n".join(paths) + "\n" + "\n".join(labels) + "\n" + legend + "\n</svg>"
    )


def _legend(steps: list[int], top: int, label: str, none_label: str, number: Callable[[int], str], y: int) -> str:
    items = [(NONE, none_label)]
    offset = len(SHADES) - len(steps)
    for i, low in enumerate(steps):
        high = steps[i + 1] - 1 if i + 1 < len(steps) else top
        items.append((SHADES[i + offset], number(low) if low == high else f"{number(low)}–{number(high)}"))
    parts, x = [], 10.0
    for fill, text in items:
        parts.append(
            f'<rect x="{x:.0f}" y="{y + 14}" width="14" height="14" fill="{fill}" stroke="#8a94a6" stroke-width="0.5"/>'
            f'<text class="legend" x="{x + 19:.0f}" y="{y + 25}">{escape(text)}</text>'
        )
        x += 19 + len(text) * 7.5 + 16
    return f'<g class="legend" aria-label="{escape(label)}">{"".join(parts)}</g>'
