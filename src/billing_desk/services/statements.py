"""Bringing bank statements in: a preview of every line (new, already imported, conflicting),
then, when asked, the file, its statements and its new lines saved in one audited transaction.

The same file twice is recognised by its SHA-256 and changes nothing. A file overlapping an
earlier one (same account, overlapping dates) adds only its new lines: each line has a
fingerprint (account, currency, date, amount and the bank's id for it, or its texts when the
bank gives no id, plus its occurrence number among identical lines of its statement), so the
same line in two files is one line while two genuine identical same-day payments stay two.
A line whose bank id is known with a different date or amount is *conflicting*: it is shown
with both versions and not saved unless a person keeps it, with a reason: a bank that gives
the same id to two real lines must never cost a line. Keeping is audited line by line, and
works on a file imported before (its conflicting lines join that file's statements).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from billing_desk.db.models import BankLine, BankStatement, StatementFile, StatementFileContent
from billing_desk.domain.errors import BadInput
from billing_desk.domain.hashing import canonical_bytes
from billing_desk.domain.money import Money
from billing_desk.domain.roles import Permission
from billing_desk.domain.statements import Check, Statement, StatementLine
from billing_desk.services.unit_of_work import UnitOfWork, Workspace

IMPORT_ACTION = "statement.import"
KEEP_CONFLICTING_ACTION = "statement.keep_conflicting"
LineStatus = Literal["new", "already imported", "conflicting"]
_LOOKUP_CHUNK = 500
# (done, total, what): called as lines are compared and saved; raising stops the import, and
# its unit of work writes nothing (the window's Cancel).
ProgressFn = Callable[[int, int, str], None]


class _Ticker:
    """Counts lines through the comparing and the saving steps for a progress callback."""

    def __init__(self, progress: ProgressFn | None, total: int) -> None:
        self.progress = progress
        self.total = max(total, 1)
        self.done = 0

    def step(self, lines: int, what: str) -> None:
        self.done = min(self.done + lines, self.total)
        if self.progress is not None:
            self.progress(self.done, self.total, what)


@dataclass(frozen=True)
class LinePreview:
    location: str
    booked: str
    amount: Money
    status: LineStatus
    bank_id: str | None
    reference: str | None
    counterparty: str | None
    description: str | None
    why: str | None = None  # for a conflicting line: what differs
    line_id: int | None = None  # the saved bank line (already imported, or saved by this call)


@dataclass(frozen=True)
class StatementPreview:
    account: str
    currency: str
    statement_id: str | None
    period_start: str | None
    period_end: str | None
    lines: tuple[LinePreview, ...]
    checks: tuple[Check, ...]
    notes: tuple[str, ...]
    # The balances the statement itself gives, when it gives them.
    opening: Money | None = None
    closing: Money | None = None

    def count(self, status: LineStatus) -> int:
        return sum(1 for line in self.lines if line.status == status)


@dataclass(frozen=True)
class ImportResult:
    file: str
    format: str
    sha256: str
    committed: bool  # True when this call saved something
    file_already_imported: bool
    statements: tuple[StatementPreview, ...]
    kept_conflicting: int = 0  # conflicting lines this call saved, with a person's reason

    @property
    def lines(self) -> int:
        return sum(len(s.lines) for s in self.statements)

    def count(self, status: LineStatus) -> int:
        return sum(s.count(status) for s in self.statements)

    def totals(self) -> dict[str, tuple[int, int]]:
        """Credits and debits in minor units, per currency."""
        out: dict[str, tuple[int, int]] = {}
        for statement in self.statements:
            credits, debits = out.get(statement.currency, (0, 0))
            for line in statement.lines:
                if line.amount.minor > 0:
                    credits += line.amount.minor
                else:
                    debits += line.amount.minor
            out[statement.currency] = (credits, debits)
        return out

    @property
    def checks_ok(self) -> bool:
        return all(c.ok for s in self.statements for c in s.checks)


def import_statements(
    workspace: Workspace,
    name: str,
    data: bytes,
    format_name: str,
    statements: Sequence[Statement],
    *,
    commit: bool,
    keep_conflicting: str | None = None,
    progress: ProgressFn | None = None,
) -> ImportResult:
    """Preview the file's lines against what is already imported; with `commit`, save the file,
    its statements and its new lines (idempotent: a second commit of the same file saves
    nothing). With `keep_conflicting` (the person's reason), conflicting lines are saved too.
    `progress` hears of the lines compared and saved, and may stop the import by raising."""
    digest = hashlib.sha256(data).hexdigest()
    reason = None
    if keep_conflicting is not None:
        reason = " ".join(keep_conflicting.split())
        if not reason:
            raise BadInput(
                "Say why the conflicting lines are real (--keep-conflicting REASON): what the "
                "bank confirmed, for the audit log."
            )

    def operation(unit: UnitOfWork) -> ImportResult:
        unit.require(Permission.IMPORT_STATEMENTS)
        return _import(
            unit,
            name,
            data,
            digest,
            format_name,
            statements,
            commit=commit,
            reason=reason,
            progress=progress,
        )

    if not commit:
        return workspace.read(operation)
    try:
        return workspace.write(operation, action=IMPORT_ACTION)
    except IntegrityError:
        # Someone imported the same file or lines at this very moment: what they saved is
        # now visible, and the preview says so.
        return workspace.read(operation)


def import_in_unit(
    unit: UnitOfWork, name: str, data: bytes, format_name: str, statements: Sequence[Statement]
) -> ImportResult:
    """Save a statement file inside the caller's unit of work (the demo's bank statements)."""
    digest = hashlib.sha256(data).hexdigest()
    return _import(unit, name, data, digest, format_name, statements, commit=True)


def _import(
    unit: UnitOfWork,
    name: str,
    data: bytes,
    digest: str,
    format_name: str,
    statements: Sequence[Statement],
    *,
    commit: bool,
    reason: str | None = None,
    progress: ProgressFn | None = None,
) -> ImportResult:
    session = unit.session
    lines_in_file = sum(len(statement.lines) for statement in statements)
    ticker = _Ticker(progress, lines_in_file * (2 if commit else 1))
    known_file = session.scalar(select(StatementFile.id).where(StatementFile.sha256 == digest))
    previews: list[StatementPreview] = []
    whys: dict[str, str] = {}
    planned: list[tuple[Statement, list[tuple[StatementLine, str, str, LineStatus]]]] = []
    for index, statement in enumerate(statements):
        keyed = [
            (line, fingerprint, _line_key(digest, index, line))
            for line, fingerprint in zip(statement.lines, fingerprints(statement), strict=True)
        ]
        # Line by line even for a file imported before: its conflicting lines were never saved
        # and must not read as "already imported".
        statuses = _statuses(unit, statement, keyed, ticker)
        whys.update(
            {key: why for (_ln, _fp, key), (_st, why) in zip(keyed, statuses, strict=True) if why}
        )
        planned.append(
            (
                statement,
                [(ln, fp, key, st) for (ln, fp, key), (st, _) in zip(keyed, statuses, strict=True)],
            )
        )
    saved = False
    kept = 0
    if commit and known_file is None:
        kept = _save(
            unit, name, data, digest, format_name, planned, reason=reason, why=whys, ticker=ticker
        )
        saved = True
    elif commit and reason is not None and known_file is not None:
        kept = _keep_in_known_file(unit, known_file, planned, reason=reason, why=whys)
        saved = kept > 0
    for statement, lines in planned:
        ids = _line_ids(unit, statement.account, [fp for _ln, fp, _key, _st in lines])
        previews.append(
            StatementPreview(
                statement.account,
                statement.currency,
                statement.statement_id,
                statement.period_start.isoformat() if statement.period_start else None,
                statement.period_end.isoformat() if statement.period_end else None,
                tuple(
                    LinePreview(
                        ln.location,
                        ln.booked.isoformat(),
                        ln.amount,
                        status,
                        ln.bank_id,
                        ln.reference,
                        ln.counterparty,
                        ln.description,
                        whys.get(key),
                        ids.get(fp),
                    )
                    for ln, fp, key, status in lines
                ),
                statement.checks(),
                statement.notes,
                statement.opening,
                statement.closing,
            )
        )
    return ImportResult(
        name, format_name, digest, saved, known_file is not None, tuple(previews), kept
    )


def _line_ids(unit: UnitOfWork, account: str, prints: list[str]) -> dict[str, int]:
    """The saved bank line of each fingerprint: what `reconcile match --line` takes."""
    found: dict[str, int] = {}
    for start in range(0, len(prints), _LOOKUP_CHUNK):
        rows = unit.session.execute(
            select(BankLine.fingerprint, BankLine.id).where(
                BankLine.account == account,
                BankLine.fingerprint.in_(prints[start : start + _LOOKUP_CHUNK]),
            )
        )
        found.update({str(r.fingerprint): int(r.id) for r in rows})
    return found


def fingerprints(statement: Statement) -> list[str]:
    """One fingerprint per line, the same for the same line in any file of the account."""
    seen: Counter[bytes] = Counter()
    out = []
    for line in statement.lines:
        base = canonical_bytes(
            {
                "account": statement.account,
                "currency": statement.currency,
                "booked": line.booked,
                "amount_minor": line.amount.minor,
                # The bank's own id says which line this is; without one, the texts must do.
                "bank_id": line.bank_id,
                "texts": None
                if line.bank_id
                else [line.reference, line.counterparty, line.description],
            }
        )
        seen[base] += 1
        out.append(hashlib.sha256(base + b"#" + str(seen[base]).encode()).hexdigest())
    return out


def _line_key(digest: str, index: int, line: StatementLine) -> str:
    return hashlib.sha256(f"{digest}:{index}:{line.location}".encode()).hexdigest()


def _statuses(
    unit: UnitOfWork,
    statement: Statement,
    keyed: list[tuple[StatementLine, str, str]],
    ticker: _Ticker | None = None,
) -> list[tuple[LineStatus, str | None]]:
    session = unit.session
    known: set[str] = set()
    prints = [fp for _ln, fp, _key in keyed]
    for start in range(0, len(prints), _LOOKUP_CHUNK):
        chunk = prints[start : start + _LOOKUP_CHUNK]
        if ticker is not None:
            ticker.step(len(chunk), "Comparing with the lines already imported")
        known |= set(
            session.scalars(
                select(BankLine.fingerprint).where(
                    BankLine.account == statement.account, BankLine.fingerprint.in_(chunk)
                )
            )
        )
    ids = sorted({ln.bank_id for ln, fp, _key in keyed if ln.bank_id and fp not in known})
    taken: dict[str, set[tuple[str, int]]] = {}
    for start in range(0, len(ids), _LOOKUP_CHUNK):
        rows = session.execute(
            select(BankLine.bank_id, BankLine.booked, BankLine.amount_minor).where(
                BankLine.account == statement.account,
                BankLine.currency == statement.currency,
                BankLine.bank_id.in_(ids[start : start + _LOOKUP_CHUNK]),
            )
        )
        for r in rows:
            taken.setdefault(str(r.bank_id), set()).add((r.booked.isoformat(), int(r.amount_minor)))
    # Some banks give the lines split out of one batch the batch's id: an id shared within the
    # file says nothing about a correction.
    shared_ids = Counter(ln.bank_id or "" for ln, _fp, _key in keyed if ln.bank_id)
    out: list[tuple[LineStatus, str | None]] = []
    for line, fingerprint, _key in keyed:
        if fingerprint in known:
            out.append(("already imported", None))
            continue
        earlier = taken.get(line.bank_id or "")
        mine = (line.booked.isoformat(), line.amount.minor)
        if earlier and mine not in earlier and shared_ids[line.bank_id or ""] == 1:
            day, minor = sorted(earlier)[0]
            out.append(
                (
                    "conflicting",
                    f"the bank id {line.bank_id} was imported before as "
                    f"{Money.from_minor(minor, statement.currency).format()} on {day}",
                )
            )
            continue
        out.append(("new", None))
    return out


def _save(
    unit: UnitOfWork,
    name: str,
    data: bytes,
    digest: str,
    format_name: str,
    planned: list[tuple[Statement, list[tuple[StatementLine, str, str, LineStatus]]]],
    *,
    reason: str | None,
    why: dict[str, str],
    ticker: _Ticker | None = None,
) -> int:
    session = unit.session
    stored = StatementFile(
        sha256=digest,
        name=name[:255],
        size=len(data),
        format=format_name,
        imported_at=unit.now,
        imported_by=unit.actor.name,
    )
    session.add(stored)
    session.flush()
    session.add(StatementFileContent(file_id=stored.id, content=data))
    kept = 0
    for statement, lines in planned:
        row = BankStatement(
            file_id=stored.id,
            account=statement.account,
            currency=statement.currency,
            statement_ref=statement.statement_id,
            period_start=statement.period_start,
            period_end=statement.period_end,
            opening_minor=statement.opening.minor if statement.opening else None,
            closing_minor=statement.closing.minor if statement.closing else None,
            checks=canonical_bytes(
                {
                    "checks": [
                        {"name": c.name, "ok": c.ok, "detail": c.detail} for c in statement.checks()
                    ]
                }
            ).decode(),
        )
        session.add(row)
        session.flush()
        kept += _add_lines(unit, row, statement, lines, reason=reason, why=why, ticker=ticker)
    return kept


def _keep_in_known_file(
    unit: UnitOfWork,
    file_id: int,
    planned: list[tuple[Statement, list[tuple[StatementLine, str, str, LineStatus]]]],
    *,
    reason: str,
    why: dict[str, str],
) -> int:
    rows = list(
        unit.session.scalars(
            select(BankStatement).where(BankStatement.file_id == file_id).order_by(BankStatement.id)
        )
    )
    kept = 0
    for row, (statement, lines) in zip(rows, planned, strict=False):
        conflicting = [entry for entry in lines if entry[3] == "conflicting"]
        kept += _add_lines(unit, row, statement, conflicting, reason=reason, why=why)
    return kept


def _add_lines(
    unit: UnitOfWork,
    row: BankStatement,
    statement: Statement,
    lines: list[tuple[StatementLine, str, str, LineStatus]],
    *,
    reason: str | None,
    why: dict[str, str],
    ticker: _Ticker | None = None,
) -> int:
    """Save a statement's new lines, and its conflicting ones when a person gave a reason."""
    session = unit.session
    kept = 0
    for done, (line, fingerprint, key, status) in enumerate(lines, start=1):
        if ticker is not None and (done % _LOOKUP_CHUNK == 0 or done == len(lines)):
            # Written in chunks, so that progress moves and Cancel is heard while saving.
            session.flush()
            ticker.step(
                _LOOKUP_CHUNK if done % _LOOKUP_CHUNK == 0 else done % _LOOKUP_CHUNK,
                "Saving the new lines",
            )
        if status == "new" or (status == "conflicting" and reason is not None):
            saved = BankLine(
                statement_id=row.id,
                account=statement.account,
                currency=statement.currency,
                booked=line.booked,
                value_date=line.value_date,
                amount_minor=line.amount.minor,
                bank_id=line.bank_id,
                reference=line.reference,
                counterparty=line.counterparty,
                description=line.description,
                kind=line.kind,
                location=line.location,
                raw=canonical_bytes(dict(line.raw)).decode(),
                fingerprint=fingerprint,
                line_key=key,
            )
            session.add(saved)
            if status == "conflicting":
                session.flush()
                unit.record_event(
                    KEEP_CONFLICTING_ACTION,
                    "kept_conflict",  # the line's own insert is audited as bank_line
                    str(saved.id),
                    detail={
                        "reason": reason,
                        "bank_id": line.bank_id,
                        "booked": line.booked.isoformat(),
                        "amount_minor": line.amount.minor,
                        "currency": statement.currency,
                        "conflict": why.get(key),
                    },
                )
                kept += 1
    session.flush()
    return kept
