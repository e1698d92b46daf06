"""Reading the audit trail: the log an auditor browses, sealing on demand, the database's
identity."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from billing_desk.db.models import AuditEntry, AuditLink, DatabaseIdentity, Facility
from billing_desk.domain.roles import Permission
from billing_desk.services.audit_trail import SealResult
from billing_desk.services.facilities import get_facility
from billing_desk.services.unit_of_work import UnitOfWork, Workspace


@dataclass(frozen=True)
class AuditLogEntry:
    sequence: int | None
    recorded_at: datetime
    user: str
    role: str | None
    facility: str | None
    action: str
    entity_type: str
    entity_id: str
    before: str | None
    after: str | None
    request_id: str


def audit_log(
    workspace: Workspace,
    *,
    facility: str | None = None,
    since: datetime | None = None,
    action: str | None = None,
    user: str | None = None,
    request: str | None = None,
    limit: int = 1000,
) -> list[AuditLogEntry]:
    """Entries newest last (sealed ones carry their sequence); `request` keeps one user action's
    rows; reading the log is audited."""

    def operation(unit: UnitOfWork) -> list[AuditLogEntry]:
        unit.require(Permission.READ)
        codes = {f.id: f.code for f in unit.session.scalars(select(Facility))}
        query = (
            select(AuditEntry, AuditLink.sequence)
            .outerjoin(AuditLink, AuditLink.entry_id == AuditEntry.id)
            .order_by(AuditEntry.id.desc())
            .limit(limit)
        )
        if facility is not None:
            query = query.where(AuditEntry.facility_id == get_facility(unit, facility).id)
        if since is not None:
            query = query.where(AuditEntry.recorded_at >= since)
        if action is not None:
            query = query.where(AuditEntry.action == action)
        if user is not None:
            query = query.where(AuditEntry.user_name == user)
        if request is not None:
            query = query.where(AuditEntry.request_id == request.strip())
        rows = unit.session.execute(query).all()
        return [
            AuditLogEntry(
                sequence,
                e.recorded_at,
                e.user_name,
                e.user_role,
                codes.get(e.facility_id) if e.facility_id is not None else None,
                e.action,
                e.entity_type,
                e.entity_id,
                e.before,
                e.after,
                e.request_id,
            )
            for e, sequence in reversed(rows)
        ]

    entries = workspace.reports.read(operation)
    if not workspace.read_only:
        workspace.write(
            lambda unit: unit.record_event(
                "audit.read_log",
                "audit_entry",
                "log",
                detail={"facility": facility, "rows": len(entries)},
            ),
            action="audit.read_log",
        )
    return entries


@dataclass(frozen=True)
class AuditRequest:
    """One user action (a request) and the rows it changed: what a reader wants first."""

    request_id: str
    started_at: datetime
    user: str
    action: str
    facilities: tuple[str, ...]
    rows: int
    entities: tuple[str, ...]  # "3 payment", "2 allocation", ...


def audit_requests(entries: list[AuditLogEntry]) -> list[AuditRequest]:
    """The entries grouped by request, in the order the requests started; the action named is
    the request's own (the first entry's), the rest counted by entity type."""
    grouped: dict[str, list[AuditLogEntry]] = {}
    for entry in entries:
        grouped.setdefault(entry.request_id, []).append(entry)
    summaries = []
    for request_id, rows in grouped.items():
        kinds: dict[str, int] = {}
        for row in rows:
            kinds[row.entity_type] = kinds.get(row.entity_type, 0) + 1
        summaries.append(
            AuditRequest(
                request_id,
                rows[0].recorded_at,
                rows[0].user,
                rows[0].action,
                tuple(sorted({r.facility for r in rows if r.facility})),
                len(rows),
                tuple(f"{count} {kind}" for kind, count in kinds.items()),
            )
        )
    return summaries


def seal(workspace: Workspace) -> SealResult:
    """Seal every committed entry into the chain now."""
    return workspace.seal()


def database_id(workspace: Workspace) -> str:
    def operation(unit: UnitOfWork) -> str:
        value = unit.session.scalar(select(DatabaseIdentity.database_id))
        return value or ""

    return workspace.read(operation)
