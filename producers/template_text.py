"""The words of ``outreach template`` in each language it writes: English, Albanian, Polish.

Field names, sheet names and the values a cell takes (``true``, ``unknown``, ``~25``, the codes of
the drop-down lists) are the program's and stay as they are in every language; everything a person
reads around them (the read me sheet, each column's label and note, the lists' messages, the codes
sheet's headers) is in the language.
"""

from __future__ import annotations

from dataclasses import dataclass, field

LANGUAGES = ("en", "sq", "pl")
# A workbook's language when none is asked for: the agency slug's country prefix, else English.
AGENCY_LANGUAGE = {"al": "sq", "pl": "pl"}


@dataclass(frozen=True)
class Words:
    """Everything a workbook in one language says; ``notes_by_sheet`` overrides ``notes`` on one sheet."""

    dates: str
    labels: dict[str, str]
    notes: dict[str, str]
    notes_by_sheet: dict[str, dict[str, str]]
    participants: str  # the label of every participants.<audience> column: "{group}"
    participants_note: str  # "{group}"
    audiences: dict[str, str]
    readme: list[str]
    institutions: str
    codes: list[str]
    one_of: str  # "{column}", "{values}"
    whole: str  # "{column}", "{low}", "{high}"
    thousands: str = ","
    sheets: dict[str, str] = field(default_factory=dict)

    def number(self, value: int) -> str:
        """A whole number as the language writes it: 10,000,000 / 10 000 000."""
        return f"{value:,}".replace(",", self.thousands)


EN = Words(
    dates="2025-03-05 or 05.03.2025 (a day), 2025-03 (a month), 2025 (a year), or two of these with / (a range)",
    labels={
        "reference": "Your reference",
        "event_id": "Event id (leave empty)",
        "agency": "Agency",
        "recorded_at": "Recorded on",
        "occurred": "Date of the action",
        "county": "County",
        "municipality": "Municipality",
        "venue": "Venue",
        "campaign_id": "Campaign",
        "plan_tasks": "Action plan tasks",
        "format": "Kind of session",
        "title": "Title",
        "sessions": "Number of sessions",
        "reported_total": "Total reported",
        "total_estimated": "Total is an estimate",
        "source": "Source",
        "kind": "Kind of material",
        "quantity": "Quantity",
        "estimated": "Quantity is an estimate",
        "language": "Language",
        "team_name": "Team name",
        "member_institutions": "Member institutions",
        "withdrawn": "Withdrawn (why)",
    },
    notes={
        "reference": "Your own code for this row, unique in your agency and kept for ever, e.g. KOR-2025-014. "
        "Publishing the workbook again then corrects the row's figures when you edit them, instead of counting "
        "it twice.",
        "event_id": "Leave empty: the reference makes the row's id.",
        "agency": "Your agency's short name, as in your credentials, e.g. al-korce-regional-committee. Capital "
        "or small letters, either is read.",
        "recorded_at": "When you recorded this entry: a date (2025-03-05), a date and time (2025-03-05 10:00, "
        "read in the county's time zone), or empty (the time you publish).",
        "occurred": "When it happened: {dates}.",
        "county": "The county: pick it from the list (code and name; the sheet codes lists them). A code alone, "
        "such as AL-06, is read too.",
        "municipality": "Optional: a municipality's code from the sheet codes, or its name.",
        "venue": "Optional: where, e.g. the school's name.",
        "campaign_id": "Optional: the campaign's short name, if your agency or another defined it.",
        "plan_tasks": "Optional: national action plan tasks, separated by ;, e.g. pl-nap-2013-2015/III/4.",
        "format": "The kind of session: pick it from the list.",
        "title": "Optional: the session's title.",
        "sessions": "How many sessions this row reports (1 if empty); the participants are those of all of them.",
        "reported_total": "Optional: the total the report gives, if more than the groups' sum.",
        "total_estimated": "true if the total is an estimate.",
        "source": "Optional: where the figures come from (a report, a page).",
        "kind": "What was handed out: pick it from the list.",
        "quantity": "How many: a whole number; empty if not known.",
        "estimated": "true if the quantity is an estimate.",
        "language": "Optional: its language's two or three letters, e.g. sq or pl.",
        "team_name": "The team's name.",
        "member_institutions": "Optional: kinds of member institutions, separated by ; (the sheet read me lists them).",
        "withdrawn": "Empty, unless this entry should no longer count: then why (e.g. 'reported twice'). "
        "Publishing retracts it.",
    },
    notes_by_sheet={
        "materials_distributed": {
            "title": "Optional: the material's title.",
            "source": "Optional: where the figures come from.",
        },
        "team_established": {"source": "Optional: where this comes from."},
    },
    participants="Participants: {group}",
    participants_note="Participants, {group}: a whole number, ~N for an estimate, or unknown if they were not "
    "counted; empty if none came.",
    audiences={
        "students": "students",
        "teachers": "teachers",
        "officials": "officials",
        "civil_society": "civil society",
        "police": "police",
        "border_guard": "border guard",
        "social_workers": "social workers",
        "employment_office_staff": "employment offices",
        "general_public": "general public",
        "other": "others",
    },
    readme=[
        "Outreach Ledger: one row per action, on the sheet of its kind (session_held: sessions; "
        "materials_distributed: materials handed out; team_established: teams set up).",
        "The first row of each sheet holds the field names the program reads: leave it as it is. Select a cell "
        "to see what its column takes; the header's note says the same.",
        "Dates: {dates}. Leave a cell empty when it is not known.",
        "Check the file with: outreach validate FILE.xlsx; then publish it with: outreach publish FILE.xlsx",
        "Give every row a reference of its own (first column). To correct a row, edit it and publish the "
        "workbook again; to withdraw one, write why in its withdrawn column. Keep the file's name.",
    ],
    institutions="Institution kinds for teams: ",
    codes=["county", "name", "name in English", "country", "in the list", "", "municipality", "of county", "name"],
    one_of="{column} takes one of: {values}",
    whole="{column} takes a whole number from {low} to {high}",
)

SQ = Words(
    dates="2025-03-05 ose 05.03.2025 (një ditë), 2025-03 (një muaj), 2025 (një vit), ose dy prej tyre të ndara "
    "me / (një periudhë)",
    labels={
        "reference": "Referenca juaj",
        "event_id": "ID e ngjarjes (lëreni bosh)",
        "agency": "Institucioni",
        "recorded_at": "Data e regjistrimit",
        "occurred": "Data e veprimtarisë",
        "county": "Qarku",
        "municipality": "Bashkia",
        "venue": "Vendi",
        "campaign_id": "Fushata",
        "plan_tasks": "Detyrat e planit të veprimit",
        "format": "Lloji i takimit",
        "title": "Titulli",
        "sessions": "Numri i takimeve",
        "reported_total": "Totali i raportuar",
        "total_estimated": "Totali është i përafërt",
        "source": "Burimi",
        "kind": "Lloji i materialit",
        "quantity": "Sasia",
        "estimated": "Sasia është e përafërt",
        "language": "Gjuha",
        "team_name": "Emri i grupit të punës",
        "member_institutions": "Institucionet anëtare",
        "withdrawn": "Tërhequr (arsyeja)",
    },
    notes={
        "reference": "Kodi juaj për këtë rresht, i vetëm në institucionin tuaj dhe i pandryshuar përgjithmonë, "
        "p.sh. KOR-2025-014. Kur e publikoni sërish librin e punës, shifrat që keni ndryshuar në rresht "
        "korrigjohen, në vend që të numërohen dy herë.",
        "event_id": "Lëreni bosh: ID-ja e rreshtit krijohet nga referenca.",
        "agency": "Emri i shkurtër i institucionit tuaj, si në kredencialet tuaja, p.sh. "
        "al-korce-regional-committee. Lexohet me shkronja të mëdha ose të vogla.",
        "recorded_at": "Kur e regjistruat këtë shënim: një datë (2025-03-05), datë dhe orë (2025-03-05 10:00, "
        "sipas orës zyrtare të qarkut), ose bosh (koha e publikimit).",
        "occurred": "Kur ndodhi: {dates}.",
        "county": "Qarku: zgjidheni nga lista (kodi dhe emri; fleta codes i rendit të gjithë). Lexohet edhe "
        "vetëm kodi, p.sh. AL-06.",
        "municipality": "Opsionale: kodi i bashkisë nga fleta codes, ose emri i saj.",
        "venue": "Opsionale: vendi, p.sh. emri i shkollës.",
        "campaign_id": "Opsionale: emri i shkurtër i fushatës, nëse e ka përcaktuar institucioni juaj ose një tjetër.",
        "plan_tasks": "Opsionale: detyrat e planit kombëtar të veprimit, të ndara me ;, p.sh. pl-nap-2013-2015/III/4.",
        "format": "Lloji i takimit: zgjidheni nga lista.",
        "title": "Opsionale: titulli i takimit.",
        "sessions": "Sa takime raporton ky rresht (1 nëse është bosh); pjesëmarrësit janë ata të të gjitha takimeve.",
        "reported_total": "Opsionale: totali që jep raporti, nëse është më i madh se shuma e grupeve.",
        "total_estimated": "true nëse totali është i përafërt.",
        "source": "Opsionale: nga vijnë shifrat (një raport, një faqe).",
        "kind": "Çfarë u shpërnda: zgjidheni nga lista.",
        "quantity": "Sa copë: një numër i plotë; bosh nëse nuk dihet.",
        "estimated": "true nëse sasia është e përafërt.",
        "language": "Opsionale: kodi me dy ose tri shkronja i gjuhës, p.sh. sq ose pl.",
        "team_name": "Emri i grupit të punës.",
        "member_institutions": "Opsionale: llojet e institucioneve anëtare, të ndara me ; (fleta read me i rendit).",
        "withdrawn": "Bosh, përveçse kur ky shënim nuk duhet të numërohet më: atëherë arsyeja (p.sh. "
        "„raportuar dy herë”). Publikimi e tërheq.",
    },
    notes_by_sheet={
        "materials_distributed": {
            "title": "Opsionale: titulli i materialit.",
            "source": "Opsionale: nga vijnë shifrat.",
        },
        "team_established": {"source": "Opsionale: nga vjen ky informacion."},
    },
    participants="Pjesëmarrës: {group}",
    participants_note="Pjesëmarrës, {group}: një numër i plotë, ~N për një vlerësim, ose unknown nëse nuk u "
    "numëruan; bosh nëse nuk erdhi askush.",
    audiences={
        "students": "nxënës dhe studentë",
        "teachers": "mësues",
        "officials": "zyrtarë",
        "civil_society": "shoqëria civile",
        "police": "policia",
        "border_guard": "policia kufitare",
        "social_workers": "punonjës socialë",
        "employment_office_staff": "zyrat e punësimit",
        "general_public": "publiku i gjerë",
        "other": "të tjerë",
    },
    readme=[
        "Outreach Ledger: një rresht për çdo veprimtari, në fletën e llojit të saj (session_held: takime; "
        "materials_distributed: materiale të shpërndara; team_established: grupe pune të krijuara).",
        "Rreshti i parë i çdo flete përmban emrat e fushave që lexon programi: mos e ndryshoni. Kur zgjidhni "
        "një qelizë, shfaqet se çfarë pranon kolona; i njëjti shënim gjendet te koka e kolonës.",
        "Datat: {dates}. Lëreni qelizën bosh kur diçka nuk dihet.",
        "Kontrolloni skedarin me: outreach validate SKEDARI.xlsx; pastaj publikojeni me: outreach publish SKEDARI.xlsx",
        "Jepini çdo rreshti referencën e vet (kolona e parë). Për të korrigjuar një rresht, ndryshojeni dhe "
        "publikoni sërish librin e punës; për ta tërhequr, shkruani arsyen në kolonën withdrawn. Mos ia "
        "ndryshoni emrin skedarit.",
    ],
    institutions="Llojet e institucioneve anëtare të grupeve të punës: ",
    codes=["kodi i qarkut", "emri", "emri në anglisht", "shteti", "në listë", "", "bashkia", "qarku", "emri"],
    one_of="{column} pranon një nga vlerat: {values}",
    whole="{column} pranon një numër të plotë nga {low} deri në {high}",
    thousands="\u00a0",
)

PL = Words(
    dates="2025-03-05 lub 05.03.2025 (dzień), 2025-03 (miesiąc), 2025 (rok) albo dwie z tych dat rozdzielone "
    "znakiem / (okres)",
    labels={
        "reference": "Numer referencyjny",
        "event_id": "Identyfikator (puste)",
        "agency": "Instytucja",
        "recorded_at": "Data wpisu",
        "occurred": "Data działania",
        "county": "Województwo",
        "municipality": "Gmina",
        "venue": "Miejsce",
        "campaign_id": "Kampania",
        "plan_tasks": "Zadania Krajowego Planu Działań",
        "format": "Forma spotkania",
        "title": "Tytuł",
        "sessions": "Liczba spotkań",
        "reported_total": "Liczba ogółem wg sprawozdania",
        "total_estimated": "Liczba ogółem szacunkowa",
        "source": "Źródło",
        "kind": "Rodzaj materiałów",
        "quantity": "Liczba egzemplarzy",
        "estimated": "Liczba szacunkowa",
        "language": "Język",
        "team_name": "Nazwa zespołu",
        "member_institutions": "Instytucje członkowskie",
        "withdrawn": "Wycofanie (powód)",
    },
    notes={
        "reference": "Własny numer tego wiersza, niepowtarzalny w instytucji i niezmienny, np. KOR-2025-014. "
        "Dzięki niemu ponowna publikacja skoroszytu poprawia dane zmienionego wiersza, zamiast liczyć go drugi "
        "raz.",
        "event_id": "Proszę pozostawić puste: identyfikator wiersza powstaje z numeru referencyjnego.",
        "agency": "Skrócona nazwa instytucji, taka jak w danych dostępowych, np. pl-opolskie-voivodeship-office. "
        "Wielkość liter nie ma znaczenia.",
        "recorded_at": "Kiedy dokonano wpisu: data (2025-03-05), data i godzina (2025-03-05 10:00, według czasu "
        "urzędowego w województwie) albo puste (chwila publikacji).",
        "occurred": "Kiedy się odbyło: {dates}.",
        "county": "Województwo: proszę wybrać z listy (kod i nazwa; wszystkie są w arkuszu codes). Sam kod, np. "
        "PL-16, również zostanie odczytany.",
        "municipality": "Nieobowiązkowe: kod gminy z arkusza codes albo jej nazwa.",
        "venue": "Nieobowiązkowe: miejsce, np. nazwa szkoły.",
        "campaign_id": "Nieobowiązkowe: skrócona nazwa kampanii, jeśli zdefiniowała ją ta lub inna instytucja.",
        "plan_tasks": "Nieobowiązkowe: zadania Krajowego Planu Działań rozdzielone średnikiem, np. "
        "pl-nap-2013-2015/III/4.",
        "format": "Forma spotkania: proszę wybrać z listy.",
        "title": "Nieobowiązkowe: tytuł spotkania.",
        "sessions": "Ile spotkań obejmuje ten wiersz (1, jeśli puste); uczestnicy to uczestnicy wszystkich tych "
        "spotkań.",
        "reported_total": "Nieobowiązkowe: liczba uczestników ogółem podana w sprawozdaniu, jeśli jest większa "
        "od sumy grup.",
        "total_estimated": "true, jeśli liczba ogółem jest szacunkowa.",
        "source": "Nieobowiązkowe: skąd pochodzą dane (sprawozdanie, strona internetowa).",
        "kind": "Co rozdano: proszę wybrać z listy.",
        "quantity": "Ile egzemplarzy: liczba całkowita; puste, jeśli nie wiadomo.",
        "estimated": "true, jeśli liczba egzemplarzy jest szacunkowa.",
        "language": "Nieobowiązkowe: dwu- lub trzyliterowy kod języka, np. pl lub sq.",
        "team_name": "Nazwa zespołu.",
        "member_institutions": "Nieobowiązkowe: rodzaje instytucji członkowskich rozdzielone średnikiem (lista "
        "w arkuszu read me).",
        "withdrawn": "Puste, chyba że wpis nie powinien być już liczony: wtedy powód (np. „zgłoszono "
        "dwukrotnie”). Publikacja go wycofa.",
    },
    notes_by_sheet={
        "materials_distributed": {
            "title": "Nieobowiązkowe: tytuł materiału.",
            "source": "Nieobowiązkowe: skąd pochodzą dane.",
        },
        "team_established": {"source": "Nieobowiązkowe: źródło informacji."},
    },
    participants="Uczestnicy: {group}",
    participants_note="Uczestnicy – {group}: liczba całkowita, ~N dla liczby szacunkowej albo unknown, jeśli "
    "ich nie policzono; puste, jeśli nikt nie przyszedł.",
    audiences={
        "students": "uczniowie i studenci",
        "teachers": "nauczyciele",
        "officials": "urzędnicy",
        "civil_society": "sektor pozarządowy",
        "police": "policja",
        "border_guard": "Straż Graniczna",
        "social_workers": "pracownicy socjalni",
        "employment_office_staff": "urzędy pracy",
        "general_public": "mieszkańcy",
        "other": "inni",
    },
    readme=[
        "Outreach Ledger: jeden wiersz na każde działanie, w arkuszu jego rodzaju (session_held: spotkania; "
        "materials_distributed: rozdane materiały; team_established: powołane zespoły).",
        "Pierwszy wiersz każdego arkusza zawiera nazwy pól odczytywane przez program: proszę go nie zmieniać. "
        "Po zaznaczeniu komórki widać, co należy wpisać w kolumnie; to samo mówi komentarz nagłówka.",
        "Daty: {dates}. Jeśli czegoś nie wiadomo, proszę zostawić komórkę pustą.",
        "Sprawdzenie pliku: outreach validate PLIK.xlsx; następnie publikacja: outreach publish PLIK.xlsx",
        "Każdy wiersz ma mieć własny numer referencyjny (pierwsza kolumna). Aby poprawić wiersz, wystarczy go "
        "zmienić i ponownie opublikować skoroszyt; aby go wycofać, proszę wpisać powód w kolumnie withdrawn. "
        "Proszę nie zmieniać nazwy pliku.",
    ],
    institutions="Rodzaje instytucji członkowskich zespołów: ",
    codes=["kod", "nazwa", "nazwa angielska", "kraj", "na liście", "", "gmina", "województwo", "nazwa"],
    one_of="{column}: jedna z wartości: {values}",
    whole="{column}: liczba całkowita od {low} do {high}",
    thousands="\u00a0",
)

WORDS = {"en": EN, "sq": SQ, "pl": PL}


def language_of(agency: str | None) -> str:
    """The language a workbook is written in when none is asked for: from the agency's country."""
    if agency:
        return AGENCY_LANGUAGE.get(agency.split("-", 1)[0].lower(), "en")
    return "en"
