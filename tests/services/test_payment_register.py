"""The payment register's pages: newest first, keyset pages that neither repeat nor skip, and
each filter narrowing on the server (amounts compared in each payment's own currency), with a
backwards range refused in one sentence naming the fields to change."""

from __future__ import annotations

import uuid
from datetime import date

import pytest

from billing_desk.domain.errors import BadInput
from billing_desk.services.payment_register import PaymentFilter, payment_page
from billing_desk.services.payments import PaymentDraft, record_payment
from tests.conftest import Database
from tests.support import seed_facility, seed_users


@pytest.fixture
def register(database: Database) -> Database:
    admin = database.workspace("admin")
    seed_users(admin)
    seed_facility(admin, "STMARY")
    seed_facility(admin, "OAKVIEW")
    clerk = database.workspace("clerk")
    for number in range(1, 13):
        facility = "STMARY" if number % 2 else "OAKVIEW"
        draft = PaymentDraft(
            facility,
            "transfer" if number % 3 else "cash",
            f"{number * 10}.00",
            date(2026, 6, number),
            reference=f"REF-{number:03d}" if number % 3 else None,
            payer=f"Payer {number}",
            memo="May invoices" if number == 7 else None,
        )
        record_payment(clerk, draft, str(uuid.uuid4()))
    return database


def _ids(database: Database, wanted: PaymentFilter, limit: int = 5) -> list[int]:
    reader = database.workspace("auditor")
    seen: list[int] = []
    after = None
    while True:
        page = payment_page(reader, wanted, after=after, limit=limit)
        seen += [p.payment_id for p in page]
        if len(page) < limit:
            return seen
        after = page[-1].payment_id


def test_pages_are_newest_first_and_whole(register: Database) -> None:
    everything = _ids(register, PaymentFilter(), limit=100)
    assert len(everything) == 12 and everything == sorted(everything, reverse=True)
    assert _ids(register, PaymentFilter(), limit=5) == everything, "pages of 5 give the same"


def test_each_filter_narrows(register: Database) -> None:
    reader = register.workspace("auditor")

    def rows(**kwargs: object) -> list:  # type: ignore[type-arg]
        return payment_page(reader, PaymentFilter(**kwargs))  # type: ignore[arg-type]

    assert {r.facility for r in rows(facility="STMARY")} == {"STMARY"}
    assert {r.method for r in rows(method="cash")} == {"cash"} and len(rows(method="cash")) == 4
    june_3_to_5 = rows(received_from=date(2026, 6, 3), received_to=date(2026, 6, 5))
    assert sorted(r.received_date.day for r in june_3_to_5) == [3, 4, 5]
    between = rows(amount_from="30", amount_to="50.00")
    assert sorted(r.amount.minor for r in between) == [3000, 4000, 5000]
    assert [r.payer for r in rows(text="may INVOICES")] == ["Payer 7"]
    assert [r.payer for r in rows(text="ref-011")] == ["Payer 11"]
    assert rows(recorded_by="nobody") == []
    assert len(rows(recorded_by="clerk")) == 12


@pytest.mark.parametrize(
    ("wanted", "says"),
    [
        (PaymentFilter(received_from=date(2026, 6, 5), received_to=date(2026, 6, 1)), "From or To"),
        (PaymentFilter(amount_from="50", amount_to="10"), "change the amounts"),
        (PaymentFilter(amount_from="ten"), "not a number"),
    ],
)
def test_bad_filters_are_refused(register: Database, wanted: PaymentFilter, says: str) -> None:
    with pytest.raises(BadInput, match=says):
        payment_page(register.workspace("auditor"), wanted)
