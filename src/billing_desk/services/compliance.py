"""The compliance score: 0-100 from named, weighted checks, each shown with whether it passed,
the evidence it rests on and what to do. The data of the compliance report (reports issue):
nothing here writes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, and_, cast, exists, func, or_, select
from sqlalchemy.orm import Session, aliased

from billing_desk.db.models import (
    Allocation,
    AuditEntry,
    BankLine,
    BankMatch,
    Checkpoint,
    Deposit,
    DepositItem,
    Discrepancy,
    IdempotencyRecord,
    Invoice,
    OperationFailure,
    Payment,
    PaymentStatusChange,
    ReconciliationRun,
)
from billing_desk.domain.payments import PaymentStatus, contains_card_number
from billing_desk.domain.roles import Permission
from billing_desk.services.idempotency import DEFAULT_KEY_RETENTION_DAYS
from billing_desk.services.unit_of_work import UnitOfWork, Workspace

# How many examples of a failure its evidence names.
EXAMPLES = 5


@dataclass(frozen=True)
class ComplianceSettings:
    verified_within_days: int = 7
    checkpoint_within_days: int = 7
    discrepancy_open_days: int = 14
    deposit_reconciled_days: int = 10
    key_retention_days: int = DEFAULT_KEY_RETENTION_DAYS
    key_purge_grace_days: int = 7


@dataclass(frozen=True)
class CheckResult:
    name: str
    title: str
    passed: bool
    weight: int
    evidence: str
    action: str  # what to do; empty when it passed

    def to_record(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "passed": self.passed,
            "weight": self.weight,
            "evidence": self.evidence,
            "action": self.action,
        }


@dataclass(frozen=True)
class ComplianceReport:
    checked_at: datetime
    score: int
    checks: tuple[CheckResult, ...]

    def to_record(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "checked_at": self.checked_at.isoformat(),
            "checks": [c.to_record() for c in self.checks],
        }


@dataclass(frozen=True)
class _Outcome:
    passed: bool
    evidence: str
    action: str = ""


@dataclass(frozen=True)
class ComplianceCheck:
    name: str
    title: str
    weight: int
    run: Callable[[Session, datetime, ComplianceSettings], _Outcome]


def _since(now: datetime, days: int) -> datetime:
    return now - timedelta(days=days)


def _chain_verified(session: Session, now: datetime, cfg: ComplianceSettings) -> _Outcome:
    row = session.execute(
        select(AuditEntry.recorded_at, AuditEntry.after, AuditEntry.user_name)
        .where(AuditEntry.action == "audit.verify")
        .order_by(AuditEntry.id.desc())
        .limit(1)
    ).first()
    todo = "An auditor runs `billing-desk audit verify`, and any finding is investigated."
    if row is None:
        return _Outcome(False, "The audit chain has never been verified.", todo)
    ok = bool(json.loads(row.after or "{}").get("ok"))
    when = f"{row.recorded_at:%Y-%m-%d %H:%M} UTC by {row.user_name}"
    if not ok:
        return _Outcome(False, f"The last verification ({when}) found problems.", todo)
    if row.recorded_at < _since(now, cfg.verified_within_days):
        return _Outcome(
            False,
            f"The last clean verification was {when}, more than {cfg.verified_within_days} "
            "days ago.",
            todo,
        )
    return _Outcome(True, f"The chain verified clean {when}.")


def _checkpoint_signed(session: Session, now: datetime, cfg: ComplianceSettings) -> _Outcome:
    row = session.execute(
        select(Checkpoint.created_at, Checkpoint.signed_by, Checkpoint.sequence)
        .order_by(Checkpoint.id.desc())
        .limit(1)
    ).first()
    todo = "A manager signs one with `billing-desk audit checkpoint` and keeps the note."
    if row is None:
        return _Outcome(False, "No checkpoint has ever been signed.", todo)
    when = f"{row.created_at:%Y-%m-%d} by {row.signed_by} at sequence {row.sequence}"
    if row.created_at < _since(now, cfg.checkpoint_within_days):
        return _Outcome(
            False,
            f"The last checkpoint was signed {when}, more than {cfg.checkpoint_within_days} "
            "days ago.",
            todo,
        )
    return _Outcome(True, f"The last checkpoint was signed {when}.")


def _discrepancies_resolved(session: Session, now: datetime, cfg: ComplianceSettings) -> _Outcome:
    cutoff = _since(now, cfg.discrepancy_open_days)
    rows = session.execute(
        select(Discrepancy.id, Discrepancy.kind)
        .join(ReconciliationRun, ReconciliationRun.id == Discrepancy.run_id)
        .where(Discrepancy.status == "open", ReconciliationRun.started_at < cutoff)
        .order_by(Discrepancy.id)
    ).all()
    still_open = session.scalar(
        select(func.count()).select_from(Discrepancy).where(Discrepancy.status == "open")
    )
    if rows:
        named = ", ".join(f"{r.id} ({r.kind})" for r in rows[:EXAMPLES])
        return _Outcome(
            False,
            f"{len(rows)} discrepancies have been open more than {cfg.discrepancy_open_days} "
            f"days: {named}.",
            "A manager resolves each with `billing-desk reconcile resolve ID --note TEXT`.",
        )
    return _Outcome(
        True,
        f"No discrepancy is open longer than {cfg.discrepancy_open_days} days "
        f"({still_open or 0} open, all recent).",
    )


def _segregation(session: Session, now: datetime, cfg: ComplianceSettings) -> _Outcome:
    rows = session.execute(
        select(PaymentStatusChange.payment_id, PaymentStatusChange.to_status, Payment.recorded_by)
        .join(Payment, Payment.id == PaymentStatusChange.payment_id)
        .where(
            PaymentStatusChange.changed_by == Payment.recorded_by,
            or_(
                PaymentStatusChange.to_status.in_(
                    (PaymentStatus.VOIDED.value, PaymentStatus.REFUNDED.value)
                ),
                PaymentStatusChange.from_status == PaymentStatus.AWAITING_APPROVAL.value,
            ),
        )
        .order_by(PaymentStatusChange.id)
    ).all()
    refused = session.scalar(
        select(func.count())
        .select_from(OperationFailure)
        .where(OperationFailure.kind == "segregation")
    )
    if rows:
        named = ", ".join(
            f"payment {r.payment_id} {r.to_status} by {r.recorded_by}" for r in rows[:EXAMPLES]
        )
        return _Outcome(
            False,
            f"{len(rows)} voids, refunds or approvals were made by whoever recorded the "
            f"payment: {named}.",
            "Find out how (the database's own rules forbid it); the audit log names who and "
            "when. Review and restore the grants with `billing-desk admin init`.",
        )
    return _Outcome(
        True,
        "Every void, refund and approval was made by someone other than who recorded the "
        f"payment ({refused or 0} attempts to do otherwise were refused).",
    )


def _deposits_reconciled(session: Session, now: datetime, cfg: ComplianceSettings) -> _Outcome:
    cutoff = (now - timedelta(days=cfg.deposit_reconciled_days)).date()
    item = aliased(DepositItem)
    deposit_matched = exists().where(BankMatch.deposit_id == Deposit.id, BankMatch.active.is_(True))
    payments_matched = ~exists().where(
        item.deposit_id == Deposit.id,
        ~exists().where(BankMatch.payment_id == item.payment_id, BankMatch.active.is_(True)),
    )
    rows = session.execute(
        select(Deposit.id, Deposit.deposit_date)
        .where(Deposit.deposit_date < cutoff, ~deposit_matched, ~payments_matched)
        .order_by(Deposit.id)
    ).all()
    total = session.scalar(
        select(func.count()).select_from(Deposit).where(Deposit.deposit_date < cutoff)
    )
    if rows:
        named = ", ".join(f"{r.id} of {r.deposit_date}" for r in rows[:EXAMPLES])
        return _Outcome(
            False,
            f"{len(rows)} of {total} deposits older than {cfg.deposit_reconciled_days} days are "
            f"not matched to a bank line: {named}.",
            "Import the bank statements covering them and run `billing-desk reconcile match "
            "--auto`, then match the rest by hand.",
        )
    return _Outcome(
        True,
        f"All {total or 0} deposits older than {cfg.deposit_reconciled_days} days are matched "
        "to the bank.",
    )


# Free-text columns a person or a bank fills in: where a card number could slip in.
_SCANNED: tuple[tuple[str, Any, Sequence[Any]], ...] = (
    ("payment", Payment.id, (Payment.payer, Payment.memo, Payment.transfer_reference,
                             Payment.processor_ref, Payment.override_reason)),
    ("bank line", BankLine.id, (BankLine.reference, BankLine.counterparty,
                                BankLine.description)),
    ("invoice", Invoice.id, (Invoice.void_reason,)),
    ("status change", PaymentStatusChange.id, (PaymentStatusChange.reason,)),
    ("discrepancy", Discrepancy.id, (Discrepancy.note,)),
)  # fmt: skip


def _no_card_numbers(session: Session, now: datetime, cfg: ComplianceSettings) -> _Outcome:
    found: list[str] = []
    scanned = 0
    for label, key, columns in _SCANNED:
        # Only values with 13 digits or more can hold a card number; the database finds those.
        for row in session.execute(select(key, *columns)):
            for value in row[1:]:
                if not value:
                    continue
                scanned += 1
                if sum(ch.isdigit() for ch in value) >= 13 and contains_card_number(value):
                    found.append(f"{label} {row[0]}")
                    break
    if found:
        return _Outcome(
            False,
            f"{len(found)} rows hold what looks like a full card number: "
            f"{', '.join(found[:EXAMPLES])}.",
            "Have the card processor confirm, then correct the rows through a reversal and "
            "report the exposure as your card-data policy requires.",
        )
    return _Outcome(True, f"No full card number in {scanned} free-text values scanned.")


def _audit_coverage(session: Session, now: datetime, cfg: ComplianceSettings) -> _Outcome:
    missing: list[str] = []
    counted = 0
    for label, model in (("payment", Payment), ("allocation", Allocation), ("invoice", Invoice)):
        table = model.__tablename__
        entry = exists().where(
            and_(
                AuditEntry.entity_type == table,
                AuditEntry.entity_id == cast(model.id, String),
                AuditEntry.before.is_(None),
            )
        )
        counted += session.scalar(select(func.count()).select_from(model)) or 0
        ids = session.scalars(select(model.id).where(~entry).order_by(model.id).limit(EXAMPLES))
        missing += [f"{label} {i}" for i in ids]
    if missing:
        return _Outcome(
            False,
            f"Rows without the audit entry of their creation: {', '.join(missing)}.",
            "Run `billing-desk audit verify` and investigate: rows were written around the "
            "application.",
        )
    return _Outcome(True, f"All {counted} payments, allocations and invoices have their entry.")


def _keys_purged(session: Session, now: datetime, cfg: ComplianceSettings) -> _Outcome:
    days = cfg.key_retention_days + cfg.key_purge_grace_days
    stale = session.scalar(
        select(func.count())
        .select_from(IdempotencyRecord)
        .where(IdempotencyRecord.created_at < _since(now, days))
    )
    if stale:
        return _Outcome(
            False,
            f"{stale} idempotency keys are more than {days} days old (kept "
            f"{cfg.key_retention_days}, purged within {cfg.key_purge_grace_days} more).",
            "An administrator runs `billing-desk maintenance purge-keys` (schedule it daily).",
        )
    return _Outcome(True, f"No idempotency key is older than {days} days.")


CHECKS: tuple[ComplianceCheck, ...] = (
    ComplianceCheck("chain_verified", "audit chain verified recently", 20, _chain_verified),
    ComplianceCheck("checkpoint_signed", "checkpoint signed recently", 15, _checkpoint_signed),
    ComplianceCheck(
        "discrepancies_resolved", "no discrepancy left open", 15, _discrepancies_resolved
    ),
    ComplianceCheck("segregation_of_duties", "segregation of duties respected", 15, _segregation),
    ComplianceCheck(
        "deposits_reconciled", "deposits reconciled with the bank", 10, _deposits_reconciled
    ),
    ComplianceCheck("no_card_numbers", "no full card numbers stored", 10, _no_card_numbers),
    ComplianceCheck("audit_coverage", "every billing row has its audit entry", 10, _audit_coverage),
    ComplianceCheck("keys_purged", "idempotency keys purged on schedule", 5, _keys_purged),
)


def compliance_report(
    workspace: Workspace, settings: ComplianceSettings | None = None
) -> ComplianceReport:
    """Run every check; the score is the sum of the weights of those that passed (the weights
    add up to 100)."""
    cfg = settings or ComplianceSettings()

    def operation(unit: UnitOfWork) -> ComplianceReport:
        unit.require(Permission.READ)
        results = []
        for check in CHECKS:
            outcome = check.run(unit.session, unit.now, cfg)
            results.append(
                CheckResult(
                    check.name,
                    check.title,
                    outcome.passed,
                    check.weight,
                    outcome.evidence,
                    "" if outcome.passed else outcome.action,
                )
            )
        score = sum(r.weight for r in results if r.passed)
        return ComplianceReport(unit.now, score, tuple(results))

    return workspace.reports.read(operation)
