"""No write path without an audit entry: every service operation that writes, run on both
backends, with every table read before and after it.

Each row the operation inserted, updated or deleted must be accounted for by an audit entry of
that operation (entity type = table, entity id = primary key), whose `before` is the row as it was
and whose `after` is the row as it now is, byte for byte in canonical JSON; and no entry may
claim a change that did not happen. All entries of one operation share its request id, its action
and its acting user. A guard test finds every public service that calls `workspace.write(` and
fails when one is not exercised here, so a new write path cannot arrive without coverage.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import pkgutil
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import Engine, delete, func, insert, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

import billing_desk.services
from billing_desk.db.engine import SQLITE_BEGIN
from billing_desk.db.models import BankLine, Base, Trip
from billing_desk.domain.errors import PermissionDenied, Refused
from billing_desk.domain.hashing import canonical_bytes, sha256_hex
from billing_desk.domain.integrity import entry_digest
from billing_desk.domain.money import Money
from billing_desk.domain.statements import Statement, StatementLine
from billing_desk.domain.states import TripStatus
from billing_desk.importers.statements.csv_statement import guess_mapping
from billing_desk.services import admin
from billing_desk.services.archive import export_archive
from billing_desk.services.audit import audit_log
from billing_desk.services.audit_browser import AuditFilter, audit_page, audit_window
from billing_desk.services.audit_trail import ENTRY_FIELDS, NOT_AUDITED
from billing_desk.services.checkpoints import generate_key, register_key, sign_checkpoint
from billing_desk.services.credits import apply_credit
from billing_desk.services.csv_mappings import save_mapping
from billing_desk.services.demo import load_demo_data
from billing_desk.services.deposits import create_deposit
from billing_desk.services.facilities import NewFacility, add_facility, change_facility
from billing_desk.services.idempotency import purge_keys
from billing_desk.services.invoices import list_invoices, run_invoice, void_invoice
from billing_desk.services.matching import auto_match, match_line, match_together, unmatch_line
from billing_desk.services.monitoring import MonitoringConfig, close_alert, run_monitor, watch
from billing_desk.services.payments import PaymentDraft, change_status, record_payment
from billing_desk.services.provider import ProviderChange, change_provider
from billing_desk.services.reconciliation import (
    close_run,
    resolve_discrepancy,
    run_reconciliation,
)
from billing_desk.services.report_data import (
    Printed,
    PrintedStatement,
    check_statements,
    record_printed,
    record_prints,
)
from billing_desk.services.statements import import_statements
from billing_desk.services.trips import import_trips
from billing_desk.services.unit_of_work import UnitOfWork, Workspace
from billing_desk.services.users import add_user, change_user
from billing_desk.services.verification import verify, verify_session
from tests.conftest import PG_ADMIN_URL, Database
from tests.support import trip

T = TypeVar("T")

# The chain's own tables: history, not data. Every other table is read, NOT_AUDITED ones included
# (nothing an operation does may change them).
AUDIT_TABLES = frozenset({"audit_entry", "audit_link", "audit_pending", "audit_chain_head"})
# Unaudited but written: a statement file's bytes, each proved by its audited file row's hash.
FILE_CONTENT = "statement_file_content"
TABLES = tuple(t for t in Base.metadata.sorted_tables if t.name not in AUDIT_TABLES)
TABLE_NAMES = frozenset(t.name for t in TABLES)
ENTRY = Base.metadata.tables["audit_entry"]
LINK = Base.metadata.tables["audit_link"]
PENDING = Base.metadata.tables["audit_pending"]

# Every public service that writes (calls `workspace.write(`, directly or through a private helper
# of its module), as "module.function". The scenario below runs each of them; the guard test fails
# when the services grow a write path that is missing here.
COVERED_WRITE_SERVICES = frozenset(
    {
        "admin.add_user",
        "admin.disable_user",
        "admin.init_shared",
        "archive.export_archive",
        "audit.audit_log",
        "audit_browser.audit_page",
        "audit_browser.audit_window",
        "checkpoints.register_key",
        "checkpoints.sign_checkpoint",
        "credits.apply_credit",
        "csv_mappings.save_mapping",
        "demo.load_demo_data",
        "deposits.create_deposit",
        "facilities.add_facility",
        "facilities.change_facility",
        "idempotency.purge_keys",
        "invoices.run_invoice",
        "invoices.void_invoice",
        "matching.auto_match",
        "matching.match_line",
        "matching.match_together",
        "matching.unmatch_line",
        "monitoring.close_alert",
        "monitoring.run_monitor",
        "monitoring.watch",
        "payments.change_status",
        "payments.record_payment",
        "provider.change_provider",
        "reconciliation.close_run",
        "reconciliation.resolve_discrepancy",
        "reconciliation.run_reconciliation",
        "report_data.check_statements",
        "report_data.record_printed",
        "report_data.record_prints",
        "statements.import_statements",
        "trips.import_trips",
        "users.add_user",
        "users.change_user",
        "verification.verify",
    }
)

# Setting up a shared database needs PostgreSQL (and a superuser, which the tests connect as).
POSTGRESQL_ONLY = frozenset({"admin.add_user", "admin.disable_user", "admin.init_shared"})

STMARY, OAKVIEW = "STMARY", "OAKVIEW"
PERIOD = "2026-05"
RECEIVED = date(2026, 6, 2)
ROUTING, ACCOUNT = "021000021", "000123456789"
REASON = "audit coverage test"


# -- reading the database -------------------------------------------------------------------

Snapshot = dict[tuple[str, str], str]  # (table, primary key as text) -> the row, canonical JSON


def _reader(workspace: Workspace) -> Engine:
    """The workspace's engine, beginning SQLite transactions DEFERRED: reads take no write lock."""
    return workspace.engine.execution_options(**{SQLITE_BEGIN: "DEFERRED"})


def snapshot(workspace: Workspace) -> Snapshot:
    """Every row of every non-audit table, keyed like audit entries name rows, valued as the
    canonical JSON an entry's before/after holds (read through Core, not the ORM)."""
    rows: Snapshot = {}
    with _reader(workspace).connect() as conn:
        for table in TABLES:
            key_columns = list(table.primary_key.columns)
            for row in conn.execute(select(table)).mappings():
                pk = ":".join(str(row[c.name]) for c in key_columns)
                values = dict(row)
                if table.name == FILE_CONTENT:
                    # The bytes are proved by the SHA-256 their audited file row carries.
                    values = {"file_id": row["file_id"], "sha256": sha256_hex(row["content"])}
                rows[(table.name, pk)] = canonical_bytes(values).decode()
    return rows


@dataclass(frozen=True)
class Entry:
    id: int
    recorded_at: datetime
    user_name: str
    user_role: str | None
    facility_id: int | None
    action: str
    entity_type: str
    entity_id: str
    before: str | None
    after: str | None
    request_id: str
    entry_digest: str | None


def last_entry_id(workspace: Workspace) -> int:
    with _reader(workspace).connect() as conn:
        return int(conn.execute(select(func.coalesce(func.max(ENTRY.c.id), 0))).scalar_one())


def entries_after(workspace: Workspace, entry_id: int) -> list[Entry]:
    with _reader(workspace).connect() as conn:
        rows = conn.execute(select(ENTRY).where(ENTRY.c.id > entry_id).order_by(ENTRY.c.id))
        entries = [Entry(**row) for row in rows.mappings()]
    # Every write path stores the digest of exactly what a verifier reads back (version 2).
    for entry in entries:
        content = {name: getattr(entry, name) for name in ENTRY_FIELDS}
        assert entry.entry_digest == entry_digest(content), entry
    return entries


def unlinked(workspace: Workspace, entry_ids: list[int]) -> tuple[list[int], int]:
    """Of `entry_ids`, those without a link; and how many entries wait in audit_pending."""
    with _reader(workspace).connect() as conn:
        linked = set(
            conn.execute(select(LINK.c.entry_id).where(LINK.c.entry_id.in_(entry_ids))).scalars()
        )
        pending = int(conn.execute(select(func.count()).select_from(PENDING)).scalar_one())
    return [i for i in entry_ids if i not in linked], pending


def role_of(workspace: Workspace, user: str) -> str | None:
    table = Base.metadata.tables["app_user"]
    with _reader(workspace).connect() as conn:
        row = conn.execute(
            select(table.c.role, table.c.active).where(table.c.name == user)
        ).one_or_none()
    return row.role if row is not None and row.active else None


# -- the check ------------------------------------------------------------------------------


TABLE_KEYS = {t.name: [c.name for c in t.primary_key.columns] for t in TABLES}


def _primary_key(table: str, values: str) -> str | None:
    row = json.loads(values)
    if not all(name in row for name in TABLE_KEYS[table]):
        return None
    return ":".join(str(row[name]) for name in TABLE_KEYS[table])


def _facility_of(table: str, values: str) -> int | None:
    row = json.loads(values)
    found = row.get("id") if table == "facility" else row.get("facility_id")
    return found if isinstance(found, int) and not isinstance(found, bool) else None


def audit_problems(
    before: Snapshot,
    after: Snapshot,
    entries: list[Entry],
    *,
    action: str,
    user: str,
    role: str | None,
    events: int,
) -> list[str]:
    """Everything wrong with how `entries` account for the change from `before` to `after`."""
    problems: list[str] = []
    changed = {key for key in before.keys() | after.keys() if before.get(key) != after.get(key)}
    trails: dict[tuple[str, str], list[Entry]] = defaultdict(list)
    event_entries: list[Entry] = []
    misnamed: list[str] = []
    for entry in entries:
        if entry.entity_type not in TABLE_NAMES:
            event_entries.append(entry)
            continue
        # The row an entry is about, by the primary key in its own values; an entity id that
        # names another (or no) row is a problem, but the entry is still checked against its row.
        values = entry.after if entry.after is not None else entry.before
        pk = _primary_key(entry.entity_type, values) if values is not None else None
        if pk is not None and entry.entity_id != pk:
            misnamed.append(
                f"entry {entry.id} names {entry.entity_type} {entry.entity_id!r}, not {pk}"
            )
        trails[(entry.entity_type, pk or entry.entity_id)].append(entry)
    if misnamed:
        tables = sorted({line.split()[3] for line in misnamed})
        problems.append(
            f"{len(misnamed)} entries do not name their row by its primary key (entity_id), "
            f"e.g. {misnamed[:2]}; tables: {', '.join(tables)}"
        )

    # Every changed row has its entries, and they lead from the old row to the new one.
    for key in sorted(changed):
        table, pk = key
        kind = "inserted" if key not in before else "deleted" if key not in after else "updated"
        if table == FILE_CONTENT:
            file_row = after.get(("statement_file", pk))
            content = json.loads(after[key]) if key in after else None
            if (
                kind != "inserted"
                or content is None
                or file_row is None
                or (json.loads(file_row)["sha256"] != content["sha256"])
            ):
                problems.append(f"{table} {pk} was {kind} without its audited file row and SHA-256")
            continue
        trail = trails.get(key)
        if not trail:
            problems.append(f"{table} {pk} was {kind} without an audit entry")
            continue
        if trail[0].before != before.get(key):
            problems.append(
                f"{table} {pk} ({kind}): the first entry's before {trail[0].before!r} is not the "
                f"row as it was {before.get(key)!r}"
            )
        for earlier, later in pairwise(trail):
            if later.before != earlier.after:
                problems.append(
                    f"{table} {pk}: entry {later.id}'s before does not follow entry "
                    f"{earlier.id}'s after"
                )
        if trail[-1].after != after.get(key):
            problems.append(
                f"{table} {pk} ({kind}): the last entry's after {trail[-1].after!r} is not the "
                f"row as it now is {after.get(key)!r}"
            )
        if kind != "inserted" and any(e.before is None for e in trail):
            problems.append(f"{table} {pk} ({kind}): an entry has no before")
    # ...and no entry claims a change that did not happen.
    for key in sorted(trails.keys() - changed):
        table, pk = key
        ids = [e.id for e in trails[key]]
        problems.append(f"entries {ids} claim a change of {table} {pk}, which did not change")
    for key, trail in trails.items():
        if key[0] in NOT_AUDITED:
            problems.append(f"{key[0]} is not audited, yet entries {[e.id for e in trail]} name it")
        for entry in trail:
            if entry.before is None and entry.after is None:
                problems.append(f"entry {entry.id} has neither before nor after")
            values = entry.after if entry.after is not None else entry.before
            if values is not None and entry.facility_id != _facility_of(key[0], values):
                problems.append(
                    f"entry {entry.id} ({key[0]} {key[1]}) names facility {entry.facility_id}, "
                    f"the row {_facility_of(key[0], values)}"
                )

    if len(event_entries) != events:
        problems.append(
            f"expected {events} event entries, found "
            f"{[(e.action, e.entity_type, e.entity_id) for e in event_entries]}"
        )
    for entry in event_entries:
        if entry.before is not None:
            problems.append(f"event entry {entry.id} has a before")

    # One user action: one request id, one action, one user, one moment.
    if entries:
        request_ids = {e.request_id for e in entries}
        if len(request_ids) != 1:
            problems.append(f"entries of one operation carry {len(request_ids)} request ids")
        for attribute, wanted in (("action", action), ("user_name", user), ("user_role", role)):
            found = {getattr(e, attribute) for e in entries}
            if found != {wanted}:
                problems.append(
                    f"entries carry {attribute} {sorted(map(str, found))}, not {wanted}"
                )
        if len({e.recorded_at for e in entries}) != 1:
            problems.append("entries of one transaction carry different recorded_at times")
    return problems


@dataclass
class Coverage:
    """Runs service operations, each between two snapshots, and checks their audit entries.
    Audit problems are collected across the whole scenario (`assert_clean` reports them all), so
    one bug does not hide the next; a scenario that does not go as planned fails at once."""

    database: Database
    workspaces: dict[str, Workspace] = field(default_factory=dict)
    exercised: set[str] = field(default_factory=set)
    request_ids: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)
    operations: int = 0
    label: str = ""

    def ws(self, user: str) -> Workspace:
        if user not in self.workspaces:
            self.workspaces[user] = self.database.workspace(user)
        return self.workspaces[user]

    def run(
        self,
        service: Callable[..., T],
        user: str,
        action: str,
        call: Callable[[Workspace], T],
        *,
        touches: frozenset[str] | set[str] = frozenset(),
        events: int = 0,
        quiet: bool = False,
        refused: type[Exception] | None = None,
    ) -> T:
        """Run `call` as `user`; it must be audited under `action`. `touches`: tables it must
        change; `quiet`: it must change nothing and add no entry; `refused`: it must raise that
        and change nothing."""
        workspace = self.ws(user)
        role = role_of(workspace, user)
        first = last_entry_id(workspace)
        before = snapshot(workspace)
        result: Any = None
        if refused is not None:
            with pytest.raises(refused):
                call(workspace)
        else:
            result = call(workspace)
        after = snapshot(workspace)
        entries = entries_after(workspace, first)
        self.operations += 1
        where = f"{self.label}#{self.operations} {service.__name__} as {user} ({action})"

        problems = audit_problems(
            before, after, entries, action=action, user=user, role=role, events=events
        )
        changed_tables = {t for t, _ in before.keys() ^ after.keys()} | {
            t for (t, pk), row in after.items() if before.get((t, pk), row) != row
        }
        if quiet or refused is not None:
            if entries:
                problems.append(f"wrote entries {[e.id for e in entries]} though it wrote nothing")
            if changed_tables:
                problems.append(f"changed {sorted(changed_tables)} though it wrote nothing")
        else:
            assert entries, f"{where}: the scenario expected audit entries"
            missing = set(touches) - changed_tables
            assert not missing, f"{where}: the scenario expected changes to {missing}"
        if entries:
            request_id = entries[0].request_id
            if request_id in self.request_ids:
                problems.append(f"request id {request_id} was used by an earlier operation")
            self.request_ids.add(request_id)
            not_linked, pending = unlinked(workspace, [e.id for e in entries])
            if not_linked or pending:
                problems.append(
                    f"entries {not_linked} unsealed after the write ({pending} pending)"
                )
        self.problems += [f"{where}: {problem}" for problem in problems]
        module = service.__module__.rsplit(".", 1)[-1]
        self.exercised.add(f"{module}.{service.__name__}")
        return result

    def assert_clean(self) -> None:
        assert self.problems == [], (
            f"{self.database.backend}: {len(self.problems)} audit problems in "
            f"{self.operations} operations:\n  " + "\n  ".join(self.problems)
        )


# -- the scenario ---------------------------------------------------------------------------


def _facility(code: str) -> NewFacility:
    return NewFacility(code, f"{code.title()} Care Home", "USD", 30, "Ann Payer", "a@b.org", "1 St")


STMARY_TRIPS = (("T01", "100.00"), ("T02", "50.00"), ("T03", "25.00"))
STMARY_LATER = (("T04", "80.00"), ("T05", "60.00"), ("T06", "40.00"))


def _trips(changed: bool = False) -> list[Any]:
    records = []
    for n, (trip_id, fare) in enumerate(STMARY_TRIPS + STMARY_LATER, start=1):
        client = "Rider One"
        if changed and trip_id == "T02":
            fare = "55.00"
        if changed and trip_id == "T03":
            client = "Rider Three"
        records.append(trip(trip_id, day=date(2026, 5, n), fare=fare, client=client, line=n + 1))
    records.append(trip("O01", facility=OAKVIEW, day=date(2026, 5, 9), fare="99.99", line=20))
    records.append(
        trip(
            "O02",
            facility=OAKVIEW,
            day=date(2026, 5, 10),
            fare="10.00",
            status=TripStatus.NO_SHOW,
            billable=False,
            line=21,
        )
    )
    return records


def _check(amount: str, **extra: Any) -> PaymentDraft:
    return PaymentDraft(
        facility=STMARY,
        method="check",
        amount=amount,
        received=RECEIVED,
        check_number="1001",
        routing_number=ROUTING,
        account_number=ACCOUNT,
        payer="Ann Payer",
        **extra,
    )


def test_every_write_service_is_fully_audited(
    database: Database, fresh_database: Callable[[str], Database], tmp_path: Path
) -> None:
    cov = Coverage(database)
    payment = frozenset({"payment", "payment_status_change", "idempotency_record"})
    allocating = payment | {"allocation", "invoice", "invoice_status_change"}

    # Users, the very first one by someone who is not a user yet.
    for name, role in (
        ("admin", "admin"),
        ("clerk", "clerk"),
        ("manager", "manager"),
        ("auditor", "auditor"),
    ):
        cov.run(
            add_user,
            "admin",
            "user.add",
            lambda w, n=name, r=role: add_user(w, n, r),
            touches={"app_user"},
        )
    for user, code in (("admin", STMARY), ("manager", OAKVIEW)):
        cov.run(
            add_facility,
            user,
            "facility.add",
            lambda w, c=code: add_facility(w, _facility(c)),
            touches={"facility", "invoice_counter"},
        )
    cov.run(
        change_facility,
        "manager",
        "facility.change",
        lambda w: change_facility(w, replace(_facility(OAKVIEW), payment_terms_days=45)),
        touches={"facility"},
    )
    # The provider's details: set by an administrator, changed by a manager, refused a clerk.
    cov.run(
        change_provider,
        "admin",
        "provider.change",
        lambda w: change_provider(w, ProviderChange(name="Prairie Wheels", address="1 Depot Ln")),
        touches={"provider_setting"},
    )
    cov.run(
        change_provider,
        "manager",
        "provider.change",
        lambda w: change_provider(
            w,
            ProviderChange(bank_name="First Bank", account_number=ACCOUNT, routing_number=ROUTING),
        ),
        touches={"provider_setting"},
    )
    cov.run(
        change_provider,
        "clerk",
        "provider.change",
        lambda w: change_provider(w, ProviderChange(name="Clerk's Own Transport")),
        refused=PermissionDenied,
    )
    cov.run(
        add_user, "admin", "user.add", lambda w: add_user(w, "temp", "clerk"), touches={"app_user"}
    )
    cov.run(
        change_user,
        "admin",
        "user.change",
        lambda w: change_user(w, "temp", role="auditor", active=False),
        touches={"app_user"},
    )

    # Trips: new, then updated (a fare, a client), then the same file again.
    result = cov.run(
        import_trips,
        "clerk",
        "trip.import",
        lambda w: import_trips(w, _trips()),
        touches={"trip", "client"},
    )
    assert (result.added, result.updated) == (8, 0)
    result = cov.run(
        import_trips,
        "clerk",
        "trip.import",
        lambda w: import_trips(w, _trips(changed=True)),
        touches={"trip", "client"},
    )
    assert (result.added, result.updated, result.unchanged) == (0, 2, 6)
    result = cov.run(
        import_trips,
        "clerk",
        "trip.import",
        lambda w: import_trips(w, _trips(changed=True)),
        quiet=True,
    )
    assert result.unchanged == 8

    # Invoices: chosen trips, a whole period, one voided.
    invoicing = {"invoice", "invoice_line", "invoice_counter", "invoice_status_change"}
    first = cov.run(
        run_invoice,
        "clerk",
        "invoice.run",
        lambda w: run_invoice(
            w, STMARY, PERIOD, trip_ids=[t for t, _ in STMARY_TRIPS], issue_date=date(2026, 6, 1)
        ),
        touches=invoicing,
    )
    second = cov.run(
        run_invoice,
        "clerk",
        "invoice.run",
        lambda w: run_invoice(w, STMARY, PERIOD, issue_date=date(2026, 6, 2)),
        touches=invoicing,
    )
    oak = cov.run(
        run_invoice,
        "manager",
        "invoice.run",
        lambda w: run_invoice(w, OAKVIEW, PERIOD),
        touches=invoicing,
    )
    cov.run(
        void_invoice,
        "manager",
        "invoice.void",
        lambda w: void_invoice(w, oak.invoice_number, REASON),
        touches={"invoice", "invoice_line", "invoice_status_change"},
    )
    inv1, inv2 = first.invoice_number, second.invoice_number  # 180.00 each

    # Payments: every method; allocated explicitly, automatically, not at all; a replay; a
    # refused double entry; a double entry held for a manager's override.
    check = _check("100.00", allocations=((inv1, "100.00"),))
    receipt = cov.run(
        record_payment,
        "clerk",
        "payment.record",
        lambda w: record_payment(w, check, "chk-1"),
        touches=allocating,
    )
    check_id = receipt.payment_id
    replay = cov.run(
        record_payment,
        "clerk",
        "payment.record",
        lambda w: record_payment(w, check, "chk-1"),
        quiet=True,
    )
    assert replay.replayed and replay.payment_id == check_id
    cov.run(
        record_payment,
        "clerk",
        "payment.record",
        lambda w: record_payment(w, _check("30.00"), "chk-2"),
        refused=Refused,
    )
    held_draft = _check(
        "30.00", allocations=((inv1, "30.00"),), override_reason="second check, confirmed"
    )
    held = cov.run(
        record_payment,
        "clerk",
        "payment.record",
        lambda w: record_payment(w, held_draft, "chk-3"),
        touches=payment,
    )
    assert held.status == "awaiting approval"
    transfer = cov.run(
        record_payment,
        "clerk",
        "payment.record",
        lambda w: record_payment(
            w,
            PaymentDraft(
                STMARY, "transfer", "80.00", RECEIVED, reference="WIRE 77", auto_allocate=True
            ),
            "wire-1",
        ),
        touches=allocating,  # pays the rest of the first invoice
    )
    card = cov.run(
        record_payment,
        "clerk",
        "payment.record",
        lambda w: record_payment(
            w,
            PaymentDraft(
                STMARY,
                "card",
                "70.00",
                RECEIVED,
                card_brand="Visa",
                card_last4="4242",
                processor_ref="ch_123",
            ),
            "card-1",
        ),
        touches=payment,
    )
    cash = cov.run(
        record_payment,
        "clerk",
        "payment.record",
        lambda w: record_payment(
            w,
            PaymentDraft(STMARY, "cash", "60.00", RECEIVED, allocations=((inv2, "60.00"),)),
            "cash-1",
        ),
        touches=allocating,
    )

    # Lifecycle: deposit, clear, refund, return, present again, void, approve, capture.
    moving = frozenset({"payment", "payment_status_change", "idempotency_record"})
    slip = cov.run(
        create_deposit,
        "clerk",
        "deposit.create",
        lambda w: create_deposit(w, [check_id, cash.payment_id], date(2026, 6, 5)),
        touches=moving | {"deposit", "deposit_item"},
    )

    def move(user: str, payment_id: int, to: str, key: str, touches: frozenset[str]) -> Any:
        return cov.run(
            change_status,
            user,
            "payment.transition",
            lambda w: change_status(w, payment_id, to, REASON, key),
            touches=touches,
        )

    # Invoice 1 (180.00) is paid by the check (100) and the transfer (80); invoice 2 has the cash.
    reopening = moving | {"allocation", "invoice", "invoice_status_change"}
    allocation = moving | {"allocation"}
    # The slip reaches the bank: its line matched by hand clears the check and the cash.
    deposited = Statement(
        "csv",
        "US-OPS",
        "USD",
        (StatementLine(RECEIVED, Money("160.00", "USD"), "line 1", bank_id="B0"),),
    )
    cov.run(
        import_statements,
        "clerk",
        "statement.import",
        lambda w: import_statements(w, "slip.csv", b"slip file", "csv", [deposited], commit=True),
        touches={"statement_file", "bank_statement", "bank_line"},
    )
    slip_line = cov.ws("clerk").read(
        lambda u: u.session.scalar(select(BankLine.id).where(BankLine.bank_id == "B0"))
    )
    cov.run(
        match_line,
        "clerk",
        "reconcile.match_manual",
        lambda w: match_line(w, slip_line, deposit_id=slip.deposit_id),
        touches={"bank_match", "payment", "payment_status_change"},
    )
    move("manager", check_id, "refunded", "mv-2", reopening | {"refund"})  # 1: partially paid
    move("clerk", cash.payment_id, "returned", "mv-3", reopening)  # 2: issued again
    move("clerk", cash.payment_id, "recorded", "mv-4", allocation)  # presented again: to 1
    move("manager", transfer.payment_id, "voided", "mv-5", allocation)
    move("manager", held.payment_id, "recorded", "mv-6", allocation)  # override approved
    move("clerk", card.payment_id, "captured", "mv-7", moving)

    # Credit: the card's unallocated 70.00, part of it applied to an open invoice.
    open_numbers = [i.number for i in list_invoices(cov.ws("clerk")) if i.status != "void"]
    assert inv2 in open_numbers
    cov.run(
        apply_credit,
        "clerk",
        "credit.apply",
        lambda w: apply_credit(w, STMARY, inv2, "20.00", "credit-1"),
        # inv2 stays partially paid: 20.00 moves no status line, so only money rows change.
        touches={"allocation", "payment", "idempotency_record"},
    )

    # The bank: a statement, matching by the rules and by hand, a reconciliation run.
    bank = Statement(
        "csv",
        "US-OPS",
        "USD",
        (
            # The card's settlement (the voided transfer matches no bank line).
            StatementLine(
                RECEIVED, Money("70.00", "USD"), "line 2", bank_id="B1", reference="ch_123"
            ),
            StatementLine(RECEIVED, Money("12.34", "USD"), "line 3", bank_id="B2"),
        ),
    )
    cov.run(
        import_statements,
        "clerk",
        "statement.import",
        lambda w: import_statements(w, "bank.csv", b"bank file", "csv", [bank], commit=True),
        touches={"statement_file", "bank_statement", "bank_line"},
    )
    mapping = guess_mapping(
        b"Date,Amount,Reference\n2026-06-02,80.00,X\n", name="ops", currency="USD"
    )
    cov.run(
        save_mapping,
        "clerk",
        "mapping.save",
        lambda w: save_mapping(w, mapping.to_record()),
        touches={"csv_mapping"},
    )
    matched = cov.run(
        auto_match,
        "clerk",
        "reconcile.match",
        lambda w: auto_match(w),
        # Matching a credit settles the captured card.
        touches={"bank_match", "payment", "payment_status_change"},
    )
    assert [m.payment_id for m in matched.matched] == [card.payment_id]
    stray = matched.unmatched_lines and cov.ws("clerk").read(
        lambda u: u.session.scalar(select(BankLine.id).where(BankLine.bank_id == "B2"))
    )
    cov.run(
        unmatch_line,
        "clerk",
        "reconcile.unmatch",
        # Nothing of the slip is cleared any more (refunded, presented again): only the match.
        lambda w: unmatch_line(w, slip_line, "the slip's line was another deposit"),
        touches={"bank_match"},
    )
    cov.run(
        match_together,
        "clerk",
        "reconcile.match_manual",
        lambda w: match_together(
            w, stray, deposit_ids=[slip.deposit_id], note="part of the deposit"
        ),
        touches={"bank_match"},
    )
    cov.run(
        unmatch_line,
        "clerk",
        "reconcile.unmatch",
        lambda w: unmatch_line(w, stray, "not the deposit"),
        touches={"bank_match"},
    )
    reconciled = cov.run(
        run_reconciliation,
        "clerk",
        "reconcile.run",
        lambda w: run_reconciliation(w, date(2026, 6, 1), date(2026, 6, 30)),
        touches={"reconciliation_run", "discrepancy"},
    )
    for finding in reconciled.discrepancies:
        cov.run(
            resolve_discrepancy,
            "manager",
            "reconcile.resolve",
            lambda w, found=finding: resolve_discrepancy(w, found.id, "checked"),
            touches={"discrepancy"},
        )
    cov.run(
        close_run,
        "manager",
        "reconcile.close",
        lambda w: close_run(w, reconciled.run_id),
        touches={"reconciliation_run"},
        events=1,
    )

    # Housekeeping: two keys made old, then purged.
    with cov.ws("admin").engine.begin() as conn:
        table = Base.metadata.tables["idempotency_record"]
        old = datetime.now(UTC) - timedelta(days=90)
        ids = conn.execute(select(table.c.id).order_by(table.c.id).limit(2)).scalars().all()
        conn.execute(update(table).where(table.c.id.in_(ids)).values(created_at=old))
    purged = cov.run(
        purge_keys,
        "admin",
        "maintenance.purge_keys",
        lambda w: purge_keys(w, older_than_days=30),
        touches={"idempotency_record", "maintenance_run"},
    )
    assert purged.removed == 2

    # The audit side: a signing key, a checkpoint, reading the log, verifying, exporting.
    key_file = tmp_path / "manager.key"
    generated = generate_key("coverage-manager", key_file=key_file)
    cov.run(
        register_key,
        "manager",
        "audit.key.register",
        lambda w: register_key(w, generated.vkey),
        touches={"signing_key"},
    )
    cov.run(
        sign_checkpoint,
        "manager",
        "audit.checkpoint",
        lambda w: sign_checkpoint(w, "coverage-manager", key_file=key_file),
        touches={"checkpoint"},
    )
    cov.run(audit_log, "auditor", "audit.read_log", lambda w: audit_log(w), events=1)
    cov.run(
        audit_page,
        "auditor",
        "audit.read_log",
        lambda w: audit_page(w, AuditFilter(entity_type="payment")),
        events=1,
    )
    cov.run(
        audit_window,
        "auditor",
        "audit.read_log",
        lambda w: audit_window(w, AuditFilter(entity_type="payment"), at_end=True),
        events=1,
    )
    # Printing reports and checking a printed statement are sensitive reads.
    cov.run(
        record_printed,
        "manager",
        "report.print",
        lambda w: record_printed(w, "report.print", "statement", STMARY, facility_code=STMARY),
        events=1,
    )
    cov.run(
        record_prints,
        "manager",
        "report.print",
        lambda w: record_prints(
            w,
            "report.print",
            [Printed("aging_report", "all"), Printed("statement", OAKVIEW, OAKVIEW)],
        ),
        events=2,
    )
    checked = cov.run(
        check_statements,
        "auditor",
        "statement.check",
        lambda w: check_statements(
            w, [PrintedStatement(STMARY, date(2026, 6, 1), date(2026, 6, 30), "0" * 64)]
        ),
        events=1,
    )
    assert [c.matches for c in checked] == [False]
    report = cov.run(verify, "auditor", "audit.verify", lambda w: verify(w), events=1)
    assert report.ok, report.findings
    cov.run(
        export_archive,
        "auditor",
        "audit.export",
        lambda w: export_archive(w, tmp_path / "archive.sqlite3"),
        events=1,
    )

    # Monitoring: the rules over everything (a limit of one payment an hour makes them fire,
    # business hours all day keep the clock out of it), a manager closing an alert, and a
    # watched workspace keeping a refused attempt.
    busy = replace(
        MonitoringConfig(),
        velocity_max_payments=1,
        business_start=time(0),
        business_end=time(23, 59, 59),
        business_days=frozenset(range(7)),
    )
    monitored = cov.run(
        run_monitor,
        "clerk",
        "alert.raise",
        lambda w: run_monitor(w, config=busy),
        touches={"anomaly_alert"},
    )
    assert monitored.raised
    cov.run(
        close_alert,
        "manager",
        "alert.close",
        lambda w: close_alert(w, monitored.raised[0].id, REASON),
        touches={"anomaly_alert"},
    )

    def refused_while_watched(w: Workspace) -> None:
        watch(w)
        with pytest.raises(PermissionDenied):
            change_status(w, cash.payment_id, "voided", REASON, "mv-watched")

    cov.run(
        watch, "clerk", "operation.failed", refused_while_watched, touches={"operation_failure"}
    )

    # Demo data, into a fresh database of the same backend, by a newcomer.
    demo = Coverage(fresh_database(database.backend), label="demo database ")
    summary = demo.run(
        load_demo_data,
        "newcomer",
        "demo.load",
        lambda w: load_demo_data(w, facilities=3, months=2, as_of=date(2026, 5, 20)),
        touches={"app_user", "facility", "client", "trip", "invoice", "payment", "deposit"},
    )
    assert summary.payments > 0 and summary.deposits > 0

    if database.backend == "postgresql":
        _shared_mode_setup(cov, database)

    for coverage, user in ((cov, "admin"), (demo, "newcomer")):
        final = coverage.ws(user)
        final.seal()
        chain = final.read(lambda unit: verify_session(unit.session))
        assert chain.ok, chain.findings
        assert chain.unsealed.count == 0
    expected = COVERED_WRITE_SERVICES
    if database.backend != "postgresql":
        expected = COVERED_WRITE_SERVICES - POSTGRESQL_ONLY
    assert cov.exercised | demo.exercised == expected
    cov.problems += demo.problems
    cov.operations += demo.operations
    cov.assert_clean()


def _shared_mode_setup(cov: Coverage, database: Database) -> None:
    """The administrator's shared-mode operations, through the superuser connection the tests
    use (the audit names that role, `postgres`)."""
    superuser = make_url(database.url).username or "postgres"
    cov.run(
        admin.init_shared,
        superuser,
        "admin.init",
        lambda _w: admin.init_shared(database.url),
        events=1,
    )
    login = f"cov_{uuid.uuid4().hex[:10]}"
    try:
        cov.run(
            admin.add_user,
            superuser,
            "admin.user_add",
            lambda _w: admin.add_user(
                database.url, login, "clerk", "a-long-password-1", facilities=[STMARY]
            ),
            touches={"app_user", "facility_access"},
        )
        cov.run(
            admin.disable_user,
            superuser,
            "admin.user_disable",
            lambda _w: admin.disable_user(database.url, login),
            touches={"app_user"},
        )
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(login)))


# -- the guard: no write service without coverage -------------------------------------------


def _write_services() -> set[str]:
    """Public functions of billing_desk.services.* that call `workspace.write(`, directly or
    through private functions of their own module."""
    found: set[str] = set()
    for info in pkgutil.iter_modules(billing_desk.services.__path__):
        if info.name == "unit_of_work":
            continue
        module = importlib.import_module(f"billing_desk.services.{info.name}")
        tree = ast.parse(inspect.getsource(module))
        functions = {
            node.name: node
            for node in tree.body
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        }
        writers = {name for name, node in functions.items() if _calls_workspace_write(node)}
        while True:
            more = {
                name
                for name, node in functions.items()
                if name not in writers
                and any(
                    isinstance(n, ast.Call)
                    and isinstance(n.func, ast.Name)
                    and n.func.id in writers
                    for n in ast.walk(node)
                )
            }
            if not more:
                break
            writers |= more
        found |= {f"{info.name}.{name}" for name in writers if not name.startswith("_")}
    return found


def _calls_workspace_write(node: ast.AST) -> bool:
    return any(
        isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and n.func.attr == "write"
        and isinstance(n.func.value, ast.Name)
        and "workspace" in n.func.value.id.lower()
        for n in ast.walk(node)
    )


def test_every_write_service_is_covered() -> None:
    writers = _write_services()
    # The discovery itself works: it finds services known to write.
    assert {"payments.record_payment", "archive.export_archive"} <= writers
    missing = sorted(writers - COVERED_WRITE_SERVICES)
    assert missing == [], (
        f"write services without audit coverage: {missing}; add them to the scenario of "
        "test_every_write_service_is_fully_audited and to COVERED_WRITE_SERVICES"
    )
    stale = sorted(COVERED_WRITE_SERVICES - writers)
    assert stale == [], f"COVERED_WRITE_SERVICES names services that no longer write: {stale}"


# -- writes that would bypass the flush -------------------------------------------------------


def _seeded(database: Database) -> Coverage:
    cov = Coverage(database)
    admin = cov.ws("admin")
    add_user(admin, "admin", "admin")
    add_user(admin, "clerk", "clerk")
    add_facility(admin, _facility(STMARY))
    add_facility(admin, _facility(OAKVIEW))
    import_trips(cov.ws("clerk"), _trips())
    return cov


BULK_STATEMENTS: dict[str, Callable[[], Any]] = {
    "update": lambda: update(Trip).values(pickup="Nowhere"),
    "delete": lambda: delete(Trip).where(Trip.external_trip_id == "T01"),
    "insert": lambda: insert(Trip).values(
        facility_id=1,
        client_id=1,
        external_trip_id="BULK",
        service_date=date(2026, 5, 1),
        pickup="a",
        dropoff="b",
        status="completed",
        fare_minor=1,
        currency="USD",
        billable=True,
        created_at=datetime.now(UTC),
        updated_at=datetime.now(UTC),
    ),
}


@pytest.mark.parametrize("kind", sorted(BULK_STATEMENTS))
def test_bulk_statements_through_the_session_are_refused(database: Database, kind: str) -> None:
    cov = _seeded(database)
    clerk = cov.ws("clerk")
    statement = BULK_STATEMENTS[kind]
    first = last_entry_id(clerk)
    before = snapshot(clerk)

    def bulk(unit: UnitOfWork) -> None:
        unit.session.execute(statement())

    with pytest.raises(RuntimeError, match="bypasses the audit trail"):
        clerk.write(bulk, action="trip.import")
    assert snapshot(clerk) == before, f"{database.backend}: a refused bulk {kind} wrote rows"
    assert entries_after(clerk, first) == []

    # The workspace goes on auditing ordinary writes as before.
    changed = _trips()
    changed[0] = trip("T01", day=date(2026, 5, 1), fare="101.00", line=2)
    result = cov.run(
        import_trips, "clerk", "trip.import", lambda w: import_trips(w, changed), touches={"trip"}
    )
    assert result.updated == 1
    cov.assert_clean()


# Writes that reach the database beside the ORM's flush, inside a unit of work.
AROUND_THE_ORM: dict[str, Callable[[Session], object]] = {
    "text update via session": lambda session: session.execute(
        text("UPDATE trip SET pickup = 'Nowhere'")
    ),
    "text delete via session": lambda session: session.execute(
        text("DELETE FROM trip WHERE external_trip_id = 'T01'")
    ),
    "core update via session.connection()": lambda session: session.connection().execute(
        update(Trip.__table__).values(pickup="Nowhere")
    ),
}


@pytest.mark.parametrize("route", sorted(AROUND_THE_ORM))
def test_dml_around_the_orm_is_refused_or_audited(database: Database, route: str) -> None:
    """The same bulk change, written as SQL text or sent on the session's connection, must not
    slip past the trail either: refused, or else audited."""
    cov = _seeded(database)
    clerk = cov.ws("clerk")
    first = last_entry_id(clerk)
    before = snapshot(clerk)

    def bulk(unit: UnitOfWork) -> None:
        AROUND_THE_ORM[route](unit.session)

    refused = False
    try:
        clerk.write(bulk, action="trip.import")
    except RuntimeError:
        refused = True
    problems = audit_problems(
        before,
        snapshot(clerk),
        entries_after(clerk, first),
        action="trip.import",
        user="clerk",
        role="clerk",
        events=0,
    )
    assert problems == [], (
        f"{database.backend}: a {route} inside Workspace.write was "
        f"{'refused' if refused else 'not refused'}, and:\n  " + "\n  ".join(problems)
    )
