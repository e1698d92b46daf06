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

from sqlalchemy import Select, func, or_, select

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
    if after is None:
        _record_read(workspace, wanted)
    return rows


@dataclass(frozen=True)
class AuditWindow:
    """Entries around a place in the log (an entry, a sequence number, the far end of the list),
    in the list's order, with whether more lie before and after them. `selected` is the entry to
    show; `note` says what the person should know (a missing sequence, filters put aside)."""

    rows: list[AuditRow]
    more_before: bool
    more_after: bool
    selected: int | None
    wanted: AuditFilter
    note: str | None = None


def audit_window(
    workspace: Workspace,
    wanted: AuditFilter,
    *,
    sequence: int | None = None,
    entry_id: int | None = None,
    at_end: bool = False,
    newest_first: bool = True,
    limit: int = PAGE_SIZE,
) -> AuditWindow:
    """A page of entries around the sealed entry `sequence`, around entry `entry_id`, or at the
    far end of the list (`at_end`: the oldest when the newest come first), read by keyset in
    both directions: the cost does not depend on where in the log it lies. An entry that the
    filter leaves out is shown among all entries (the filter is put aside, and `note` says so).
    A sequence whose entry is gone shows the entries around where it was. Refuses a sequence
    the chain never reached."""

    def operation(unit: UnitOfWork) -> AuditWindow:
        unit.require(Permission.READ)
        session = unit.session
        note = None
        anchor = entry_id
        if sequence is not None:
            anchor, note = _entry_at(unit, sequence)
        elif anchor is not None and session.get(AuditEntry, anchor) is None:
            raise BadInput(f"There is no audit entry {anchor}; check the number.")
        shown = wanted
        if anchor is not None and wanted != AuditFilter():
            inside = session.execute(
                _filtered(unit, select(AuditEntry.id), wanted).where(AuditEntry.id == anchor)
            ).first()
            if inside is None:
                shown = AuditFilter()
                note = (note + " " if note else "") + (
                    "It is not among the entries the filters select, so the filters were cleared."
                )

        def page(
            after: int | None, forward: bool, size: int, inclusive: bool = False
        ) -> list[AuditRow]:
            # `forward`: in the list's own order. Entry ids are integers, so "from the anchor
            # on" is "after the id next to it".
            down = newest_first == forward  # descending ids
            query = _filtered(unit, _columns(), shown)
            if after is not None:
                start = after + (1 if down else -1) if inclusive else after
                query = query.where(AuditEntry.id < start if down else AuditEntry.id > start)
            order = AuditEntry.id.desc() if down else AuditEntry.id.asc()
            return _rows(unit, query.order_by(order).limit(size))

        if at_end and anchor is None:
            rows = page(None, False, limit)[::-1]
            return AuditWindow(
                rows, len(rows) == limit, False, rows[-1].entry_id if rows else None, shown, note
            )
        if anchor is None:
            rows = page(None, True, limit)
            return AuditWindow(
                rows, False, len(rows) == limit, rows[0].entry_id if rows else None, shown, note
            )
        half = max(limit // 2, 1)
        before = page(anchor, False, half)[::-1]
        after = page(anchor, True, limit, inclusive=True)
        return AuditWindow(
            before + after, len(before) == half, len(after) == limit, anchor, shown, note
        )

    found = workspace.reports.read(operation)
    _record_read(workspace, found.wanted)
    return found


def _entry_at(unit: UnitOfWork, sequence: int) -> tuple[int, str | None]:
    """The entry sealed at `sequence`, or the nearest present one before it (with a note) when
    its link or its entry is gone."""
    session = unit.session
    last = session.scalar(select(func.max(AuditLink.sequence))) or 0
    if sequence < 1 or sequence > last:
        raise BadInput(
            f"The audit chain has sequence numbers 1 to {last:,}; there is no sequence "
            f"{sequence:,}."
            if last
            else "No entry has been sealed into the audit chain yet."
        )
    found = session.execute(
        select(AuditLink.entry_id, AuditEntry.id)
        .outerjoin(AuditEntry, AuditEntry.id == AuditLink.entry_id)
        .where(AuditLink.sequence == sequence)
    ).first()
    if found is not None and found[1] is not None:
        return int(found[1]), None
    nearest = session.execute(
        select(AuditEntry.id, AuditLink.sequence)
        .join(AuditLink, AuditLink.entry_id == AuditEntry.id)
        .where(AuditLink.sequence < sequence)
        .order_by(AuditLink.sequence.desc())
        .limit(1)
    ).first()
    if nearest is None:
        nearest = session.execute(
            select(AuditEntry.id, AuditLink.sequence)
            .join(AuditLink, AuditLink.entry_id == AuditEntry.id)
            .where(AuditLink.sequence > sequence)
            .order_by(AuditLink.sequence)
            .limit(1)
        ).first()
    if nearest is None:
        raise BadInput(f"No entry of the audit chain is left near sequence {sequence:,}.")
    what = (
        f"Sequence {sequence:,} has no link in the chain (a gap)"
        if found is None
        else f"The entry sealed at sequence {sequence:,} (entry {found[0]}) is gone from the "
        "database"
    )
    return int(nearest[0]), f"{what}; the entries around where it was are shown."


def entry_of_sequence(workspace: Workspace, sequence: int) -> int:
    """The id of the entry sealed at `sequence` (or the nearest left, see `audit_window`)."""

    def operation(unit: UnitOfWork) -> int:
        unit.require(Permission.READ)
        return _entry_at(unit, sequence)[0]

    return workspace.reports.read(operation)


def _record_read(workspace: Workspace, wanted: AuditFilter) -> None:
    if workspace.read_only:
        return
    workspace.write(
        lambda unit: unit.record_event(
            "audit.read_log",
            "audit_entry",
            "browser",
            detail={k: str(v) for k, v in vars(wanted).items() if v},
        ),
        action="audit.read_log",
    )


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
