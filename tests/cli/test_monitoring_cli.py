"""`monitor run`, `alerts list|ack|dismiss`, `health` and `compliance` on the command line, and
the anomaly rules running after a payment recorded there."""

from __future__ import annotations

from datetime import date

import pytest

from billing_desk.cli.app import run
from billing_desk.services.demo import load_demo_data
from tests.cli.conftest import Cli
from tests.conftest import Database

# Reads the time: run again under a moved wall clock by `make test` (tests/conftest.py).
pytestmark = pytest.mark.clock

AS_OF = date(2026, 5, 20)


def test_monitor_run_then_alerts_are_listed_and_closed(cli: Cli, database: Database) -> None:
    load_demo_data(database.workspace("newcomer"), as_of=AS_OF, anomalies=True)
    ran = cli("monitor", "run", "--json")
    assert ran.code == 0, ran.err
    raised = ran.json()["alerts"]  # type: ignore[index]
    assert len(raised) >= 8
    for alert in raised:
        assert {"id", "rule", "severity", "facility", "explanation"} <= set(alert)
    assert {a["rule"] for a in raised} == {
        "amount-outlier",
        "overpayment",
        "velocity",
        "after-hours",
        "own-payment",
        "reused-check",
        "near-duplicate",
    }
    again = cli("monitor", "run", "--from", "2026-01-01", "--to", "2026-05-20", "--json")
    assert again.json()["raised"] == 0  # type: ignore[index]
    assert cli("monitor", "run", "--from", "2026-13-01").code == 2

    listed = cli("alerts", "list", "--open", "--json").json()
    assert {a["id"] for a in listed} == {a["id"] for a in raised}  # type: ignore[union-attr]
    first = raised[0]["id"]
    refused = cli("alerts", "ack", str(first), "--note", "seen")
    assert refused.code == 3 and refused.err.count("\n") == 1
    acked = cli("alerts", "ack", str(first), "--note", "called them", "--json", user="manager")
    assert acked.code == 0, acked.err
    assert acked.json()["status"] == "acknowledged"  # type: ignore[index]
    dismissed = cli("alerts", "dismiss", str(raised[1]["id"]), "--note", "fine", user="manager")
    assert dismissed.code == 0 and "dismissed by manager" in dismissed.out
    still_open = cli("alerts", "list", "--open", "--json").json()
    assert len(still_open) == len(raised) - 2  # type: ignore[arg-type]
    human = cli("alerts", "list")
    assert "explanation" in human.out and "acknowledged" in human.out


def test_a_payment_recorded_on_the_command_line_is_checked_after_it_commits(
    cli: Cli, database: Database
) -> None:
    load_demo_data(database.workspace("newcomer"), facilities=3, months=6, as_of=AS_OF)
    paid = cli(
        "payment",
        "record",
        "--facility",
        "NAKANO",
        "--method",
        "cash",
        "--amount",
        "45000.00",
        "--received",
        "2026-05-19",
        "--idempotency-key",
        "big-cash-1",
        "--json",
    )
    assert paid.code == 0, paid.err
    payment_id = paid.json()["payment_id"]  # type: ignore[index]
    alerts = cli("alerts", "list", "--json").json()
    assert {a["rule"] for a in alerts} >= {"amount-outlier", "overpayment"}  # type: ignore[union-attr]
    assert all(f"Payment {payment_id} " in a["explanation"] for a in alerts)  # type: ignore[union-attr]


def test_health_and_compliance(cli: Cli, database: Database) -> None:
    load_demo_data(database.workspace("newcomer"), facilities=3, months=2, as_of=AS_OF)
    health = cli("health", "--json", user="admin")
    assert health.code == 0, health.err
    items = {i["name"]: i for i in health.json()["items"]}  # type: ignore[index]
    assert set(items) == {
        "database",
        "migrations",
        "unsealed",
        "checkpoint",
        "idempotency_keys",
        "failed_operations",
        "discrepancies",
        "alerts",
        "remittance",
        "keyring",
        # The sealer's queue is a table with dead rows only on PostgreSQL.
        *(("audit_queue",) if database.backend == "postgresql" else ()),
    }
    assert items["database"]["status"] == "ok" and items["database"]["round_trip_ms"] >= 0
    assert items["migrations"]["status"] == "ok"
    assert items["idempotency_keys"]["status"] == "warning"  # the demo's keys are months old
    assert all(i["status"] in ("ok", "warning") and i["sentence"] for i in items.values())
    assert "Overall: warning." in cli("health", user="admin").out

    compliance = cli("compliance", "--json", user="auditor")
    assert compliance.code == 0, compliance.err
    report = compliance.json()
    assert 0 <= report["score"] <= 100  # type: ignore[index]
    checks = report["checks"]  # type: ignore[index]
    assert sum(c["weight"] for c in checks) == 100
    for check in checks:
        assert {"name", "passed", "weight", "evidence"} <= set(check)
    assert report["score"] == sum(c["weight"] for c in checks if c["passed"])  # type: ignore[index]
    assert "Score:" in cli("compliance", user="auditor").out


def test_health_says_an_unreachable_server_is_failing(capsys) -> None:  # type: ignore[no-untyped-def]
    # Nothing listens on port 1: the shared server itself is never stopped by a test.
    code = run(["--db", "postgresql://postgres@127.0.0.1:1/billing", "health", "--json"])
    out = capsys.readouterr().out
    assert code == 1
    assert '"status": "failing"' in out
    assert "The database cannot be reached: Cannot reach the database server at 127.0.0.1:1" in out
