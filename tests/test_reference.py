"""The reference regions shipped in schemas/data/regions.json (schemas/reference.py)."""

from __future__ import annotations

import pytest

from schemas.reference import MUNICIPALITY_CODE, fold, regions

ALBANIAN_COUNTIES = {
    "AL-01": "Berat",
    "AL-02": "Durrës",
    "AL-03": "Elbasan",
    "AL-04": "Fier",
    "AL-05": "Gjirokastër",
    "AL-06": "Korçë",
    "AL-07": "Kukës",
    "AL-08": "Lezhë",
    "AL-09": "Dibër",
    "AL-10": "Shkodër",
    "AL-11": "Tiranë",
    "AL-12": "Vlorë",
}

# The 61 bashki of the 2015 territorial reform, by qark.
ALBANIAN_MUNICIPALITIES = {
    "AL-01": ["Berat", "Dimal", "Kuçovë", "Poliçan", "Skrapar"],
    "AL-02": ["Durrës", "Krujë", "Shijak"],
    "AL-03": ["Belsh", "Cërrik", "Elbasan", "Gramsh", "Librazhd", "Peqin", "Prrenjas"],
    "AL-04": ["Divjakë", "Fier", "Lushnjë", "Mallakastër", "Patos", "Roskovec"],
    "AL-05": ["Dropull", "Gjirokastër", "Këlcyrë", "Libohovë", "Memaliaj", "Përmet", "Tepelenë"],
    "AL-06": ["Devoll", "Kolonjë", "Korçë", "Maliq", "Pogradec", "Pustec"],
    "AL-07": ["Has", "Kukës", "Tropojë"],
    "AL-08": ["Kurbin", "Lezhë", "Mirditë"],
    "AL-09": ["Bulqizë", "Dibër", "Klos", "Mat"],
    "AL-10": ["Fushë-Arrëz", "Malësi e Madhe", "Pukë", "Shkodër", "Vau i Dejës"],
    "AL-11": ["Kamëz", "Kavajë", "Rrogozhinë", "Tiranë", "Vorë"],
    "AL-12": ["Delvinë", "Finiq", "Himarë", "Konispol", "Sarandë", "Selenicë", "Vlorë"],
}

# code: (Polish name, English name, ISO letter code)
POLISH_VOIVODESHIPS = {
    "PL-02": ("dolnośląskie", "Lower Silesian", "PL-DS"),
    "PL-04": ("kujawsko-pomorskie", "Kuyavian-Pomeranian", "PL-KP"),
    "PL-06": ("lubelskie", "Lublin", "PL-LU"),
    "PL-08": ("lubuskie", "Lubusz", "PL-LB"),
    "PL-10": ("łódzkie", "Łódź", "PL-LD"),
    "PL-12": ("małopolskie", "Lesser Poland", "PL-MA"),
    "PL-14": ("mazowieckie", "Masovian", "PL-MZ"),
    "PL-16": ("opolskie", "Opole", "PL-OP"),
    "PL-18": ("podkarpackie", "Subcarpathian", "PL-PK"),
    "PL-20": ("podlaskie", "Podlaskie", "PL-PD"),
    "PL-22": ("pomorskie", "Pomeranian", "PL-PM"),
    "PL-24": ("śląskie", "Silesian", "PL-SL"),
    "PL-26": ("świętokrzyskie", "Holy Cross", "PL-SK"),
    "PL-28": ("warmińsko-mazurskie", "Warmian-Masurian", "PL-WN"),
    "PL-30": ("wielkopolskie", "Greater Poland", "PL-WP"),
    "PL-32": ("zachodniopomorskie", "West Pomeranian", "PL-ZP"),
}


def test_countries() -> None:
    assert regions().countries == {"AL": "Albania", "PL": "Poland"}


def test_regions_are_loaded_once() -> None:
    assert regions() is regions()


def test_twelve_albanian_counties() -> None:
    albanian = {c.code: c for c in regions().counties.values() if c.country == "AL"}
    assert list(albanian) == [f"AL-{n:02d}" for n in range(1, 13)]
    assert {code: c.name for code, c in albanian.items()} == ALBANIAN_COUNTIES
    assert {c.kind for c in albanian.values()} == {"qark"}
    assert albanian["AL-09"].name == "Dibër"
    assert albanian["AL-11"].name_en == "Tirana"


def test_sixty_one_albanian_municipalities() -> None:
    munis = regions().municipalities
    assert len(munis) == 61
    by_county: dict[str, list[str]] = {}
    for muni in munis.values():
        by_county.setdefault(muni.county, []).append(muni.name)
    assert {county: sorted(names) for county, names in by_county.items()} == ALBANIAN_MUNICIPALITIES
    assert sum(len(names) for names in ALBANIAN_MUNICIPALITIES.values()) == 61


def test_six_municipalities_in_korce() -> None:
    korce = sorted((m.code, m.name) for m in regions().municipalities.values() if m.county == "AL-06")
    assert korce == [
        ("AL-06-devoll", "Devoll"),
        ("AL-06-kolonje", "Kolonjë"),
        ("AL-06-korce", "Korçë"),
        ("AL-06-maliq", "Maliq"),
        ("AL-06-pogradec", "Pogradec"),
        ("AL-06-pustec", "Pustec"),
    ]


def test_municipality_codes_are_county_and_folded_name() -> None:
    for code, muni in regions().municipalities.items():
        assert code == muni.code == f"{muni.county}-{fold(muni.name)}"
        assert MUNICIPALITY_CODE.match(code), code
    assert regions().municipalities["AL-10-malesi-e-madhe"].name == "Malësi e Madhe"
    assert regions().municipalities["AL-10-fushe-arrez"].name == "Fushë-Arrëz"


def test_municipalities_found_by_name_and_former_name() -> None:
    by_name = regions().municipality_by_name
    assert [m.code for m in by_name[("AL", "korce")]] == ["AL-06-korce"]
    assert [m.code for m in by_name[("AL", "ura-vajgurore")]] == ["AL-01-dimal"]
    assert ("PL", "maliq") not in by_name


def test_sixteen_polish_voivodeships() -> None:
    polish = {c.code: c for c in regions().counties.values() if c.country == "PL"}
    assert list(polish) == [f"PL-{n:02d}" for n in range(2, 33, 2)]
    assert {code: (c.name, c.name_en) for code, c in polish.items()} == {
        code: (name, name_en) for code, (name, name_en, _) in POLISH_VOIVODESHIPS.items()
    }
    assert {c.kind for c in polish.values()} == {"voivodeship"}
    assert polish["PL-24"].name == "śląskie"
    assert polish["PL-12"].name == "małopolskie"


def test_polish_letter_codes() -> None:
    assert regions().letter_codes == {letter: code for code, (_, _, letter) in POLISH_VOIVODESHIPS.items()}


def test_only_albania_and_poland_have_counties() -> None:
    assert len(regions().counties) == 28
    assert {c.country for c in regions().counties.values()} == {"AL", "PL"}


@pytest.mark.parametrize(
    ("text", "folded"),
    [
        ("Korçë", "korce"),
        ("Kolonjë", "kolonje"),
        ("Malësi e Madhe", "malesi-e-madhe"),
        ("Fushë-Arrëz", "fushe-arrez"),
        ("  Vau i Dejës ", "vau-i-dejes"),
        ("śląskie", "slaskie"),
        ("świętokrzyskie", "swietokrzyskie"),
        ("MALIQ", "maliq"),
        ("małopolskie", "malopolskie"),  # ł has no decomposition; it must still fold to l
        ("Łódź", "lodz"),
    ],
)
def test_fold(text: str, folded: str) -> None:
    assert fold(text) == folded
