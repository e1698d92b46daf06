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
    limit: int = 1000,
) -> list[AuditLogEntry]:
    """Entries newest last (sealed ones carry their sequence); reading the log is audited."""

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


def seal(workspace: Workspace) -> SealResult:
    """Seal every committed entry into the chain now."""
    return workspace.seal()


def database_id(workspace: Workspace) -> str:
    def operation(unit: UnitOfWork) -> str:
        value = unit.session.scalar(select(DatabaseIdentity.database_id))
        return value or ""

    return workspace.read(operation)
