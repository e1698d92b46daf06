"""Matching bank lines to the money they are: recorded payments and deposit slips.

Automatic rules, in order, each taking only an unambiguous answer (one line, one candidate):
1. `reference`: the line's reference (or bank id) is a payment's transfer reference, processor
   reference or check number, and the amounts are equal;
2. `deposit`: a credit equals a deposit slip's total within the date window after its date (one
   bank line for several checks);
3. `amount-window`: a credit equals one live payment's amount (transfers and cards, whose money
   reaches the bank on its own) received within the date window;
4. `return`: a debit of a returned or charged-back payment's amount within the window.
Anything else is left for a person (`match_line`). Candidates are found by index (reference,
then currency and amount over the lines' own date span), never by comparing every line with
every payment. Each match stores its rule and the fields that agreed, and who confirmed it (the
person who ran the matching); unmatching keeps the row, marked inactive, with who and why.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from difflib import SequenceMatcher
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, or_, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstrumentedAttribute

from billing_desk.db.models import (
    LINE_MATCHES,
    BankLine,
    BankMatch,
    Deposit,
    DepositItem,
    Facility,
    Payment,
)
from billing_desk.domain.bank_matching import (
    CREDIT,
    DEBIT,
    DepositFacts,
    LineFacts,
    PaymentFacts,
    clearing_move,
    direction_of,
    judge_deposit,
    judge_payment,
    unclearing_move,
)
from billing_desk.domain.errors import BadInput, Refused
from billing_desk.domain.hashing import canonical_bytes
from billing_desk.domain.money import Money, parse_money
from billing_desk.domain.payments import LIVE_STATUSES, PaymentMethod, PaymentStatus
from billing_desk.domain.roles import Permission
from billing_desk.services.payments import move_payment
from billing_desk.services.statements import ProgressFn
from billing_desk.services.unit_of_work import UnitOfWork, Workspace

DEFAULT_WINDOW_DAYS = 5
# Statuses whose money left the bank again: their debit lines match them.
RETURN_STATUSES = frozenset({PaymentStatus.RETURNED.value, PaymentStatus.CHARGEBACK.value})
LIVE = frozenset(s.value for s in LIVE_STATUSES)
_CHUNK = 500
# Progress is told every this many lines (and at the end): often enough to answer Cancel.
_TICK = 50


@dataclass(frozen=True)
class MatchInfo:
    line_id: int
    rule: str
    payment_id: int | None
    deposit_id: int | None
    detail: dict[str, object]


@dataclass(frozen=True)
class MatchSummary:
    matched: tuple[MatchInfo, ...]
    unmatched_lines: int
    ambiguous_lines: int
    # The lines still unmatched after the rules ran: a person's work list.
    left_line_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class LineInfo:
    id: int
    statement_id: int
    booked: date
    amount_minor: int
    currency: str
    reference: str | None
    counterparty: str | None
    bank_id: str | None
    rule: str | None
    payment_id: int | None
    deposit_id: int | None
    # The bank's own text for the line (a BAI2 detail's text, an MT940 :86:), when it has one.
    description: str | None = None
    # Matched to several together: the targets after the first ("payment 7", "deposit 3").
    also: tuple[str, ...] = ()
    # Matched to a payment or slip this login cannot see (another facility's, on a shared
    # database): the line is taken, and by what is that facility's business.
    matched_elsewhere: bool = False

    @property
    def matched(self) -> bool:
        return self.payment_id is not None or self.deposit_id is not None or self.matched_elsewhere


def list_lines(
    workspace: Workspace,
    *,
    statement_id: int | None = None,
    unmatched: bool = False,
    date_from: date | None = None,
    date_to: date | None = None,
) -> list[LineInfo]:
    """Bank lines with their ids and what each is matched to, oldest first."""
    if date_from is not None and date_to is not None and date_to < date_from:
        raise BadInput("--to is before --from; give the first day, then the last.")

    def operation(unit: UnitOfWork) -> list[LineInfo]:
        unit.require(Permission.READ)
        # Whether a line is taken comes from the provider-wide view; what it is matched to
        # from the matches this login may read.
        taken = select(LINE_MATCHES.c.line_id).where(LINE_MATCHES.c.part == 1).subquery()
        query = (
            select(BankLine, BankMatch, taken.c.line_id)
            .outerjoin(
                BankMatch,
                and_(BankMatch.line_id == BankLine.id, BankMatch.active, BankMatch.part == 1),
            )
            .outerjoin(taken, taken.c.line_id == BankLine.id)
            .order_by(BankLine.booked, BankLine.id)
        )
        if statement_id is not None:
            query = query.where(BankLine.statement_id == statement_id)
        if unmatched:
            query = query.where(taken.c.line_id.is_(None))
        if date_from is not None:
            query = query.where(BankLine.booked >= date_from)
        if date_to is not None:
            query = query.where(BankLine.booked <= date_to)
        rows = unit.session.execute(query).all()
        # The other parts of lines matched to several payments or slips together.
        also: dict[int, list[str]] = defaultdict(list)
        if not unmatched:
            for match in unit.session.scalars(
                select(BankMatch)
                .where(BankMatch.active, BankMatch.part > 1)
                .order_by(BankMatch.line_id, BankMatch.part)
            ):
                also[match.line_id].append(_target_name(match.payment_id, match.deposit_id))
        return [
            LineInfo(
                line.id,
                line.statement_id,
                line.booked,
                line.amount_minor,
                line.currency,
                line.reference,
                line.counterparty,
                line.bank_id,
                match.rule if match is not None else None,
                match.payment_id if match is not None else None,
                match.deposit_id if match is not None else None,
                line.description,
                tuple(also.get(line.id, ())),
                matched_elsewhere=match is None and taken_id is not None,
            )
            for line, match, taken_id in rows
        ]

    return workspace.read(operation)


def auto_match(
    workspace: Workspace,
    *,
    window_days: int = DEFAULT_WINDOW_DAYS,
    progress: ProgressFn | None = None,
) -> MatchSummary:
    """Match every unmatched bank line that one rule matches unambiguously. `progress` hears
    of the lines weighed (twice: by reference, then by the other rules) and may stop the run
    by raising, which writes nothing."""
    if not 0 <= window_days <= 60:
        raise BadInput("The date window is 0 to 60 days; give --window-days in that range.")

    def operation(unit: UnitOfWork) -> MatchSummary:
        unit.require(Permission.RECONCILE)
        return _auto_match(unit, timedelta(days=window_days), progress)

    return workspace.write(operation, action="reconcile.match")


def auto_match_in_unit(unit: UnitOfWork, *, window_days: int = DEFAULT_WINDOW_DAYS) -> MatchSummary:
    """`auto_match` inside the caller's unit of work (the demo's morning statements)."""
    return _auto_match(unit, timedelta(days=window_days))


def match_line(
    workspace: Workspace,
    line_id: int,
    *,
    payment_id: int | None = None,
    deposit_id: int | None = None,
    note: str | None = None,
) -> MatchInfo:
    """A person's match of one bank line to one payment or deposit."""
    if (payment_id is None) == (deposit_id is None):
        raise BadInput("Match a bank line to one payment (--payment) or one deposit (--deposit).")

    def operation(unit: UnitOfWork) -> MatchInfo:
        unit.require(Permission.RECONCILE)
        return match_in_unit(unit, line_id, payment_id=payment_id, deposit_id=deposit_id, note=note)

    return workspace.write(operation, action="reconcile.match_manual")


def match_in_unit(
    unit: UnitOfWork,
    line_id: int,
    *,
    payment_id: int | None = None,
    deposit_id: int | None = None,
    note: str | None = None,
) -> MatchInfo:
    """`match_line` inside the caller's unit of work (the demo's bank matches by hand)."""
    session = unit.session
    # Locked so two clerks matching the same line serialise; the partial unique indexes
    # settle a race for the same payment.
    _serialise(unit, "bank_line", line_id)
    line = session.get(BankLine, line_id)
    if line is None:
        raise BadInput(f"There is no bank line {line_id}; `reconcile lines` lists them.")
    why = (note or "").strip() or None
    facts = LineFacts(line.id, line.currency, line.amount_minor)
    if payment_id is not None:
        payment = session.scalars(
            select(Payment).where(Payment.id == payment_id).with_for_update()
        ).first()
        if payment is None:
            raise BadInput(f"There is no payment {payment_id}.")
        verdict = judge_payment(facts, payment_facts(unit, payment), reason=why)
        target: dict[str, object] = {"payment_amount_minor": payment.amount_minor}
    else:
        _serialise(unit, "deposit", int(deposit_id or 0))
        deposit = session.get(Deposit, deposit_id)
        if deposit is None:
            raise BadInput(f"There is no deposit {deposit_id}.")
        verdict = judge_deposit(facts, deposit_facts(unit, deposit), reason=why)
        target = {"deposit_total_minor": deposit.total_minor}
    # After the locks: a clerk who lost a race reads the winner's match here.
    _refuse_if_matched(
        unit,
        line_id=line_id,
        direction=direction_of(line.amount_minor),
        payment_id=payment_id,
        deposit_id=deposit_id,
    )
    if isinstance(verdict, str):
        raise Refused(verdict)
    detail: dict[str, object] = {
        "line_amount_minor": line.amount_minor,
        **target,
        "difference_minor": verdict.difference_minor,
        "note": why,
    }
    rule = "manual with difference" if verdict.difference_minor else "manual"
    return _add(unit, line, rule, payment_id, deposit_id, detail)


def match_together(
    workspace: Workspace,
    line_id: int,
    *,
    payment_ids: Sequence[int] = (),
    deposit_ids: Sequence[int] = (),
    note: str | None = None,
) -> MatchInfo:
    """A person's match of one bank line to several payments or deposit slips that together
    are its money (a card processor's payout of a day's payments, two slips credited as one).
    Each must fit the line on its own terms; their sum must be the line's amount, or the match
    is a match with a difference and needs `note`. Returns the first part's match."""

    def operation(unit: UnitOfWork) -> MatchInfo:
        unit.require(Permission.RECONCILE)
        return match_together_in_unit(
            unit, line_id, payment_ids=payment_ids, deposit_ids=deposit_ids, note=note
        )

    return workspace.write(operation, action="reconcile.match_manual")


def match_together_in_unit(
    unit: UnitOfWork,
    line_id: int,
    *,
    payment_ids: Sequence[int] = (),
    deposit_ids: Sequence[int] = (),
    note: str | None = None,
) -> MatchInfo:
    targets = [("payment", int(i)) for i in payment_ids] + [
        ("deposit", int(i)) for i in deposit_ids
    ]
    if len(set(targets)) != len(targets):
        raise BadInput("A payment or deposit is given twice; give each once.")
    if len(targets) == 1:
        kind, only = targets[0]
        return match_in_unit(
            unit,
            line_id,
            payment_id=only if kind == "payment" else None,
            deposit_id=only if kind == "deposit" else None,
            note=note,
        )
    if not targets:
        raise BadInput("Match a bank line to payments (--payment) or deposits (--deposit).")
    session = unit.session
    _serialise(unit, "bank_line", line_id)
    line = session.get(BankLine, line_id)
    if line is None:
        raise BadInput(f"There is no bank line {line_id}; `reconcile lines` lists them.")
    if line.amount_minor == 0:
        raise Refused(f"Bank line {line.id} is for zero; there is no money to match.")
    why = (note or "").strip() or None
    sign = 1 if line.amount_minor > 0 else -1
    direction = direction_of(line.amount_minor)
    parts: list[tuple[str, int, int]] = []
    # Locked in one order, so two people choosing overlapping sets cannot deadlock.
    for kind, ident in sorted(targets):
        if kind == "payment":
            payment = session.scalars(
                select(Payment).where(Payment.id == ident).with_for_update()
            ).first()
            if payment is None:
                raise BadInput(f"There is no payment {ident}.")
            # Judged as if the line were this payment's share: every rule but the amount.
            verdict = judge_payment(
                _share(line, payment.amount_minor), payment_facts(unit, payment), reason=None
            )
            amount = payment.amount_minor
        else:
            _serialise(unit, "deposit", ident)
            deposit = session.get(Deposit, ident)
            if deposit is None:
                raise BadInput(f"There is no deposit {ident}.")
            verdict = judge_deposit(
                _share(line, deposit.total_minor), deposit_facts(unit, deposit), reason=None
            )
            amount = deposit.total_minor
        if isinstance(verdict, str):
            raise Refused(verdict)
        parts.append((kind, ident, amount))
    _refuse_if_matched(unit, line_id=line.id, direction=direction, payment_id=None, deposit_id=None)
    for kind, ident, _amount in parts:
        _refuse_if_matched(
            unit,
            line_id=line.id,
            direction=direction,
            payment_id=ident if kind == "payment" else None,
            deposit_id=ident if kind == "deposit" else None,
        )
    total = sum(amount for _kind, _ident, amount in parts)
    difference = line.amount_minor - sign * total
    if difference and not why:
        shown = Money.from_minor(line.amount_minor, line.currency).format()
        together = Money.from_minor(sign * total, line.currency).format()
        raise Refused(
            f"Bank line {line.id} is {shown} and the {len(parts)} chosen add up to {together}; "
            "match them only as a match with a difference, giving the reason with --note."
        )
    detail: dict[str, object] = {
        "line_amount_minor": line.amount_minor,
        "together": [[kind, ident, amount] for kind, ident, amount in parts],
        "total_minor": total,
        "difference_minor": difference,
        "note": why,
    }
    rule = "manual with difference" if difference else "manual"
    first: MatchInfo | None = None
    for part, (kind, ident, _amount) in enumerate(parts, start=1):
        info = _add(
            unit,
            line,
            rule,
            ident if kind == "payment" else None,
            ident if kind == "deposit" else None,
            detail,
            part=part,
        )
        first = first or info
    assert first is not None
    return first


def unmatch_line(workspace: Workspace, line_id: int, reason: str) -> MatchInfo:
    why = reason.strip()
    if not why:
        raise BadInput("Say why the match is wrong with --reason.")

    def operation(unit: UnitOfWork) -> MatchInfo:
        unit.require(Permission.RECONCILE)
        # Every part of the line's match goes together: it was one person's decision.
        matches = list(
            unit.session.scalars(
                select(BankMatch)
                .where(BankMatch.line_id == line_id, BankMatch.active)
                .order_by(BankMatch.part)
            )
        )
        parts = unit.session.scalar(
            select(func.count()).select_from(LINE_MATCHES).where(LINE_MATCHES.c.line_id == line_id)
        )
        if not parts:
            raise Refused(f"Bank line {line_id} is not matched.")
        unseen_slip = any(
            m.deposit_id is not None and unit.session.get(Deposit, m.deposit_id) is None
            for m in matches
        )
        if len(matches) != parts or unseen_slip:
            # The match (or a part of it) names a payment or slip this login cannot see.
            raise Refused(
                f"Bank line {line_id} is matched to another facility's payment or deposit slip; "
                "a person who works for that facility unmatches it."
            )
        for match in matches:
            match.active = False
            match.unmatched_at = unit.now
            match.unmatched_by = unit.actor.name
            match.unmatch_reason = why
        unit.session.flush()
        line = unit.session.get(BankLine, line_id)
        if line is not None and line.amount_minor > 0:
            for match in matches:
                for payment in _payments_of(unit, match.payment_id, match.deposit_id):
                    back = unclearing_move(
                        PaymentMethod(payment.method), PaymentStatus(payment.status)
                    )
                    if back is not None:
                        move_payment(
                            unit,
                            payment,
                            back,
                            f"bank line {line_id} unmatched: {why}",
                            on=unit.today,
                        )
        first = matches[0]
        return MatchInfo(line_id, first.rule, first.payment_id, first.deposit_id, {})

    return workspace.write(operation, action="reconcile.unmatch")


@dataclass(frozen=True)
class Candidate:
    """Something a bank line could be matched to, with why: the rule that proposes it and the
    fields that agree. `fits` is False (with `refusal`) when a hand match would be refused."""

    rank: int
    rule: str
    payment_id: int | None
    deposit_id: int | None
    amount_minor: int
    currency: str
    day: date
    payer: str | None
    agreeing: tuple[str, ...]
    fits: bool
    refusal: str | None
    # Whether it may be one of several matched together (every rule but the amount holds),
    # and if not, why.
    fits_together: bool = True
    refusal_together: str | None = None


def candidates(
    workspace: Workspace,
    line_id: int,
    *,
    window_days: int = DEFAULT_WINDOW_DAYS,
    limit: int = 10,
    search: str | None = None,
) -> list[Candidate]:
    """Ranked candidates for one line: exact reference, then exact amount, then nearest date,
    then payer similarity. With `search`, any payment or deposit slip a person looks for by
    hand, whatever its date: its number, a reference, check number or payer containing the
    text, or an amount equal to it."""

    def operation(unit: UnitOfWork) -> list[Candidate]:
        unit.require(Permission.READ)
        line = unit.session.get(BankLine, line_id)
        if line is None:
            raise BadInput(f"There is no bank line {line_id}; `reconcile lines` lists them.")
        wanted = (search or "").strip()
        if wanted:
            return _searched(unit, line, wanted, timedelta(days=window_days), limit)
        return _candidates(unit, line, timedelta(days=window_days), limit)

    return workspace.read(operation)


def _searched(
    unit: UnitOfWork, line: BankLine, text: str, window: timedelta, limit: int
) -> list[Candidate]:
    session = unit.session
    like = f"%{text.replace('%', '').replace('_', '')}%"
    clauses: list[ColumnElement[bool]] = [
        Payment.transfer_reference.ilike(like),
        Payment.processor_ref.ilike(like),
        Payment.check_number.ilike(like),
        Payment.payer.ilike(like),
        Facility.code.ilike(like),
        Facility.name.ilike(like),
    ]
    deposit_clauses: list[ColumnElement[bool]] = []
    number = text.lstrip("#")
    if number.isdigit():
        clauses.append(Payment.id == int(number))
        deposit_clauses.append(Deposit.id == int(number))
    try:
        amount: int | None = parse_money(text, line.currency, allow_negative=True).minor
    except BadInput:
        amount = None
    if amount is not None:
        clauses.append(Payment.amount_minor == abs(amount))
        deposit_clauses.append(Deposit.total_minor == abs(amount))
    payments = list(
        session.scalars(
            select(Payment)
            .join(Facility, Facility.id == Payment.facility_id)
            .where(Payment.currency == line.currency, or_(*clauses))
            .order_by(Payment.received_date.desc(), Payment.id.desc())
            .limit(limit)
        )
    )
    deposits = (
        list(
            session.scalars(
                select(Deposit)
                .where(Deposit.currency == line.currency, or_(*deposit_clauses))
                .order_by(Deposit.deposit_date.desc())
                .limit(limit)
            )
        )
        if deposit_clauses
        else []
    )
    return _ranked(unit, line, payments, deposits, window, limit, searched=True)


def _candidates(unit: UnitOfWork, line: BankLine, window: timedelta, limit: int) -> list[Candidate]:
    """The payments and slips worth weighing, fetched rule by rule and nearest first, so a
    line's candidates cost the same on ten thousand payments as on ten million."""
    session = unit.session
    keys = _line_keys(line)
    wide = window * 6  # look further than the rules do: a person decides
    each = max(limit * 5, 50)
    amount = abs(line.amount_minor)
    paid = select(Payment).where(Payment.currency == line.currency)
    payments: dict[int, Payment] = {}
    queries = [
        *_nearest(
            paid.where(Payment.amount_minor == amount),
            Payment.received_date,
            line.booked,
            wide,
            each,
        ),
        *_nearest(paid, Payment.received_date, line.booked, window, each),
    ]
    if keys:
        queries.insert(
            0,
            paid.where(
                or_(
                    Payment.transfer_reference.in_(keys),
                    Payment.processor_ref.in_(keys),
                    Payment.check_number.in_(keys),
                )
            ).limit(each),
        )
    for query in queries:
        for payment in session.scalars(query):
            payments.setdefault(payment.id, payment)
    slips = select(Deposit).where(Deposit.currency == line.currency)
    deposits: dict[int, Deposit] = {}
    for query in (
        *_nearest(
            slips.where(Deposit.total_minor == amount),
            Deposit.deposit_date,
            line.booked,
            wide,
            each,
        ),
        *_nearest(slips, Deposit.deposit_date, line.booked, window, each),
    ):
        for deposit in session.scalars(query):
            deposits.setdefault(deposit.id, deposit)
    return _ranked(
        unit, line, list(payments.values()), list(deposits.values()), window, limit, searched=False
    )


def _nearest(
    query: Select[Any],
    day: InstrumentedAttribute[date],
    around: date,
    reach: timedelta,
    each: int,
) -> tuple[Select[Any], Select[Any]]:
    """`query`'s rows nearest to `around` within `reach`: on and after it, and before it."""
    return (
        query.where(day.between(around, around + reach)).order_by(day.asc()).limit(each),
        query.where(day.between(around - reach, around - timedelta(days=1)))
        .order_by(day.desc())
        .limit(each),
    )


def _ranked(
    unit: UnitOfWork,
    line: BankLine,
    payments: list[Payment],
    deposits: list[Deposit],
    window: timedelta,
    limit: int,
    *,
    searched: bool,
) -> list[Candidate]:
    session = unit.session
    keys = _line_keys(line)
    facts = LineFacts(line.id, line.currency, line.amount_minor)
    payer = (line.counterparty or "").lower()
    scored: list[tuple[tuple[int, int, int, float], Candidate]] = []

    def similarity(name: str | None) -> float:
        if not payer or not name:
            return 0.0
        return SequenceMatcher(None, payer, name.lower()).ratio()

    for payment in payments:
        ref_hit = bool(keys & {_normalise(_reference_of(payment)) or ""})
        expected = -payment.amount_minor if line.amount_minor < 0 else payment.amount_minor
        amount_hit = expected == line.amount_minor
        near = abs(payment.received_date - line.booked) <= window
        if not (ref_hit or amount_hit or near or searched):
            continue
        facility = session.get(Facility, payment.facility_id)
        name = payment.payer or (facility.name if facility is not None else None)
        known = payment_facts(unit, payment)
        verdict = judge_payment(facts, known, reason=None)
        share = judge_payment(_share(line, payment.amount_minor), known, reason=None)
        agreeing = tuple(
            field
            for field, hit in (
                ("reference", ref_hit),
                ("amount", amount_hit),
                ("currency", True),
                ("date within window", abs(payment.received_date - line.booked) <= window),
            )
            if hit
        )
        rule = (
            "reference" if ref_hit else "amount" if amount_hit else "date" if near else "searched"
        )
        candidate = Candidate(
            0,
            rule,
            payment.id,
            None,
            payment.amount_minor,
            payment.currency,
            payment.received_date,
            name,
            agreeing,
            not isinstance(verdict, str),
            verdict if isinstance(verdict, str) else None,
            not isinstance(share, str),
            share if isinstance(share, str) else None,
        )
        key = (
            0 if ref_hit else 1,
            0 if amount_hit else 1,
            abs((payment.received_date - line.booked).days),
            -similarity(name),
        )
        scored.append((key, candidate))
    for deposit in deposits:
        amount_hit = deposit.total_minor == line.amount_minor
        near = abs(deposit.deposit_date - line.booked) <= window
        if not (amount_hit or near or searched):
            continue
        known_slip = deposit_facts(unit, deposit)
        verdict = judge_deposit(facts, known_slip, reason=None)
        share = judge_deposit(_share(line, deposit.total_minor), known_slip, reason=None)
        candidate = Candidate(
            0,
            "deposit" if amount_hit else "date" if near else "searched",
            None,
            deposit.id,
            deposit.total_minor,
            deposit.currency,
            deposit.deposit_date,
            None,
            tuple(
                f
                for f, hit in (
                    ("amount", amount_hit),
                    ("currency", True),
                    ("date within window", abs(deposit.deposit_date - line.booked) <= window),
                )
                if hit
            ),
            not isinstance(verdict, str),
            verdict if isinstance(verdict, str) else None,
            not isinstance(share, str),
            share if isinstance(share, str) else None,
        )
        scored.append(
            (
                (1, 0 if amount_hit else 1, abs((deposit.deposit_date - line.booked).days), 0.0),
                candidate,
            )
        )
    scored.sort(key=lambda pair: pair[0])
    return [replace(c, rank=n) for n, (_, c) in enumerate(scored[:limit], start=1)]


# -- the rules --------------------------------------------------------------------------------


def _auto_match(
    unit: UnitOfWork, window: timedelta, progress: ProgressFn | None = None
) -> MatchSummary:
    session = unit.session
    matched_lines = select(LINE_MATCHES.c.line_id)
    lines = list(
        session.scalars(
            select(BankLine).where(BankLine.id.not_in(matched_lines)).order_by(BankLine.id)
        )
    )
    if not lines:
        return MatchSummary((), 0, 0)
    # A payment may hold one credit and one debit: (payment id, direction) already matched.
    taken_payments: set[tuple[int | None, str]] = {
        (payment_id, direction)
        for payment_id, direction in session.execute(
            select(BankMatch.payment_id, BankMatch.direction).where(
                BankMatch.active, BankMatch.payment_id.is_not(None)
            )
        )
    }
    taken_deposits = set(
        session.scalars(
            select(BankMatch.deposit_id).where(BankMatch.active, BankMatch.deposit_id.is_not(None))
        )
    )
    results: list[MatchInfo] = []
    ambiguous = 0
    remaining = lines

    total = len(lines) * 2

    def tick(done: int, what: str) -> None:
        if progress is not None and (done % _TICK == 0 or done == total):
            progress(done, total, what)

    tick(0, "Matching by reference")
    # 1. reference + amount
    by_reference = _payments_by_reference(unit, remaining)
    still: list[BankLine] = []
    for weighed, line in enumerate(remaining, start=1):
        tick(weighed, "Matching by reference")
        hits = [
            p
            for key in _line_keys(line)
            for p in by_reference.get(key, ())
            if (p.id, direction_of(line.amount_minor)) not in taken_payments
            and p.currency == line.currency
            and _signed_amount(p, line) == line.amount_minor
            and _fits(unit, line, p)
        ]
        unique = {p.id: p for p in hits}
        if len(unique) == 1:
            payment = next(iter(unique.values()))
            results.append(
                _add(
                    unit,
                    line,
                    "reference",
                    payment.id,
                    None,
                    {
                        "reference": _reference_of(payment),
                        "amount_minor": line.amount_minor,
                        "line_field": "reference",
                    },
                )
            )
            taken_payments.add((payment.id, direction_of(line.amount_minor)))
        else:
            ambiguous += len(unique) > 1
            still.append(line)
    remaining = still

    # 2. deposits, 3. single payments by amount near the date, 4. returns
    credits = [ln for ln in remaining if ln.amount_minor > 0]
    debits = [ln for ln in remaining if ln.amount_minor < 0]
    deposits = _deposits_near(unit, credits, window)
    payments = _payments_near(unit, remaining, window)
    claims: dict[tuple[str, int], list[BankLine]] = defaultdict(list)
    choice: dict[int, tuple[str, Payment | Deposit]] = {}
    for line in credits:
        options: list[tuple[str, Payment | Deposit]] = [
            ("deposit", d)
            for d in deposits.get((line.currency, line.amount_minor), ())
            if d.id not in taken_deposits
            and d.deposit_date <= line.booked <= d.deposit_date + window
        ]
        if not options:
            options = [
                ("amount-window", p)
                for p in payments.get((line.currency, line.amount_minor), ())
                if (p.id, CREDIT) not in taken_payments
                and p.status in LIVE
                and p.method in ("transfer", "card")
                and abs(line.booked - p.received_date) <= window
            ]
        options = [(rule, t) for rule, t in options if _fits(unit, line, t)]
        if len(options) == 1:
            rule, target = options[0]
            choice[line.id] = (rule, target)
            claims[(rule, target.id)].append(line)
        elif options:
            ambiguous += 1
    for line in debits:
        options = [
            ("return", p)
            for p in payments.get((line.currency, -line.amount_minor), ())
            if (p.id, DEBIT) not in taken_payments
            and p.status in RETURN_STATUSES
            and line.booked >= p.received_date - window
            and _fits(unit, line, p)
        ]
        if len(options) == 1:
            rule, target = options[0]
            choice[line.id] = (rule, target)
            claims[(rule, target.id)].append(line)
        elif options:
            ambiguous += 1
    tick(len(lines), "Matching deposits, amounts and returns")
    for weighed, line in enumerate(credits + debits, start=1):
        tick(len(lines) + weighed, "Matching deposits, amounts and returns")
        if line.id not in choice:
            continue
        rule, target = choice[line.id]
        if len(claims[(rule, target.id)]) != 1:
            ambiguous += 1  # two lines want the same payment: a person decides
            continue
        if isinstance(target, Deposit):
            results.append(
                _add(
                    unit,
                    line,
                    rule,
                    None,
                    target.id,
                    {
                        "amount_minor": line.amount_minor,
                        "deposit_date": target.deposit_date.isoformat(),
                        "booked": line.booked.isoformat(),
                        "items": target.item_count,
                    },
                )
            )
            taken_deposits.add(target.id)
        elif isinstance(target, Payment):
            results.append(
                _add(
                    unit,
                    line,
                    rule,
                    target.id,
                    None,
                    {
                        "amount_minor": line.amount_minor,
                        "received": target.received_date.isoformat(),
                        "booked": line.booked.isoformat(),
                    },
                )
            )
            taken_payments.add((target.id, direction_of(line.amount_minor)))
    if progress is not None:
        progress(total, total, "Matched")
    matched_ids = {m.line_id for m in results}
    left = tuple(ln.id for ln in lines if ln.id not in matched_ids)
    return MatchSummary(tuple(results), len(left), ambiguous, left)


def _fits(unit: UnitOfWork, line: BankLine, target: Payment | Deposit) -> bool:
    """The rules hold automatic matches to what a person's match must satisfy, exactly."""
    facts = LineFacts(line.id, line.currency, line.amount_minor)
    if isinstance(target, Deposit):
        verdict = judge_deposit(facts, deposit_facts(unit, target), reason=None)
    else:
        verdict = judge_payment(facts, payment_facts(unit, target), reason=None)
    return not isinstance(verdict, str) and verdict.difference_minor == 0


def _signed_amount(payment: Payment, line: BankLine) -> int:
    """A payment's money as the line would show it: in, or back out when it was returned."""
    if line.amount_minor < 0 and payment.status in RETURN_STATUSES:
        return -payment.amount_minor
    return payment.amount_minor


def _normalise(text: str | None) -> str | None:
    if not text:
        return None
    cleaned = "".join(text.split()).upper()
    return cleaned or None


def _line_keys(line: BankLine) -> set[str]:
    return {k for k in (_normalise(line.reference), _normalise(line.bank_id)) if k}


def _reference_of(payment: Payment) -> str | None:
    return payment.transfer_reference or payment.processor_ref or payment.check_number


def _payments_by_reference(unit: UnitOfWork, lines: Iterable[BankLine]) -> dict[str, list[Payment]]:
    wanted = {k for line in lines for k in _line_keys(line)}
    # Looked up as the bank wrote them and without spaces; compared without spaces, upper-case.
    spellings = sorted(
        {v.strip() for line in lines for v in (line.reference, line.bank_id) if v and v.strip()}
        | wanted
    )
    found: dict[str, list[Payment]] = defaultdict(list)
    for start in range(0, len(spellings), _CHUNK):
        chunk = spellings[start : start + _CHUNK]
        rows = unit.session.scalars(
            select(Payment).where(
                or_(
                    Payment.transfer_reference.in_(chunk),
                    Payment.processor_ref.in_(chunk),
                    Payment.check_number.in_(chunk),
                )
            )
        )
        for payment in rows:
            for value in (payment.transfer_reference, payment.processor_ref, payment.check_number):
                key = _normalise(value)
                if key in wanted and payment not in found[key]:
                    found[key].append(payment)
    return found


def _span(lines: list[BankLine], window: timedelta) -> tuple[date, date]:
    return min(ln.booked for ln in lines) - window, max(ln.booked for ln in lines) + window


def _deposits_near(
    unit: UnitOfWork, lines: list[BankLine], window: timedelta
) -> dict[tuple[str, int], list[Deposit]]:
    out: dict[tuple[str, int], list[Deposit]] = defaultdict(list)
    if not lines:
        return out
    low, high = _span(lines, window)
    amounts = sorted({ln.amount_minor for ln in lines})
    for start in range(0, len(amounts), _CHUNK):
        rows = unit.session.scalars(
            select(Deposit).where(
                Deposit.total_minor.in_(amounts[start : start + _CHUNK]),
                Deposit.deposit_date.between(low, high),
            )
        )
        for deposit in rows:
            out[(deposit.currency, deposit.total_minor)].append(deposit)
    return out


def _payments_near(
    unit: UnitOfWork, lines: list[BankLine], window: timedelta
) -> dict[tuple[str, int], list[Payment]]:
    out: dict[tuple[str, int], list[Payment]] = defaultdict(list)
    if not lines:
        return out
    low, high = _span(lines, window)
    amounts = sorted({abs(ln.amount_minor) for ln in lines})
    for start in range(0, len(amounts), _CHUNK):
        rows = unit.session.scalars(
            select(Payment).where(
                and_(
                    Payment.amount_minor.in_(amounts[start : start + _CHUNK]),
                    Payment.received_date.between(low - window, high),
                )
            )
        )
        for payment in rows:
            out[(payment.currency, payment.amount_minor)].append(payment)
    return out


def _refuse_if_matched(
    unit: UnitOfWork,
    *,
    line_id: int,
    direction: str,
    payment_id: int | None,
    deposit_id: int | None,
) -> None:
    clauses = [BankMatch.line_id == line_id]
    if payment_id is not None:
        # The credit that brought a payment in does not stop the debit that took it back out.
        clauses.append(and_(BankMatch.payment_id == payment_id, BankMatch.direction == direction))
    if deposit_id is not None:
        clauses.append(BankMatch.deposit_id == deposit_id)
    existing = unit.session.scalars(
        select(BankMatch).where(BankMatch.active, or_(*clauses))
    ).first()
    if existing is not None:
        target = (
            f"payment {existing.payment_id}"
            if existing.payment_id is not None
            else f"deposit {existing.deposit_id}"
        )
        raise Refused(
            f"Bank line {existing.line_id} is already matched to {target}; unmatch it first "
            "with `reconcile unmatch LINE --reason TEXT`."
        )
    if unit.session.scalar(select(LINE_MATCHES.c.line_id).where(LINE_MATCHES.c.line_id == line_id)):
        raise Refused(
            f"Bank line {line_id} is already matched to another facility's payment or deposit "
            "slip; a person who works for that facility unmatches it if the match is wrong."
        )


def _add(
    unit: UnitOfWork,
    line: BankLine,
    rule: str,
    payment_id: int | None,
    deposit_id: int | None,
    detail: dict[str, object],
    *,
    part: int = 1,
) -> MatchInfo:
    # The payment is in the session already (it was judged): no second read.
    paid = unit.session.get(Payment, payment_id) if payment_id is not None else None
    facility_id = paid.facility_id if paid is not None else None
    unit.session.add(
        BankMatch(
            line_id=line.id,
            part=part,
            direction=direction_of(line.amount_minor),
            payment_id=payment_id,
            deposit_id=deposit_id,
            facility_id=facility_id,
            rule=rule,
            detail=canonical_bytes(detail).decode(),
            matched_at=unit.now,
            matched_by=unit.actor.name,
            active=True,
        )
    )
    try:
        unit.session.flush()
    except IntegrityError:
        # Another clerk's match of the same line, payment or deposit committed first; the
        # partial unique indexes keep one.
        target = f"payment {payment_id}" if payment_id is not None else f"deposit {deposit_id}"
        raise Refused(
            f"Bank line {line.id} or {target} was matched by someone else a moment ago; "
            "`reconcile lines` shows the match, unmatch it first to change it."
        ) from None
    if line.amount_minor > 0:
        # Matching a credit is how money clears, in the same unit of work as the match.
        for payment in _payments_of(unit, payment_id, deposit_id):
            to = clearing_move(PaymentMethod(payment.method), PaymentStatus(payment.status))
            if to is not None:
                move_payment(unit, payment, to, f"matched to bank line {line.id}", on=line.booked)
    return MatchInfo(line.id, rule, payment_id, deposit_id, detail)


def _serialise(unit: UnitOfWork, table: str, row_id: int) -> None:
    """Two people matching the same line or slip take turns (the second then reads the first's
    match and is told so). On PostgreSQL a transaction's advisory lock: bank lines and slips are
    insert-only for their users, whom the database would not let take a row lock on them. An
    SQLite writer holds the whole database already."""
    if unit.session.get_bind().dialect.name == "postgresql":
        unit.session.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:table), :row_id)"),
            {"table": f"billing_desk.{table}", "row_id": row_id},
        )


def _share(line: BankLine, amount_minor: int) -> LineFacts:
    """The line as if it were exactly this target's money: judging against it checks every
    rule but the amount (for one of several matched together)."""
    sign = 1 if line.amount_minor > 0 else -1
    return LineFacts(line.id, line.currency, sign * amount_minor)


def _target_name(payment_id: int | None, deposit_id: int | None) -> str:
    return f"payment {payment_id}" if payment_id is not None else f"deposit {deposit_id}"


def _payments_of(unit: UnitOfWork, payment_id: int | None, deposit_id: int | None) -> list[Payment]:
    if payment_id is not None:
        found = unit.session.get(Payment, payment_id)
        return [found] if found is not None else []
    return list(
        unit.session.scalars(
            select(Payment)
            .join(DepositItem, DepositItem.payment_id == Payment.id)
            .where(DepositItem.deposit_id == deposit_id)
            .order_by(Payment.id)
        )
    )


def _deposit_of(unit: UnitOfWork, payment_id: int) -> int | None:
    """The latest deposit slip holding the payment (a check presented again has several)."""
    return unit.session.scalars(
        select(DepositItem.deposit_id)
        .where(DepositItem.payment_id == payment_id)
        .order_by(DepositItem.deposit_id.desc())
    ).first()


def _active_match_of(
    unit: UnitOfWork, column: InstrumentedAttribute[int | None], value: int
) -> BankMatch | None:
    return unit.session.scalars(select(BankMatch).where(BankMatch.active, column == value)).first()


def payment_facts(unit: UnitOfWork, payment: Payment) -> PaymentFacts:
    deposit_id = _deposit_of(unit, payment.id)
    return PaymentFacts(
        payment.id,
        PaymentMethod(payment.method),
        PaymentStatus(payment.status),
        payment.currency,
        payment.amount_minor,
        deposit_id,
        deposit_id is not None
        and _active_match_of(unit, BankMatch.deposit_id, deposit_id) is not None,
    )


def deposit_facts(unit: UnitOfWork, deposit: Deposit) -> DepositFacts:
    items = _payments_of(unit, None, deposit.id)
    # Only a credit counts the money twice: a returned check's debit matched to it does not.
    alone = tuple(p.id for p in items if credit_matched_alone(unit, p.id) is not None)
    voided = tuple(p.id for p in items if p.status == PaymentStatus.VOIDED.value)
    return DepositFacts(deposit.id, deposit.currency, deposit.total_minor, alone, voided)


def credit_matched_alone(unit: UnitOfWork, payment_id: int) -> int | None:
    """The bank credit matched to the payment on its own (not through a deposit slip)."""
    return unit.session.scalars(
        select(BankMatch.line_id)
        .join(BankLine, BankLine.id == BankMatch.line_id)
        .where(BankMatch.active, BankMatch.payment_id == payment_id, BankLine.amount_minor > 0)
    ).first()


def is_matched(unit: UnitOfWork, payment: Payment) -> int | None:
    """The bank line a payment's money is matched to, directly or through its deposit."""
    direct = _active_match_of(unit, BankMatch.payment_id, payment.id)
    if direct is not None:
        return direct.line_id
    deposit_id = _deposit_of(unit, payment.id)
    if deposit_id is None:
        return None
    through = _active_match_of(unit, BankMatch.deposit_id, deposit_id)
    return through.line_id if through is not None else None
