"""Reference data shipped with the package: countries, counties (ISO 3166-2) and municipalities.

Albania: the 12 qarqe AL-01 … AL-12 (AL-09 is Dibër) and their 61 municipalities (bashki) of the
2015 territorial reform. Poland: the 16 voivodeships PL-02 … PL-32 in steps of two, with the letter
codes ISO adopted later kept alongside. Municipality codes are ``<county code>-<ascii slug of the
name>``, e.g. ``AL-06-maliq``; ISO 3166-2 has no codes below the county for either country.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from importlib import resources


@dataclass(frozen=True)
class County:
    code: str
    country: str
    name: str
    name_en: str
    kind: str
    also: tuple[str, ...] = ()  # other forms of the name, e.g. Albanian's definite form (Korça)


@dataclass(frozen=True)
class Municipality:
    code: str
    county: str
    name: str


@dataclass(frozen=True)
class Regions:
    countries: dict[str, str]
    counties: dict[str, County]
    municipalities: dict[str, Municipality]
    municipality_by_name: dict[tuple[str, str], list[Municipality]]
    letter_codes: dict[str, str]


# Letters that Unicode does not decompose into a base letter and a diacritic.
_UNDECOMPOSED = str.maketrans({"ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "ø": "o", "Ø": "O", "ß": "ss"})


def fold(text: str) -> str:
    """Lower-case ASCII form of a name, for matching names written with or without diacritics."""
    ascii_text = unicodedata.normalize("NFKD", text.translate(_UNDECOMPOSED)).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")


@cache
def regions() -> Regions:
    """Load the reference data once."""
    raw = json.loads(resources.files("schemas.data").joinpath("regions.json").read_text("utf-8"))
    counties = {
        c["code"]: County(c["code"], c["country"], c["name"], c["name_en"], c["kind"], tuple(c.get("also", ())))
        for c in raw["counties"]
    }
    municipalities: dict[str, Municipality] = {}
    by_name: dict[tuple[str, str], list[Municipality]] = {}
    for m in raw["municipalities"]:
        muni = Municipality(m["code"], m["county"], m["name"])
        municipalities[muni.code] = muni
        country = counties[muni.county].country
        for name in [m["name"], *m.get("former_names", [])]:
            by_name.setdefault((country, fold(name)), []).append(muni)
    letter_codes = {c["letter_code"]: c["code"] for c in raw["counties"] if "letter_code" in c}
    countries = {code: c["name_en"] for code, c in raw["countries"].items()}
    return Regions(countries, counties, municipalities, by_name, letter_codes)


MUNICIPALITY_CODE = re.compile(r"^[A-Z]{2}-[0-9A-Z]{2,3}-[a-z0-9-]+$")


def check_county(code: str, country: str | None = None) -> str | None:
    """Return a message saying what is wrong with a county code, or None when it is known."""
    reg = regions()
    if code in reg.counties:
        if country is not None and reg.counties[code].country != country:
            return f"county {code} is not in country {country}"
        return None
    if code in reg.letter_codes:
        return f"unknown county code; write {reg.letter_codes[code]} for {code}"
    prefix = code[:2]
    if prefix in reg.countries:
        known = ", ".join(sorted(c for c in reg.counties if c.startswith(prefix + "-")))
        return f"unknown county code for {reg.countries[prefix]}; known: {known}"
    return f"unknown county code; known countries: {', '.join(sorted(reg.countries))}"


def county_named(name: str) -> County | None:
    """The county a name (Korçë, korce, Korça, Dolnośląskie, Lower Silesian) is, if any."""
    folded = fold(name)
    for county in regions().counties.values():
        if folded in (fold(county.name), fold(county.name_en), *map(fold, county.also)):
            return county
    return None


def check_municipality(value: str, county: str) -> str | None:
    """Return a message when a municipality code, or a known municipality name, is not in ``county``."""
    reg = regions()
    if MUNICIPALITY_CODE.match(value):
        muni = reg.municipalities.get(value)
        if muni is None:
            return "unknown municipality code"
        if muni.county != county:
            return f"municipality {muni.name} ({value}) belongs to county {muni.county}, not {county}"
        return None
    country = reg.counties[county].country if county in reg.counties else None
    matches = reg.municipality_by_name.get((country or "", fold(value)), [])
    if matches and all(m.county != county for m in matches):
        m = matches[0]
        return f"municipality {m.name} belongs to county {m.county}, not {county}"
    return None
