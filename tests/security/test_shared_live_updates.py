"""Live updates on a shared database, as real login roles: a payment reaches the people who may
see it and nobody else, though every listener receives the same notification."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date

import psycopg
import pytest

from billing_desk.services.live import LiveEvent, Subscription, subscribe
from billing_desk.services.payments import PaymentDraft, record_payment
from tests.security.conftest import SharedDatabase
from tests.services.test_live_updates import Feed


@pytest.fixture
def feeds() -> Iterator[Callable[[Subscription], Feed]]:
    started: list[Feed] = []

    def start(subscription: Subscription) -> Feed:
        feed = Feed(subscription)
        started.append(feed)
        return feed

    yield start
    for feed in started:
        feed.subscription.stop()


def test_a_payment_reaches_only_those_who_may_see_it(
    shared: SharedDatabase, feeds: Callable[[Subscription], Feed]
) -> None:
    same_facility = feeds(subscribe(shared.workspace("manager_a")))
    other_facility = feeds(subscribe(shared.workspace("clerk_b")))
    auditor = feeds(subscribe(shared.workspace("auditor")))
    receipt = record_payment(
        shared.workspace("clerk_a"),
        PaymentDraft("FACA", "transfer", "1.00", date(2026, 6, 9), reference="LIVE-1"),
        "k-live-1",
    )
    for feed in (same_facility, auditor):
        event = feed.next(5.0)
        assert isinstance(event, LiveEvent)
        assert (event.kind, event.entity_id, event.facility) == (
            "payment",
            str(receipt.payment_id),
            "FACA",
        )
    other_facility.quiet_for(1.0)
    for feed in (same_facility, other_facility, auditor):
        feed.stop()


def test_a_replayed_or_forged_announcement_shows_nothing(
    shared: SharedDatabase, feeds: Callable[[Subscription], Feed]
) -> None:
    """Anyone may NOTIFY the channel: an old payment's entry replayed, and an entry naming a
    payment that does not exist, show no event. The database now refuses such an entry from
    any login, so it is planted as the server's superuser would (or as one written before the
    guard was): the client's own check, that an entry resolves to a payment its author
    recorded, is what must drop it. The payment recorded afterwards is then the next event, so
    a feed that shows nothing at all cannot pass."""
    watching = feeds(subscribe(shared.workspace("manager_a")))
    with shared.connect("clerk_a") as conn:
        old = conn.execute(
            "SELECT min(id) FROM audit_entry WHERE entity_type = 'payment' AND before IS NULL"
        ).fetchone()
        assert old is not None and old[0] is not None
        conn.execute("SELECT pg_notify('billing_desk_live', %s)", (f"payment:{old[0]}",))
    with psycopg.connect(shared.admin_url, autocommit=True) as conn:
        # In clerk A's name and facility, which manager A reads: only the payment is missing.
        forged = conn.execute(
            "INSERT INTO audit_entry (recorded_at, user_name, user_role, facility_id, action, "
            "entity_type, entity_id, before, after, request_id) VALUES (now(), %s, 'clerk', "
            "%s, 'payment.record', 'payment', '99999999', NULL, '{}', 'forged') RETURNING id",
            (shared.login("clerk_a"), shared.facility_ids["FACA"]),
        ).fetchone()
        assert forged is not None
        conn.execute("SELECT pg_notify('billing_desk_live', %s)", (f"payment:{forged[0]}",))
    with shared.connect("manager_a") as conn:
        # Manager A reads the planted entry: nothing but the client's check keeps it out.
        assert conn.execute(
            "SELECT count(*) FROM audit_entry WHERE id = %s", (forged[0],)
        ).fetchone() == (1,)
    receipt = record_payment(
        shared.workspace("clerk_a"),
        PaymentDraft("FACA", "transfer", "2.00", date(2026, 6, 9), reference="LIVE-AFTER"),
        "k-live-after",
    )
    event = watching.next(5.0)
    assert isinstance(event, LiveEvent), event
    assert (event.kind, event.entity_id) == ("payment", str(receipt.payment_id)), event
    watching.quiet_for(1.0)
    watching.stop()
