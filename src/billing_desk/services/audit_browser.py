"""The audit trail for browsing: keyset pages of entries under a filter (never the whole log),
one entry with its before and after values compared field by field, and everything the same
request did. The pages read only the columns a list shows; an entry's values are read when it
is opened."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Select, or_, select

from billing_desk.db.models import AuditEntry, AuditLink, Base, Facility
from billing_desk.domain.errors import BadInput
from billing_desk.domain.roles import Permission
from billing_desk.services.audit_trail import NOT_AUDITED
from billing_desk.services.facilities import get_facility
from billing_desk.services.unit_of_work import UnitOfWork, Workspace

PAGE_SIZE = 200
Query = Select[*tuple[Any, ...]]
# Values that say how a row is stored, not what it says: shown folded with the unchanged ones.
BOOKKEEPING_FIELDS = frozenset({"content_hash", "version_id"})


@dataclass(frozen=True)
class AuditFilter:
    """What the browser shows; empty fields do not narrow it. `until` is inclusive."""

    facility: str | None = None
    user: str | None = None
    action: str | None = None
    entity_type: str | None = None
    entity_id: str | None = None
    request_id: str | None = None
    since: date | None = None
    until: date | None = None
    text: str | None = None


@dataclass(frozen=True)
class AuditRow:
    entry_id: int
    sequence: int | None
    recorded_at: datetime
    user: str
    role: str | None
    facility: str | None
    action: str
    entity_type: str
    entity_id: str
    request_id: str


@dataclass(frozen=True)
class FieldChange:
    name: str
    before: object
    after: object

    @property
    def changed(self) -> bool:
        return self.before != self.after


@dataclass(frozen=True)
class AuditEntryDetail:
    row: AuditRow
    # "created", "changed" or "deleted" for a row of a table; "event" for an action recorded
    # without a row (a print, a login, a read of the log).
    kind: str
    fields: tuple[FieldChange, ...]
    entry_digest: str | None
    request: tuple[AuditRow, ...] = field(default=())

    @property
    def changed(self) -> tuple[FieldChange, ...]:
        return tuple(f for f in self.fields if f.changed and f.name not in BOOKKEEPING_FIELDS)

    @property
    def restamped(self) -> tuple[FieldChange, ...]:
        """Changed fields that only say how the row is stored (its own hash, its version)."""
        return tuple(f for f in self.fields if f.changed and f.name in BOOKKEEPING_FIELDS)

    @property
    def unchanged(self) -> tuple[FieldChange, ...]:
        return tuple(f for f in self.fields if not f.changed)


def _columns() -> Query:
    query: Query = select(
        AuditEntry.id,
        AuditLink.sequence,
        AuditEntry.recorded_at,
        AuditEntry.user_name,
        AuditEntry.user_role,
        AuditEntry.facility_id,
        AuditEntry.action,
        AuditEntry.entity_type,
        AuditEntry.entity_id,
        AuditEntry.request_id,
    ).outerjoin(AuditLink, AuditLink.entry_id == AuditEntry.id)
    return query


def _filtered(unit: UnitOfWork, query: Query, wanted: AuditFilter) -> Query:
    if wanted.facility:
        query = query.where(AuditEntry.facility_id == get_facility(unit, wanted.facility).id)
    if wanted.user:
        query = query.where(AuditEntry.user_name == wanted.user.strip())
    if wanted.action:
        query = query.where(AuditEntry.action == wanted.action.strip())
    if wanted.entity_type:
        query = query.where(AuditEntry.entity_type == wanted.entity_type.strip())
    if wanted.entity_id:
        query = query.where(AuditEntry.entity_id == wanted.entity_id.strip())
    if wanted.request_id:
        query = query.where(AuditEntry.request_id == wanted.request_id.strip())
    if wanted.since is not None and wanted.until is not None and wanted.since > wanted.until:
        raise BadInput(
            f"The date range ends ({wanted.until}) before it starts ({wanted.since}); change "
            "From or To."
        )
    if wanted.since is not None:
        query = query.where(AuditEntry.recorded_at >= _start_of(wanted.since))
    if wanted.until is not None:
        query = query.where(AuditEntry.recorded_at < _start_of(wanted.until + timedelta(days=1)))
    if wanted.text and wanted.text.strip():
        pattern = f"%{wanted.text.strip()}%"
        query = query.where(
            or_(
                AuditEntry.before.like(pattern),
                AuditEntry.after.like(pattern),
                AuditEntry.entity_id.like(pattern),
            )
        )
    return query


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _rows(unit: UnitOfWork, query: Query) -> list[AuditRow]:
    found = unit.session.execute(query).all()
    wanted_ids = {r.facility_id for r in found if r.facility_id is not None}
    codes: dict[int, str] = {}
    if wanted_ids:
        for facility_id, code in unit.session.execute(
            select(Facility.id, Facility.code).where(Facility.id.in_(wanted_ids))
        ):
            codes[facility_id] = code
    return [
        AuditRow(
            r.id,
            r.sequence,
            r.recorded_at,
            r.user_name,
            r.user_role,
            codes.get(r.facility_id) if r.facility_id is not None else None,
            r.action,
            r.entity_type,
            r.entity_id,
            r.request_id,
        )
        for r in found
    ]


def audit_page(
    workspace: Workspace,
    wanted: AuditFilter,
    *,
    after: int | None = None,
    newest_first: bool = True,
    limit: int = PAGE_SIZE,
) -> list[AuditRow]:
    """One page of entries under `wanted`, continuing past entry id `after` in the chosen
    order (keyset paging: the cost of a page does not grow with how far the person scrolled).
    The first page of a filter is recorded as a read of the log; the pages after it are not."""

    def operation(unit: UnitOfWork) -> list[AuditRow]:
        unit.require(Permission.READ)
        query = _filtered(unit, _columns(), wanted)
        if after is not None:
            query = query.where(AuditEntry.id < after if newest_first else AuditEntry.id > after)
        order = AuditEntry.id.desc() if newest_first else AuditEntry.id.asc()
        return _rows(unit, query.order_by(order).limit(limit))

    rows = workspace.reports.read(operation)
    if after is None and not workspace.read_only:
        workspace.write(
            lambda unit: unit.record_event(
                "audit.read_log",
                "audit_entry",
                "browser",
                detail={k: str(v) for k, v in vars(wanted).items() if v},
            ),
            action="audit.read_log",
        )
    return rows


def _values(text: str | None) -> dict[str, object]:
    if not text:
        return {}
    try:
        loaded = json.loads(text)
    except ValueError:
        return {"value": text}
    return loaded if isinstance(loaded, dict) else {"value": loaded}


def compare(before: Mapping[str, object], after: Mapping[str, object]) -> tuple[FieldChange, ...]:
    """Every field of either side, in the row's own order (then the new ones)."""
    names = list(before) + [n for n in after if n not in before]
    return tuple(FieldChange(n, before.get(n), after.get(n)) for n in names)


def audit_entry(workspace: Workspace, entry_id: int) -> AuditEntryDetail:
    """One entry with its values compared, and the other entries of its request."""

    def operation(unit: UnitOfWork) -> AuditEntryDetail:
        unit.require(Permission.READ)
        found = _rows(unit, _columns().where(AuditEntry.id == entry_id))
        if not found:
            raise BadInput(f"There is no audit entry {entry_id}; check the number.")
        entry = unit.session.get(AuditEntry, entry_id)
        assert entry is not None
        before, after = _values(entry.before), _values(entry.after)
        if entry.entity_type not in Base.metadata.tables or entry.entity_type in NOT_AUDITED:
            kind = "event"
        elif entry.before is None:
            kind = "created"
        elif entry.after is None:
            kind = "deleted"
        else:
            kind = "changed"
        siblings = _rows(
            unit,
            _columns()
            .where(AuditEntry.request_id == entry.request_id)
            .order_by(AuditEntry.id)
            .limit(PAGE_SIZE),
        )
        return AuditEntryDetail(
            found[0], kind, compare(before, after), entry.entry_digest, tuple(siblings)
        )

    return workspace.reports.read(operation)
