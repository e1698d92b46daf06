"""Demo data: a realistic, deterministic billing history that a newcomer can explore at once.

`load_demo_data` fills an empty database with facilities (some with non-ASCII names), their
clients, months of trips as a dispatch system would export them, the monthly invoices billed
from those trips through the same code path as `billing-desk invoice run`, and one local user
per role. The data is planned in memory first, from random streams derived from the seed alone,
and then written in one transaction, so the same seed and the same as-of date always give the
same rows, timestamps included, and a failure leaves the database as empty as it was.

Later stages (payments, statements, alerts) plug in as further `_Stage`s, each drawing from
its own random stream so that adding one never changes what the earlier stages produce.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import func, select

from billing_desk.db.models import Client, Facility, Invoice, Trip, User
from billing_desk.domain.errors import BadInput, Refused
from billing_desk.domain.money import Money
from billing_desk.domain.periods import Period
from billing_desk.domain.roles import Permission, Role
from billing_desk.domain.states import TripStatus
from billing_desk.domain.trips import TripRecord
from billing_desk.services.facilities import NewFacility, insert_facility
from billing_desk.services.invoices import bill_trips
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
    users: tuple[str, ...]


def load_demo_data(
    workspace: Workspace,
    *,
    seed: int = 7,
    facilities: int = 12,
    months: int = 6,
    as_of: date | None = None,
    progress: Progress | None = None,
) -> DemoSummary:
    """Fill an empty database with demo data as of `as_of` (default today): trips over the
    `months` calendar months before as_of's month, each billed on the 1st of the next month,
    plus this month's unbilled trips up to the day before as_of.

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

    def operation(unit: UnitOfWork) -> DemoSummary:
        _refuse_unless_empty(unit)
        plan = _plan(seed, facilities, months, as_of or unit.today)
        run = _DemoRun(unit, plan, progress or _no_progress)
        for stage in STAGES:
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
# dispatch exports and runs the invoices. Rows carry these names, not the OS login of whoever
# ran the demo, so the data is the same on every machine.
_SET_UP_BY = Actor(Role.ADMIN.value, Role.ADMIN)
_BILLED_BY = Actor(Role.CLERK.value, Role.CLERK)


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
    users: tuple[str, ...] = ()

    def acting(self, actor: Actor, day: date, *, minutes: int) -> UnitOfWork:
        """The unit of work as `actor`, `minutes` after midnight UTC of `day` on the story's
        clock. That clock never passes the real one, so no row is dated in the future."""
        midnight = datetime.combine(day, time(0), tzinfo=UTC)
        moment = min(midnight + timedelta(minutes=minutes), self.unit.now)
        return dataclasses.replace(self.unit, actor=actor, now=moment)

    def summary(self) -> DemoSummary:
        session = self.unit.session

        def count(model: type[Facility] | type[Client] | type[Trip] | type[Invoice]) -> int:
            return session.scalar(select(func.count()).select_from(model)) or 0

        return DemoSummary(count(Facility), count(Client), count(Trip), count(Invoice), self.users)


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


# Run in this order; later stages (payments, statements, alerts) append here.
STAGES: tuple[_Stage, ...] = (
    _add_users,
    _add_facilities,
    _add_clients,
    _load_trips_and_bill_months,
)
