"""A Hypothesis state machine over the payment services, on both backends.

Rules record payments (every method; explicit, automatic or no allocation; fresh keys), replay a
used key, mutate a used key's request, enter the same check, transfer or card again (with and
without a manager's override), move payments along their lifecycle (legal and illegal moves, by
the right and the wrong user), deposit checks and cash, apply facility credit and void an invoice.
A small model predicts each outcome (which key made which payment, who holds each natural key,
what each move, deposit, credit application or re-presentation must allocate or release); a
refused operation must raise exactly the predicted error and write nothing.

After every step the database itself is read back and must hold: each invoice's total equals its
live lines and its live allocations plus what is still open, no invoice is overpaid, its status
is what its allocations imply; no payment holds more allocations than its amount, a payment out of
the live states holds none; one payment per successful (non-replayed) record; every status and
every recorded move is one its method's machine knows; no two payments share a natural key.
"""

from __future__ import annotations

import itertools
import shutil
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)
from psycopg import sql
from sqlalchemy import Connection, func, select

from billing_desk.db.engine import SQLITE_BEGIN
from billing_desk.db.models import (
    Allocation,
    AuditEntry,
    Deposit,
    DepositItem,
    IdempotencyRecord,
    Invoice,
    InvoiceLine,
    InvoiceStatusChange,
    Payment,
    PaymentStatusChange,
    Refund,
)
from billing_desk.domain.bank_matching import clearing_move, made_by_the_bank
from billing_desk.domain.errors import (
    BadInput,
    BillingError,
    IllegalTransition,
    PermissionDenied,
    Refused,
)
from billing_desk.domain.payments import (
    FIRST_STATUS,
    LIVE_STATUSES,
    PAYMENT_STATES,
    PaymentMethod,
    PaymentStatus,
)
from billing_desk.domain.states import InvoiceStatus, invoice_status_for
from billing_desk.services.balances import facility_balances
from billing_desk.services.credits import apply_credit
from billing_desk.services.deposits import create_deposit
from billing_desk.services.invoices import list_invoices, run_invoice, void_invoice
from billing_desk.services.payments import PaymentDraft, change_status, record_payment
from billing_desk.services.unit_of_work import open_workspace
from billing_desk.services.users import add_user
from tests.bank import clear_at_bank
from tests.conftest import BACKENDS, Database, pg_admin_connection, pg_url
from tests.support import load_trips, seed_facility, seed_users, trip

FACILITY = "STMARY"
RECEIVED = date(2026, 6, 2)
DEPOSIT_DAYS = (date(2026, 6, 10), date(2026, 6, 11))
REASON = "state machine step"
OVERRIDE = "second check from the same payer, confirmed by phone"
RECORDERS = ("clerk", "manager")
ACTORS = ("clerk", "manager", "manager2", "auditor")
USERS = ("admin", *ACTORS)
OPEN = (InvoiceStatus.ISSUED.value, InvoiceStatus.PARTIALLY_PAID.value)
RELEASING = frozenset(
    {PaymentStatus.VOIDED, PaymentStatus.RETURNED, PaymentStatus.REFUNDED, PaymentStatus.CHARGEBACK}
)
# (trip id, fare in cents); three invoices of different totals and due dates.
TRIPS = (
    ("T01", 4250),
    ("T02", 1234),
    ("T03", 9999),
    ("T04", 500),
    ("T05", 7525),
    ("T06", 3000),
    ("T07", 1500),
    ("T08", 6666),
    ("T09", 250),
    ("T10", 12000),
)
INVOICE_TRIPS = (("T01", "T02", "T03"), ("T04", "T05", "T06", "T07"), ("T08", "T09", "T10"))
AMOUNTS = st.integers(min_value=1, max_value=30_000)
# How an explicit allocation relates to the invoice's open amount at the time.
SHARES = ("open", "half", "over")
# Mostly numbered checks; sometimes the number is missing, with or without an override.
VARIANTS = ("numbered",) * 6 + ("unnumbered", "unnumbered, override")
# Field changed by a mutation -> the name the mismatch refusal must mention.
MUTATIONS = {
    "amount": "amount_minor",
    "payer": "payer",
    "memo": "memo",
    "received": "received",
    "allocations": "allocations",
    "auto_allocate": "auto_allocate",
    "operation": "operation",
}


def _text(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


# -- databases --------------------------------------------------------------------------------


def _seed(url: str) -> None:
    """Users (plus a second manager), one facility, ten trips, three issued invoices."""
    admin = open_workspace(url, "admin", migrate=False)
    manager = open_workspace(url, "manager", migrate=False)
    clerk = open_workspace(url, "clerk", migrate=False)
    try:
        seed_users(admin)
        add_user(admin, "manager2", "manager")
        seed_facility(admin, FACILITY)
        load_trips(
            manager,
            [
                trip(tid, day=date(2026, 5, 1 + n), fare=_text(cents), line=n + 2)
                for n, (tid, cents) in enumerate(TRIPS)
            ],
        )
        for n, trips in enumerate(INVOICE_TRIPS):
            run_invoice(
                clerk, FACILITY, "2026-05", trip_ids=list(trips), issue_date=date(2026, 6, 1 + n)
            )
    finally:
        for workspace in (admin, manager, clerk):
            workspace.close()


class SeededDatabases:
    """A seeded template made once per test, cloned into a fresh database for every example."""

    def __init__(self, backend: str, request: pytest.FixtureRequest, folder: Path) -> None:
        self.backend = backend
        self.folder = folder
        self.template = ""
        self.dropper = ThreadPoolExecutor(max_workers=1)
        self.drops: list[Future[None]] = []
        if backend == "sqlite":
            path = folder / "seeded.sqlite3"
            shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
            _seed(str(path))
            with sqlite3.connect(path) as conn:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.close()
            self.template = str(path)
        else:
            base = request.getfixturevalue("pg_template")
            self.template = f"bd_sm_seed_{uuid.uuid4().hex[:12]}"
            self._create(self.template, base)
            _seed(pg_url(self.template))

    @staticmethod
    def _create(name: str, template: str) -> None:
        with pg_admin_connection() as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(template)
                )
            )

    @staticmethod
    def _drop(name: str) -> None:
        with pg_admin_connection() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def fresh(self) -> Database:
        if self.backend == "sqlite":
            path = self.folder / f"example-{uuid.uuid4().hex[:8]}.sqlite3"
            shutil.copyfile(self.template, path)
            return Database("sqlite", str(path))
        name = f"bd_sm_{uuid.uuid4().hex[:12]}"
        self._create(name, self.template)
        return Database("postgresql", pg_url(name))

    def discard(self, database: Database) -> None:
        database.close()
        if self.backend == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                Path(database.url + suffix).unlink(missing_ok=True)
        else:
            # DROP DATABASE waits for a checkpoint (about a second on a busy server): run it on a
            # worker thread; `close` waits for every drop before it drops the template.
            self.drops.append(self.dropper.submit(self._drop, database.url.rsplit("/", 1)[1]))

    def close(self) -> None:
        self.dropper.shutdown(wait=True)
        for dropped in self.drops:
            dropped.result()
        if self.backend == "postgresql" and self.template:
            self._drop(self.template)


# -- the model --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recorded:
    """A successful, non-replayed record: its key, the request and the payment it made."""

    key: str
    draft: PaymentDraft
    payment_id: int
    recorder: str


@dataclass
class ModelPayment:
    id: int
    method: PaymentMethod
    status: PaymentStatus
    amount: int
    recorder: str
    instrument: str | None  # our name for the check / transfer / card; None for cash
    explicit: tuple[tuple[str, int], ...] = ()
    auto: bool = False
    returns: int = 0  # times returned by the bank: each return starts a new presentation
    # Where its last release took the money from (invoice, amount), credit applications aside.
    last_released: tuple[tuple[str, int], ...] = ()
    # A bank credit is matched to it (or to a slip holding it): it cannot be voided.
    at_bank: bool = False


@dataclass
class TransitionDone:
    key: str
    payment_id: int
    target: str
    result: Any


@dataclass
class InvoiceState:
    id: int
    number: str
    status: str
    total: int
    paid: int

    @property
    def open(self) -> int:
        return self.total - self.paid


@dataclass
class Snapshot:
    counts: tuple[int, ...]
    payments: tuple[Any, ...]
    allocations: tuple[Any, ...]
    invoices: tuple[Any, ...]


COUNTED = (
    AuditEntry,
    Payment,
    PaymentStatusChange,
    Allocation,
    IdempotencyRecord,
    Refund,
    Deposit,
    DepositItem,
    InvoiceStatusChange,
)


class PaymentMachine(RuleBasedStateMachine):
    databases: ClassVar[SeededDatabases]

    recorded = Bundle("recorded")

    def __init__(self) -> None:
        super().__init__()
        self.db = self.databases.fresh()
        try:
            self.ws = {user: self.db.workspace(user) for user in USERS}
            self.reader = self.ws["auditor"].engine.execution_options(**{SQLITE_BEGIN: "DEFERRED"})
            invoices = sorted(self._invoices().values(), key=lambda i: i.id)
        except BaseException:
            self.databases.discard(self.db)  # no teardown runs for a machine never made
            raise
        self.numbers = [i.number for i in invoices]
        self.model: dict[int, ModelPayment] = {}
        self.owners: dict[str, int] = {}  # instrument -> payment holding its natural key
        self.transitions: list[TransitionDone] = []
        self.derived_deposits: dict[tuple[tuple[int, ...], date, tuple[int, ...]], Any] = {}
        self.counter = 0
        with self._read() as conn:
            self.keys_before = conn.scalar(select(func.count()).select_from(IdempotencyRecord))
        self.keys_written = 0
        self.invoice_voided = False

    def teardown(self) -> None:
        self.databases.discard(self.db)

    # -- helpers ------------------------------------------------------------------------------

    def _next(self) -> int:
        self.counter += 1
        return self.counter

    def _key(self, what: str) -> str:
        return f"{what}-{self._next()}"

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.reader.connect() as conn:
            yield conn

    def _invoices(self) -> dict[str, InvoiceState]:
        with self._read() as conn:
            paid = dict(
                conn.execute(
                    select(Allocation.invoice_id, func.sum(Allocation.amount_minor))
                    .where(Allocation.released.is_(False))
                    .group_by(Allocation.invoice_id)
                ).all()
            )
            rows = conn.execute(
                select(Invoice.id, Invoice.number, Invoice.status, Invoice.total_minor)
            ).all()
        return {
            r.number: InvoiceState(r.id, r.number, r.status, r.total_minor, int(paid.get(r.id, 0)))
            for r in rows
        }

    def _live_allocated(self, payment_id: int) -> int:
        with self._read() as conn:
            return int(
                conn.scalar(
                    select(func.coalesce(func.sum(Allocation.amount_minor), 0)).where(
                        Allocation.payment_id == payment_id, Allocation.released.is_(False)
                    )
                )
            )

    def _live_rows(self, payment_id: int) -> list[Any]:
        with self._read() as conn:
            return list(
                conn.execute(
                    select(Invoice.number, Allocation.amount_minor, Allocation.via_credit)
                    .join(Invoice, Invoice.id == Allocation.invoice_id)
                    .where(Allocation.payment_id == payment_id, Allocation.released.is_(False))
                )
            )

    def _credit(self) -> int:
        return sum(
            p.amount - self._live_allocated(p.id)
            for p in self.model.values()
            if p.status in LIVE_STATUSES
        )

    def _open_total(self) -> int:
        return sum(i.open for i in self._invoices().values() if i.status in OPEN)

    def _snapshot(self) -> Snapshot:
        with self._read() as conn:
            return Snapshot(
                tuple(int(conn.scalar(select(func.count()).select_from(t))) for t in COUNTED),
                tuple(
                    conn.execute(
                        select(Payment.id, Payment.status, Payment.natural_key).order_by(Payment.id)
                    )
                ),
                tuple(
                    conn.execute(select(Allocation.id, Allocation.released).order_by(Allocation.id))
                ),
                tuple(conn.execute(select(Invoice.id, Invoice.status).order_by(Invoice.id))),
            )

    def _refused(
        self, error: type[BillingError], call: Callable[[], object], says: str | None = None
    ) -> None:
        """`call` must raise exactly `error` (mentioning `says`) and write nothing."""
        before = self._snapshot()
        with pytest.raises(BillingError) as caught:
            call()
        assert type(caught.value) is error, (
            f"expected {error.__name__}, got {type(caught.value).__name__}: {caught.value}"
        )
        if says is not None:
            assert says in str(caught.value), f"{says!r} not in {str(caught.value)!r}"
        assert self._snapshot() == before, f"refused ({caught.value}) but wrote something"

    def _allocation_outcome(
        self, amount: int, explicit: tuple[tuple[str, int], ...], auto: bool
    ) -> tuple[type[BillingError] | None, int]:
        """What allocating a live payment of `amount` would do now: (error, total allocated)."""
        if explicit and auto:
            return BadInput, 0
        if explicit:
            invoices = self._invoices()
            total = sum(m for _, m in explicit)
            if total > amount:
                return BadInput, 0
            for number, minor in explicit:
                invoice = invoices[number]
                if invoice.status not in OPEN or minor > invoice.open:
                    return Refused, 0
            return None, total
        if auto:
            return None, min(amount, self._open_total())
        return None, 0

    def _draft(
        self,
        method: PaymentMethod,
        cents: int,
        *,
        explicit: tuple[tuple[str, int], ...] = (),
        auto: bool = False,
        payer: str | None = None,
        numbered: bool = True,
        override: str | None = None,
    ) -> tuple[PaymentDraft, str | None]:
        n = self._next()
        fields: dict[str, Any] = {}
        instrument: str | None = None
        if method == PaymentMethod.CHECK:
            fields = {
                "check_number": str(1000 + n) if numbered else None,
                "routing_number": "021000021",
                "account_number": "000123456789",
            }
            instrument = f"check:{1000 + n}" if numbered else None
        elif method == PaymentMethod.TRANSFER:
            fields = {"reference": f"TRF {n}"}
            instrument = f"transfer:{n}"
        elif method == PaymentMethod.CARD:
            fields = {"card_brand": "Visa", "card_last4": "4242", "processor_ref": f"ch_{n}"}
            instrument = f"card:{n}"
        draft = PaymentDraft(
            facility=FACILITY,
            method=method.value,
            amount=_text(cents),
            received=RECEIVED,
            payer=payer,
            allocations=tuple((number, _text(m)) for number, m in explicit),
            auto_allocate=auto,
            override_reason=override,
            **fields,
        )
        return draft, instrument

    def _add(
        self,
        receipt: Any,
        draft: PaymentDraft,
        key: str,
        recorder: str,
        instrument: str | None,
        explicit: tuple[tuple[str, int], ...],
        held: bool,
    ) -> Recorded:
        method = PaymentMethod(draft.method)
        self.model[receipt.payment_id] = ModelPayment(
            receipt.payment_id,
            method,
            PaymentStatus(receipt.status),
            int(receipt.amount.minor),
            recorder,
            instrument,
            explicit,
            draft.auto_allocate,
        )
        if instrument is not None and not held:
            assert instrument not in self.owners
            self.owners[instrument] = receipt.payment_id
        self.keys_written += 1
        return Recorded(key, draft, receipt.payment_id, recorder)

    def _explicit(self, invoice: int, share: str, cents: int) -> tuple[tuple[str, int], ...]:
        state = self._invoices()[self.numbers[invoice]]
        open_now = max(state.open, 1)
        minor = {"open": open_now, "half": max(1, min(open_now, cents) // 2), "over": open_now + 1}
        return ((state.number, minor[share]),)

    # -- recording ----------------------------------------------------------------------------

    @rule(
        target=recorded,
        method=st.sampled_from(list(PaymentMethod)),
        cents=AMOUNTS,
        allocation=st.sampled_from(("none", "auto", "explicit")),
        invoice=st.integers(0, 2),
        share=st.sampled_from(SHARES),
        recorder=st.sampled_from(RECORDERS),
        variant=st.sampled_from(VARIANTS),
    )
    def record(
        self,
        method: PaymentMethod,
        cents: int,
        allocation: str,
        invoice: int,
        share: str,
        recorder: str,
        variant: str,
    ) -> object:
        """A new payment under a fresh key. A check may come without its number: refused unless
        a manager's approval is asked for, then held (awaiting approval)."""
        explicit = self._explicit(invoice, share, cents) if allocation == "explicit" else ()
        auto = allocation == "auto"
        unnumbered = method == PaymentMethod.CHECK and variant != "numbered"
        draft, instrument = self._draft(
            method,
            cents,
            explicit=explicit,
            auto=auto,
            payer="Ann",
            numbered=not unnumbered,
            override=OVERRIDE if unnumbered and variant == "unnumbered, override" else None,
        )
        key = self._key("record")

        def call() -> Any:
            return record_payment(self.ws[recorder], draft, key)

        if unnumbered:
            if draft.override_reason is None:
                self._refused(Refused, call, says="without a number")
                return multiple()
            receipt = call()
            assert receipt.status == PaymentStatus.AWAITING_APPROVAL.value
            assert (receipt.allocations, receipt.credit.minor) == ((), 0)
            return self._add(receipt, draft, key, recorder, None, explicit, held=True)
        error, allocated = self._allocation_outcome(cents, explicit, auto)
        if error is not None:
            self._refused(error, call)
            return multiple()
        receipt = call()
        assert not receipt.replayed
        assert receipt.payment_id not in self.model
        assert receipt.status == FIRST_STATUS[method].value
        assert receipt.amount.minor == cents
        assert sum(a.amount.minor for a in receipt.allocations) == allocated
        assert receipt.credit.minor == cents - allocated
        assert receipt.duplicate_of is None
        return self._add(receipt, draft, key, recorder, instrument, explicit, held=False)

    @rule(
        target=recorded,
        original=recorded,
        extra_cents=st.sampled_from((0, 100)),
        override=st.booleans(),
        recorder=st.sampled_from(RECORDERS),
    )
    def record_duplicate(
        self, original: Recorded, extra_cents: int, override: bool, recorder: str
    ) -> object:
        """The same check, transfer or card entered again under a new key."""
        paid = self.model[original.payment_id]
        if paid.instrument is None:
            return multiple()
        owner = self.owners.get(paid.instrument)
        cents = paid.amount + extra_cents
        draft = replace(
            original.draft,
            amount=_text(cents),
            override_reason=OVERRIDE if override else None,
        )
        key = self._key("record")
        if owner is None:
            # Its payment was voided (entered in error): the instrument may be entered again,
            # as a new payment; an override reason changes nothing.
            error, allocated = self._allocation_outcome(cents, paid.explicit, draft.auto_allocate)
            if error is not None:
                self._refused(error, lambda: record_payment(self.ws[recorder], draft, key))
                return multiple()
            receipt = record_payment(self.ws[recorder], draft, key)
            assert receipt.status == FIRST_STATUS[paid.method].value
            assert receipt.duplicate_of is None
            assert sum(a.amount.minor for a in receipt.allocations) == allocated
            return self._add(
                receipt, draft, key, recorder, paid.instrument, paid.explicit, held=False
            )
        if not override:
            says = (
                "returned by the bank"
                if self.model[owner].status == PaymentStatus.RETURNED
                else f"already recorded as payment {owner}"
            )
            self._refused(Refused, lambda: record_payment(self.ws[recorder], draft, key), says)
            return multiple()
        receipt = record_payment(self.ws[recorder], draft, key)
        assert receipt.status == PaymentStatus.AWAITING_APPROVAL.value
        assert receipt.duplicate_of == owner
        assert receipt.allocations == ()
        return self._add(receipt, draft, key, recorder, paid.instrument, paid.explicit, held=True)

    @rule(entry=recorded, replayer=st.sampled_from(RECORDERS))
    def replay(self, entry: Recorded, replayer: str) -> None:
        before = self._snapshot()
        receipt = record_payment(self.ws[replayer], entry.draft, entry.key)
        assert receipt.replayed
        assert receipt.payment_id == entry.payment_id
        assert self._snapshot() == before, "a replay wrote something"

    @rule(entry=recorded, change=st.sampled_from(sorted(MUTATIONS)))
    def mutate(self, entry: Recorded, change: str) -> None:
        draft = entry.draft
        if change == "operation":
            # The record's key reused for a status change: a different request.
            self._refused(
                Refused,
                lambda: change_status(
                    self.ws["clerk"], entry.payment_id, "cleared", REASON, entry.key
                ),
                says="operation",
            )
            return
        if change == "amount":
            draft = replace(draft, amount=_text(self.model[entry.payment_id].amount + 1))
        elif change == "payer":
            draft = replace(draft, payer="Someone Else")
        elif change == "memo":
            draft = replace(draft, memo="changed on retry")
        elif change == "received":
            draft = replace(draft, received=draft.received - timedelta(days=1))
        elif change == "allocations":
            draft = replace(draft, allocations=((self.numbers[0], "0.01"),))
            if draft.allocations == entry.draft.allocations:
                draft = replace(draft, allocations=((self.numbers[0], "0.02"),))
        else:
            draft = replace(draft, auto_allocate=not draft.auto_allocate)
        self._refused(
            Refused,
            lambda: record_payment(self.ws[entry.recorder], draft, entry.key),
            says=MUTATIONS[change],
        )

    # -- lifecycle ----------------------------------------------------------------------------

    def _move_error(
        self, paid: ModelPayment, target: PaymentStatus, actor: str
    ) -> type[BillingError] | None:
        if target == PaymentStatus.DEPOSITED:
            return BadInput
        if actor == "auditor":
            return PermissionDenied
        current = paid.status
        if made_by_the_bank(paid.method, current, target):
            return Refused  # money clears by matching its bank line, never by hand
        if target == PaymentStatus.VOIDED and paid.at_bank:
            return Refused  # the bank says the money arrived: unmatch first
        if not PAYMENT_STATES[paid.method].allows(current, target):
            return IllegalTransition
        approving = current == PaymentStatus.AWAITING_APPROVAL
        manager_move = target in (PaymentStatus.VOIDED, PaymentStatus.REFUNDED) or approving
        if manager_move and (not actor.startswith("manager") or actor == paid.recorder):
            return PermissionDenied
        if approving and target != PaymentStatus.VOIDED:
            return self._allocation_outcome(paid.amount, paid.explicit, paid.auto)[0]
        return None

    def _transition(self, payment_id: int, target: PaymentStatus, actor: str) -> None:
        paid = self.model[payment_id]
        key = self._key("move")
        error = self._move_error(paid, target, actor)
        if error is not None:
            self._refused(
                error, lambda: change_status(self.ws[actor], payment_id, target.value, REASON, key)
            )
            return
        current = paid.status
        live_rows = self._live_rows(payment_id)
        expected_new = 0
        if current == PaymentStatus.AWAITING_APPROVAL and target != PaymentStatus.VOIDED:
            expected_new = self._allocation_outcome(paid.amount, paid.explicit, paid.auto)[1]
        elif current == PaymentStatus.RETURNED and target in LIVE_STATUSES:
            # Presented again: the money goes back where the return took it from, as far as
            # those invoices are still open; the rest is credit.
            invoices = self._invoices()
            wanted: dict[str, int] = {}
            for number, minor in paid.last_released:
                wanted[number] = wanted.get(number, 0) + minor
            expected_new = sum(
                min(minor, invoices[number].open)
                for number, minor in wanted.items()
                if invoices[number].status in OPEN
            )
        result = change_status(self.ws[actor], payment_id, target.value, REASON, key)
        assert not result.replayed
        assert (result.from_status, result.status) == (current.value, target.value)
        released = sum(a.amount.minor for a in result.released)
        held_before = sum(r.amount_minor for r in live_rows)
        assert released == (held_before if target in RELEASING else 0)
        assert sum(a.amount.minor for a in result.allocations) == expected_new
        paid.status = target
        if target in RELEASING and live_rows:
            paid.last_released = tuple(
                (r.number, r.amount_minor) for r in live_rows if not r.via_credit
            )
        if target == PaymentStatus.RETURNED:
            paid.returns += 1
        instrument = paid.instrument or ""
        if target == PaymentStatus.VOIDED and self.owners.get(instrument) == payment_id:
            # Entered in error: the instrument is free to be entered again.
            del self.owners[instrument]
        self.keys_written += 1
        self.transitions.append(TransitionDone(key, payment_id, target.value, result))

    def _clear_at_bank(self, payment_id: int) -> None:
        """The bank's credit for the payment (or its latest slip) imported and matched: every
        payment of the slip still deposited clears."""
        clear_at_bank(self.ws["clerk"], payment_id)

        def members(unit):  # type: ignore[no-untyped-def]
            slip = unit.session.scalar(
                select(func.max(DepositItem.deposit_id)).where(DepositItem.payment_id == payment_id)
            )
            if slip is None:
                return [payment_id]
            return list(
                unit.session.scalars(
                    select(DepositItem.payment_id).where(DepositItem.deposit_id == slip)
                )
            )

        for member in self.ws["clerk"].read(members):
            paid = self.model[member]
            paid.at_bank = True
            cleared = clearing_move(paid.method, paid.status)
            if cleared is not None:
                paid.status = cleared

    @rule(entry=recorded, to=st.sampled_from(list(PaymentStatus)), actor=st.sampled_from(ACTORS))
    def attempt_transition(self, entry: Recorded, to: PaymentStatus, actor: str) -> None:
        """Any move by anyone: legal ones succeed, the rest are refused writing nothing."""
        self._transition(entry.payment_id, to, actor)

    @rule(entry=recorded, moves=st.integers(1, 3), data=st.data())
    def advance(self, entry: Recorded, moves: int, data: st.DataObject) -> None:
        """Up to `moves` legal moves in a row (approve, deposit, clear, capture, settle, return,
        void, refund, chargeback, present again), each by a user allowed to make it, with the
        invariants checked after each."""
        paid = self.model[entry.payment_id]
        for _ in range(moves):
            targets = sorted(PAYMENT_STATES[paid.method].targets(paid.status))
            if not targets:
                return
            target = data.draw(st.sampled_from(targets), label="target")
            if target == PaymentStatus.DEPOSITED:
                self._deposit([entry.payment_id], DEPOSIT_DAYS[0], keyed=True)
            elif made_by_the_bank(paid.method, paid.status, target):
                # Refused by hand; a clearing happens by matching the bank's line instead.
                self._transition(entry.payment_id, target, "clerk")
                if target not in (PaymentStatus.CLEARED, PaymentStatus.SETTLED):
                    return
                self._clear_at_bank(entry.payment_id)
            else:
                manager_move = (
                    target in (PaymentStatus.VOIDED, PaymentStatus.REFUNDED)
                    or paid.status == PaymentStatus.AWAITING_APPROVAL
                )
                actor = "manager2" if manager_move else "clerk"
                self._transition(entry.payment_id, target, actor)
            self.books_balance()

    @precondition(lambda self: bool(self.transitions))
    @rule(data=st.data())
    def replay_transition(self, data: st.DataObject) -> None:
        done = self.transitions[data.draw(st.integers(0, len(self.transitions) - 1), label="i")]
        before = self._snapshot()
        again = change_status(self.ws["clerk"], done.payment_id, done.target, REASON, done.key)
        assert again == replace(done.result, replayed=True)
        assert self._snapshot() == before, "a replayed status change wrote something"

    # -- deposits -----------------------------------------------------------------------------

    def _deposit(self, payment_ids: list[int], day: date, *, keyed: bool) -> None:
        ids = tuple(sorted(set(payment_ids)))
        key = self._key("deposit") if keyed else None
        derived = (ids, day, tuple(self.model[i].returns for i in ids))
        if not keyed and derived in self.derived_deposits:
            # The derived key of a deposit already made: the first slip comes back.
            before = self._snapshot()
            slip = create_deposit(self.ws["clerk"], list(ids), day)
            assert slip == replace(self.derived_deposits[derived], replayed=True)
            assert self._snapshot() == before
            return
        depositable = all(
            self.model[i].method in (PaymentMethod.CHECK, PaymentMethod.CASH)
            and self.model[i].status == PaymentStatus.RECORDED
            for i in ids
        )
        if not depositable:
            self._refused(
                Refused,
                lambda: create_deposit(self.ws["clerk"], list(ids), day, idempotency_key=key),
            )
            return
        slip = create_deposit(self.ws["clerk"], list(ids), day, idempotency_key=key)
        assert not slip.replayed
        assert tuple(i.payment_id for i in slip.items) == ids
        assert slip.total.minor == sum(self.model[i].amount for i in ids)
        for i in ids:
            self.model[i].status = PaymentStatus.DEPOSITED
        self.keys_written += 1
        if not keyed:
            self.derived_deposits[derived] = slip

    @precondition(lambda self: bool(self.model))  # the bundle is not empty
    @rule(
        picks=st.lists(recorded, min_size=1, max_size=3),
        day=st.sampled_from(DEPOSIT_DAYS),
        keyed=st.booleans(),
    )
    def deposit(self, picks: list[Recorded], day: date, keyed: bool) -> None:
        self._deposit([p.payment_id for p in picks], day, keyed=keyed)

    # -- credit and invoices ------------------------------------------------------------------

    @precondition(lambda self: any(p.status in LIVE_STATUSES for p in self.model.values()))
    @rule(
        invoice=st.integers(0, 2),
        how=st.sampled_from(("all credit", "all open", "half", "too much")),
    )
    def use_credit(self, invoice: int, how: str) -> None:
        state = self._invoices()[self.numbers[invoice]]
        credit = self._credit()
        wanted = {
            "all credit": credit,
            "all open": state.open,
            "half": min(credit, state.open) // 2,
            "too much": max(credit, state.open) + 1,
        }[how] or 1
        key = self._key("credit")

        def call() -> Any:
            return apply_credit(self.ws["clerk"], FACILITY, state.number, _text(wanted), key)

        if wanted > credit or state.status not in OPEN or wanted > state.open:
            self._refused(Refused, call)
            return
        applied = call()
        assert not applied.replayed
        assert applied.amount.minor == wanted
        assert applied.credit_left.minor == credit - wanted
        assert self._invoices()[state.number].paid == state.paid + wanted
        self.keys_written += 1

    @precondition(lambda self: not self.invoice_voided and len(self.model) >= 3)
    @rule()
    def void_last_invoice(self) -> None:
        """Void the newest invoice (once): legal only while nothing is allocated to it."""
        state = self._invoices()[self.numbers[-1]]
        manager = self.ws["manager"]
        if state.status != InvoiceStatus.ISSUED.value:
            self._refused(
                IllegalTransition, lambda: void_invoice(manager, state.number, "billed in error")
            )
            return
        assert void_invoice(manager, state.number, "billed in error").status == "void"
        self.invoice_voided = True

    # -- what must hold after every step ------------------------------------------------------

    @invariant()
    def books_balance(self) -> None:
        with self._read() as conn:
            invoices = conn.execute(
                select(Invoice.id, Invoice.number, Invoice.status, Invoice.total_minor)
            ).all()
            lines = dict(
                conn.execute(
                    select(InvoiceLine.invoice_id, func.sum(InvoiceLine.amount_minor))
                    .where(InvoiceLine.released.is_(False))
                    .group_by(InvoiceLine.invoice_id)
                ).all()
            )
            allocations = conn.execute(
                select(
                    Allocation.payment_id,
                    Allocation.invoice_id,
                    Allocation.facility_id,
                    Allocation.amount_minor,
                    Allocation.released,
                )
            ).all()
            payments = conn.execute(
                select(
                    Payment.id,
                    Payment.facility_id,
                    Payment.method,
                    Payment.status,
                    Payment.amount_minor,
                    Payment.natural_key,
                )
            ).all()
            history = conn.execute(
                select(
                    PaymentStatusChange.payment_id,
                    PaymentStatusChange.from_status,
                    PaymentStatusChange.to_status,
                ).order_by(PaymentStatusChange.id)
            ).all()
            refunds = conn.execute(select(Refund.payment_id, Refund.amount_minor)).all()
            keys = conn.scalar(select(func.count()).select_from(IdempotencyRecord))
            deposits = conn.execute(select(Deposit.id, Deposit.total_minor)).all()
            items = dict(
                conn.execute(
                    select(DepositItem.deposit_id, func.sum(DepositItem.amount_minor)).group_by(
                        DepositItem.deposit_id
                    )
                ).all()
            )

        live = [a for a in allocations if not a.released]
        for a in allocations:
            assert a.amount_minor > 0
        by_invoice: dict[int, int] = {}
        by_payment: dict[int, int] = {}
        for a in live:
            by_invoice[a.invoice_id] = by_invoice.get(a.invoice_id, 0) + a.amount_minor
            by_payment[a.payment_id] = by_payment.get(a.payment_id, 0) + a.amount_minor

        # Invoices: total = live allocations + open, never overpaid, status follows the money.
        for inv in invoices:
            paid = by_invoice.get(inv.id, 0)
            open_amount = inv.total_minor - paid
            assert inv.total_minor == paid + open_amount
            assert open_amount >= 0, f"invoice {inv.number} overpaid by {-open_amount}"
            if inv.status == InvoiceStatus.VOID.value:
                assert paid == 0, f"void invoice {inv.number} holds {paid} of allocations"
                assert lines.get(inv.id, 0) == 0
            else:
                assert inv.total_minor == lines.get(inv.id, 0), f"{inv.number} total != lines"
                expected = invoice_status_for(inv.total_minor, paid).value
                assert inv.status == expected, (
                    f"invoice {inv.number} is {inv.status} with {paid} of {inv.total_minor} paid"
                )

        # Payments: one per successful record, legal states, allocations within the amount.
        assert len(payments) == len(self.model), "payments differ from successful records"
        natural_keys: set[tuple[int, str]] = set()
        moves: dict[int, list[tuple[str | None, str]]] = {}
        for h in history:
            moves.setdefault(h.payment_id, []).append((h.from_status, h.to_status))
        facility_of = {p.id: p.facility_id for p in payments}
        for p in payments:
            method = PaymentMethod(p.method)
            status = PaymentStatus(p.status)
            machine = PAYMENT_STATES[method]
            assert status in machine.states(), f"payment {p.id}: {method} cannot be {status}"
            model = self.model[p.id]
            assert (model.method, model.status, model.amount) == (method, status, p.amount_minor)
            allocated = by_payment.get(p.id, 0)
            assert allocated <= p.amount_minor, f"payment {p.id} allocates {allocated}"
            if status not in LIVE_STATUSES:
                assert allocated == 0, f"{status} payment {p.id} still holds {allocated}"
            holds_key = self.owners.get(model.instrument or "") == p.id
            assert (p.natural_key is not None) == holds_key, f"payment {p.id} natural key"
            if p.natural_key is not None:
                pair = (p.facility_id, p.natural_key)
                assert pair not in natural_keys, f"two payments share {p.natural_key}"
                natural_keys.add(pair)
            steps = moves.get(p.id, [])
            assert steps, f"payment {p.id} has no status history"
            assert steps[0][0] is None
            assert steps[0][1] in (FIRST_STATUS[method], PaymentStatus.AWAITING_APPROVAL)
            for (_, before), (came_from, to) in itertools.pairwise(steps):
                assert came_from == before, f"payment {p.id} history skips from {before}"
                assert machine.allows(PaymentStatus(came_from), PaymentStatus(to))
            assert steps[-1][1] == p.status, f"payment {p.id} last history != status"
        for a in allocations:
            assert a.facility_id == facility_of[a.payment_id]

        refunded = {p.id: p.amount_minor for p in payments if p.status == "refunded"}
        assert dict(refunds) == refunded
        assert len(refunds) == len(refunded)
        for d in deposits:
            assert d.total_minor == items.get(d.id, 0)
        assert keys == self.keys_before + self.keys_written, "idempotency records miscounted"

    @invariant()
    def what_is_owed(self) -> None:
        """The open amounts and the facility balance the services show agree with the rows:
        each invoice's total = paid + credited + open; balance = sum of open - credit; the aging
        buckets sum to the open amount, and less the credit to the balance."""
        reader = self.ws["auditor"]
        rows = self._invoices()
        summaries = list_invoices(reader)
        assert {s.number for s in summaries} == set(rows)
        for summary in summaries:
            row = rows[summary.number]
            assert summary.total == summary.paid + summary.credited + summary.open or (
                row.status == InvoiceStatus.VOID.value and summary.open.is_zero()
            ), summary
            expected_open = row.open if row.status in OPEN else 0
            assert summary.open.minor == expected_open, summary
            assert summary.paid.minor + summary.credited.minor == row.paid
        (balance,) = facility_balances(reader, FACILITY)
        open_total = sum(s.open.minor for s in summaries)
        assert balance.open.minor == open_total == self._open_total()
        assert balance.credit.minor == self._credit()
        assert balance.balance.minor == open_total - self._credit()
        assert sum(a.amount.minor for a in balance.aging) == balance.open.minor
        assert sum(a.amount.minor for a in balance.aging) - balance.credit.minor == (
            balance.balance.minor
        )
        assert balance.open_invoices == sum(1 for s in summaries if s.open.is_positive())


SETTINGS = settings(
    max_examples=15,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.mark.parametrize("backend", BACKENDS)
def test_payment_state_machine(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    databases = SeededDatabases(backend, request, tmp_path)
    try:
        machine = type(f"PaymentMachine_{backend}", (PaymentMachine,), {"databases": databases})
        run_state_machine_as_test(machine, settings=SETTINGS)
    finally:
        databases.close()
