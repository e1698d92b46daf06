"""Bank statements as the rest of the application sees them, whatever format they came in.

An importer (billing_desk.importers.statements.*) turns a file's bytes into `Statement`s: one per
account and period the file reports, each with its lines in file order. Amounts are signed
`Money` (credits positive, debits negative) in the statement's currency; every line keeps the
bank's own fields as text in `raw` (provenance) and says where in the file it came from. What
the format itself declares (opening and closing balances, entry counts, control sums) is kept
beside the lines and checked by `balance_checks` and the importer's own checks: a failing check
is a finding for the user, never a silent pass and never a refusal by itself.

A file that cannot be read is refused with `StatementRefused`: one sentence naming the file's
format, where in the file (line, record or element) and what is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date

from billing_desk.domain.errors import BadInput
from billing_desk.domain.money import Money

# Files larger than this are refused before they are read (a statement is a few megabytes at
# most; a bigger file is a mistake or an attack).
MAX_STATEMENT_BYTES = 50 * 1024 * 1024


class StatementRefused(BadInput):
    """The file is not a statement we can read; nothing was imported."""

    def __init__(self, format_name: str, where: str | None, problem: str) -> None:
        place = f" at {where}" if where else ""
        super().__init__(f"This {format_name} file cannot be imported{place}: {problem}.")
        self.format_name = format_name
        self.where = where
        self.problem = problem


@dataclass(frozen=True)
class StatementLine:
    """One booked movement on the account."""

    booked: date
    amount: Money  # credits positive, debits negative
    location: str  # where in the file: "line 12", "Ntry 3 / TxDtls 2", "record 16 #5"
    value_date: date | None = None
    # The bank's own identifier of this line where the format has one (OFX FITID, camt
    # AcctSvcrRef, MT940 bank reference, BAI2 bank reference): the best duplicate key.
    bank_id: str | None = None
    # The payer's reference (end-to-end id, structured creditor reference, check number,
    # customer reference): what matching compares with a payment's reference.
    reference: str | None = None
    counterparty: str | None = None  # payer or payee name
    description: str | None = None  # remittance text, memo, :86: details
    kind: str | None = None  # the bank's transaction code or type (CREDIT, NTRF, 195, ...)
    raw: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_credit(self) -> bool:
        return self.amount.is_positive()


@dataclass(frozen=True)
class Check:
    """One thing the file declares about itself, and whether the lines agree."""

    name: str  # "balance", "entry count", "control total", ...
    ok: bool
    detail: str  # one sentence either way, e.g. "opening 10.00 + lines 5.00 = closing 15.00"


@dataclass(frozen=True)
class Statement:
    """One account's statement for one period, as the file reports it."""

    format: str  # "ofx", "camt053", "mt940", "bai2", "csv"
    account: str  # as the bank writes it (IBAN, account number)
    currency: str
    lines: tuple[StatementLine, ...]
    statement_id: str | None = None  # the bank's statement or message reference
    period_start: date | None = None
    period_end: date | None = None
    opening: Money | None = None
    closing: Money | None = None
    # Checks the format carries beyond the balance (counts, control sums, trailers).
    declared_checks: tuple[Check, ...] = ()
    # Things worth telling the user that are not errors (a duplicate statement copy, lines
    # skipped because they are summaries, an encoding guessed).
    notes: tuple[str, ...] = ()

    @property
    def credits(self) -> Money:
        return Money.total(
            (ln.amount for ln in self.lines if ln.amount.is_positive()), self.currency
        )

    @property
    def debits(self) -> Money:
        return Money.total(
            (ln.amount for ln in self.lines if ln.amount.is_negative()), self.currency
        )

    def checks(self) -> tuple[Check, ...]:
        return balance_checks(self) + self.declared_checks


def balance_checks(statement: Statement) -> tuple[Check, ...]:
    """Opening balance + lines = closing balance, where the statement gives both balances."""
    if statement.opening is None or statement.closing is None:
        return ()
    if statement.opening.currency != statement.closing.currency or (
        statement.opening.currency != statement.currency
    ):
        return (
            Check(
                "balance",
                False,
                f"the balances are in {statement.opening.currency} and "
                f"{statement.closing.currency}, the lines in {statement.currency}",
            ),
        )
    moved = Money.total((ln.amount for ln in statement.lines), statement.currency)
    computed = statement.opening + moved
    ok = computed == statement.closing
    verb = "=" if ok else "≠"
    return (
        Check(
            "balance",
            ok,
            f"opening {statement.opening.plain()} + lines {moved.plain()} = {computed.plain()} "
            f"{verb} closing {statement.closing.plain()}",
        ),
    )


def count_check(name: str, declared: int, lines: Sequence[StatementLine]) -> Check:
    ok = declared == len(lines)
    return Check(name, ok, f"the file declares {declared}, it holds {len(lines)}")
