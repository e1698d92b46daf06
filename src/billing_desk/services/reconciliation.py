"""Reconciliation runs: what the books say the bank should have, against what it has, plus the
books' own consistency, for a period. Every difference is stored as a discrepancy with its kind;
a manager resolves each with a note, and closes the run, which seals it: its content hash goes
into the audit trail and it never changes again. Later differences are findings of later runs.

Kinds:
- `unmatched bank credit`: money in at the bank that no payment or deposit accounts for;
- `payment never seen at the bank`: a deposit slip, or a transfer or card payment, with no bank
  line matched to it (checks and cash reach the bank through their deposit), once the bank's
  statements of its currency run `IN_TRANSIT_DAYS` past its date (until then it is in transit);
- `amount mismatch`: a bank line whose reference is a payment's but whose amount is not, or a
  matched line whose amount is not what it is matched to (a match with a difference): raised by
  every run until a manager resolves it;
- `sign mismatch`: a credit matched to money that went out, or a debit matched to money in;
- `match does not fit`: a match the matching rules would refuse today (another currency, a check
  matched without its deposit), with the rule's sentence;
- `payment matched twice`: a payment matched on its own and through its matched deposit slip;
- `matched payment voided or returned`: the bank line says the money arrived, but the payment is
  voided, or returned or charged back with no bank debit matched to the return;
- `unexplained bank debit`: money out at the bank that no return, chargeback or refund accounts
  for (a bank charge is explained by a manager resolving it with a note);
- `duplicate payment`: a payment approved as a deliberate second entry of an instrument whose
  first entry is live too;
- `double-billed trip`: a trip on two invoices that both still bill it;
- `invoice total differs from its lines`;
- `allocation differs from its payment`: more allocated than paid, or money still allocated
  from a payment that is no longer live;
- `integrity hash mismatch`: a payment or invoice whose stored hash no longer matches it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import func, select

from billing_desk.db.models import (
    LINE_MATCHES,
    Allocation,
    BankLine,
    BankMatch,
    Deposit,
    DepositItem,
    Discrepancy,
    Invoice,
    InvoiceLine,
    Payment,
    PaymentStatusChange,
    ReconciliationRun,
)
from billing_desk.domain.bank_matching import (
    DEBIT_STATUSES,
    IN_TRANSIT_DAYS,
    LineFacts,
    judge_deposit,
    judge_payment,
)
from billing_desk.domain.errors import BadInput, Refused
from billing_desk.domain.hashing import canonical_bytes, sha256_hex
from billing_desk.domain.money import Money
from billing_desk.domain.payments import PaymentStatus
from billing_desk.domain.roles import Permission
from billing_desk.services.integrity import invoice_hash, payment_hash
from billing_desk.services.matching import (
    LIVE,
    credit_matched_alone,
    deposit_facts,
    payment_facts,
)
from billing_desk.services.statements import ProgressFn
from billing_desk.services.unit_of_work import UnitOfWork, Workspace

KINDS = (
    "unmatched bank credit",
    "payment never seen at the bank",
    "amount mismatch",
    "sign mismatch",
    "match does not fit",
    "payment matched twice",
    "matched payment voided or returned",
    "unexplained bank debit",
    "duplicate payment",
    "double-billed trip",
    "invoice total differs from its lines",
    "allocation differs from its payment",
    "integrity hash mismatch",
)


@dataclass(frozen=True)
class DiscrepancyInfo:
    id: int
    kind: str
    status: str
    currency: str | None
    expected_minor: int | None
    actual_minor: int | None
    detail: str
    line_id: int | None = None
    payment_id: int | None = None
    deposit_id: int | None = None
    invoice_id: int | None = None
    trip_id: int | None = None
    note: str | None = None
    # The invoice's number, for opening it (not part of the run's sealed record).
    invoice_number: str | None = None


@dataclass(frozen=True)
class RunReport:
    run_id: int
    date_from: date
    date_to: date
    status: str
    discrepancies: tuple[DiscrepancyInfo, ...]
    content_hash: str | None = None

    @property
    def open_count(self) -> int:
        return sum(1 for d in self.discrepancies if d.status == "open")


def run_reconciliation(
    workspace: Workspace, date_from: date, date_to: date, *, progress: ProgressFn | None = None
) -> RunReport:
    """Compare the books with the bank for the period and record what differs. `progress`
    hears of each check and may stop the run by raising, which records nothing."""
    if date_to < date_from:
        raise BadInput("--to is before --from; give the period's first day, then its last.")

    def operation(unit: UnitOfWork) -> RunReport:
        unit.require(Permission.RECONCILE)
        run = ReconciliationRun(
            date_from=date_from,
            date_to=date_to,
            status="open",
            started_at=unit.now,
            started_by=unit.actor.name,
        )
        unit.session.add(run)
        unit.session.flush()
        for finding in _findings(unit, date_from, date_to, progress):
            unit.session.add(Discrepancy(run_id=run.id, status="open", **finding))
        unit.session.flush()
        return _report(unit, run)

    return workspace.write(operation, action="reconcile.run")


def show_run(workspace: Workspace, run_id: int) -> RunReport:
    def operation(unit: UnitOfWork) -> RunReport:
        unit.require(Permission.READ)
        return _report(unit, _run(unit, run_id))

    return workspace.read(operation)


def resolve_discrepancy(workspace: Workspace, discrepancy_id: int, note: str) -> DiscrepancyInfo:
    why = note.strip()
    if not why:
        raise BadInput("A discrepancy is resolved with a note saying what was done; give --note.")

    def operation(unit: UnitOfWork) -> DiscrepancyInfo:
        unit.require(Permission.RESOLVE_DISCREPANCIES)
        found = unit.session.get(Discrepancy, discrepancy_id)
        if found is None:
            raise BadInput(f"There is no discrepancy {discrepancy_id}.")
        run = _run(unit, found.run_id)
        if run.status == "closed":
            raise Refused(
                f"Run {run.id} is closed and sealed; a new run will find what is still wrong."
            )
        if found.status == "resolved":
            raise Refused(
                f"Discrepancy {discrepancy_id} was resolved by {found.resolved_by} already."
            )
        found.status = "resolved"
        found.resolved_at = unit.now
        found.resolved_by = unit.actor.name
        found.note = why
        unit.session.flush()
        return _info(found)

    return workspace.write(operation, action="reconcile.resolve")


def close_run(workspace: Workspace, run_id: int) -> RunReport:
    """Seal a run: its content hash goes into the audit trail and it never changes again."""

    def operation(unit: UnitOfWork) -> RunReport:
        unit.require(Permission.RESOLVE_DISCREPANCIES)
        run = _run(unit, run_id)
        if run.status == "closed":
            raise Refused(f"Run {run_id} was closed by {run.closed_by} already.")
        report = _report(unit, run)
        if report.open_count:
            raise Refused(
                f"Run {run_id} has {report.open_count} open discrepancies; resolve each with "
                "`reconcile resolve ID --note TEXT` first."
            )
        run.status = "closed"
        run.closed_at = unit.now
        run.closed_by = unit.actor.name
        run.content_hash = sha256_hex(canonical_bytes(_sealed_record(report)))
        unit.session.flush()
        unit.record_event(
            "reconcile.close",
            "reconciliation_seal",
            str(run.id),
            detail={"content_hash": run.content_hash, "discrepancies": len(report.discrepancies)},
        )
        return _report(unit, run)

    return workspace.write(operation, action="reconcile.close")


def _sealed_record(report: RunReport) -> dict[str, object]:
    return {
        "run_id": report.run_id,
        "date_from": report.date_from,
        "date_to": report.date_to,
        "discrepancies": [
            {
                "id": d.id,
                "kind": d.kind,
                "currency": d.currency,
                "expected_minor": d.expected_minor,
                "actual_minor": d.actual_minor,
                "detail": d.detail,
                "line_id": d.line_id,
                "payment_id": d.payment_id,
                "deposit_id": d.deposit_id,
                "invoice_id": d.invoice_id,
                "trip_id": d.trip_id,
                "note": d.note,
            }
            for d in report.discrepancies
        ],
    }


def _run(unit: UnitOfWork, run_id: int) -> ReconciliationRun:
    run = unit.session.get(ReconciliationRun, run_id)
    if run is None:
        raise BadInput(f"There is no reconciliation run {run_id}.")
    return run


def _report(unit: UnitOfWork, run: ReconciliationRun) -> RunReport:
    rows = list(
        unit.session.scalars(
            select(Discrepancy).where(Discrepancy.run_id == run.id).order_by(Discrepancy.id)
        )
    )
    invoice_ids = {d.invoice_id for d in rows if d.invoice_id is not None}
    numbers = (
        {
            invoice_id: number
            for invoice_id, number in unit.session.execute(
                select(Invoice.id, Invoice.number).where(Invoice.id.in_(invoice_ids))
            )
        }
        if invoice_ids
        else {}
    )
    return RunReport(
        run.id,
        run.date_from,
        run.date_to,
        run.status,
        tuple(_info(d, numbers.get(d.invoice_id) if d.invoice_id else None) for d in rows),
        run.content_hash,
    )


def _info(d: Discrepancy, invoice_number: str | None = None) -> DiscrepancyInfo:
    return DiscrepancyInfo(
        d.id,
        d.kind,
        d.status,
        d.currency,
        d.expected_minor,
        d.actual_minor,
        d.detail,
        d.line_id,
        d.payment_id,
        d.deposit_id,
        d.invoice_id,
        d.trip_id,
        d.note,
        invoice_number,
    )


# -- the findings -----------------------------------------------------------------------------

Finding = dict[str, object]


def _findings(
    unit: UnitOfWork, date_from: date, date_to: date, progress: ProgressFn | None = None
) -> list[Finding]:
    checks: tuple[tuple[str, Callable[[], list[Finding]]], ...] = (
        ("bank credits", lambda: _unmatched_credits(unit, date_from, date_to)),
        ("money not yet at the bank", lambda: _never_seen(unit, date_from, date_to)),
        ("amounts", lambda: _amount_mismatches(unit, date_from, date_to)),
        ("matches", lambda: _matches_checked(unit, date_from, date_to)),
        ("bank debits", lambda: _unexplained_debits(unit, date_from, date_to)),
        ("duplicate payments", lambda: _duplicate_payments(unit, date_from, date_to)),
        ("trips billed twice", lambda: _double_billed_trips(unit)),
        ("invoice totals", lambda: _invoice_totals(unit)),
        ("allocations", lambda: _allocations(unit)),
        ("content hashes", lambda: _integrity(unit)),
    )
    found: list[Finding] = []
    for done, (what, check) in enumerate(checks):
        if progress is not None:
            progress(done, len(checks), f"Checking {what}")
        found += check()
    if progress is not None:
        progress(len(checks), len(checks), "Checked")
    return found


def _finding(kind: str, detail: str, **fields: object) -> Finding:
    return {"kind": kind, "detail": detail, **fields}


def _unmatched_credits(unit: UnitOfWork, date_from: date, date_to: date) -> list[Finding]:
    rows = unit.session.scalars(
        select(BankLine)
        .where(
            BankLine.booked.between(date_from, date_to),
            BankLine.amount_minor > 0,
            BankLine.id.not_in(select(LINE_MATCHES.c.line_id)),
        )
        .order_by(BankLine.id)
    )
    return [
        _finding(
            "unmatched bank credit",
            _line_words(line),
            line_id=line.id,
            currency=line.currency,
            actual_minor=line.amount_minor,
        )
        for line in rows
    ]


def _line_words(line: BankLine) -> str:
    """A bank line as its statement shows it: date, who (or the bank's text), reference."""
    who = line.counterparty or line.description or ""
    return " ".join(part for part in (line.booked.isoformat(), who, line.reference or "") if part)


def _never_seen(unit: UnitOfWork, date_from: date, date_to: date) -> list[Finding]:
    session = unit.session
    out: list[Finding] = []
    # How far the bank's statements of each currency run: anything younger is in transit.
    latest = select(BankLine.currency, func.max(BankLine.booked)).group_by(BankLine.currency)
    statements_run_to: dict[str, date] = {
        currency: booked for currency, booked in session.execute(latest)
    }

    def in_transit(currency: str, day: date) -> bool:
        last = statements_run_to.get(currency)
        return last is None or last < day + timedelta(days=IN_TRANSIT_DAYS)

    deposits = session.scalars(
        select(Deposit)
        .where(
            Deposit.deposit_date.between(date_from, date_to),
            Deposit.id.not_in(
                select(BankMatch.deposit_id).where(
                    BankMatch.active, BankMatch.deposit_id.is_not(None)
                )
            ),
        )
        .order_by(Deposit.id)
    )
    for deposit in deposits:
        if in_transit(deposit.currency, deposit.deposit_date):
            continue
        out.append(
            _finding(
                "payment never seen at the bank",
                f"deposit {deposit.id} of {deposit.deposit_date.isoformat()} "
                f"({deposit.item_count} items)",
                deposit_id=deposit.id,
                currency=deposit.currency,
                expected_minor=deposit.total_minor,
            )
        )
    payments = session.scalars(
        select(Payment)
        .where(
            Payment.received_date.between(date_from, date_to),
            Payment.method.in_(("transfer", "card")),
            Payment.status.in_(sorted(LIVE)),
            Payment.id.not_in(
                select(BankMatch.payment_id).where(
                    BankMatch.active, BankMatch.payment_id.is_not(None)
                )
            ),
        )
        .order_by(Payment.id)
    )
    for payment in payments:
        if in_transit(payment.currency, payment.received_date):
            continue
        out.append(
            _finding(
                "payment never seen at the bank",
                f"{payment.method} payment {payment.id} received "
                f"{payment.received_date.isoformat()}",
                payment_id=payment.id,
                facility_id=payment.facility_id,
                currency=payment.currency,
                expected_minor=payment.amount_minor,
            )
        )
    return out


def _amount_mismatches(unit: UnitOfWork, date_from: date, date_to: date) -> list[Finding]:
    session = unit.session
    lines = list(
        session.scalars(
            select(BankLine).where(
                BankLine.booked.between(date_from, date_to),
                BankLine.reference.is_not(None),
                BankLine.id.not_in(select(LINE_MATCHES.c.line_id)),
            )
        )
    )
    by_reference: dict[str, list[BankLine]] = defaultdict(list)
    for line in lines:
        by_reference[(line.reference or "").strip().upper()].append(line)
    out: list[Finding] = []
    keys = sorted(k for k in by_reference if k)
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        payments = session.scalars(
            select(Payment).where(func.upper(Payment.transfer_reference).in_(chunk))
        )
        for payment in payments:
            for line in by_reference[(payment.transfer_reference or "").upper()]:
                if line.currency == payment.currency and line.amount_minor != payment.amount_minor:
                    out.append(
                        _finding(
                            "amount mismatch",
                            f"bank line {line.id} carries payment {payment.id}'s reference "
                            f"{payment.transfer_reference}",
                            line_id=line.id,
                            payment_id=payment.id,
                            facility_id=payment.facility_id,
                            currency=line.currency,
                            expected_minor=payment.amount_minor,
                            actual_minor=line.amount_minor,
                        )
                    )
    return out


def _matches_checked(unit: UnitOfWork, date_from: date, date_to: date) -> list[Finding]:
    """Every active match of a line in the period, checked again: a match is never trusted
    because it was once accepted."""
    session = unit.session
    found = session.execute(
        select(BankMatch, BankLine)
        .join(BankLine, BankLine.id == BankMatch.line_id)
        .where(BankMatch.active, BankLine.booked.between(date_from, date_to))
        .order_by(BankLine.id, BankMatch.part)
    ).all()
    # A line matched together with a payment or slip this login cannot see (another
    # facility's) is checked by those who see all of it: its visible parts alone would not
    # add up to it.
    slips = {m.deposit_id for m, _line in found if m.deposit_id is not None}
    # A slip's match is every billing role's to read, the slip only its people's.
    visible_slips = (
        set(session.scalars(select(Deposit.id).where(Deposit.id.in_(slips)))) if slips else set()
    )
    seen: dict[int, int] = defaultdict(int)
    for match, line in found:
        if match.deposit_id is None or match.deposit_id in visible_slips:
            seen[line.id] += 1
    whole = {
        line_id
        for line_id, parts in session.execute(
            select(LINE_MATCHES.c.line_id, func.count())
            .where(LINE_MATCHES.c.line_id.in_(select(BankMatch.line_id).where(BankMatch.active)))
            .group_by(LINE_MATCHES.c.line_id)
        )
        if parts == seen.get(line_id)
    }
    rows = [(match, line) for match, line in found if line.id in whole]
    # A line matched to several together is explained by their sum: its amount is checked
    # once, at its last part, against all of them.
    group_expected: dict[int, int] = defaultdict(int)
    group_names: dict[int, list[str]] = defaultdict(list)
    last_part: dict[int, int] = {}
    for match, line in rows:
        if match.payment_id is not None:
            paid = session.get(Payment, match.payment_id)
            share = 0 if paid is None else paid.amount_minor
            share = -share if line.amount_minor < 0 else share
            group_names[line.id].append(f"payment {match.payment_id}")
        else:
            slip = session.get(Deposit, match.deposit_id)
            share = 0 if slip is None else slip.total_minor
            group_names[line.id].append(f"deposit {match.deposit_id}")
        group_expected[line.id] += share
        last_part[line.id] = match.part
    out: list[Finding] = []
    for match, line in rows:
        facts = LineFacts(line.id, line.currency, line.amount_minor)
        where = {"line_id": line.id, "currency": line.currency}
        payments: list[Payment]
        if match.payment_id is not None:
            payment = session.get(Payment, match.payment_id)
            if payment is None:
                continue
            payments = [payment]
            where |= {"payment_id": payment.id, "facility_id": payment.facility_id}
            what = f"payment {payment.id}"
            # A credit may be matched to a payment that later went back out (returned, refunded):
            # that is judged below, not as a sign mismatch. A debit must be money out, now or
            # before: a returned check presented again keeps the debit of its return.
            out_before = (
                line.amount_minor < 0
                and payment.status not in _OUT
                and _went_out_before(unit, payment)
            )
            money_out = line.amount_minor < 0 and (payment.status in _OUT or out_before)
            expected = -payment.amount_minor if line.amount_minor < 0 else payment.amount_minor
            verdict = (
                None
                if out_before
                else judge_payment(facts, payment_facts(unit, payment), reason="run")
            )
            deposit = None
        else:
            deposit = session.get(Deposit, match.deposit_id)
            if deposit is None:
                continue
            payments = list(
                session.scalars(
                    select(Payment)
                    .join(DepositItem, DepositItem.payment_id == Payment.id)
                    .where(DepositItem.deposit_id == deposit.id)
                    .order_by(Payment.id)
                )
            )
            where |= {"deposit_id": deposit.id}
            what = f"deposit {deposit.id}"
            money_out = False
            expected = deposit.total_minor
            verdict = judge_deposit(facts, deposit_facts(unit, deposit), reason="run")
        if (line.amount_minor < 0) != money_out or line.amount_minor == 0:
            out.append(
                _finding(
                    "sign mismatch",
                    f"bank line {line.id} is a {'debit' if line.amount_minor < 0 else 'credit'} "
                    f"matched to {what}, which is money "
                    f"{'out' if money_out else 'in'} ({match.rule} match by {match.matched_by})",
                    expected_minor=expected,
                    actual_minor=line.amount_minor,
                    **where,
                )
            )
        elif (
            isinstance(verdict, str)
            and not any(p.status in _GONE for p in payments)
            and (deposit is None or deposit.currency != line.currency)
        ):
            out.append(_finding("match does not fit", verdict, **where))
        names = group_names[line.id]
        if len(names) > 1:
            expected, what = group_expected[line.id], f"{', '.join(names)} together"
        if (
            match.part == last_part[line.id]
            and line.amount_minor != expected
            and line.currency == (deposit.currency if deposit is not None else payments[0].currency)
        ):
            out.append(
                _finding(
                    "amount mismatch",
                    f"bank line {line.id} is matched to {what} with a difference of "
                    f"{Money.from_minor(line.amount_minor - expected, line.currency)} "
                    f"({match.rule} match by {match.matched_by})",
                    expected_minor=expected,
                    actual_minor=line.amount_minor,
                    **where,
                )
            )
        if line.amount_minor > 0:
            for payment in payments:
                alone = None if deposit is None else credit_matched_alone(unit, payment.id)
                if alone is not None and alone != line.id:
                    out.append(
                        _finding(
                            "payment matched twice",
                            f"payment {payment.id} is matched to bank line {alone} and, through "
                            f"{what}, to bank line {line.id}",
                            payment_id=payment.id,
                            facility_id=payment.facility_id,
                            expected_minor=payment.amount_minor,
                            actual_minor=payment.amount_minor * 2,
                            **_without_payment(where),
                        )
                    )
                if payment.status in _GONE and not _return_matched(unit, payment):
                    out.append(
                        _finding(
                            "matched payment voided or returned",
                            f"bank line {line.id} says payment {payment.id}'s money arrived "
                            f"(through {what}) but it is {payment.status}"
                            + (
                                "; match the bank's debit for the return"
                                if payment.status != PaymentStatus.VOIDED.value
                                else ""
                            ),
                            payment_id=payment.id,
                            facility_id=payment.facility_id,
                            expected_minor=0,
                            actual_minor=payment.amount_minor,
                            **_without_payment(where),
                        )
                    )
    return out


def _without_payment(where: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in where.items() if k not in ("payment_id", "facility_id")}


_OUT = frozenset(s.value for s in DEBIT_STATUSES)
_GONE = frozenset(
    {
        PaymentStatus.VOIDED.value,
        PaymentStatus.RETURNED.value,
        PaymentStatus.CHARGEBACK.value,
        PaymentStatus.REFUNDED.value,
    }
)


def _went_out_before(unit: UnitOfWork, payment: Payment) -> bool:
    """Whether the payment's money once went back out (a check returned, then presented again)."""
    return (
        unit.session.scalars(
            select(PaymentStatusChange.id).where(
                PaymentStatusChange.payment_id == payment.id,
                PaymentStatusChange.to_status.in_(sorted(_OUT)),
            )
        ).first()
        is not None
    )


def _return_matched(unit: UnitOfWork, payment: Payment) -> bool:
    """A returned payment's debit matched at the bank: the money came in and went out again."""
    return (
        unit.session.scalars(
            select(BankMatch.id)
            .join(BankLine, BankLine.id == BankMatch.line_id)
            .where(
                BankMatch.active,
                BankMatch.payment_id == payment.id,
                BankLine.amount_minor < 0,
            )
        ).first()
        is not None
    )


def _unexplained_debits(unit: UnitOfWork, date_from: date, date_to: date) -> list[Finding]:
    rows = unit.session.scalars(
        select(BankLine)
        .where(
            BankLine.booked.between(date_from, date_to),
            BankLine.amount_minor < 0,
            BankLine.id.not_in(select(LINE_MATCHES.c.line_id)),
        )
        .order_by(BankLine.id)
    )
    return [
        _finding(
            "unexplained bank debit",
            _line_words(line),
            line_id=line.id,
            currency=line.currency,
            actual_minor=line.amount_minor,
        )
        for line in rows
    ]


def _duplicate_payments(unit: UnitOfWork, date_from: date, date_to: date) -> list[Finding]:
    session = unit.session
    seconds = session.scalars(
        select(Payment).where(
            Payment.duplicate_of_id.is_not(None),
            Payment.received_date.between(date_from, date_to),
            Payment.status.in_(sorted(LIVE)),
        )
    )
    out: list[Finding] = []
    for payment in seconds:
        first = session.get(Payment, payment.duplicate_of_id)
        if first is not None and first.status in LIVE:
            out.append(
                _finding(
                    "duplicate payment",
                    f"payment {payment.id} was entered again after payment {first.id} "
                    f"({payment.override_reason or 'no reason'}); both are live",
                    payment_id=payment.id,
                    facility_id=payment.facility_id,
                    currency=payment.currency,
                    expected_minor=first.amount_minor,
                    actual_minor=payment.amount_minor,
                )
            )
    return out


def _double_billed_trips(unit: UnitOfWork) -> list[Finding]:
    rows = unit.session.execute(
        select(InvoiceLine.trip_id, InvoiceLine.facility_id, func.count())
        .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
        .where(InvoiceLine.released.is_(False), Invoice.status != "void")
        .group_by(InvoiceLine.trip_id, InvoiceLine.facility_id)
        .having(func.count() > 1)
    )
    return [
        _finding(
            "double-billed trip",
            f"trip {trip_id} is on {count} invoices that bill it",
            trip_id=trip_id,
            facility_id=facility_id,
        )
        for trip_id, facility_id, count in rows
    ]


def _invoice_totals(unit: UnitOfWork) -> list[Finding]:
    lines = (
        select(InvoiceLine.invoice_id, func.sum(InvoiceLine.amount_minor).label("total"))
        .group_by(InvoiceLine.invoice_id)
        .subquery()
    )
    rows = unit.session.execute(
        select(Invoice, func.coalesce(lines.c.total, 0))
        .outerjoin(lines, lines.c.invoice_id == Invoice.id)
        .where(Invoice.status != "void", Invoice.total_minor != func.coalesce(lines.c.total, 0))
    )
    return [
        _finding(
            "invoice total differs from its lines",
            f"invoice {invoice.number}",
            invoice_id=invoice.id,
            facility_id=invoice.facility_id,
            currency=invoice.currency,
            expected_minor=int(total),
            actual_minor=invoice.total_minor,
        )
        for invoice, total in rows
    ]


def _allocations(unit: UnitOfWork) -> list[Finding]:
    allocated = (
        select(Allocation.payment_id, func.sum(Allocation.amount_minor).label("allocated"))
        .where(Allocation.released.is_(False))
        .group_by(Allocation.payment_id)
        .subquery()
    )
    rows = unit.session.execute(
        select(Payment, allocated.c.allocated)
        .join(allocated, allocated.c.payment_id == Payment.id)
        .where((allocated.c.allocated > Payment.amount_minor) | Payment.status.not_in(sorted(LIVE)))
    )
    return [
        _finding(
            "allocation differs from its payment",
            f"payment {payment.id} ({payment.status}) has {int(total)} allocated",
            payment_id=payment.id,
            facility_id=payment.facility_id,
            currency=payment.currency,
            expected_minor=payment.amount_minor if payment.status in LIVE else 0,
            actual_minor=int(total),
        )
        for payment, total in rows
    ]


def _integrity(unit: UnitOfWork) -> list[Finding]:
    session = unit.session
    out: list[Finding] = []
    for payment in session.scalars(select(Payment).order_by(Payment.id)):
        if payment.content_hash != payment_hash(session, payment):
            out.append(
                _finding(
                    "integrity hash mismatch",
                    f"payment {payment.id} no longer matches its stored hash",
                    payment_id=payment.id,
                    facility_id=payment.facility_id,
                )
            )
    for invoice in session.scalars(select(Invoice).order_by(Invoice.id)):
        if invoice.content_hash != invoice_hash(session, invoice):
            out.append(
                _finding(
                    "integrity hash mismatch",
                    f"invoice {invoice.number} no longer matches its stored hash",
                    invoice_id=invoice.id,
                    facility_id=invoice.facility_id,
                )
            )
    return out
