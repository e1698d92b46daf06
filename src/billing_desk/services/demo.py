"""Demo data: a realistic, deterministic billing history that a newcomer can explore at once.

`load_demo_data` fills an empty database with facilities (some with non-ASCII names), their
clients, months of trips as a dispatch system would export them, the monthly invoices billed
from those trips through the same code path as `billing-desk invoice run`, what the facilities
paid for them (checks grouped into weekly deposits, bank transfers and cards; partial and
overpayments, returned checks, voided entries) through the same code as `billing-desk payment
record`, the bank's statements of that money (one account per currency, each in its bank's
format, imported through the importers and matched each morning, which is how the money clears,
with a short deposit, an unidentified credit and a service charge left for the reconciliation to
find), and one local user per role. The data is planned in memory first, from random streams
derived from the seed alone, and then written in one transaction, so the same seed and the same
as-of date always give the same rows, timestamps included, and a failure leaves the database as
empty as it was.

Later stages (alerts) plug in as further `_Stage`s, each drawing from
its own random stream so that adding one never changes what the earlier stages produce.
"""

from __future__ import annotations

import dataclasses
import random
import string
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

from sqlalchemy import func, select

from billing_desk.db.models import (
    BankLine,
    BankMatch,
    Base,
    Client,
    Deposit,
    DepositItem,
    Facility,
    Invoice,
    OperationFailure,
    Payment,
    Trip,
    User,
)
from billing_desk.domain.errors import BadInput, Refused
from billing_desk.domain.money import Money, currency_exponent
from billing_desk.domain.payments import PaymentMethod, PaymentStatus, contains_card_number
from billing_desk.domain.periods import Period
from billing_desk.domain.roles import Permission, Role
from billing_desk.domain.states import InvoiceStatus, TripStatus
from billing_desk.domain.trips import TripRecord
from billing_desk.importers.statements import registry
from billing_desk.importers.statements.writers import (
    BankEntry,
    write_bai2,
    write_camt053,
    write_mt940,
    write_ofx,
)
from billing_desk.services.allocations import live_allocated
from billing_desk.services.deposits import DEFAULT_BANK_ACCOUNT
from billing_desk.services.facilities import NewFacility, insert_facility
from billing_desk.services.invoices import bill_trips
from billing_desk.services.matching import auto_match_in_unit, match_in_unit
from billing_desk.services.payments import PaymentDraft, move_payment, record_in_unit
from billing_desk.services.statements import import_in_unit
from billing_desk.services.trips import import_trip_records
from billing_desk.services.unit_of_work import Actor, UnitOfWork, Workspace
from billing_desk.services.users import ensure_user

Progress = Callable[[str, int, int], None]

MAX_FACILITIES = 100
MAX_MONTHS = 60


@dataclass(frozen=True)
class DemoSummary:
    facilities: int
    clients: int
    trips: int
    invoices: int
    payments: int
    deposits: int
    users: tuple[str, ...]
    # The bank's statement lines imported, and how many of them are matched.
    bank_lines: int = 0
    bank_lines_matched: int = 0


def load_demo_data(
    workspace: Workspace,
    *,
    seed: int = 7,
    facilities: int = 12,
    months: int = 6,
    as_of: date | None = None,
    progress: Progress | None = None,
    anomalies: bool = False,
    bank_formats: Mapping[str, str] | None = None,
) -> DemoSummary:
    """Fill an empty database with demo data as of `as_of` (default today): trips over the
    `months` calendar months before as_of's month, each billed on the 1st of the next month,
    plus this month's unbilled trips up to the day before as_of, and the payments received for
    those invoices up to the day before as_of.

    `bank_formats` says in which format each currency's bank sends its statements (bai2,
    camt053, mt940 or ofx; by default bai2 for dollars, camt053 for euros, mt940 for Canadian
    dollars), so the tests can drive every importer through the same story.

    With `anomalies`, a last stage plants a handful of payments the anomaly rules find
    (services.monitoring), from a random stream of its own: everything before it is the same.

    Refuses a database that already has facilities. On a database without users anyone may
    load it (that is how a newcomer starts); once users exist, only an administrator may.
    Everything is one transaction: an error, or `progress` raising to cancel, writes nothing.
    """
    if not 1 <= facilities <= MAX_FACILITIES:
        raise BadInput(
            f"{facilities} facilities is out of range; ask for 1 to {MAX_FACILITIES} facilities."
        )
    if not 1 <= months <= MAX_MONTHS:
        raise BadInput(f"{months} months is out of range; ask for 1 to {MAX_MONTHS} months.")

    unknown = sorted(set((bank_formats or {}).values()) - set(_WRITE))
    if unknown:
        raise BadInput(
            f"The demo's bank cannot write {', '.join(unknown)}; "
            f"choose {', '.join(sorted(_WRITE))}."
        )

    def operation(unit: UnitOfWork) -> DemoSummary:
        _refuse_unless_empty(unit)
        plan = _plan(seed, facilities, months, as_of or unit.today)
        formats = {currency: f for currency, (_a, f) in _BANK_ACCOUNTS.items()}
        run = _DemoRun(unit, plan, progress or _no_progress, formats | dict(bank_formats or {}))
        for stage in (*STAGES, *(ANOMALY_STAGES if anomalies else ())):
            stage(run)
        return run.summary()

    return workspace.write(operation, action="demo.load")


def _refuse_unless_empty(unit: UnitOfWork) -> None:
    count = unit.session.scalar(select(func.count()).select_from(Facility)) or 0
    if count:
        noun = "facility" if count == 1 else "facilities"
        raise Refused(
            f"Demo data goes into an empty database; this one already has {count} {noun}. "
            "Use --db with a new file."
        )
    if unit.session.scalar(select(func.count()).select_from(User)):
        unit.require(Permission.LOAD_DEMO_DATA)


def _no_progress(stage: str, done: int, total: int) -> None:
    return None


# -- the cast and the catalogue ---------------------------------------------------------------

# Who does what in the demo's story: the administrator sets the system up, the clerk loads the
# dispatch exports, runs the invoices, records payments and takes checks to the bank, and the
# manager voids the clerk's mistakes. Rows carry these names, not the OS login of whoever ran
# the demo, so the data is the same on every machine.
_SET_UP_BY = Actor(Role.ADMIN.value, Role.ADMIN)
_BILLED_BY = Actor(Role.CLERK.value, Role.CLERK)
_APPROVED_BY = Actor(Role.MANAGER.value, Role.MANAGER)


@dataclass(frozen=True)
class _Locale:
    """How addresses look where a facility is, and where its riders are driven."""

    address: str  # format with {number} and {street}
    numbers: tuple[int, int]
    streets: tuple[str, ...]
    places: tuple[str, ...]  # dialysis centres, clinics, hospitals...


@dataclass(frozen=True)
class _NamePool:
    given: tuple[str, ...]
    family: tuple[str, ...]
    family_first: bool = False

    def person(self, rng: random.Random) -> str:
        given, family = rng.choice(self.given), rng.choice(self.family)
        return f"{family} {given}" if self.family_first else f"{given} {family}"


@dataclass(frozen=True)
class _Profile:
    """One demo facility as it appears in the catalogue."""

    code: str
    name: str
    kind: str  # "hospital", "clinic" or "care home"
    locale: str
    street: str
    city: str
    contact: str
    email: str
    currency: str
    terms: int
    riders: tuple[tuple[str, int], ...]  # name pools and their weights


# The tables below are laid out by hand, one row per line where it fits.
# fmt: off
_US = _Locale(
    "{number} {street}",
    (12, 4800),
    (
        "Maple Ave", "Oak St", "Cedar Ln", "Elm St", "Washington Blvd", "Lincoln Ave",
        "Park Pl", "Lakeview Dr", "Hillcrest Rd", "River Rd", "Magnolia Way", "Jefferson St",
        "Birch Ct", "Willow Dr", "Chestnut St", "Prospect Ave", "Main St", "2nd St",
    ),
    (
        "DaVita Dialysis – Eastside", "Fresenius Kidney Care – Downtown",
        "Memorial Hospital Outpatient Center", "Riverside Cardiology Associates",
        "Northside Physical Therapy", "Wound Care Center at St. Luke's",
        "Cancer Infusion Center", "VA Medical Center", "Valley Eye Surgery Center",
        "Lakeside Imaging (MRI/CT)", "Senior Dental Clinic", "Orthopedic Specialists",
        "Pulmonary Rehab Center", "Community Health Clinic",
    ),
)
_QUEBEC = _Locale(
    "{number}, {street}",
    (100, 9800),
    (
        "rue Sherbrooke Est", "boulevard Saint-Laurent", "rue Saint-Denis", "avenue du Parc",
        "rue Jean-Talon Ouest", "chemin de la Côte-des-Neiges", "rue Beaubien Est",
        "avenue Papineau", "rue Ontario Est", "boulevard Rosemont",
    ),
    (
        "Hôpital Maisonneuve-Rosemont", "Centre de dialyse Saint-Luc",
        "Institut de Cardiologie de Montréal", "CLSC du Plateau-Mont-Royal",
        "Clinique de physiothérapie Rosemont", "CHUM – Centre de cancérologie",
        "Hôpital Jean-Talon", "Clinique d'ophtalmologie Bellevue",
    ),
)
_BERLIN = _Locale(
    "{street} {number}",
    (1, 180),
    (
        "Müllerstraße", "Seestraße", "Turmstraße", "Frankfurter Allee", "Schönhauser Allee",
        "Karl-Marx-Straße", "Sonnenallee", "Kantstraße", "Badstraße", "Prinzenallee",
    ),
    (
        "Dialysezentrum Wedding", "Charité – Campus Virchow-Klinikum",
        "Jüdisches Krankenhaus Berlin", "Kardiologische Praxis Dr. Schäfer",
        "Physiotherapie am Leopoldplatz", "Augenzentrum am Nauener Platz",
        "Vivantes Humboldt-Klinikum", "Radiologie am Gesundbrunnen",
    ),
)
_LOCALES = {"us": _US, "quebec": _QUEBEC, "berlin": _BERLIN}

_NAME_POOLS = {
    "us": _NamePool(
        (
            "Dorothy", "Harold", "Margaret", "Walter", "Ruth", "Eugene", "Betty", "Frank",
            "Gloria", "Raymond", "Shirley", "Leonard", "Barbara", "Donald", "Patricia", "Earl",
            "Joan", "Marvin", "Zoë", "Renée", "André", "Chloé",
        ),
        (
            "Johnson", "Williams", "Brown", "Miller", "Davis", "Wilson", "Anderson", "Taylor",
            "Thomas", "Moore", "Jackson", "Martin", "Thompson", "White", "Harris", "Clark",
            "Lewis", "Robinson", "Walker", "O'Brien", "McAllister",
        ),
    ),
    "es": _NamePool(
        (
            "José", "María", "Ramón", "Guadalupe", "Jesús", "Dolores", "Alejandro", "Inés",
            "Raúl", "Beatriz", "Martín", "Lucía", "Tomás", "Concepción", "Andrés",
        ),
        (
            "Hernández", "García", "Martínez", "Rodríguez", "López", "González", "Pérez",
            "Sánchez", "Ramírez", "Muñoz", "Peña", "Núñez", "Castañeda", "Ibáñez", "Ortiz",
        ),
    ),
    "fr": _NamePool(
        (
            "Jean-Pierre", "Hélène", "François", "Geneviève", "Réjean", "Thérèse", "Gaétan",
            "Céline", "Benoît", "Josée", "Léo", "Ginette", "Rémi", "Françoise",
        ),
        (
            "Tremblay", "Gagnon", "Roy", "Côté", "Bouchard", "Gauthier", "Morin", "Lavoie",
            "Fortin", "Gagné", "Ouellet", "Pelletier", "Bélanger", "Lévesque", "Bérubé",
        ),
    ),
    "de": _NamePool(
        (
            "Günther", "Ursula", "Jürgen", "Hannelore", "Klaus", "Gisela", "Dieter", "Renate",
            "Wolfgang", "Brigitte", "Jörg", "Käthe", "Horst", "Ingeborg",
        ),
        (
            "Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Schäfer", "Köhler",
            "Wagner", "Becker", "Hoffmann", "Schröder", "Krüger", "Neumann", "Groß", "Jäger",
        ),
    ),
    "da": _NamePool(
        (
            "Søren", "Birgitte", "Jørgen", "Kirsten", "Bjørn", "Inger", "Poul", "Grethe",
            "Niels", "Åse", "Henning", "Lone", "Mogens", "Hanne",
        ),
        (
            "Jensen", "Nielsen", "Hansen", "Pedersen", "Andersen", "Christensen", "Larsen",
            "Sørensen", "Rasmussen", "Jørgensen", "Nørgaard", "Mikkelsen", "Kjær",
            "Østergaard",
        ),
    ),
    "pl": _NamePool(
        (
            "Zofia", "Stanisław", "Jadwiga", "Wojciech", "Krystyna", "Józef", "Halina",
            "Tadeusz", "Bożena", "Zbigniew", "Łucja", "Jerzy", "Grażyna", "Czesław",
        ),
        # Surnames that do not change with gender, so every pairing reads right.
        (
            "Nowak", "Wójcik", "Kowalczyk", "Mazur", "Krawczyk", "Piątek", "Kaczmarek",
            "Zając", "Król", "Wróbel", "Pawlak", "Michalak", "Sikora", "Dudek", "Gołąb",
        ),
    ),
    "ja": _NamePool(
        (
            "花子", "一郎", "美智子", "健二", "幸子", "弘", "和子", "清", "節子", "茂", "京子",
            "勇", "洋子", "実",
        ),
        (
            "佐藤", "鈴木", "高橋", "田中", "渡辺", "伊藤", "山本", "中村", "小林", "加藤",
            "吉田", "山田", "松本", "井上",
        ),
        family_first=True,
    ),
    "ja-us": _NamePool(
        (
            "Hiroshi", "Keiko", "Kenji", "Yoshiko", "Takeshi", "Michiko", "Satoshi", "Fumiko",
            "Masao", "Emiko",
        ),
        (
            "Yamamoto", "Tanaka", "Nakamura", "Kobayashi", "Watanabe", "Sato", "Suzuki",
            "Ito", "Takahashi", "Yoshida",
        ),
    ),
    "ar": _NamePool(
        (
            "محمد", "فاطمة", "أحمد", "مريم", "علي", "ليلى", "حسن", "زينب", "يوسف", "نور",
            "خالد", "سلمى",
        ),
        (
            "الحسن", "حداد", "خليل", "منصور", "العلي", "سعيد", "النجار", "عبد الله",
            "الشامي", "يوسف",
        ),
    ),
    "ar-us": _NamePool(
        (
            "Fatima", "Ahmad", "Mariam", "Hassan", "Layla", "Yusuf", "Khalid", "Salma", "Omar",
            "Nadia", "Samir", "Huda",
        ),
        (
            "Haddad", "Khalil", "Mansour", "Saleh", "Al-Najjar", "Hamdan", "Nasser", "Bazzi",
            "Beydoun", "Fawaz",
        ),
    ),
}

_US_RIDERS = (("us", 1),)

# In the order the demo takes them: the first few already mix scripts, so a small demo shows
# accents and CJK, and from six facilities on a right-to-left name. Two bill in CAD and EUR.
_CATALOGUE = (
    _Profile("STMARY", "St. Mary's Hospital", "hospital", "us", "1800 N Main St",
             "Springfield, IL 62702", "Linda Carver", "ap@stmarys-springfield.example", "USD",
             30, _US_RIDERS),
    _Profile("CLINSJ", "Clínica San José", "clinic", "us", "415 S Zarzamora St",
             "San Antonio, TX 78207", "Rosa Elizondo", "facturacion@clinicasanjose.example",
             "USD", 15, (("es", 3), ("us", 1))),
    _Profile("NAKANO", "中野クリニック", "clinic", "us", "1650 W Carson St",
             "Torrance, CA 90501", "Naomi Sato", "billing@nakano-clinic.example", "USD", 30,
             (("ja", 2), ("ja-us", 2), ("us", 1))),
    _Profile("OAKVIEW", "Oakview Care Home", "care home", "us", "220 Oakview Dr",
             "Columbus, OH 43215", "Gary Whitfield", "accounts@oakviewcare.example", "USD", 45,
             _US_RIDERS),
    _Profile("ERABLES", "Résidence Les Érables", "care home", "quebec",
             "3440, rue Sherbrooke Est", "Montréal (Québec) H1W 1C5", "Sylvie Bélanger",
             "comptabilite@residence-les-erables.example", "CAD", 30, (("fr", 1),)),
    _Profile("ALNOOR", "مستشفى النور", "hospital", "us", "6000 Greenfield Rd",
             "Dearborn, MI 48126", "Samira Beydoun", "billing@alnoor-hospital.example", "USD",
             30, (("ar", 1), ("ar-us", 2), ("us", 1))),
    _Profile("MUELLER", "Seniorenheim Müllerstraße", "care home", "berlin",
             "Müllerstraße 142", "13353 Berlin", "Petra Krüger",
             "buchhaltung@seniorenheim-muellerstrasse.example", "EUR", 30, (("de", 1),)),
    _Profile("KOWAL", "Dom Opieki Kowalski", "care home", "us", "5830 W Belmont Ave",
             "Chicago, IL 60634", "Anna Kowalski", "biuro@domopiekikowalski.example", "USD",
             15, (("pl", 3), ("us", 1))),
    _Profile("SONDER", "Søndergaard Plejehjem", "care home", "us", "1685 Mission Dr",
             "Solvang, CA 93463", "Mette Søndergaard", "regnskab@sondergaard-plejehjem.example",
             "USD", 30, (("da", 1), ("us", 1))),
    _Profile("RIVERB", "Riverbend Dialysis Center", "clinic", "us", "900 River Rd",
             "Sacramento, CA 95815", "Marcus Bell", "ar@riverbenddialysis.example", "USD", 15,
             _US_RIDERS),
    _Profile("MAPLEW", "Maplewood Assisted Living", "care home", "us", "75 Maplewood Ln",
             "Burlington, VT 05401", "Karen Dupuis", "office@maplewood-al.example", "USD", 45,
             (("us", 3), ("fr", 1))),
    _Profile("GOODSAM", "Good Samaritan Medical Center", "hospital", "us",
             "2425 Samaritan Dr", "San Jose, CA 95124", "Daniel Okafor",
             "payables@goodsam-mc.example", "USD", 30, (("us", 3), ("es", 1))),
    _Profile("SUNRISE", "Sunrise Senior Living of Lakeview", "care home", "us",
             "3201 N Broadway", "Chicago, IL 60657", "Teresa Molina",
             "billing@sunrise-lakeview.example", "USD", 30, (("us", 3), ("pl", 1))),
    _Profile("PINES", "The Pines Rehabilitation Center", "clinic", "us", "41 Pine Ridge Rd",
             "Asheville, NC 28804", "Bobby Crenshaw", "accounts@thepinesrehab.example", "USD",
             45, _US_RIDERS),
    _Profile("HARBOR", "Harbor View Nursing & Rehab", "care home", "us",
             "12 Harbor View Rd", "Portland, ME 04101", "Jean Thibodeau",
             "ap@harborviewnursing.example", "USD", 30, (("us", 3), ("fr", 1))),
    _Profile("MERCY", "Mercy General Hospital", "hospital", "us", "4001 J St",
             "Sacramento, CA 95819", "Priya Raman", "hospital-ap@mercygeneral.example", "USD",
             30, (("us", 3), ("es", 1))),
    _Profile("CEDARS", "Cedar Hills Memory Care", "care home", "us",
             "8800 SW Cedar Hills Blvd", "Beaverton, OR 97005", "Heather Lindqvist",
             "office@cedarhillsmc.example", "USD", 15, _US_RIDERS),
    _Profile("LAKESH", "Lakeshore Behavioral Health", "clinic", "us", "510 Lakeshore Dr",
             "Cleveland, OH 44108", "Derrick Owens", "billing@lakeshorebh.example", "USD", 30,
             _US_RIDERS),
    _Profile("VALLEY", "Valley Orthopedic & Spine Clinic", "clinic", "us",
             "2700 E Valley Pkwy", "Escondido, CA 92027", "Monica Reyes",
             "ar@valleyortho.example", "USD", 45, (("us", 2), ("es", 1))),
    _Profile("GREENV", "Greenville Veterans Home", "care home", "us", "1000 Veterans Way",
             "Greenville, SC 29607", "Wayne Pruitt", "accounting@greenvillevh.example", "USD",
             30, _US_RIDERS),
)
# fmt: on


def _profiles(count: int) -> list[_Profile]:
    """The first `count` catalogue entries; past its end, second sites of the same names."""
    chosen = []
    for index in range(count):
        profile = _CATALOGUE[index % len(_CATALOGUE)]
        site = index // len(_CATALOGUE) + 1
        if site > 1:
            profile = dataclasses.replace(
                profile, code=f"{profile.code}{site}", name=f"{profile.name} – Site {site}"
            )
        chosen.append(profile)
    return chosen


# -- fares ------------------------------------------------------------------------------------

# (base fare, per mile) in minor units, by how the rider travels.
_FARES = {"ambulatory": (2500, 225), "wheelchair": (4500, 275), "stretcher": (8500, 350)}
_MOBILITY = ("ambulatory",) * 11 + ("wheelchair",) * 7 + ("stretcher",) * 2
_WEEKEND_SURCHARGE = 1000
_FARE_RANGE = (2500, 18500)


def _fare_minor(mobility: str, tenths_of_miles: int, day: date) -> int:
    base, per_mile = _FARES[mobility]
    fare = base + (per_mile * tenths_of_miles + 5) // 10
    if day.weekday() >= 5:
        fare += _WEEKEND_SURCHARGE
    return max(_FARE_RANGE[0], min(_FARE_RANGE[1], fare))


# -- the plan -----------------------------------------------------------------------------------

# Trips per facility per day, in thousandths, before the facility's size and the weekday count.
_TRIPS_PER_FACILITY_DAY_MILLI = 1650
# Rides by weekday, Monday first: appointments are on weekdays.
_WEEKDAY_WEIGHTS = (6, 6, 6, 6, 6, 2, 1)


@dataclass(frozen=True)
class _Rider:
    ref: str
    name: str
    home: str
    mobility: str
    usual_place: str
    usual_miles: int  # tenths of a mile
    weight: int  # how often they ride, relative to the facility's other riders


@dataclass(frozen=True)
class _Batch:
    """The trips the dispatch system exported for one month and when; a full month is billed
    on the 1st of the next."""

    period: Period
    full: bool
    exported: date
    trips: tuple[TripRecord, ...]


@dataclass(frozen=True)
class _Plan:
    seed: int
    as_of: date
    profiles: tuple[_Profile, ...]
    riders: tuple[tuple[_Rider, ...], ...]  # per profile
    batches: tuple[_Batch, ...]  # oldest first; the last holds this month's unbilled trips

    @property
    def set_up_on(self) -> date:
        return self.batches[0].period.start - timedelta(days=7)

    def stream(self, *topic: object) -> random.Random:
        return _stream(self.seed, *topic)


def _stream(seed: int, *topic: object) -> random.Random:
    """A random stream of its own per topic: changing how one part is drawn (or adding a part)
    leaves every other part as it was."""
    return random.Random("/".join(str(part) for part in ("billing-desk-demo", seed, *topic)))


def _plan(seed: int, facility_count: int, months: int, as_of: date) -> _Plan:
    current = Period.of(as_of)
    first_index = current.year * 12 + current.month - 1 - months
    period = Period(first_index // 12, first_index % 12 + 1)
    profiles = _profiles(facility_count)
    riders = [_riders(seed, profile) for profile in profiles]
    sizes = [_stream(seed, "size", p.code).randint(60, 140) for p in profiles]
    batches = []
    while period <= current:
        full = period < current
        last_day = period.end if full else as_of - timedelta(days=1)
        drafts: list[tuple[date, int, int, TripRecord]] = []
        for index, profile in enumerate(profiles):
            for number, record in enumerate(
                _trips(seed, profile, riders[index], sizes[index], period.start, last_day)
            ):
                drafts.append((record.service_date, index, number, record))
        drafts.sort(key=lambda draft: draft[:3])
        exported = period.next().start if full else as_of
        batches.append(_Batch(period, full, exported, _numbered(seed, period, drafts)))
        period = period.next()
    return _Plan(seed, as_of, tuple(profiles), tuple(riders), tuple(batches))


def _riders(seed: int, profile: _Profile) -> tuple[_Rider, ...]:
    rng = _stream(seed, "riders", profile.code)
    locale = _LOCALES[profile.locale]
    pools = [_NAME_POOLS[name] for name, _ in profile.riders]
    weights = [weight for _, weight in profile.riders]
    ref = rng.randint(10000, 89999)
    taken: set[str] = set()
    riders = []
    for _ in range(rng.randint(15, 40)):
        name = ""
        for _attempt in range(1000):
            name = rng.choices(pools, weights)[0].person(rng)
            if name not in taken:
                break
        else:  # pragma: no cover - every pool has far more names than a facility has riders
            raise RuntimeError(f"demo name pools too small for {profile.code}")
        taken.add(name)
        ref += rng.randint(1, 60)
        if profile.kind == "care home":
            # Residents live at the home and ride out to appointments.
            home = profile.name
            usual = rng.choice(locale.places)
        else:
            home = locale.address.format(
                number=rng.randint(*locale.numbers), street=rng.choice(locale.streets)
            )
            if locale is _US and rng.randrange(5) == 0:
                home += f", Apt {rng.randint(1, 12)}{rng.choice('ABCD')}"
            usual = profile.name
        riders.append(
            _Rider(
                ref=f"C-{ref}",
                name=name,
                home=home,
                mobility=rng.choice(_MOBILITY),
                usual_place=usual,
                usual_miles=rng.randint(10, 250),
                weight=rng.choice((1, 1, 1, 2, 2, 3, 6)),
            )
        )
    return tuple(riders)


def _trips(
    seed: int, profile: _Profile, riders: Sequence[_Rider], size: int, first: date, last: date
) -> list[TripRecord]:
    """The facility's trips from `first` to `last`, numbered later; ids are placeholders."""
    rng = _stream(seed, "trips", profile.code, first.isoformat())
    places = _LOCALES[profile.locale].places
    currency = profile.currency
    weights = [rider.weight for rider in riders]
    records: list[TripRecord] = []
    day = first
    while day <= last:
        expected = (_TRIPS_PER_FACILITY_DAY_MILLI * size * _WEEKDAY_WEIGHTS[day.weekday()] * 7) // (
            100 * sum(_WEEKDAY_WEIGHTS)
        )
        count = expected // 1000 + (1 if rng.randrange(1000) < expected % 1000 else 0)
        for _ in range(count):
            rider = rng.choices(riders, weights)[0]
            if rng.randrange(10) < 7:
                place, miles = rider.usual_place, rider.usual_miles
            else:
                place, miles = rng.choice(places), rng.randint(10, 250)
            pickup, dropoff = (rider.home, place) if rng.randrange(2) else (place, rider.home)
            roll = rng.randrange(100)
            status = (
                TripStatus.CANCELLED
                if roll < 5
                else TripStatus.NO_SHOW
                if roll < 8
                else TripStatus.COMPLETED
            )
            billable = status is not TripStatus.COMPLETED or rng.randrange(100) >= 3
            records.append(
                TripRecord(
                    line=0,
                    external_trip_id="",
                    facility_code=profile.code,
                    client_name=rider.name,
                    client_ref=rider.ref,
                    service_date=day,
                    pickup=pickup,
                    dropoff=dropoff,
                    status=status,
                    fare=Money.from_minor(
                        _fare_minor(rider.mobility, miles, day), currency
                    ).plain(),
                    billable=billable,
                )
            )
        day += timedelta(days=1)
    return records


def _numbered(
    seed: int, period: Period, drafts: Sequence[tuple[date, int, int, TripRecord]]
) -> tuple[TripRecord, ...]:
    """Dispatch trip ids like T2605-000123, in service order; the dispatch system numbers other
    customers' trips too, so ours have gaps."""
    rng = _stream(seed, "trip-ids", period)
    number = rng.randint(100, 999)
    prefix = f"T{period.year % 100:02d}{period.month:02d}"
    numbered = []
    for line, (_, _, _, record) in enumerate(drafts, start=1):
        number += rng.randint(1, 9)
        numbered.append(
            dataclasses.replace(record, line=line, external_trip_id=f"{prefix}-{number:06d}")
        )
    return tuple(numbered)


# -- writing it -------------------------------------------------------------------------------


@dataclass
class _DemoRun:
    """The plan being written inside one unit of work."""

    unit: UnitOfWork
    plan: _Plan
    report: Progress
    bank_formats: Mapping[str, str]
    users: tuple[str, ...] = ()

    def acting(self, actor: Actor, day: date, *, minutes: int) -> UnitOfWork:
        """The unit of work as `actor`, `minutes` after midnight UTC of `day` on the story's
        clock. That clock never passes the real one, so no row is dated in the future."""
        midnight = datetime.combine(day, time(0), tzinfo=UTC)
        moment = min(midnight + timedelta(minutes=minutes), self.unit.now)
        return dataclasses.replace(self.unit, actor=actor, now=moment)

    def summary(self) -> DemoSummary:
        session = self.unit.session

        def count(model: type[Base]) -> int:
            return session.scalar(select(func.count()).select_from(model)) or 0

        return DemoSummary(
            facilities=count(Facility),
            clients=count(Client),
            trips=count(Trip),
            invoices=count(Invoice),
            payments=count(Payment),
            deposits=count(Deposit),
            users=self.users,
            bank_lines=count(BankLine),
            bank_lines_matched=session.scalar(
                select(func.count()).select_from(BankMatch).where(BankMatch.active)
            )
            or 0,
        )


_Stage = Callable[[_DemoRun], None]


def _add_users(run: _DemoRun) -> None:
    unit = run.acting(_SET_UP_BY, run.plan.set_up_on, minutes=9 * 60)
    roles = list(Role)
    for done, role in enumerate(roles, start=1):
        ensure_user(unit, role.value, role)
        run.report("users", done, len(roles))
    run.users = tuple(role.value for role in roles)


def _add_facilities(run: _DemoRun) -> None:
    profiles = run.plan.profiles
    for done, profile in enumerate(profiles, start=1):
        unit = run.acting(_SET_UP_BY, run.plan.set_up_on, minutes=9 * 60 + 30 + done)
        insert_facility(
            unit,
            NewFacility(
                profile.code,
                profile.name,
                profile.currency,
                profile.terms,
                profile.contact,
                profile.email,
                f"{profile.street}, {profile.city}",
            ).validated(),
        )
        run.report("facilities", done, len(profiles))


def _add_clients(run: _DemoRun) -> None:
    """Each facility's riders, as its dispatch system knows them."""
    session = run.unit.session
    ids = {code: id_ for code, id_ in session.execute(select(Facility.code, Facility.id))}
    rows = [
        {"facility_id": ids[profile.code], "name": rider.name, "external_ref": rider.ref}
        for profile, riders in zip(run.plan.profiles, run.plan.riders, strict=True)
        for rider in riders
    ]
    session.add_all([Client(**row) for row in rows])
    session.flush()
    run.report("clients", len(rows), len(rows))


def _load_trips_and_bill_months(run: _DemoRun) -> None:
    """Month by month, as the office lives it: load the dispatch export, then on the 1st bill
    each facility's finished month."""
    batches = run.plan.batches
    trips_total = sum(len(batch.trips) for batch in batches)
    profiles = run.plan.profiles
    invoices_total = sum(
        len(_billable_facilities(batch, profiles)) for batch in batches if batch.full
    )
    trips_done = invoices_done = 0
    for batch in batches:
        loader = run.acting(_BILLED_BY, batch.exported, minutes=30 if batch.full else 0)
        # Without autoflush, looking up each row's client does not flush the trips before it
        # one by one: the batch goes in as a few multi-row INSERTs.
        with run.unit.session.no_autoflush:
            result = import_trip_records(loader, batch.trips, skip_bad=False, earlier=())
        if result.added != len(batch.trips):  # pragma: no cover - the plan has fresh ids only
            raise RuntimeError(f"demo trips of {batch.period} were not all new: {result}")
        trips_done += len(batch.trips)
        run.report("trips", trips_done, trips_total)
        if not batch.full:
            continue
        for minute, code in enumerate(_billable_facilities(batch, profiles)):
            biller = run.acting(_BILLED_BY, batch.exported, minutes=7 * 60 + minute)
            bill_trips(biller, code, batch.period, None, batch.exported)
            invoices_done += 1
            run.report("invoices", invoices_done, invoices_total)


def _billable_facilities(batch: _Batch, profiles: Sequence[_Profile]) -> list[str]:
    """Facilities with something to bill in the batch, in catalogue order."""
    billable = {
        trip.facility_code
        for trip in batch.trips
        if trip.status is TripStatus.COMPLETED and trip.billable
    }
    return [profile.code for profile in profiles if profile.code in billable]


# -- payments ---------------------------------------------------------------------------------

# How an invoice ends, in percent: paid in full by one payment, paid in part, overpaid (the rest
# stays as the facility's credit); the others are not paid (yet), so aging has something to show.
_PAID_IN_FULL, _PAID_IN_PART, _OVERPAID = 70, 10, 5
_DAYS_TO_PAY = (10, 40)
_PART_PERCENTS = (25, 40, 50, 60, 75, 80)
# How payments come, in percent. Each facility has its usual way, dealt in these proportions,
# and now and then pays another way.
_METHODS = ((PaymentMethod.CHECK, 50), (PaymentMethod.TRANSFER, 35), (PaymentMethod.CARD, 15))
_USUAL_METHOD_PERCENT = 80
# Facilities outside the US pay by bank transfer, on their own country's rails.
_TRANSFER_RAILS = {"USD": "ACH", "CAD": "EFT", "EUR": "SEPA"}
# Routing numbers of large US banks; each passes the ABA checksum.
_ROUTING_NUMBERS = (
    "021000021", "011000015", "026009593", "121000358", "121000248", "071000013",
    "091000019", "044000037", "111000614", "053000196",
)  # fmt: skip
_CARD_BRANDS = (("Visa", 5), ("Mastercard", 3), ("Amex", 2))
_RETURN_REASONS = ("NSF (insufficient funds)", "stop payment", "refer to maker")
_NSF = _RETURN_REASONS[0]
# Days the office and the bank are closed besides weekends, as (month, day).
_HOLIDAYS = frozenset({(1, 1), (7, 4), (12, 25)})

# When things happen on the story's clock, in minutes after midnight UTC.
_AT_BANK_STATEMENT = 8 * 60  # the morning's bank statements are imported and matched
_AT_MAIL = 9 * 60  # the day's payments are recorded
_AT_PRESENTED_AGAIN = 10 * 60
_AT_REVIEW = 11 * 60 + 30  # the manager reviews the morning's entries
_AT_CORRECTION = 11 * 60 + 45
_AT_BANK_NOTICE = 14 * 60  # returned-check notices
_AT_DEPOSIT = 15 * 60  # on Fridays the week's checks go to the bank
_AT_CAPTURE = 17 * 60  # the card terminal's end-of-day batch


@dataclass(frozen=True)
class _InvoiceFact:
    """An issued invoice, as the payments stage needs to know it."""

    facility: str
    number: str
    sequence: int
    issue_date: date
    due_date: date
    total_minor: int
    currency: str


@dataclass(frozen=True)
class _Payer:
    """How one facility pays: its usual method, its checking account and its card."""

    usual: PaymentMethod
    routing: str
    account: str
    card_brand: str
    card_last4: str


_Outcome = Literal["full", "partial", "over", "error"]


@dataclass(frozen=True)
class _Entry:
    """One payment as the clerk enters it, and the invoice it pays (None: entered in error)."""

    draft: PaymentDraft
    invoice: _InvoiceFact | None
    outcome: _Outcome

    @property
    def method(self) -> PaymentMethod:
        return PaymentMethod(self.draft.method)


@dataclass(frozen=True)
class _Record:
    entry: int
    key: str = ""


@dataclass(frozen=True)
class _Move:
    entry: int
    target: PaymentStatus
    reason: str


@dataclass(frozen=True)
class _DepositSlip:
    entries: tuple[int, ...]


_LineKind = Literal["payment", "slip", "short slip", "return", "unknown credit", "fee"]


@dataclass(frozen=True)
class _BankLine:
    """One line of the bank's statement: a transfer's or a card settlement's own money
    (`entry`), a deposit slip's total (the slip of the day `slip`), a returned check going back
    out (`entry`), or one of the lines planted for the reconciliation to find (`amount_minor`)."""

    booked: date
    kind: _LineKind
    entry: int = -1
    slip: date | None = None
    amount_minor: int = 0


@dataclass(frozen=True)
class _BankStatement:
    """The morning's statements: yesterday's lines of every account that had any."""

    lines: tuple[_BankLine, ...]


_Action = _Record | _Move | _DepositSlip | _BankStatement


@dataclass(frozen=True)
class _Event:
    day: date
    minute: int
    actor: Actor
    action: _Action


@dataclass(frozen=True)
class _PaymentBook:
    entries: tuple[_Entry, ...]
    events: tuple[_Event, ...]  # in the story's order


def _plan_payments(plan: _Plan, invoices: Sequence[_InvoiceFact], last_day: date) -> _PaymentBook:
    """What the facilities paid for `invoices` up to `last_day` and all that befell those
    payments: deposits, clearing, card settlement, a few returned checks (one presented again),
    a check recorded against the wrong facility and a card authorized twice, both voided."""
    entries: list[_Entry] = []
    usual = _usual_methods(plan)
    for profile in plan.profiles:
        own = sorted((i for i in invoices if i.facility == profile.code), key=lambda i: i.sequence)
        rng = plan.stream("payments", profile.code)
        entries.extend(_facility_payments(rng, profile, usual[profile.code], own))
    entries = [e for e in entries if e.draft.received <= last_day]
    rng = plan.stream("payments", "mishaps")
    returns, presented_again = _choose_returns(rng, entries, invoices, last_day)
    story = _Story(entries, last_day)
    busy = {(e.draft.facility, e.draft.received) for e in entries}
    for index in returns:
        busy.add((entries[index].draft.facility, _check_dates(entries[index]).returned))
    if presented_again is not None:
        again = _check_dates(entries[presented_again]).presented_again
        busy.add((entries[presented_again].draft.facility, again))
    wrong = _choose_wrong_facility(rng, plan, entries, set(returns), busy)
    doubled = _choose_doubled_card(rng, entries)

    # Money clears only when the bank's line for it is matched: each line below is on the
    # statement imported the next business morning, and matching it clears the payment.
    bank: list[_BankLine] = []
    slips: defaultdict[date, list[int]] = defaultdict(list)
    for index, entry in enumerate(entries):
        received = entry.draft.received
        corrected = wrong is not None and wrong[0] == index
        story.add(received, _AT_CORRECTION if corrected else _AT_MAIL, _BILLED_BY, _Record(index))
        if entry.method is PaymentMethod.TRANSFER:
            bank.append(_BankLine(received, "payment", entry=index))
        elif entry.method is PaymentMethod.CARD:
            if story.move(received, _AT_CAPTURE, index, PaymentStatus.CAPTURED, "end-of-day batch"):
                # The processor pays the day's batch out the next business day.
                payout = _business_days_after(received, 1)
                bank.append(_BankLine(payout, "payment", entry=index))
        else:
            dates = _check_dates(entry)
            slips[dates.deposited].append(index)
            if index not in returns:
                continue
            reason = f"returned by the bank: {returns[index]}"
            story.move(dates.returned, _AT_BANK_NOTICE, index, PaymentStatus.RETURNED, reason)
            bank.append(_BankLine(dates.returned, "return", entry=index))
            if index == presented_again:
                why = "presented again: the facility asked us to deposit it once more"
                story.move(
                    dates.presented_again, _AT_PRESENTED_AGAIN, index, PaymentStatus.RECORDED, why
                )
                slips[dates.deposited_again].append(index)
    if wrong is not None:
        index, facility = wrong
        right = entries[index]
        entries.append(
            _Entry(
                dataclasses.replace(
                    right.draft, facility=facility, allocations=(), auto_allocate=True
                ),
                None,
                "error",
            )
        )
        story.add(right.draft.received, _AT_MAIL, _BILLED_BY, _Record(len(entries) - 1))
        reason = (
            f"entered in error: check {right.draft.check_number} is from "
            f"{right.draft.facility}, not {facility}; recorded again against "
            f"{right.draft.facility}"
        )
        story.move(right.draft.received, _AT_REVIEW, len(entries) - 1, PaymentStatus.VOIDED, reason)
    if doubled is not None:
        card = entries[doubled].draft
        processor_ref = _processor_ref(rng)
        entries.append(
            _Entry(
                dataclasses.replace(card, processor_ref=processor_ref, allocations=()),
                None,
                "error",
            )
        )
        story.add(card.received, _AT_MAIL, _BILLED_BY, _Record(len(entries) - 1))
        reason = (
            f"entered in error: the terminal authorized the {card.card_brand} card ending "
            f"{card.card_last4} twice; the processor released {processor_ref}"
        )
        story.move(card.received, _AT_REVIEW, len(entries) - 1, PaymentStatus.VOIDED, reason)
    short = _choose_short_slip(plan, entries, slips, last_day)
    for day, slip in sorted(slips.items()):
        story.add(day, _AT_DEPOSIT, _BILLED_BY, _DepositSlip(tuple(slip)))
        credited = _business_days_after(day, 1)
        bank.append(_BankLine(credited, "short slip" if day == short else "slip", slip=day))
    if any(e.draft.facility in _dollar_facilities(plan) for e in entries):
        bank.extend(_unexplained_lines(plan, last_day))
    by_morning: defaultdict[date, list[_BankLine]] = defaultdict(list)
    for line in bank:
        by_morning[_business_days_after(line.booked, 1)].append(line)
    for morning, lines in sorted(by_morning.items()):
        story.add(morning, _AT_BANK_STATEMENT, _BILLED_BY, _BankStatement(tuple(lines)))
    return _PaymentBook(tuple(entries), story.events())


# What the demo's bank got wrong or did on its own, for the reconciliation to find: a slip it
# credited short, and in the last weeks an unidentified credit and its monthly service charge.
SHORT_BY_MINOR = 2000
SERVICE_CHARGE_MINOR = 2500


def _dollar_facilities(plan: _Plan) -> set[str]:
    return {p.code for p in plan.profiles if p.currency == "USD"}


def _choose_short_slip(
    plan: _Plan,
    entries: Sequence[_Entry],
    slips: Mapping[date, list[int]],
    last_day: date,
) -> date | None:
    """The day of the slip the bank credits 20.00 short: a recent one of dollar checks only,
    whose statement arrives by `last_day`."""
    dollars = _dollar_facilities(plan)
    fits = [
        day
        for day, slip in sorted(slips.items())
        if _business_days_after(day, 2) <= last_day
        and all(entries[i].draft.facility in dollars for i in slip)
    ]
    return plan.stream("bank", "short").choice(fits[-4:]) if fits else None


def _unexplained_lines(plan: _Plan, last_day: date) -> list[_BankLine]:
    """A credit nobody can place, two weeks back, and the month's service charge, both on
    statements that arrive by `last_day`."""
    rng = plan.stream("bank", "unexplained")
    out = []
    unknown = _business_day_from(last_day - timedelta(days=14))
    if _business_days_after(unknown, 1) <= last_day:
        out.append(_BankLine(unknown, "unknown credit", amount_minor=rng.randint(100, 400) * 100))
    charged = _business_day_from(last_day.replace(day=1))
    if _business_days_after(charged, 1) > last_day:
        charged = _business_day_from((last_day.replace(day=1) - timedelta(days=1)).replace(day=1))
    if _business_days_after(charged, 1) <= last_day:
        out.append(_BankLine(charged, "fee", amount_minor=-SERVICE_CHARGE_MINOR))
    return out


def _facility_payments(
    rng: random.Random, profile: _Profile, usual: PaymentMethod, invoices: Sequence[_InvoiceFact]
) -> list[_Entry]:
    """One facility's payment for each of its invoices it pays, from its own random stream."""
    payer = _payer(rng, usual)
    step = 10 ** currency_exponent(profile.currency)
    check_number = rng.randint(1001, 48000)
    transfer_number = rng.randint(100, 900)
    entries = []
    for invoice in invoices:
        # Every invoice draws the same numbers, used or not, so one outcome never shifts the next.
        roll = rng.randrange(100)
        received = _business_day_from(invoice.issue_date + timedelta(rng.randint(*_DAYS_TO_PAY)))
        as_usual = rng.randrange(100) < _USUAL_METHOD_PERCENT
        other = _draw_method(rng)
        part = rng.choice(_PART_PERCENTS)
        check_number += rng.randint(3, 40)
        transfer_number += rng.randint(1, 25)
        processor_ref = _processor_ref(rng)
        total = invoice.total_minor
        outcome: _Outcome
        if roll < _PAID_IN_FULL:
            outcome, amount = "full", total
        elif roll < _PAID_IN_FULL + _PAID_IN_PART:
            # A round sum on account; the balance is left open.
            outcome, amount = "partial", total * part // 100 // step * step
            if not 0 < amount < total:  # pragma: no cover - invoices are far above 4 units
                outcome, amount = "full", total
        elif roll < _PAID_IN_FULL + _PAID_IN_PART + _OVERPAID:
            # Rounded up to the next hundred: the difference becomes credit.
            outcome, amount = "over", (total // (100 * step) + 1) * 100 * step
        else:
            continue
        method = payer.usual if as_usual or profile.currency != "USD" else other
        memo = f"Invoice {invoice.number}" + (", part payment" if outcome == "partial" else "")
        draft = PaymentDraft(
            facility=profile.code,
            method=method.value,
            amount=Money.from_minor(amount, profile.currency).plain(),
            received=received,
            payer=profile.name,
            memo=memo,
            allocations=(
                (invoice.number, Money.from_minor(min(amount, total), profile.currency).plain()),
            ),
        )
        if method is PaymentMethod.CHECK:
            draft = dataclasses.replace(
                draft,
                check_number=str(check_number),
                routing_number=payer.routing,
                account_number=payer.account,
            )
        elif method is PaymentMethod.TRANSFER:
            rail = _TRANSFER_RAILS[profile.currency]
            reference = f"{rail} {received:%y%m}-{profile.code}-{transfer_number:06d}"
            draft = dataclasses.replace(draft, reference=reference)
        else:
            draft = dataclasses.replace(
                draft,
                card_brand=payer.card_brand,
                card_last4=payer.card_last4,
                processor_ref=processor_ref,
            )
        entries.append(_Entry(draft, invoice, outcome))
    return entries


def _usual_methods(plan: _Plan) -> dict[str, PaymentMethod]:
    """How each facility usually pays, dealt from a deck in the proportions of `_METHODS` so
    that a demo of any size shows each about as often as in life. Facilities outside the US
    take the transfers first: they pay on their own country's rails."""
    count = len(plan.profiles)
    total = sum(weight for _, weight in _METHODS)
    dealt = {method: count * weight // total for method, weight in _METHODS}
    by_remainder = sorted(_METHODS, key=lambda item: -(count * item[1] % total))
    for method, _ in by_remainder[: count - sum(dealt.values())]:
        dealt[method] += 1
    deck = [method for method, _ in _METHODS for _ in range(dealt[method])]
    usual: dict[str, PaymentMethod] = {}
    for profile in plan.profiles:
        if profile.currency != "USD":
            usual[profile.code] = PaymentMethod.TRANSFER
            if PaymentMethod.TRANSFER in deck:
                deck.remove(PaymentMethod.TRANSFER)
            else:
                deck.pop()
    plan.stream("payments", "methods").shuffle(deck)
    home = [profile.code for profile in plan.profiles if profile.code not in usual]
    usual.update(zip(home, deck, strict=True))
    return usual


def _payer(rng: random.Random, usual: PaymentMethod) -> _Payer:
    routing = rng.choice(_ROUTING_NUMBERS)
    account = str(rng.randint(10**9, 10**10 - 1))
    brand = rng.choices([b for b, _ in _CARD_BRANDS], [w for _, w in _CARD_BRANDS])[0]
    last4 = f"{rng.randrange(10_000):04d}"
    return _Payer(usual, routing, account, brand, last4)


def _draw_method(rng: random.Random) -> PaymentMethod:
    return rng.choices([m for m, _ in _METHODS], [w for _, w in _METHODS])[0]


def _processor_ref(rng: random.Random) -> str:
    """A card processor's charge id, like "ch_3PqR7sT2uVwXyZ01aBcDeFgH"."""
    alphabet = string.ascii_letters + string.digits
    while True:
        ref = "ch_" + "".join(rng.choices(alphabet, k=24))
        if not contains_card_number(ref):  # pragma: no branch - 13 digits in a row are rare
            return ref


@dataclass(frozen=True)
class _CheckDates:
    """The days a check goes to the bank and comes back cleared, or returned and presented
    again."""

    deposited: date
    cleared: date
    returned: date
    presented_again: date
    deposited_again: date
    cleared_again: date


def _check_dates(entry: _Entry) -> _CheckDates:
    deposited = _deposit_day(entry.draft.received)
    returned = _business_days_after(deposited, 3)
    presented_again = _business_days_after(returned, 5)
    deposited_again = _deposit_day(presented_again)
    return _CheckDates(
        deposited,
        _business_days_after(deposited, 2),
        returned,
        presented_again,
        deposited_again,
        _business_days_after(deposited_again, 2),
    )


def _choose_returns(
    rng: random.Random, entries: Sequence[_Entry], invoices: Sequence[_InvoiceFact], last: date
) -> tuple[dict[int, str], int | None]:
    """Two or three checks the bank returns (as many as the history allows), one of them for
    insufficient funds and presented again; entry index -> the bank's reason."""
    candidates = [
        index
        for index, entry in enumerate(entries)
        if entry.method is PaymentMethod.CHECK and _check_dates(entry).returned <= last
    ]
    again = [
        index
        for index in candidates
        if entries[index].outcome == "full"
        and _check_dates(entries[index]).cleared_again <= last
        and _pays_oldest_open(entries, invoices, index)
    ]
    presented_again = rng.choice(again) if again else None
    returns: dict[int, str] = {}
    if presented_again is not None:
        returns[presented_again] = _NSF
        # Other facilities only: a reopened invoice there would take the money presented again.
        facility = entries[presented_again].draft.facility
        candidates = [i for i in candidates if entries[i].draft.facility != facility]
    count = rng.randint(1, 2) if presented_again is not None else rng.randint(1, 3)
    for index in sorted(rng.sample(candidates, min(count, len(candidates)))):
        returns[index] = rng.choice(_RETURN_REASONS)
    return returns, presented_again


def _pays_oldest_open(
    entries: Sequence[_Entry], invoices: Sequence[_InvoiceFact], index: int
) -> bool:
    """Whether the check's own invoice is its facility's oldest open one when it is presented
    again, so that the money presented again (applied oldest first) goes back where it was."""
    entry = entries[index]
    invoice = entry.invoice
    if invoice is None:  # pragma: no cover - entered-in-error payments are never returned
        return False
    day = _check_dates(entry).presented_again
    settled = {
        e.invoice.number
        for e in entries
        if e.invoice is not None and e.outcome in ("full", "over") and e.draft.received < day
    }
    return all(
        other.number in settled
        for other in invoices
        if other.facility == invoice.facility
        and (other.due_date, other.sequence) < (invoice.due_date, invoice.sequence)
    )


def _choose_wrong_facility(
    rng: random.Random,
    plan: _Plan,
    entries: Sequence[_Entry],
    returned: set[int],
    busy: set[tuple[str, date]],
) -> tuple[int, str] | None:
    """A check the clerk first records against the wrong facility (one with nothing else to
    record that day), and that facility: the manager voids it before noon."""
    checks = [
        index
        for index, entry in enumerate(entries)
        if entry.method is PaymentMethod.CHECK and index not in returned
    ]
    rng.shuffle(checks)
    dollar_facilities = [p.code for p in plan.profiles if p.currency == "USD"]
    for index in checks:
        draft = entries[index].draft
        others = [
            code
            for code in dollar_facilities
            if code != draft.facility and (code, draft.received) not in busy
        ]
        if others:
            return index, rng.choice(others)
    return None


def _choose_doubled_card(rng: random.Random, entries: Sequence[_Entry]) -> int | None:
    """A card payment the terminal authorized twice; the clerk records both."""
    cards = [i for i, entry in enumerate(entries) if entry.method is PaymentMethod.CARD]
    return rng.choice(cards) if cards else None


class _Story:
    """Events collected in any order and told in the story's: by day, then time of day, then
    in the order they were added; events after the last day have not happened yet."""

    def __init__(self, entries: Sequence[_Entry], last_day: date) -> None:
        self._entries = entries
        self._last_day = last_day
        self._events: list[tuple[date, int, int, Actor, _Action]] = []

    def add(self, day: date, minute: int, actor: Actor, action: _Action) -> bool:
        if day > self._last_day:
            return False
        self._events.append((day, minute, len(self._events), actor, action))
        return True

    def move(self, day: date, minute: int, entry: int, target: PaymentStatus, reason: str) -> bool:
        """A lifecycle move by the clerk; voids are the manager's."""
        actor = _APPROVED_BY if target is PaymentStatus.VOIDED else _BILLED_BY
        return self.add(day, minute, actor, _Move(entry, target, reason))

    def events(self) -> tuple[_Event, ...]:
        """Each event a minute after the one before it at the same time of day, and each
        recorded payment an idempotency key numbered per facility, as a clerk's would be."""
        taken: Counter[tuple[date, int]] = Counter()
        keys: Counter[str] = Counter()
        told = []
        for day, minute, _, actor, action in sorted(self._events, key=lambda e: e[:3]):
            slot = minute + taken[day, minute]
            taken[day, minute] += 1
            if isinstance(action, _Record):
                facility = self._entries[action.entry].draft.facility
                keys[facility] += 1
                action = _Record(action.entry, f"demo-{facility}-{keys[facility]:04d}")
            told.append(_Event(day, slot, actor, action))
        return tuple(told)


def _business_day_from(day: date) -> date:
    while day.weekday() >= 5 or (day.month, day.day) in _HOLIDAYS:
        day += timedelta(days=1)
    return day


def _business_days_after(day: date, count: int) -> date:
    for _ in range(count):
        day = _business_day_from(day + timedelta(days=1))
    return day


def _deposit_day(day: date) -> date:
    """When the checks of a business day's week go to the bank: its Friday, or the day before
    when that is a holiday."""
    deposit = day + timedelta(days=4 - day.weekday())
    while (deposit.month, deposit.day) in _HOLIDAYS:
        deposit -= timedelta(days=1)
    return deposit


def _record_payments(run: _DemoRun) -> None:
    """What the facilities paid, told day by day through the payment services: recorded by the
    clerk, deposited, cleared or returned, and the clerk's two slips voided by the manager."""
    session = run.unit.session
    rows = session.execute(
        select(
            Facility.code,
            Invoice.number,
            Invoice.sequence,
            Invoice.issue_date,
            Invoice.due_date,
            Invoice.total_minor,
            Invoice.currency,
        )
        .join(Facility, Facility.id == Invoice.facility_id)
        .where(Invoice.status == InvoiceStatus.ISSUED.value)
        .order_by(Invoice.id)
    )
    invoices = [_InvoiceFact(*row) for row in rows]
    # Nothing is received after as_of, nor after the real today (as_of may lie in the future).
    last_day = min(run.plan.as_of, run.unit.today) - timedelta(days=1)
    book = _plan_payments(run.plan, invoices, last_day)
    payments: dict[int, Payment] = {}
    deposits: dict[date, Deposit] = {}
    bank = _Bank(payments, deposits, run.bank_formats)
    for done, event in enumerate(book.events, start=1):
        unit = run.acting(event.actor, event.day, minutes=event.minute)
        action = event.action
        if isinstance(action, _Record):
            entry = book.entries[action.entry]
            receipt = record_in_unit(unit, entry.draft, entry.method, action.key)
            payment = session.get(Payment, receipt.payment_id)
            if payment is None:  # pragma: no cover - it was inserted in this transaction
                raise RuntimeError(f"demo payment {receipt.payment_id} vanished")
            payments[action.entry] = payment
        elif isinstance(action, _Move):
            move_payment(unit, payments[action.entry], action.target, action.reason, on=event.day)
        elif isinstance(action, _DepositSlip):
            slip = [payments[index] for index in action.entries]
            deposits[event.day] = _deposit(unit, slip, event.day)
        else:
            bank.statements(unit, action, event.day)
        run.report("payments", done, len(book.events))


# The demo's bank: one account per currency, each sending its statements in its own format.
_BANK_ACCOUNTS: dict[str, tuple[str, str]] = {
    "USD": ("4401220198", "bai2"),
    "EUR": ("DE89370400440532013000", "camt053"),
    "CAD": ("00120045678", "mt940"),
}
_WRITE = {"bai2": write_bai2, "camt053": write_camt053, "mt940": write_mt940, "ofx": write_ofx}
_SUFFIX = {"bai2": "bai", "camt053": "xml", "mt940": "sta", "ofx": "ofx"}


@dataclass
class _Bank:
    """What the bank sends each morning, written in its format, read back through the importer
    and saved as a clerk's import would be, then matched by the rules. The slip it credited
    short is matched by hand, the difference explained in the match's note."""

    payments: Mapping[int, Payment]
    deposits: Mapping[date, Deposit]
    formats: Mapping[str, str]
    balances: Counter[str] = dataclasses.field(default_factory=Counter)

    def statements(self, unit: UnitOfWork, statement: _BankStatement, day: date) -> None:
        by_currency: defaultdict[str, list[BankEntry]] = defaultdict(list)
        short: list[tuple[str, int]] = []
        for line in statement.lines:
            currency, entry = self._entry(line)
            by_currency[currency].append(entry)
            if line.kind == "short slip" and line.slip is not None:
                short.append((entry.bank_id, self.deposits[line.slip].id))
        for currency, lines in sorted(by_currency.items()):
            account = _BANK_ACCOUNTS[currency][0]
            format_name = self.formats[currency]
            lines.sort(key=lambda e: (e.booked, e.bank_id))
            data = _WRITE[format_name](
                account, currency, lines, opening_minor=self.balances[currency]
            )
            self.balances[currency] += sum(e.amount_minor for e in lines)
            name = f"statement-{account}-{day.isoformat()}.{_SUFFIX[format_name]}"
            import_in_unit(unit, name, data, format_name, registry.parse(data, format_name))
        auto_match_in_unit(unit)
        for bank_id, deposit_id in short:
            line_id = unit.session.scalar(select(BankLine.id).where(BankLine.bank_id == bank_id))
            if line_id is None:  # pragma: no cover - imported just above
                raise RuntimeError(f"demo bank line {bank_id} vanished")
            short_by = Money.from_minor(SHORT_BY_MINOR, "USD").as_decimal()
            note = (
                f"The bank credited {short_by} USD less than deposit {deposit_id}; a check on it "
                "was read short. Asked the bank to trace it."
            )
            match_in_unit(unit, line_id, deposit_id=deposit_id, note=note)

    def _entry(self, line: _BankLine) -> tuple[str, BankEntry]:
        booked = line.booked
        if line.kind == "payment":
            p = self.payments[line.entry]
            reference = p.transfer_reference or p.processor_ref
            return p.currency, BankEntry(
                booked, p.amount_minor, f"TRN{p.id:06d}", reference, p.payer or "Payer"
            )
        if line.kind == "return":
            p = self.payments[line.entry]
            return p.currency, BankEntry(
                booked, -p.amount_minor, f"RTN{p.id:06d}", p.check_number, "Returned item"
            )
        if line.slip is not None:
            d = self.deposits[line.slip]
            amount = d.total_minor - (SHORT_BY_MINOR if line.kind == "short slip" else 0)
            return d.currency, BankEntry(
                booked, amount, f"DEP{d.id:06d}", None, f"Branch deposit, {d.item_count} items"
            )
        if line.kind == "unknown credit":
            return "USD", BankEntry(
                booked, line.amount_minor, f"ACH{booked:%Y%m%d}", None, "Unidentified remitter"
            )
        return "USD", BankEntry(
            booked, line.amount_minor, f"FEE{booked:%Y%m%d}", None, "Monthly service charge"
        )


def _deposit(unit: UnitOfWork, payments: Sequence[Payment], day: date) -> Deposit:
    """The steps of `deposits.create_deposit` inside the demo's transaction: a slip with one
    item per check, each check moved to deposited."""
    currencies = {payment.currency for payment in payments}
    if len(currencies) != 1:  # pragma: no cover - only dollar facilities pay by check
        raise RuntimeError(f"demo deposit of {day} mixes {sorted(currencies)}")
    deposit = Deposit(
        deposit_date=day,
        bank_account=DEFAULT_BANK_ACCOUNT,
        currency=currencies.pop(),
        total_minor=sum(payment.amount_minor for payment in payments),
        item_count=len(payments),
        created_at=unit.now,
        created_by=unit.actor.name,
    )
    unit.session.add(deposit)
    unit.session.flush()
    unit.session.add_all(
        DepositItem(
            deposit_id=deposit.id,
            payment_id=payment.id,
            facility_id=payment.facility_id,
            amount_minor=payment.amount_minor,
        )
        for payment in payments
    )
    for payment in payments:
        move_payment(unit, payment, PaymentStatus.DEPOSITED, f"deposit {deposit.id}", on=day)
    return deposit


# Run in this order; later stages (alerts) append here.
STAGES: tuple[_Stage, ...] = (
    _add_users,
    _add_facilities,
    _add_clients,
    _load_trips_and_bill_months,
    _record_payments,
)


# -- anomalies for the monitoring rules -------------------------------------------------------


def _plant_anomalies(run: _DemoRun) -> None:
    """A handful of payments the anomaly rules (services.monitoring) find, in the last weeks
    before as_of, one kind per facility, each with a memo starting "Anomaly:" naming its rule:
    an amount with an extra zero, an overpayment, a burst of voids, an entry late at night, a
    manager's refused attempt to void their own entry, a check number reused with another
    amount, and one payment entered twice under two references."""
    rng = run.plan.stream("anomalies")
    session = run.unit.session
    last_day = min(run.plan.as_of, run.unit.today) - timedelta(days=1)
    day = _business_day_from(last_day - timedelta(days=12))
    if day > last_day:  # pragma: no cover - twelve days always hold a business day
        return
    next_day = _business_days_after(day, 1)
    if next_day > last_day:
        next_day = day
    codes = [p.code for p in run.plan.profiles if p.currency == "USD"] or [
        p.code for p in run.plan.profiles
    ]
    # The facility with the longest history gets the outlier: its median means the most.
    counts = dict(
        session.execute(
            select(Facility.code, func.count(Payment.id))
            .join(Payment, Payment.facility_id == Facility.id)
            .group_by(Facility.code)
        ).all()
    )
    codes.sort(key=lambda code: (-counts.get(code, 0), code))
    pick = iter(codes * 7)
    serial = iter(range(9001, 9999))

    def facility(code: str) -> Facility:
        return session.scalars(select(Facility).where(Facility.code == code)).one()

    def median(code: str) -> int:
        amounts = sorted(
            session.scalars(
                select(Payment.amount_minor)
                .join(Facility, Facility.id == Payment.facility_id)
                .where(Facility.code == code)
            )
        )
        return amounts[len(amounts) // 2] if amounts else 100_000

    def open_invoices(code: str) -> list[tuple[str, int]]:
        """(number, open amount) of the facility's unpaid invoices, oldest due first."""
        rows = session.execute(
            select(Invoice.id, Invoice.number, Invoice.total_minor)
            .join(Facility, Facility.id == Invoice.facility_id)
            .where(
                Facility.code == code,
                Invoice.status.in_(
                    (InvoiceStatus.ISSUED.value, InvoiceStatus.PARTIALLY_PAID.value)
                ),
            )
            .order_by(Invoice.due_date, Invoice.id)
        ).all()
        taken = live_allocated(session, [row.id for row in rows])
        return [(row.number, row.total_minor - taken.get(row.id, 0)) for row in rows]

    def record(
        actor: Actor,
        code: str,
        minute: int,
        amount: int,
        memo: str,
        *,
        on: date = day,
        method: str = "transfer",
        pays: bool = False,
        check: Mapping[str, str] | None = None,
        override_reason: str | None = None,
    ) -> Payment:
        currency = facility(code).currency
        invoices = open_invoices(code) if pays else []
        paying = (
            ((invoices[0][0], Money.from_minor(min(amount, invoices[0][1]), currency).plain()),)
            if invoices
            else ()
        )
        draft = PaymentDraft(
            facility=code,
            method=method,
            amount=Money.from_minor(amount, currency).plain(),
            received=on,
            payer=facility(code).name,
            memo=f"Anomaly: {memo}",
            allocations=paying,
            check_number=(check or {}).get("check_number"),
            routing_number=(check or {}).get("routing_number"),
            account_number=(check or {}).get("account_number"),
            override_reason=override_reason,
        )
        if method == PaymentMethod.TRANSFER.value:
            rail = _TRANSFER_RAILS[currency]
            draft = dataclasses.replace(
                draft, reference=f"{rail} {on:%y%m}-{code}-{rng.randint(900_000, 999_999):06d}"
            )
        unit = run.acting(actor, on, minutes=minute)
        key = f"demo-{code}-{next(serial):04d}"
        receipt = record_in_unit(unit, draft, PaymentMethod(method), key)
        payment = session.get(Payment, receipt.payment_id)
        if payment is None:  # pragma: no cover - it was inserted in this transaction
            raise RuntimeError(f"demo payment {receipt.payment_id} vanished")
        return payment

    # amount-outlier: an extra zero, on the last day, when the facility's history is longest.
    code = next(pick)
    late = last_day
    while late.weekday() >= 5 or (late.month, late.day) in _HOLIDAYS:
        late -= timedelta(days=1)
    amount = median(code) * 10
    record(_BILLED_BY, code, 10 * 60 + 5, amount, "amount-outlier, an extra zero", on=late)

    # overpayment: twice the usual, against what is owed.
    code = next(pick)
    owed = sum(left for _, left in open_invoices(code))
    record(_BILLED_BY, code, 10 * 60 + 20, owed + max(median(code), 50_000), "overpayment")

    # velocity: four checks entered in error in a quarter of an hour, all voided.
    code = next(pick)
    routing = rng.choice(_ROUTING_NUMBERS)
    account = str(rng.randint(10**9, 10**10 - 1))
    small = max(median(code) // 3, 1_000)
    burst = [
        record(
            _BILLED_BY,
            code,
            13 * 60 + 5 * n,
            small + 100 * n,
            "velocity, four voids in an hour",
            method="check",
            check={
                "check_number": str(rng.randint(50_000, 59_999)),
                "routing_number": routing,
                "account_number": account,
            },
        )
        for n in range(4)
    ]
    for n, payment in enumerate(burst):
        unit = run.acting(_APPROVED_BY, day, minutes=13 * 60 + 30 + 3 * n)
        move_payment(unit, payment, PaymentStatus.VOIDED, "entered in error: test entries", on=day)

    # after-hours: an open invoice paid in full, entered at twenty to eleven at night.
    code = next(pick)
    invoices = open_invoices(code)
    amount = invoices[0][1] if invoices else median(code)
    record(_BILLED_BY, code, 22 * 60 + 40, amount, "after-hours", pays=True)

    # own-payment: a manager enters a check, then tries to void it; the refusal is logged.
    code = next(pick)
    invoices = open_invoices(code)
    amount = invoices[0][1] if invoices else median(code)
    own = record(
        _APPROVED_BY,
        code,
        11 * 60,
        amount,
        "own-payment, the manager tried to void their own entry",
        method="check",
        check={
            "check_number": str(rng.randint(60_000, 69_999)),
            "routing_number": rng.choice(_ROUTING_NUMBERS),
            "account_number": str(rng.randint(10**9, 10**10 - 1)),
        },
        pays=True,
    )
    session.add(
        OperationFailure(
            occurred_at=run.acting(_APPROVED_BY, day, minutes=11 * 60 + 7).now,
            user_name=_APPROVED_BY.name,
            action="payment.transition",
            kind="segregation",
            message=f"{_APPROVED_BY.name} recorded payment {own.id}, so another manager must "
            "void it (segregation of duties).",
            payment_id=own.id,
        )
    )

    # reused-check: one check number entered again, for another amount, as a "second" check.
    code = next(pick)
    invoices = open_invoices(code)
    amount = invoices[0][1] if invoices else median(code)
    check = {
        "check_number": str(rng.randint(70_000, 79_999)),
        "routing_number": rng.choice(_ROUTING_NUMBERS),
        "account_number": str(rng.randint(10**9, 10**10 - 1)),
    }
    record(
        _BILLED_BY,
        code,
        9 * 60 + 50,
        amount,
        "reused-check",
        method="check",
        pays=True,
        check=check,
    )
    record(
        _BILLED_BY,
        code,
        9 * 60 + 55,
        amount // 2 + 1_000,
        "reused-check, the same number again",
        on=next_day,
        method="check",
        override_reason="the payer says this is a second check",
        check=check,
    )

    # near-duplicate: half an invoice entered twice, a day apart, under two references.
    code = next(pick)
    invoices = open_invoices(code)
    half = (invoices[0][1] if invoices else median(code)) // 2
    record(_BILLED_BY, code, 9 * 60 + 30, half, "near-duplicate", pays=True)
    record(
        _BILLED_BY,
        code,
        9 * 60 + 35,
        half,
        "near-duplicate, entered again",
        on=next_day,
        pays=True,
    )
    run.report("anomalies", 1, 1)


# Only with `anomalies`: after every other stage, so they change nothing before them.
ANOMALY_STAGES: tuple[_Stage, ...] = (_plant_anomalies,)
