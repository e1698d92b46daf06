"""A shared PostgreSQL database set up by `admin init`, with real login roles: two clerks and
two managers in different facilities and an auditor, and data each clerk wrote through the
application as themselves. Attack tests connect as these roles, as a user with psql would."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date

import psycopg
import pytest
from psycopg import sql

from billing_desk.services import admin
from billing_desk.services.clock import Clock
from billing_desk.services.invoices import run_invoice
from billing_desk.services.payments import PaymentDraft, record_payment
from billing_desk.services.unit_of_work import Workspace, open_workspace
from billing_desk.services.users import add_user
from tests.clocks import office_hours
from tests.conftest import pg_admin_connection, pg_url
from tests.support import load_trips, seed_facility, trip

PASSWORD = "correct-horse-battery-staple"  # noqa: S105 (a throwaway test role)
PEOPLE = {
    "clerk_a": ("clerk", ["FACA"]),
    "clerk_b": ("clerk", ["FACB"]),
    "manager_a": ("manager", ["FACA"]),
    "manager_b": ("manager", ["FACB"]),
    "auditor": ("auditor", None),
    "administrator": ("admin", None),
}


@dataclass
class SharedDatabase:
    name: str
    tag: str
    # Everything written through the application happens at these moments: in office hours on
    # a weekday, unless a test chooses otherwise, so that no rule depends on the wall clock.
    clock: Clock = field(default_factory=office_hours)
    facility_ids: dict[str, int] = field(default_factory=dict)
    payment_ids: dict[str, int] = field(default_factory=dict)
    invoice_numbers: dict[str, str] = field(default_factory=dict)
    opened: list[Workspace] = field(default_factory=list)

    @property
    def admin_url(self) -> str:
        return pg_url(self.name)

    def login(self, person: str) -> str:
        return f"{self.tag}_{person}"

    def url(self, person: str, password: str | None = PASSWORD) -> str:
        secret = f":{password}" if password else ""
        return f"postgresql://{self.login(person)}{secret}@127.0.0.1:5432/{self.name}"

    def connect(self, person: str) -> psycopg.Connection[tuple[object, ...]]:
        """A raw connection as `person`, autocommit, as psql would have."""
        return psycopg.connect(self.url(person), autocommit=True, connect_timeout=5)

    def workspace(self, person: str, *, clock: Clock | None = None) -> Workspace:
        workspace = open_workspace(self.url(person), clock=clock or self.clock)
        self.opened.append(workspace)
        return workspace


def _check_draft(facility: str, number: str, amount: str = "20.00") -> PaymentDraft:
    return PaymentDraft(
        facility,
        "check",
        amount,
        date(2026, 6, 2),
        check_number=number,
        routing_number="021000021",
        account_number="000123456789",
        auto_allocate=True,
    )


def make_shared_database() -> SharedDatabase:
    tag = f"t{uuid.uuid4().hex[:8]}"
    database = SharedDatabase(f"bd_shared_{tag}", tag)
    with pg_admin_connection() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database.name)))
    admin.init_shared(database.admin_url)
    setup = open_workspace(database.admin_url, f"{tag}_setup", clock=database.clock)
    database.opened.append(setup)
    add_user(setup, f"{tag}_setup", "admin")
    for code in ("FACA", "FACB"):
        seed_facility(setup, code)
    for person, (role, facilities) in PEOPLE.items():
        admin.add_user(
            database.admin_url,
            database.login(person),
            role,
            PASSWORD,
            facilities=facilities,
            all_facilities=facilities is None,
        )
    with psycopg.connect(database.admin_url) as conn:
        for code, fid in conn.execute("SELECT code, id FROM facility"):
            database.facility_ids[str(code)] = int(fid)  # type: ignore[call-overload]
    for side, code in (("a", "FACA"), ("b", "FACB")):
        clerk = database.workspace(f"clerk_{side}")
        load_trips(clerk, [trip(f"{code}-T{i}", facility=code) for i in range(1, 4)])
        invoice = run_invoice(clerk, code, "2026-05")
        database.invoice_numbers[side] = invoice.invoice_number
        receipt = record_payment(
            clerk, _check_draft(code, "5001" if side == "a" else "5002"), f"seed-{side}"
        )
        database.payment_ids[side] = receipt.payment_id
    return database


def drop_shared_database(database: SharedDatabase) -> None:
    for workspace in database.opened:
        workspace.close()
    with pg_admin_connection() as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database.name))
        )
        for person in PEOPLE:
            conn.execute(
                sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(database.login(person)))
            )


@pytest.fixture(scope="module")
def shared() -> Iterator[SharedDatabase]:
    database = make_shared_database()
    yield database
    drop_shared_database(database)


def masked(plan: str, value: str) -> str:
    """An EXPLAIN plan with the probed value hidden where the prober wrote it (the scan's
    conditions), never in the plan's counts or numbered parts ("InitPlan 2", "$1"), so that
    two probes compare equal exactly when the database told them nothing different."""
    literal = re.compile(rf"(?<![$\w]){re.escape(value)}(?!\w)")
    condition = re.compile(r"^\s*(Filter|[A-Za-z ]*Cond):")
    return "\n".join(
        literal.sub("VALUE", line) if condition.match(line) else line for line in plan.splitlines()
    )


# The kinds of scan a prober can push the planner onto, by switching the others off.
SCANS = {
    "index": ("enable_seqscan", "enable_bitmapscan"),
    "bitmap": ("enable_seqscan", "enable_indexscan", "enable_indexonlyscan"),
    "sequential": ("enable_indexscan", "enable_bitmapscan", "enable_indexonlyscan"),
}


def force_scan(conn: psycopg.Connection[tuple[object, ...]], scan: str) -> None:
    """Make the planner of this connection use `scan` ("index", "bitmap" or "sequential")."""
    for setting in SCANS[scan]:
        conn.execute(f"SET {setting} = off")
