"""Hypothesis drives statement imports, automatic and hand matches, unmatches, voids, returns,
deposits and runs in any order, on both backends. After every step: every matched bank line's
amount equals what it is matched to, or the latest run holds an open `amount mismatch` for it
with both figures; no payment is counted twice (alone and through its deposit); a payment is
`cleared` only when it (or its deposit) is matched to a credit, and a live payment matched to a
credit is cleared; no hand move clears a payment or takes its clearing back; a matched payment
voided or returned is reported by the run."""

from __future__ import annotations

import contextlib
from datetime import date

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from sqlalchemy import select

from billing_desk.db.models import BankLine, BankMatch, Deposit, DepositItem, Payment
from billing_desk.domain.errors import BillingError
from billing_desk.services.deposits import create_deposit
from billing_desk.services.matching import auto_match, match_line, match_together, unmatch_line
from billing_desk.services.payments import change_status
from billing_desk.services.reconciliation import run_reconciliation
from tests.conftest import Database
from tests.services.test_matching_and_reconciliation import Books, _check, _transfer

AMOUNTS = st.sampled_from(["10.00", "25.00", "40.00", "60.00"])
PERIOD = (date(2026, 1, 1), date(2026, 12, 31))


def test_matches_stay_true_whatever_the_order(database: Database) -> None:
    books = Books(database)
    counter = iter(range(1, 1_000_000))

    class Reconciling(RuleBasedStateMachine):
        @rule(amount=AMOUNTS, check=st.booleans())
        def pay(self, amount: str, check: bool) -> None:
            n = next(counter)
            books.pay(_check(str(1000 + n), amount) if check else _transfer(f"S{n}", amount))

        @rule(data=st.data())
        def deposit(self, data: st.DataObject) -> None:
            ids = _ids(
                books,
                "SELECT",
                lambda u: u.session.scalars(
                    select(Payment.id).where(
                        Payment.method == "check", Payment.status == "recorded"
                    )
                ),
            )
            if ids:
                chosen = data.draw(st.lists(st.sampled_from(ids), min_size=1, unique=True))
                create_deposit(
                    books.clerk, chosen, date(2026, 6, 3), idempotency_key=f"dep-{next(counter)}"
                )

        @rule(amount=AMOUNTS, debit=st.booleans())
        def bank(self, amount: str, debit: bool) -> None:
            books.bank((4, f"-{amount}" if debit else amount, None))

        @rule()
        def auto(self) -> None:
            auto_match(books.clerk)

        @rule(data=st.data(), note=st.sampled_from([None, "short by the bank's fee"]))
        def hand(self, data: st.DataObject, note: str | None) -> None:
            lines = _ids(books, "", lambda u: u.session.scalars(select(BankLine.id)))
            payments = _ids(books, "", lambda u: u.session.scalars(select(Payment.id)))
            deposits = _ids(books, "", lambda u: u.session.scalars(select(Deposit.id)))
            if not lines or not (payments or deposits):
                return
            line = data.draw(st.sampled_from(lines))
            use_deposit = bool(deposits) and (not payments or data.draw(st.booleans()))
            try:
                if use_deposit:
                    match_line(
                        books.clerk,
                        line,
                        deposit_id=data.draw(st.sampled_from(deposits)),
                        note=note,
                    )
                else:
                    match_line(
                        books.clerk,
                        line,
                        payment_id=data.draw(st.sampled_from(payments)),
                        note=note,
                    )
            except BillingError:
                pass

        @rule(
            line_pick=st.integers(0, 99),
            picks=st.lists(st.integers(0, 99), min_size=2, max_size=3),
            note=st.sampled_from([None, "a third payment is missing"]),
        )
        def together(self, line_pick: int, picks: list[int], note: str | None) -> None:
            """One line matched to two or three payments or slips that are its money together
            (picked by indexes drawn up front, so the draws never depend on the ids)."""
            lines = _ids(books, "", lambda u: u.session.scalars(select(BankLine.id)))
            payments = _ids(books, "", lambda u: u.session.scalars(select(Payment.id)))
            deposits = _ids(books, "", lambda u: u.session.scalars(select(Deposit.id)))
            targets = [("payment", i) for i in payments] + [("deposit", i) for i in deposits]
            if not lines or len(targets) < 2:
                return
            chosen = [targets[pick % len(targets)] for pick in picks]
            with contextlib.suppress(BillingError):
                match_together(
                    books.clerk,
                    lines[line_pick % len(lines)],
                    payment_ids=[i for kind, i in chosen if kind == "payment"],
                    deposit_ids=[i for kind, i in chosen if kind == "deposit"],
                    note=note,
                )

        @rule(data=st.data())
        def unmatch(self, data: st.DataObject) -> None:
            lines = _ids(
                books,
                "",
                lambda u: u.session.scalars(select(BankMatch.line_id).where(BankMatch.active)),
            )
            if lines:
                unmatch_line(books.clerk, data.draw(st.sampled_from(lines)), "state machine")

        @rule(pick=st.integers(0, 99), to=st.sampled_from(["cleared", "recorded", "deposited"]))
        def clear_by_hand(self, pick: int, to: str) -> None:
            """Clearing, or taking it back, by hand is refused whatever the payment's state,
            and writes nothing: only matching a bank line clears. (The payment is picked by an
            index drawn up front, so the draws never depend on the database's ids.)"""
            payments = _ids(books, "", lambda u: u.session.scalars(select(Payment.id)))
            if not payments:
                return
            payment_id = payments[pick % len(payments)]
            before = books.clerk.read(_state)
            status = before["payments"][payment_id][0]
            if to == "recorded" and status == "returned":
                return  # presenting a returned check again is a person's move
            with contextlib.suppress(BillingError):
                change_status(books.clerk, payment_id, to, "by hand", f"hand-{next(counter)}")
                raise AssertionError(f"payment {payment_id} moved {status} -> {to} by hand")
            assert books.clerk.read(_state) == before

        @rule(data=st.data(), to=st.sampled_from(["voided", "returned", "recorded"]))
        def move(self, data: st.DataObject, to: str) -> None:
            payments = _ids(books, "", lambda u: u.session.scalars(select(Payment.id)))
            if payments:
                with contextlib.suppress(BillingError):
                    change_status(
                        books.manager,
                        data.draw(st.sampled_from(payments)),
                        to,
                        "state machine",
                        f"move-{next(counter)}",
                    )

        @invariant()
        def books_agree_with_the_bank(self) -> None:
            report = run_reconciliation(books.manager, *PERIOD)
            mismatches = {
                d.line_id: (d.expected_minor, d.actual_minor)
                for d in report.discrepancies
                if d.kind == "amount mismatch" and d.status == "open"
            }
            gone_reported = {
                d.payment_id
                for d in report.discrepancies
                if d.kind == "matched payment voided or returned"
            }
            state = books.clerk.read(_state)
            # A line matched to several together is explained by their sum.
            explained: dict[int, tuple[int, int]] = {}
            for line_id, amount, payment_id, deposit_id in state["matches"]:
                if payment_id is not None:
                    p_amount = state["payments"][payment_id][1]
                    share = -p_amount if amount < 0 else p_amount
                else:
                    share = state["deposits"][deposit_id]
                expected = explained.get(line_id, (amount, 0))[1] + share
                explained[line_id] = (amount, expected)
            for line_id, (amount, expected) in explained.items():
                if amount != expected:
                    assert mismatches.get(line_id) == (expected, amount), (line_id, mismatches)
            credited: set[int] = set()
            for _line, amount, payment_id, deposit_id in state["matches"]:
                if amount <= 0:
                    continue
                members = [payment_id] if payment_id else state["items"].get(deposit_id, [])
                for member in members:
                    assert member not in credited, f"payment {member} counted twice"
                    credited.add(member)
            debited = {
                payment_id
                for _line, amount, payment_id, _deposit in state["matches"]
                if amount < 0 and payment_id is not None
            }
            for payment_id, (status, _amount, _method) in state["payments"].items():
                if status == "cleared":
                    assert payment_id in credited, f"payment {payment_id} cleared, not matched"
                if payment_id in credited and status in ("recorded", "deposited"):
                    raise AssertionError(f"payment {payment_id} matched but {status}")
                # Until the bank's debit that took the money back out is matched too.
                if payment_id in credited and status in ("voided", "returned"):
                    assert payment_id in gone_reported or payment_id in debited

    run_state_machine_as_test(
        Reconciling,
        settings=settings(
            max_examples=8,
            stateful_step_count=12,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )


def _ids(books: Books, _: str, query) -> list[int]:  # type: ignore[no-untyped-def]
    return books.clerk.read(lambda u: sorted(query(u)))


def _state(unit) -> dict[str, object]:  # type: ignore[no-untyped-def]
    session = unit.session
    matches = [
        (m.line_id, line.amount_minor, m.payment_id, m.deposit_id)
        for m, line in session.execute(
            select(BankMatch, BankLine)
            .join(BankLine, BankLine.id == BankMatch.line_id)
            .where(BankMatch.active)
        )
    ]
    payments = {
        p.id: (p.status, p.amount_minor, p.method) for p in session.scalars(select(Payment))
    }
    deposits = {d.id: d.total_minor for d in session.scalars(select(Deposit))}
    items: dict[int, list[int]] = {}
    for item in session.scalars(select(DepositItem)):
        items.setdefault(item.deposit_id, []).append(item.payment_id)
    return {"matches": matches, "payments": payments, "deposits": deposits, "items": items}
