"""What the payment race and crash tests share: the requests they submit, the processes that submit
them, and the ledger check they run afterwards.

Race clerks are long-lived processes (multiprocessing, spawn) that submit one payment per round,
released together by a shared barrier. The crash server, `python -m
tests.concurrency.payment_worker crash DB_URL`, reads one request per line on stdin and forks a
child per request that records the payment with BILLING_DESK_KILL_AT set, so the child dies by
SIGKILL at that point; forking from a warm process makes a kill cost milliseconds instead of an
interpreter start. It answers one JSON line per request: how the child ended, its PostgreSQL
backend, and its outcome when it lived.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import time
import traceback
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, replace
from datetime import date
from functools import partial
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import configure_mappers

from billing_desk.domain.errors import EnvironmentFault
from billing_desk.domain.states import invoice_status_for
from billing_desk.services.faults import KILL_AT_VARIABLE
from billing_desk.services.payments import PaymentDraft, PaymentReceipt, record_payment
from billing_desk.services.unit_of_work import Workspace, open_workspace
from billing_desk.services.verification import verify_session

RECEIVED = date(2026, 6, 2)
ROUTING = "021000021"
ACCOUNT = "000123456789"

# -- the requests -----------------------------------------------------------------------------


def same_key_request(round_no: int) -> tuple[PaymentDraft, str]:
    """Round `round_no` of the same-key race: one cash payment, one key, submitted by everyone."""
    draft = PaymentDraft(
        facility="STMARY",
        method="cash",
        amount=f"{10 + round_no}.{round_no % 100:02d}",
        received=RECEIVED,
        memo=f"race round {round_no}",
    )
    return draft, f"race-same-key-{round_no}"


def same_check_request(round_no: int, clerk: int) -> tuple[PaymentDraft, str]:
    """Round `round_no` of the double-entry race: the same check, each clerk with its own key."""
    draft = PaymentDraft(
        facility="STMARY",
        method="check",
        amount="125.00",
        received=RECEIVED,
        check_number=str(1000 + round_no),
        routing_number=ROUTING,
        account_number=ACCOUNT,
        payer="St Mary Care Home",
    )
    return draft, f"race-same-check-{round_no}-clerk-{clerk}"


SCENARIOS: dict[str, Callable[[int, int], tuple[PaymentDraft, str]]] = {
    "same key": lambda round_no, _clerk: same_key_request(round_no),
    "same check": same_check_request,
}


def draft_to_json(draft: PaymentDraft) -> dict[str, Any]:
    fields = asdict(draft)
    fields["received"] = draft.received.isoformat()
    return fields


def draft_from_json(fields: dict[str, Any]) -> PaymentDraft:
    draft = PaymentDraft(**fields)
    return replace(
        draft,
        received=date.fromisoformat(fields["received"]),
        allocations=tuple((str(n), str(a)) for n, a in fields["allocations"]),
    )


# -- outcomes as plain data -------------------------------------------------------------------


def outcome_of(submit: Callable[[], PaymentReceipt]) -> dict[str, Any]:
    """What came of one submission: a receipt, or the error's class, message and traceback."""
    try:
        receipt = submit()
    except Exception as err:
        return {
            "outcome": "error",
            "type": type(err).__name__,
            "module": type(err).__module__,
            "message": str(err),
            "retryable": err.retryable if isinstance(err, EnvironmentFault) else None,
            "traceback": traceback.format_exc(),
        }
    return {"outcome": "receipt", **receipt.to_record(), "replayed": receipt.replayed}


def count_integrity_errors(workspace: Workspace) -> list[str]:
    """A list that collects every integrity error the workspace's engine meets, so that a test
    can tell a loser stopped by a unique index mid-race from one that arrived late."""
    seen: list[str] = []

    @event.listens_for(workspace.engine, "handle_error")
    def _note(context: ExceptionContext) -> None:
        if isinstance(context.sqlalchemy_exception, IntegrityError):
            seen.append(str(context.original_exception).strip().splitlines()[0])

    return seen


# -- race clerks ------------------------------------------------------------------------------


def race_clerk(
    url: str,
    number: int,
    scenario: str,
    rounds: int,
    barrier: Any,
    messages: Any,
    wait_seconds: float,
) -> None:
    """One clerk process: every round, wait at the barrier with the others, submit the round's
    request, and report the outcome as ("done", clerk, round, outcome). A failure is reported as
    "crashed" and breaks the barrier, so the other clerks stop too."""
    try:
        request = SCENARIOS[scenario]
        workspace = open_workspace(url, "clerk", migrate=False)
        integrity_errors = count_integrity_errors(workspace)
        try:
            workspace.read(lambda unit: None)  # connected and warm before the first round
            for round_no in range(rounds):
                draft, key = request(round_no, number)
                barrier.wait(wait_seconds)
                integrity_errors.clear()
                started = time.monotonic()
                outcome = outcome_of(partial(record_payment, workspace, draft, key))
                outcome["seconds"] = time.monotonic() - started
                outcome["integrity_errors"] = list(integrity_errors)
                messages.put(("done", number, round_no, outcome))
        finally:
            workspace.close()
    except BaseException:
        barrier.abort()
        messages.put(("crashed", number, None, traceback.format_exc()))


# -- the crash server ---------------------------------------------------------------------------


def serve_crashes(url: str, child_seconds: float) -> None:
    """Answer each request line on stdin with one report line on stdout; stop at end of input."""
    os.environ.pop(KILL_AT_VARIABLE, None)
    # Warm once what every child would otherwise redo: the mappers, the dialect's first
    # connection. The pool is emptied again, so that no child inherits a connection.
    configure_mappers()
    workspace = open_workspace(url, "clerk", migrate=False)
    workspace.read(lambda unit: None)
    workspace.engine.dispose()
    _answer({"ready": True})
    while line := sys.stdin.readline():
        _answer(_crash_once(workspace, json.loads(line), child_seconds))


def _answer(report: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(report) + "\n")
    sys.stdout.flush()


def _crash_once(
    workspace: Workspace, request: dict[str, Any], child_seconds: float
) -> dict[str, Any]:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: record, and (normally) die on the way
        os.close(read_end)
        code = 0
        try:
            _record_in_child(workspace, request, write_end)
        except BaseException:
            _tell(write_end, {"crashed": traceback.format_exc()})
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    received = bytearray()
    status: int | None = None
    overran = False
    deadline = time.monotonic() + child_seconds
    try:
        open_pipe = True
        while status is None:
            if open_pipe:
                readable, _, _ = select.select([read_end], [], [], 0.005)
                if readable:
                    chunk = os.read(read_end, 65536)
                    received += chunk
                    open_pipe = bool(chunk)
            else:
                time.sleep(0.002)
            done, raw = os.waitpid(pid, os.WNOHANG)
            if done:
                status = raw
            elif time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                status = os.waitpid(pid, 0)[1]
                overran = True
        while chunk := os.read(read_end, 65536):
            received += chunk
    finally:
        os.close(read_end)
    report: dict[str, Any] = {"pid": pid, "overran": overran, "backend_pid": None}
    for line in received.decode().splitlines():
        report.update(json.loads(line))
    code = os.waitstatus_to_exitcode(status)
    report["exit_code"] = code if code >= 0 else None
    report["signal"] = -code if code < 0 else None
    return report


def _record_in_child(workspace: Workspace, request: dict[str, Any], channel: int) -> None:
    if request.get("kill_at"):
        os.environ[KILL_AT_VARIABLE] = request["kill_at"]
    if workspace.location.is_postgresql:
        # The write below reuses this pooled connection: the parent waits for this backend to
        # go away before it looks at the database.
        backend = workspace.read(lambda unit: unit.session.scalar(text("SELECT pg_backend_pid()")))
        _tell(channel, {"backend_pid": backend})
    draft = draft_from_json(request["draft"])
    outcome = outcome_of(lambda: record_payment(workspace, draft, request["key"]))
    _tell(channel, {"outcome": outcome})
    workspace.close()


def _tell(channel: int, message: dict[str, Any]) -> None:
    os.write(channel, (json.dumps(message) + "\n").encode())


# -- the ledger check -------------------------------------------------------------------------

Ledger = dict[str, list[dict[str, Any]]]

LEDGER_QUERIES = {
    "payments": "SELECT id, facility_id, method, status, amount_minor, natural_key FROM payment",
    "history": (
        "SELECT id, payment_id, facility_id, from_status, to_status FROM payment_status_change"
    ),
    "allocations": (
        "SELECT a.id, a.payment_id, a.invoice_id, i.number AS invoice_number, a.amount_minor, "
        "CASE WHEN a.released THEN 1 ELSE 0 END AS released, "
        "CASE WHEN a.via_credit THEN 1 ELSE 0 END AS via_credit "
        "FROM allocation a LEFT JOIN invoice i ON i.id = a.invoice_id"
    ),
    "keys": "SELECT id, facility_id, key, operation, result FROM idempotency_record",
    "invoices": "SELECT id, number, status, total_minor FROM invoice",
    "invoice_history": (
        "SELECT id, invoice_id, from_status, to_status, reason FROM invoice_status_change"
    ),
    "audit": (
        "SELECT id, action, entity_type, entity_id, request_id, "
        "CASE WHEN before IS NULL THEN 1 ELSE 0 END AS inserted FROM audit_entry"
    ),
    "audit_pending": "SELECT entry_id FROM audit_pending",
    "audit_links": "SELECT sequence, entry_id, entry_hash FROM audit_link",
}


def read_ledger(workspace: Workspace) -> Ledger:
    """Every row the payment path writes, audit trail included, table by table, ordered."""

    def read(unit: Any) -> Ledger:
        return {
            name: [dict(row) for row in unit.session.execute(text(f"{sql} ORDER BY 1")).mappings()]
            for name, sql in LEDGER_QUERIES.items()
        }

    return workspace.read(read)


def ledger_problems(ledger: Ledger) -> list[str]:
    """Every way the ledger breaks "a payment is wholly present or wholly absent", as text:
    a payment without its status history, its completed idempotency record or its audit
    entries (all from one request), allocations beyond its amount or without a payment, a key
    without its payment, an invoice whose status disagrees with what is allocated to it."""
    return _payment_problems(ledger) + _invoice_problems(ledger) + _audit_problems(ledger)


def verification_findings(workspace: Workspace) -> list[str]:
    """What the application's own verifier finds wrong with the audit chain and the integrity
    hashes of payments and invoices (read only: the check itself is not audited)."""
    report = workspace.read(lambda unit: verify_session(unit.session))
    return [f"{f.kind} {f.entity}: {f.detail}" for f in report.findings]


def _by(rows: list[dict[str, Any]], column: str) -> dict[Any, list[dict[str, Any]]]:
    grouped: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        grouped[row[column]].append(row)
    return grouped


def _live(ledger: Ledger) -> list[dict[str, Any]]:
    return [a for a in ledger["allocations"] if not a["released"]]


def _recorded_keys(ledger: Ledger) -> dict[int, list[dict[str, Any]]]:
    """Completed payment.record keys by the payment their receipt names."""
    keyed: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for record in ledger["keys"]:
        if record["operation"] == "payment.record" and record["result"]:
            keyed[json.loads(record["result"])["payment_id"]].append(record)
    return keyed


def _payment_problems(ledger: Ledger) -> list[str]:
    problems: list[str] = []
    payments = {p["id"]: p for p in ledger["payments"]}
    history = _by(ledger["history"], "payment_id")
    live = _by(_live(ledger), "payment_id")
    keyed = _recorded_keys(ledger)
    problems += [
        f"idempotency key {r['key']} was claimed but never completed"
        for r in ledger["keys"]
        if not r["result"]
    ]
    problems += [
        f"allocation {a['id']} belongs to no payment ({a['payment_id']})"
        for a in ledger["allocations"]
        if a["payment_id"] not in payments
    ]
    problems += [
        f"status history for payment {payment_id}, which does not exist"
        for payment_id in history.keys() - payments.keys()
    ]
    for payment_id, records in keyed.items():
        payment = payments.get(payment_id)
        for record in records:
            result = json.loads(record["result"])
            if payment is None:
                problems.append(f"key {record['key']} names payment {payment_id}: no such payment")
                continue
            if record["facility_id"] != payment["facility_id"]:
                problems.append(f"key {record['key']} is scoped to another facility")
            if result["amount_minor"] != payment["amount_minor"]:
                problems.append(f"key {record['key']}'s receipt has another amount")
            stored = sorted((a["invoice_number"], a["amount_minor"]) for a in result["allocations"])
            actual = sorted((a["invoice_number"], a["amount_minor"]) for a in live[payment_id])
            if stored != actual:
                problems.append(
                    f"key {record['key']}'s receipt allocates {stored}; payment {payment_id} "
                    f"holds {actual}"
                )
    for payment_id, payment in payments.items():
        moves = history.get(payment_id, [])
        if not moves or moves[0]["from_status"] is not None:
            problems.append(f"payment {payment_id} has no first status-history row")
        elif moves[-1]["to_status"] != payment["status"]:
            problems.append(
                f"payment {payment_id} is {payment['status']}; its history ends at "
                f"{moves[-1]['to_status']}"
            )
        if len(keyed.get(payment_id, [])) != 1:
            problems.append(
                f"payment {payment_id} has {len(keyed.get(payment_id, []))} completed keys"
            )
        allocated = sum(a["amount_minor"] for a in live[payment_id])
        if allocated > payment["amount_minor"]:
            problems.append(
                f"payment {payment_id} allocates {allocated} of its {payment['amount_minor']}"
            )
    return problems


def _invoice_problems(ledger: Ledger) -> list[str]:
    problems: list[str] = []
    paid: dict[int, int] = defaultdict(int)
    for allocation in _live(ledger):
        paid[allocation["invoice_id"]] += allocation["amount_minor"]
    moves = _by(ledger["invoice_history"], "invoice_id")
    for invoice in ledger["invoices"]:
        number, total, status = invoice["number"], invoice["total_minor"], invoice["status"]
        if paid[invoice["id"]] > total:
            problems.append(f"invoice {number} is paid beyond its total")
        if status in ("issued", "partially paid", "paid"):
            expected = invoice_status_for(total, paid[invoice["id"]]).value
            if status != expected:
                problems.append(
                    f"invoice {number} is {status}; with {paid[invoice['id']]} of {total} "
                    f"allocated it should be {expected}"
                )
        own = moves.get(invoice["id"], [])
        if not own or own[-1]["to_status"] != status:
            problems.append(f"invoice {number}'s status history does not end at {status}")
    return problems


def _audit_problems(ledger: Ledger) -> list[str]:
    """Each payment's rows were audited as inserts by the one request that recorded it."""
    problems: list[str] = []
    inserted = {(e["entity_type"], e["entity_id"]): e for e in ledger["audit"] if e["inserted"]}
    keyed = _recorded_keys(ledger)
    history = _by(ledger["history"], "payment_id")
    allocations = _by(ledger["allocations"], "payment_id")
    for payment in ledger["payments"]:
        payment_id = payment["id"]
        rows = [("payment", payment_id)]
        rows += [("payment_status_change", h["id"]) for h in history.get(payment_id, [])[:1]]
        rows += [
            ("allocation", a["id"]) for a in allocations.get(payment_id, []) if not a["via_credit"]
        ]
        rows += [("idempotency_record", r["id"]) for r in keyed.get(payment_id, [])]
        requests = set()
        for table, row_id in rows:
            entry = inserted.get((table, str(row_id)))
            if entry is None:
                problems.append(f"payment {payment_id}: {table} {row_id} has no audit entry")
            else:
                requests.add(entry["request_id"])
        if len(requests) > 1:
            problems.append(f"payment {payment_id} was audited by {len(requests)} requests")
    present = {
        "payment": {p["id"] for p in ledger["payments"]},
        "payment_status_change": {h["id"] for h in ledger["history"]},
        "allocation": {a["id"] for a in ledger["allocations"]},
        "idempotency_record": {r["id"] for r in ledger["keys"]},
    }
    for (table, row_id), entry in inserted.items():
        if table in present and int(row_id) not in present[table]:
            problems.append(f"audit entry {entry['id']} records a {table} {row_id} that is absent")
    return problems


def main(argv: list[str]) -> None:
    if len(argv) not in (2, 3) or argv[0] != "crash":
        raise SystemExit(
            "usage: python -m tests.concurrency.payment_worker crash DB_URL [CHILD_SECONDS]"
        )
    serve_crashes(argv[1], float(argv[2]) if len(argv) == 3 else 30.0)


if __name__ == "__main__":
    main(sys.argv[1:])
