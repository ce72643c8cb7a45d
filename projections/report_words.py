"""The report's words in each of its languages (English, Albanian, Polish), and its numbers, dates
and months as each language writes them (Babel's locale data).

Every text the report prints comes from here: ``Words.text(key, **values)`` for a fixed text,
``Words.count(key, n)`` for a phrase that agrees with its number (Albanian has two forms, Polish
three: 1 spotkanie, 2 spotkania, 5 spotkań). A key missing in a language is an error at import
(``_check``), never an English word left in an Albanian or Polish report.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

from babel import Locale
from babel.dates import format_date, format_time
from babel.numbers import format_decimal

LANGUAGES = ("en", "sq", "pl")
LOCALES = {"en": "en_GB", "sq": "sq_AL", "pl": "pl_PL"}
COUNTRY_LANGUAGE = {"AL": "sq", "PL": "pl"}

# Fixed texts. {name} marks a value put in.
TEXTS: dict[str, dict[str, str]] = {
    "title": {
        "en": "Outreach actions against trafficking in human beings",
        "sq": "Veprimtari sensibilizuese kundër trafikimit të qenieve njerëzore",
        "pl": "Działania informacyjno-edukacyjne przeciwko handlowi ludźmi",
    },
    "as_of": {
        "en": "Figures as received by {day}, {time} UTC",
        "sq": "Shifrat e marra deri më {day}, ora {time} UTC",
        "pl": "Dane według stanu na {day}, godz. {time} UTC",
    },
    "as_of_nothing": {
        "en": "No action has been received yet.",
        "sq": "Ende nuk është marrë asnjë veprimtari.",
        "pl": "Nie otrzymano jeszcze żadnych danych o działaniach.",
    },
    "page": {"en": "Page {page} of {pages}", "sq": "Faqja {page} nga {pages}", "pl": "Strona {page} z {pages}"},
    "every_action": {
        "en": "Every action received; an action counts in the month it started.",
        "sq": "Të gjitha veprimtaritë e marra; një veprimtari llogaritet në muajin kur filloi.",
        "pl": "Wszystkie otrzymane działania; działanie liczy się w miesiącu, w którym się rozpoczęło.",
    },
    "filtered": {
        "en": "The actions {parts}; an action counts in the month it started.",
        "sq": "Veprimtaritë {parts}; një veprimtari llogaritet në muajin kur filloi.",
        "pl": "Działania {parts}; działanie liczy się w miesiącu, w którym się rozpoczęło.",
    },
    "filter_country": {"en": "in {name}", "sq": "në {name}", "pl": "w kraju: {name}"},
    "filter_campaign": {"en": "of the campaign {name}", "sq": "të fushatës {name}", "pl": "w ramach kampanii {name}"},
    "filter_between": {
        "en": "that started from {start} to {end}",
        "sq": "që filluan nga {start} deri më {end}",
        "pl": "rozpoczęte od {start} do {end}",
    },
    "filter_from": {
        "en": "that started on {start} or later",
        "sq": "që filluan më {start} ose më vonë",
        "pl": "rozpoczęte {start} lub później",
    },
    "filter_to": {
        "en": "that started on {end} or earlier",
        "sq": "që filluan më {end} ose më herët",
        "pl": "rozpoczęte {end} lub wcześniej",
    },
    "no_actions": {
        "en": "No actions yet.",
        "sq": "Ende nuk ka veprimtari.",
        "pl": "Brak działań.",
    },
    "no_match": {
        "en": "No action matches these filters.",
        "sq": "Asnjë veprimtari nuk përputhet me këto kritere.",
        "pl": "Żadne działanie nie spełnia tych kryteriów.",
    },
    # The cards' captions.
    "card_events": {"en": "Actions", "sq": "Veprimtari", "pl": "Działania"},
    "card_sessions": {"en": "Sessions", "sq": "Takime", "pl": "Spotkania"},
    "card_participants": {"en": "Participants counted", "sq": "Pjesëmarrës të numëruar", "pl": "Policzeni uczestnicy"},
    "card_teams": {"en": "Teams established", "sq": "Grupe pune të ngritura", "pl": "Powołane zespoły"},
    "card_counties_AL": {"en": "Counties reached", "sq": "Qarqe të përfshira", "pl": "Obwody objęte działaniami"},
    "card_counties_PL": {
        "en": "Voivodeships reached",
        "sq": "Krahina të përfshira",
        "pl": "Województwa objęte działaniami",
    },
    "card_counties_note": {
        "en": "by actions of any kind",
        "sq": "nga veprimtari të çdo lloji",
        "pl": "działania dowolnego rodzaju",
    },
    "card_leaflet": {"en": "Leaflets distributed", "sq": "Fletëpalosje të shpërndara", "pl": "Rozdane ulotki"},
    "card_poster": {"en": "Posters distributed", "sq": "Postera të shpërndarë", "pl": "Rozdane plakaty"},
    "card_brochure": {"en": "Brochures distributed", "sq": "Broshura të shpërndara", "pl": "Rozdane broszury"},
    "card_other": {
        "en": "Other materials distributed",
        "sq": "Materiale të tjera të shpërndara",
        "pl": "Inne rozdane materiały",
    },
    # Section headings.
    "h_map_AL": {
        "en": "{measure} by county",
        "sq": "{measure} sipas qarqeve",
        "pl": "{measure} według obwodów",
    },
    "h_map_PL": {
        "en": "{measure} by voivodeship",
        "sq": "{measure} sipas krahinave",
        "pl": "{measure} według województw",
    },
    "h_counties_AL": {"en": "Counties", "sq": "Qarqet", "pl": "Obwody"},
    "h_counties_PL": {"en": "Voivodeships", "sq": "Krahinat", "pl": "Województwa"},
    "h_materials": {
        "en": "Materials distributed by kind",
        "sq": "Materialet e shpërndara sipas llojit",
        "pl": "Rozdane materiały według rodzaju",
    },
    "h_time_sessions_month": {
        "en": "Sessions by month",
        "sq": "Takimet sipas muajve",
        "pl": "Spotkania według miesięcy",
    },
    "h_time_sessions_quarter": {
        "en": "Sessions by quarter",
        "sq": "Takimet sipas tremujorëve",
        "pl": "Spotkania według kwartałów",
    },
    "h_time_sessions_year": {"en": "Sessions by year", "sq": "Takimet sipas viteve", "pl": "Spotkania według lat"},
    "h_time_events_month": {
        "en": "Actions by month",
        "sq": "Veprimtaritë sipas muajve",
        "pl": "Działania według miesięcy",
    },
    "h_time_events_quarter": {
        "en": "Actions by quarter",
        "sq": "Veprimtaritë sipas tremujorëve",
        "pl": "Działania według kwartałów",
    },
    "h_time_events_year": {"en": "Actions by year", "sq": "Veprimtaritë sipas viteve", "pl": "Działania według lat"},
    "h_plan_tasks": {
        "en": "National action plan tasks",
        "sq": "Detyrat e planit kombëtar të veprimit",
        "pl": "Zadania krajowego planu działania",
    },
    "h_campaigns": {"en": "Campaigns", "sq": "Fushatat", "pl": "Kampanie"},
    "h_no_campaign": {
        "en": "Actions under no campaign",
        "sq": "Veprimtari jashtë fushatave",
        "pl": "Działania poza kampaniami",
    },
    "h_quality": {"en": "Data quality", "sq": "Cilësia e të dhënave", "pl": "Jakość danych"},
    "quality_report": {
        "en": "Of the actions in this report:",
        "sq": "Për veprimtaritë e këtij raporti:",
        "pl": "Działania ujęte w tym raporcie:",
    },
    "quality_log": {
        "en": "Of everything received:",
        "sq": "Për gjithçka që është marrë:",
        "pl": "Wszystkie otrzymane dane:",
    },
    "quality_none": {
        "en": "Every session has a participant count and every distribution a quantity.",
        "sq": "Çdo takim ka numrin e pjesëmarrësve dhe çdo shpërndarje sasinë e saj.",
        "pl": "Każde spotkanie ma liczbę uczestników, a każde rozdanie materiałów – liczbę egzemplarzy.",
    },
    # Measures: the map's and the tables' columns.
    "m_events": {"en": "Actions", "sq": "Veprimtari", "pl": "Działania"},
    "m_sessions": {"en": "Sessions", "sq": "Takime", "pl": "Spotkania"},
    "m_participants": {"en": "Participants counted", "sq": "Pjesëmarrës të numëruar", "pl": "Policzeni uczestnicy"},
    "m_teams": {"en": "Teams established", "sq": "Grupe pune të ngritura", "pl": "Powołane zespoły"},
    "m_materials": {"en": "Items distributed", "sq": "Copë të shpërndara", "pl": "Rozdane egzemplarze"},
    "col_county_AL": {"en": "County", "sq": "Qarku", "pl": "Obwód"},
    "col_county_PL": {"en": "Voivodeship", "sq": "Krahina", "pl": "Województwo"},
    "col_kind": {"en": "Kind", "sq": "Lloji", "pl": "Rodzaj"},
    "col_distributions": {"en": "Distributions", "sq": "Shpërndarje", "pl": "Rozdania"},
    "col_unknown": {
        "en": "Distributions of unknown quantity",
        "sq": "Shpërndarje me sasi të panjohur",
        "pl": "Rozdania o nieznanej liczbie egzemplarzy",
    },
    "col_task": {"en": "Task", "sq": "Detyra", "pl": "Zadanie"},
    "col_title": {"en": "Title", "sq": "Titulli", "pl": "Tytuł"},
    "col_counties": {"en": "Counties", "sq": "Qarqe", "pl": "Obwody"},
    "col_counties_PL": {"en": "Voivodeships", "sq": "Krahina", "pl": "Województwa"},
    "kind_leaflet": {"en": "Leaflets", "sq": "Fletëpalosje", "pl": "Ulotki"},
    "kind_poster": {"en": "Posters", "sq": "Postera", "pl": "Plakaty"},
    "kind_brochure": {"en": "Brochures", "sq": "Broshura", "pl": "Broszury"},
    "kind_other": {"en": "Other materials", "sq": "Materiale të tjera", "pl": "Inne materiały"},
    "no_sessions": {"en": "no sessions", "sq": "pa takime", "pl": "brak spotkań"},
    "no_action_here": {"en": "no actions", "sq": "pa veprimtari", "pl": "brak działań"},
    "no_task": {"en": "Under no task", "sq": "Pa detyrë të planit", "pl": "Bez przypisanego zadania"},
    "tasks_note": {
        "en": "Actions that name no task of the plan are counted in the row “Under no task”. An action that "
        "names two tasks counts under each, so the rows can add up to more than the country's total.",
        "sq": "Veprimtaritë që nuk i referohen asnjë detyre të planit numërohen te rreshti “Pa detyrë të planit”. "
        "Një veprimtari që u referohet dy detyrave numërohet te secila, prandaj shuma e rreshtave mund të "
        "jetë më e madhe se totali i vendit.",
        "pl": "Działania, które nie wskazują żadnego zadania planu, są liczone w wierszu „Bez przypisanego "
        "zadania”. Działanie przypisane do dwóch zadań liczy się przy każdym z nich, dlatego suma wierszy "
        "może przekraczać łączną liczbę dla kraju.",
    },
    "lead": {"en": "Lead agency", "sq": "Institucioni drejtues", "pl": "Instytucja wiodąca"},
    "partners": {"en": "Partners", "sq": "Partnerët", "pl": "Partnerzy"},
    "funder": {"en": "Funded by", "sq": "Financuar nga", "pl": "Źródło finansowania"},
    "period": {"en": "Period", "sq": "Periudha", "pl": "Okres"},
    "actions_dated": {
        "en": "Its actions, from {start} to {end}",
        "sq": "Veprimtaritë e saj, nga {start} deri më {end}",
        "pl": "Jej działania: od {start} do {end}",
    },
    "not_given": {"en": "not given", "sq": "e papërcaktuar", "pl": "nie podano"},
    "campaign_no_actions": {
        "en": "No action of this campaign in this report.",
        "sq": "Asnjë veprimtari e kësaj fushate në këtë raport.",
        "pl": "Brak działań tej kampanii w tym raporcie.",
    },
    "legend_none": {"en": "no actions", "sq": "pa veprimtari", "pl": "brak działań"},
    "map_source": {
        "en": "Boundaries: Natural Earth (public domain), simplified.",
        "sq": "Kufijtë: Natural Earth (domen publik), të thjeshtuar.",
        "pl": "Granice: Natural Earth (domena publiczna), uproszczone.",
    },
    # Submissions and possible double reports (projections/submission.py).
    "submissions": {"en": "Submissions", "sq": "Raportimet e dorëzuara", "pl": "Przekazane sprawozdania"},
    "submission_item": {
        "en": "{title} ({country}, {period}), submitted by {by} on {day}; submission {id}, as of stream "
        "sequence {seq}: {said}",
        "sq": "{title} ({country}, {period}), dorëzuar nga {by} më {day}; raportimi {id}, sipas sekuencës "
        "{seq} të rrjedhës: {said}",
        "pl": "{title} ({country}, {period}), przekazane przez {by} dnia {day}; sprawozdanie {id}, według "
        "numeru sekwencji strumienia {seq}: {said}",
    },
    "nothing_changed": {
        "en": "no figure has changed since",
        "sq": "asnjë shifër nuk ka ndryshuar që atëherë",
        "pl": "od tego czasu żadna liczba się nie zmieniła",
    },
    "duplicates": {
        "en": "Possible double reports",
        "sq": "Raportime të mundshme të dyfishta",
        "pl": "Możliwe podwójne zgłoszenia",
    },
    "duplicates_none": {"en": "None found.", "sq": "Nuk u gjet asnjë.", "pl": "Nie znaleziono."},
    "duplicates_intro": {
        "en": "Actions of different agencies that may be one action reported twice: the agency or the "
        "country's coordinator resolves each by linking them, so that it is counted once.",
        "sq": "Veprimtari të institucioneve të ndryshme që mund të jenë e njëjta veprimtari e raportuar dy "
        "herë: institucioni ose koordinatori i vendit i lidh ato, që të llogariten një herë.",
        "pl": "Działania różnych instytucji, które mogą być tym samym działaniem zgłoszonym dwukrotnie: "
        "instytucja lub koordynator krajowy łączy je, aby zostały policzone raz.",
    },
    "duplicates_more": {
        "en": "Only the first 100 are shown; the view possible_duplicates holds them all.",
        "sq": "Tregohen vetëm 100 të parat; pamja possible_duplicates i përmban të gjitha.",
        "pl": "Pokazano tylko pierwsze 100; widok possible_duplicates zawiera wszystkie.",
    },
    "dup_action": {"en": "Action", "sq": "Veprimtaria", "pl": "Działanie"},
    "dup_county": {"en": "County", "sq": "Qarku", "pl": "Jednostka"},
    "dup_day": {"en": "Started", "sq": "Filloi", "pl": "Rozpoczęcie"},
    "dup_score": {"en": "Likelihood (0-100)", "sq": "Gjasat (0-100)", "pl": "Prawdopodobieństwo (0-100)"},
    "ch_by": {"en": "By", "sq": "Sipas", "pl": "Według"},
    "ch_figure": {"en": "Of", "sq": "Për", "pl": "Dla"},
    "ch_measure": {"en": "Figure", "sq": "Shifra", "pl": "Wskaźnik"},
    "ch_submitted": {"en": "Submitted", "sq": "E dorëzuar", "pl": "Przekazano"},
    "ch_now": {"en": "Now", "sq": "Tani", "pl": "Obecnie"},
    "ch_change": {"en": "Change", "sq": "Ndryshimi", "pl": "Zmiana"},
    "ch_agencies": {"en": "Changed by", "sq": "Ndryshuar nga", "pl": "Zmienione przez"},
    "ch_seqs": {"en": "Stream sequences", "sq": "Sekuencat e rrjedhës", "pl": "Numery sekwencji strumienia"},
    "dim_county": {"en": "county", "sq": "qarku", "pl": "jednostka terytorialna"},
    "dim_campaign": {"en": "campaign", "sq": "fushata", "pl": "kampania"},
    "dim_plan_task": {"en": "plan task", "sq": "detyra e planit", "pl": "zadanie planu"},
    "no_campaign_key": {"en": "(no campaign)", "sq": "(pa fushatë)", "pl": "(bez kampanii)"},
    "fig_events": {"en": "actions", "sq": "veprimtari", "pl": "działania"},
    "fig_sessions": {"en": "sessions", "sq": "takime", "pl": "spotkania"},
    "fig_participants": {"en": "participants counted", "sq": "pjesëmarrës të numëruar", "pl": "policzeni uczestnicy"},
    "fig_sessions_participants_unknown": {
        "en": "sessions without a participant count",
        "sq": "takime pa numër pjesëmarrësish",
        "pl": "spotkania bez liczby uczestników",
    },
    "fig_sessions_participants_estimated": {
        "en": "sessions with estimated participants",
        "sq": "takime me pjesëmarrës të vlerësuar",
        "pl": "spotkania z szacowaną liczbą uczestników",
    },
    "fig_materials_distributed": {
        "en": "items distributed",
        "sq": "materiale të shpërndara",
        "pl": "rozdane materiały",
    },
    "fig_materials_unknown": {
        "en": "distributions of unknown quantity",
        "sq": "shpërndarje me sasi të panjohur",
        "pl": "dystrybucje o nieznanej liczbie",
    },
    "fig_teams_established": {"en": "teams established", "sq": "grupe të ngritura", "pl": "powołane zespoły"},
}

# Phrases that agree with their number, by plural category (CLDR: English and Albanian one/other,
# Polish one/few/many, "other" for fractions). {n} is the number as the language writes it.
COUNTS: dict[str, dict[str, dict[str, str]]] = {
    "figures_changed": {
        "en": {"one": "{n} figure has changed since", "other": "{n} figures have changed since"},
        "sq": {"one": "{n} shifër ka ndryshuar që atëherë", "other": "{n} shifra kanë ndryshuar që atëherë"},
        "pl": {
            "one": "od tego czasu zmieniła się {n} liczba",
            "few": "od tego czasu zmieniły się {n} liczby",
            "many": "od tego czasu zmieniło się {n} liczb",
            "other": "od tego czasu zmieniło się {n} liczby",
        },
    },
    "uncounted": {
        "en": {
            "one": "{n} session without a participant count is not included",
            "other": "{n} sessions without a participant count are not included",
        },
        "sq": {
            "one": "{n} takim pa numër pjesëmarrësish nuk është përfshirë",
            "other": "{n} takime pa numër pjesëmarrësish nuk janë përfshirë",
        },
        "pl": {
            "one": "{n} spotkanie bez liczby uczestników nie jest wliczone",
            "few": "{n} spotkania bez liczby uczestników nie są wliczone",
            "many": "{n} spotkań bez liczby uczestników nie jest wliczonych",
            "other": "{n} spotkania bez liczby uczestników nie są wliczone",
        },
    },
    "estimated": {
        "en": {
            "one": "{n} session with an estimated count is included",
            "other": "{n} sessions with estimated counts are included",
        },
        "sq": {
            "one": "{n} takim me numër të vlerësuar pjesëmarrësish është përfshirë",
            "other": "{n} takime me numër të vlerësuar pjesëmarrësish janë përfshirë",
        },
        "pl": {
            "one": "{n} spotkanie z szacunkową liczbą uczestników jest wliczone",
            "few": "{n} spotkania z szacunkową liczbą uczestników są wliczone",
            "many": "{n} spotkań z szacunkową liczbą uczestników jest wliczonych",
            "other": "{n} spotkania z szacunkową liczbą uczestników są wliczone",
        },
    },
    "materials_unknown": {
        "en": {
            "one": "{n} distribution of unknown quantity is not included",
            "other": "{n} distributions of unknown quantity are not included",
        },
        "sq": {
            "one": "{n} shpërndarje me sasi të panjohur nuk është përfshirë",
            "other": "{n} shpërndarje me sasi të panjohur nuk janë përfshirë",
        },
        "pl": {
            "one": "{n} rozdanie o nieznanej liczbie egzemplarzy nie jest wliczone",
            "few": "{n} rozdania o nieznanej liczbie egzemplarzy nie są wliczone",
            "many": "{n} rozdań o nieznanej liczbie egzemplarzy nie jest wliczonych",
            "other": "{n} rozdania o nieznanej liczbie egzemplarzy nie są wliczone",
        },
    },
    "corrections": {
        "en": {"one": "{n} correction applied", "other": "{n} corrections applied"},
        "sq": {"one": "{n} korrigjim i zbatuar", "other": "{n} korrigjime të zbatuara"},
        "pl": {
            "one": "{n} wprowadzona korekta",
            "few": "{n} wprowadzone korekty",
            "many": "{n} wprowadzonych korekt",
            "other": "{n} wprowadzonej korekty",
        },
    },
    "retractions": {
        "en": {"one": "{n} action withdrawn by its agency", "other": "{n} actions withdrawn by their agencies"},
        "sq": {
            "one": "{n} veprimtari e tërhequr nga institucioni që e raportoi",
            "other": "{n} veprimtari të tërhequra nga institucionet që i raportuan",
        },
        "pl": {
            "one": "{n} działanie wycofane przez zgłaszającą instytucję",
            "few": "{n} działania wycofane przez zgłaszające instytucje",
            "many": "{n} działań wycofanych przez zgłaszające instytucje",
            "other": "{n} działania wycofanego przez zgłaszające instytucje",
        },
    },
    "rejected": {
        "en": {
            "one": "{n} report refused as invalid (in no total)",
            "other": "{n} reports refused as invalid (in no total)",
        },
        "sq": {
            "one": "{n} raportim i refuzuar si i pavlefshëm (në asnjë total)",
            "other": "{n} raportime të refuzuara si të pavlefshme (në asnjë total)",
        },
        "pl": {
            "one": "{n} zgłoszenie odrzucone jako nieprawidłowe (poza sumami)",
            "few": "{n} zgłoszenia odrzucone jako nieprawidłowe (poza sumami)",
            "many": "{n} zgłoszeń odrzuconych jako nieprawidłowe (poza sumami)",
            "other": "{n} zgłoszenia odrzuconego jako nieprawidłowe (poza sumami)",
        },
    },
}


@dataclass(frozen=True)
class Words:
    """One language's words, numbers and dates."""

    lang: str

    @property
    def locale(self) -> str:
        return LOCALES[self.lang]

    def text(self, key: str, **values: object) -> str:
        return TEXTS[key][self.lang].format(**values)

    def count(self, key: str, n: int) -> str:
        forms = COUNTS[key][self.lang]
        form = Locale.parse(self.locale).plural_form(n)
        return forms.get(form, forms["other"]).format(n=self.number(n))

    def number(self, n: int) -> str:
        return format_decimal(n, locale=self.locale)

    def day(self, d: date) -> str:
        """7 December 2026, 7 dhjetor 2026, 7 grudnia 2026."""
        return format_date(d, "long", locale=self.locale)

    def moment(self, when: datetime) -> tuple[str, str]:
        """The day and the time (UTC) of ``when``."""
        utc = when.astimezone(UTC)
        return self.day(utc.date()), format_time(utc, "HH:mm", tzinfo=UTC, locale=self.locale)

    def month(self, d: date, with_year: bool) -> str:
        return format_date(d, "LLL y" if with_year else "LLL", locale=self.locale)

    def quarter(self, d: date) -> str:
        return format_date(d, "QQQ y", locale=self.locale)


def language_for(countries: list[str]) -> str:
    """A report of one country is in its language; of several, in English."""
    return COUNTRY_LANGUAGE.get(countries[0], "en") if len(countries) == 1 else "en"


def _check() -> None:
    for key, by_lang in TEXTS.items():
        if set(by_lang) != set(LANGUAGES):
            raise AssertionError(f"report text {key!r} lacks {set(LANGUAGES) - set(by_lang)}")
    for key, by_lang in COUNTS.items():
        if set(by_lang) != set(LANGUAGES) or any("other" not in forms for forms in by_lang.values()):
            raise AssertionError(f"report phrase {key!r} lacks a language or its 'other' form")


_check()
