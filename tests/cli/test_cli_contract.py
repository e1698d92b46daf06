"""The command-line contract: commands, --json documents and exit codes, as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.conftest import Cli, set_up_billing


def test_the_billing_round_trip(cli: Cli, tmp_path: Path) -> None:
    set_up_billing(cli, tmp_path)
    ran = cli(
        "invoice",
        "run",
        "--facility",
        "STMARY",
        "--period",
        "2026-05",
        "--issue-date",
        "2026-06-01",
        "--json",
    )
    assert ran.code == 0, ran.err
    doc = ran.json()
    assert doc["invoice_number"] == "STMARY-000001"
    assert (doc["facility"], doc["total_minor"], doc["currency"], doc["trip_count"]) == (
        "STMARY",
        5234,
        "USD",
        2,
    )

    again = cli("invoice", "run", "--facility", "STMARY", "--period", "2026-05", "--json")
    assert again.code == 3
    assert again.out == ""
    assert again.err.strip() == (
        "Nothing was billed: 2 trips of STMARY in 2026-05 are already on invoice STMARY-000001 "
        "(T1, T2)."
    )

    listed = cli("invoice", "list", "--status", "issued", "--json")
    assert [i["number"] for i in listed.json()] == ["STMARY-000001"]
    shown = cli("invoice", "show", "STMARY-000001", "--json").json()
    assert [line["trip_id"] for line in shown["lines"]] == ["T1", "T2"]

    assert cli("invoice", "void", "STMARY-000001", "--reason", "rates").code == 3
    voided = cli(
        "invoice", "void", "STMARY-000001", "--reason", "wrong rates", "--json", user="manager"
    )
    assert voided.code == 0, voided.err
    assert voided.json()["status"] == "void"

    trips = cli("trip", "list", "--unbilled", "--json").json()
    assert sorted(t["external_trip_id"] for t in trips) == ["T1", "T2", "T3"]
    assert cli("trip", "import", str(tmp_path / "trips.csv"), "--json").json()["unchanged"] == 3


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("invoice", "run", "--facility", "STMARY"), 2, "Missing option '--period'"),
        (
            ("invoice", "run", "--facility", "STMARY", "--period", "May"),
            2,
            "'May' is not a billing period; write the month as YYYY-MM, e.g. 2026-05.",
        ),
        (
            ("invoice", "run", "--facility", "NOPE", "--period", "2026-05"),
            2,
            "There is no facility with code 'NOPE'",
        ),
        (("invoice", "show", "X-1"), 2, "There is no invoice X-1"),
        (("frobnicate",), 2, "No such command"),
    ],
)
def test_bad_usage_and_bad_input_exit_2(
    cli: Cli, tmp_path: Path, args: tuple[str, ...], code: int, message: str
) -> None:
    set_up_billing(cli, tmp_path)
    ran = cli(*args)
    assert ran.code == code, ran.err
    assert message in ran.err
    assert ran.out == ""


def test_permission_refusal_exits_3_with_one_sentence(cli: Cli, tmp_path: Path) -> None:
    set_up_billing(cli, tmp_path)
    ran = cli("invoice", "run", "--facility", "STMARY", "--period", "2026-05", user="auditor")
    assert ran.code == 3
    assert ran.err.strip() == "auditor is an auditor, and an auditor may not run invoices."


def test_unreachable_database_exits_4(tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path)}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "billing_desk.cli.app",
            "--db",
            "postgresql://nobody@127.0.0.1:1/none",
            "invoice",
            "list",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 4
    assert "Cannot reach the database server at 127.0.0.1:1" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_no_command_on_an_empty_database_says_how_to_load_demo_data(cli: Cli) -> None:
    ran = cli(user=None)
    assert ran.code == 0, ran.err
    assert "billing-desk demo" in ran.out
    assert "invoice" in ran.out


def test_db_upgrade_reports_up_to_date(cli: Cli) -> None:
    ran = cli("db", "upgrade", "--json")
    assert ran.code == 0, ran.err
    assert ran.json()["upgraded"] is False
