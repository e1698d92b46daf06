"""Trips: loading what the dispatch system exported, and listing them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from billing_desk.db.models import Client, Facility, Invoice, InvoiceLine, Trip
from billing_desk.domain.errors import BadInput
from billing_desk.domain.money import Money, parse_money
from billing_desk.domain.roles import Permission
from billing_desk.domain.trips import RowProblem, TripFileRejected, TripRecord
from billing_desk.services.facilities import get_facility
from billing_desk.services.unit_of_work import UnitOfWork, Workspace


@dataclass(frozen=True)
class TripInfo:
    external_trip_id: str
    facility: str
    client: str
    service_date: date
    pickup: str
    dropoff: str
    status: str
    fare: Money
    billable: bool
    invoice_number: str | None


@dataclass(frozen=True)
class TripImportResult:
    added: int
    updated: int
    unchanged: int
    skipped: tuple[RowProblem, ...] = field(default=())


def import_trips(
    workspace: Workspace,
    records: Sequence[TripRecord],
    *,
    skip_bad: bool = False,
    problems: Sequence[RowProblem] = (),
) -> TripImportResult:
    """Load parsed trip rows. A row identical to the stored trip changes nothing; a changed row
    updates a trip that is not yet invoiced; a row that would change an invoiced trip's billed
    fields is bad. Any bad row refuses the whole file unless `skip_bad`."""

    def operation(unit: UnitOfWork) -> TripImportResult:
        unit.require(Permission.IMPORT_TRIPS)
        return import_trip_records(unit, records, skip_bad=skip_bad, earlier=problems)

    return workspace.write(operation, action="trip.import")


def import_trip_records(
    unit: UnitOfWork,
    records: Sequence[TripRecord],
    *,
    skip_bad: bool,
    earlier: Sequence[RowProblem],
) -> TripImportResult:
    session = unit.session
    good, problems, existing = _sort_rows(session, records, earlier)
    if problems and not skip_bad:
        raise TripFileRejected(problems)
    clients: dict[tuple[int, str, str | None], Client] = {}
    with session.no_autoflush:
        counts = _write_rows(unit, good, existing, clients)
    session.flush()
    added, updated, unchanged = counts
    return TripImportResult(added, updated, unchanged, tuple(problems))


@dataclass(frozen=True)
class TripRowPreview:
    """One row of a trip file as an import would take it: `outcome` is new, changed,
    unchanged or bad (with `reason`). A good row's fare is money in the facility's currency;
    a bad row keeps the fare as the file wrote it (`fare_text`), since it may not be money."""

    line: int
    trip_id: str
    facility: str
    client: str
    service_date: date | None
    fare: Money | None
    outcome: str
    reason: str | None = None
    fare_text: str = ""


@dataclass(frozen=True)
class TripImportPreview:
    rows: tuple[TripRowPreview, ...]

    def count(self, outcome: str) -> int:
        return sum(1 for row in self.rows if row.outcome == outcome)

    @property
    def bad(self) -> tuple[TripRowPreview, ...]:
        return tuple(row for row in self.rows if row.outcome == "bad")


def preview_trip_import(
    workspace: Workspace,
    records: Sequence[TripRecord],
    problems: Sequence[RowProblem] = (),
) -> TripImportPreview:
    """What importing these rows would do, row by row, without writing anything: the same
    checks as `import_trips` (unknown facility, bad fare, a billed trip that would change),
    plus the rows the file reader already refused."""

    def operation(unit: UnitOfWork) -> TripImportPreview:
        unit.require(Permission.IMPORT_TRIPS)
        session = unit.session
        good, bad, existing = _sort_rows(session, records, problems)
        by_line = {r.line: r for r in records}
        rows = [_preview_good(record, facility, fare, existing) for record, facility, fare in good]
        for problem in bad:
            record = by_line.get(problem.line)
            rows.append(
                TripRowPreview(
                    problem.line,
                    record.external_trip_id if record else "",
                    record.facility_code if record else "",
                    record.client_name if record else "",
                    record.service_date if record else None,
                    None,
                    "bad",
                    problem.reason,
                    record.fare if record else "",
                )
            )
        return TripImportPreview(tuple(sorted(rows, key=lambda r: r.line)))

    return workspace.read(operation)


def _preview_good(
    record: TripRecord,
    facility: Facility,
    fare_minor: int,
    existing: dict[tuple[int, str], Trip],
) -> TripRowPreview:
    trip = existing.get((facility.id, record.external_trip_id))
    if trip is None:
        outcome = "new"
    else:
        stored: tuple[object, ...] = (trip.service_date, trip.pickup, trip.dropoff)
        stored += (trip.status, trip.fare_minor, trip.billable)
        wanted: tuple[object, ...] = (record.service_date, record.pickup, record.dropoff)
        wanted += (record.status.value, fare_minor, record.billable)
        outcome = "unchanged" if stored == wanted else "changed"
    return TripRowPreview(
        record.line,
        record.external_trip_id,
        facility.code,
        record.client_name,
        record.service_date,
        Money.from_minor(fare_minor, facility.currency),
        outcome,
    )


def _sort_rows(
    session: Session, records: Sequence[TripRecord], earlier: Sequence[RowProblem]
) -> tuple[list[tuple[TripRecord, Facility, int]], list[RowProblem], dict[tuple[int, str], Trip]]:
    """The rows an import may write, and the bad ones with their reasons (in line order)."""
    problems = list(earlier)
    facilities = {f.code: f for f in session.scalars(select(Facility))}
    existing = _existing_trips(session, records, facilities)
    billed = _billed_trip_ids(session, [t.id for t in existing.values()])
    good: list[tuple[TripRecord, Facility, int]] = []
    for record in records:
        facility = facilities.get(record.facility_code)
        if facility is None:
            problems.append(RowProblem(record.line, f"unknown facility '{record.facility_code}'."))
            continue
        try:
            fare = parse_money(record.fare, facility.currency)
        except BadInput as err:
            problems.append(RowProblem(record.line, f"fare {err.message}"))
            continue
        trip = existing.get((facility.id, record.external_trip_id))
        if (
            trip is not None
            and trip.id in billed
            and _billed_fields(trip) != _billed_fields_of(record, facility, fare)
        ):
            problems.append(
                RowProblem(
                    record.line,
                    f"trip {record.external_trip_id} is on invoice {billed[trip.id]}; its date, "
                    "status, fare and billable flag cannot change (void the invoice first).",
                )
            )
            continue
        good.append((record, facility, fare.minor))
    return good, sorted(problems, key=lambda p: p.line), existing


def _write_rows(
    unit: UnitOfWork,
    good: Sequence[tuple[TripRecord, Facility, int]],
    existing: dict[tuple[int, str], Trip],
    clients: dict[tuple[int, str, str | None], Client],
) -> tuple[int, int, int]:
    session = unit.session
    added = updated = unchanged = 0
    for record, facility, fare_minor in good:
        client = _client(session, clients, facility, record)
        trip = existing.get((facility.id, record.external_trip_id))
        values = {
            "client_id": client.id,
            "service_date": record.service_date,
            "pickup": record.pickup,
            "dropoff": record.dropoff,
            "status": record.status.value,
            "fare_minor": fare_minor,
            "currency": facility.currency,
            "billable": record.billable,
        }
        if trip is None:
            trip = Trip(
                facility_id=facility.id,
                external_trip_id=record.external_trip_id,
                created_at=unit.now,
                updated_at=unit.now,
                **values,
            )
            session.add(trip)
            existing[(facility.id, record.external_trip_id)] = trip
            added += 1
        elif any(getattr(trip, k) != v for k, v in values.items()):
            for key, value in values.items():
                setattr(trip, key, value)
            trip.updated_at = unit.now
            updated += 1
        else:
            unchanged += 1
    return added, updated, unchanged


def _existing_trips(
    session: Session, records: Sequence[TripRecord], facilities: dict[str, Facility]
) -> dict[tuple[int, str], Trip]:
    wanted: dict[int, set[str]] = {}
    for record in records:
        facility = facilities.get(record.facility_code)
        if facility is not None:
            wanted.setdefault(facility.id, set()).add(record.external_trip_id)
    found: dict[tuple[int, str], Trip] = {}
    for facility_id, ids in wanted.items():
        id_list = sorted(ids)
        for start in range(0, len(id_list), 500):
            chunk = id_list[start : start + 500]
            for trip in session.scalars(
                select(Trip).where(
                    Trip.facility_id == facility_id, Trip.external_trip_id.in_(chunk)
                )
            ):
                found[(facility_id, trip.external_trip_id)] = trip
    return found


def _billed_trip_ids(session: Session, trip_ids: Sequence[int]) -> dict[int, str]:
    """Trip id -> number of the live invoice it is on."""
    billed: dict[int, str] = {}
    for start in range(0, len(trip_ids), 500):
        chunk = trip_ids[start : start + 500]
        rows = session.execute(
            select(InvoiceLine.trip_id, Invoice.number)
            .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
            .where(InvoiceLine.trip_id.in_(chunk), InvoiceLine.released.is_(False))
        )
        billed.update({r.trip_id: r.number for r in rows})
    return billed


def _billed_fields(trip: Trip) -> tuple[object, ...]:
    return (trip.service_date, trip.status, trip.fare_minor, trip.currency, trip.billable)


def _billed_fields_of(record: TripRecord, facility: Facility, fare: Money) -> tuple[object, ...]:
    return (
        record.service_date,
        record.status.value,
        fare.minor,
        facility.currency,
        record.billable,
    )


def _client(
    session: Session,
    cache: dict[tuple[int, str, str | None], Client],
    facility: Facility,
    record: TripRecord,
) -> Client:
    """The facility's client for this row: matched on the dispatch system's client id when it
    gives one, else on the name."""
    key = (facility.id, record.client_name, record.client_ref)
    if key in cache:
        return cache[key]
    query = select(Client).where(Client.facility_id == facility.id)
    if record.client_ref:
        query = query.where(Client.external_ref == record.client_ref)
    else:
        query = query.where(and_(Client.external_ref.is_(None), Client.name == record.client_name))
    client = session.scalars(query.limit(1)).first()
    if client is None:
        client = Client(
            facility_id=facility.id, name=record.client_name, external_ref=record.client_ref
        )
        session.add(client)
        session.flush()
    elif client.name != record.client_name:
        client.name = record.client_name
    cache[key] = client
    return client


def list_trips(
    workspace: Workspace,
    *,
    facility: str | None = None,
    period_start: date | None = None,
    period_end: date | None = None,
    unbilled_only: bool = False,
    limit: int | None = None,
) -> list[TripInfo]:
    def operation(unit: UnitOfWork) -> list[TripInfo]:
        unit.require(Permission.READ)
        live_line = (
            select(InvoiceLine.trip_id, Invoice.number)
            .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
            .where(InvoiceLine.released.is_(False))
            .subquery()
        )
        query = (
            select(Trip, Facility.code, Client.name, live_line.c.number)
            .join(Facility, Facility.id == Trip.facility_id)
            .join(Client, Client.id == Trip.client_id)
            .outerjoin(live_line, live_line.c.trip_id == Trip.id)
            .order_by(Facility.code, Trip.service_date, Trip.external_trip_id)
        )
        if facility is not None:
            query = query.where(Trip.facility_id == get_facility(unit, facility).id)
        if period_start is not None:
            query = query.where(Trip.service_date >= period_start)
        if period_end is not None:
            query = query.where(Trip.service_date <= period_end)
        if unbilled_only:
            query = query.where(live_line.c.number.is_(None))
        if limit is not None:
            query = query.limit(limit)
        return [
            TripInfo(
                trip.external_trip_id,
                code,
                client_name,
                trip.service_date,
                trip.pickup,
                trip.dropoff,
                trip.status,
                Money.from_minor(trip.fare_minor, trip.currency),
                trip.billable,
                number,
            )
            for trip, code, client_name, number in unit.session.execute(query)
        ]

    return workspace.read(operation)
