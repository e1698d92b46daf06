"""Importing statements: preview, commit, the same file twice, overlapping files, identical
same-day lines, conflicting bank ids; on both backends, through the service with statements
built here (the format importers have their own tests)."""

from __future__ import annotations

import hashlib
from datetime import date

import pytest
from sqlalchemy import func, select

from billing_desk.db.models import AuditEntry, BankLine, StatementFile, StatementFileContent
from billing_desk.domain.errors import PermissionDenied
from billing_desk.domain.money import Money
from billing_desk.domain.statements import Statement, StatementLine
from billing_desk.services.statements import import_statements
from billing_desk.services.unit_of_work import Workspace
from tests.conftest import Database
from tests.support import seed_users

ACCOUNT = "NL91ABNA0417164300"


def line(
    day: int,
    amount: str,
    *,
    bank_id: str | None = None,
    ref: str | None = None,
    who: str = "St Mary",
    where: str | None = None,
) -> StatementLine:
    return StatementLine(
        booked=date(2026, 6, day),
        amount=Money(amount, "USD"),
        location=where or f"line {day}",
        bank_id=bank_id,
        reference=ref,
        counterparty=who,
        raw={"amount": amount},
    )


def statement(
    *lines: StatementLine, opening: str | None = None, closing: str | None = None
) -> Statement:
    return Statement(
        "csv",
        ACCOUNT,
        "USD",
        tuple(lines),
        opening=Money(opening, "USD") if opening else None,
        closing=Money(closing, "USD") if closing else None,
    )


def run(workspace: Workspace, data: bytes, *statements: Statement, commit: bool = True):  # type: ignore[no-untyped-def]
    return import_statements(workspace, "june.csv", data, "csv", list(statements), commit=commit)


def count(workspace: Workspace, model: type) -> int:
    return workspace.read(lambda unit: unit.session.scalar(select(func.count()).select_from(model)))


@pytest.fixture
def clerk(database: Database) -> Workspace:
    seed_users(database.workspace("admin"))
    return database.workspace("clerk")


def test_preview_writes_nothing_and_commit_saves_file_and_lines(clerk: Workspace) -> None:
    june = statement(
        line(1, "10.00", bank_id="A"),
        line(2, "-3.50", bank_id="B"),
        opening="100.00",
        closing="106.50",
    )
    preview = run(clerk, b"file one", june, commit=False)
    assert (preview.lines, preview.count("new"), preview.committed) == (2, 2, False)
    assert preview.totals() == {"USD": (1000, -350)}
    assert preview.checks_ok
    assert count(clerk, BankLine) == 0
    saved = run(clerk, b"file one", june)
    assert saved.committed and saved.count("new") == 2
    assert count(clerk, BankLine) == 2
    stored = clerk.read(lambda u: u.session.scalars(select(StatementFile)).one())
    content = clerk.read(lambda u: u.session.scalars(select(StatementFileContent)).one())
    assert content.content == b"file one"
    assert stored.sha256 == hashlib.sha256(b"file one").hexdigest()
    assert stored.imported_by == "clerk"


def test_the_same_file_twice_changes_nothing(clerk: Workspace) -> None:
    june = statement(line(1, "10.00", bank_id="A"))
    run(clerk, b"same bytes", june)
    entries = count(clerk, AuditEntry)
    again = run(clerk, b"same bytes", june)
    assert again.file_already_imported and not again.committed
    assert again.count("already imported") == 1
    assert count(clerk, AuditEntry) == entries
    assert count(clerk, BankLine) == 1


def test_an_overlapping_file_adds_only_its_new_lines(clerk: Workspace) -> None:
    run(clerk, b"first", statement(line(1, "10.00", bank_id="A"), line(2, "20.00", bank_id="B")))
    later = run(
        clerk,
        b"second",
        statement(line(2, "20.00", bank_id="B"), line(3, "30.00", bank_id="C")),
    )
    assert (later.count("already imported"), later.count("new")) == (1, 1)
    assert count(clerk, BankLine) == 3


def test_identical_same_day_lines_without_bank_ids_stay_two(clerk: Workspace) -> None:
    twins = statement(
        line(5, "0.29", who="Bank fee", where="line 1"),
        line(5, "0.29", who="Bank fee", where="line 2"),
    )
    first = run(clerk, b"twins", twins)
    assert first.count("new") == 2
    # The same two lines in an overlapping export are recognised, one by one.
    overlap = run(
        clerk,
        b"twins and more",
        statement(
            line(5, "0.29", who="Bank fee", where="line 1"),
            line(5, "0.29", who="Bank fee", where="line 2"),
            line(5, "0.29", who="Bank fee", where="line 3"),
        ),
    )
    assert (overlap.count("already imported"), overlap.count("new")) == (2, 1)
    assert count(clerk, BankLine) == 3


def test_a_known_bank_id_with_another_amount_is_conflicting_and_not_saved(
    clerk: Workspace,
) -> None:
    run(clerk, b"original", statement(line(1, "10.00", bank_id="A")))
    changed = run(clerk, b"corrected", statement(line(1, "12.00", bank_id="A")))
    assert changed.count("conflicting") == 1
    why = changed.statements[0].lines[0].why
    assert why is not None and "10.00" in why
    assert count(clerk, BankLine) == 1


def test_a_failing_balance_is_a_finding_not_a_refusal(clerk: Workspace) -> None:
    result = run(
        clerk,
        b"bad balance",
        statement(line(1, "10.00", bank_id="A"), opening="0.00", closing="11.00"),
    )
    assert result.committed and not result.checks_ok
    assert "≠" in result.statements[0].checks[0].detail


def test_the_import_is_audited_and_an_auditor_may_not_import(
    clerk: Workspace, database: Database
) -> None:
    run(clerk, b"audited", statement(line(1, "10.00", bank_id="A")))
    actions = clerk.read(lambda u: set(u.session.scalars(select(AuditEntry.action).distinct())))
    assert "statement.import" in actions
    with pytest.raises(PermissionDenied):
        run(database.workspace("auditor"), b"other", statement(line(1, "1.00", bank_id="Z")))
