"""The command-line contract: commands, --json documents and exit codes, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Database

TRIPS_CSV = """trip_id,facility,client,client_id,service_date,pickup,dropoff,status,fare,billable
T1,STMARY,Ana Sousa,C1,2026-05-01,12 Oak Rd,General Hospital,completed,40.00,yes
T2,STMARY,José Núñez,C2,2026-05-02,3 Elm St,Dialysis Centre,completed,12.34,yes
T3,STMARY,Ana Sousa,C1,2026-05-03,12 Oak Rd,General Hospital,cancelled,40.00,yes
"""


@dataclass
class Ran:
    code: int
    out: str
    err: str

    def json(self) -> object:
        return json.loads(self.out)


@pytest.fixture
def cli(database: Database, tmp_path: Path):  # type: ignore[no-untyped-def]
    env = {**os.environ, "BILLING_DESK_DB": database.url, "HOME": str(tmp_path)}
    env.pop("BILLING_DESK_USER", None)

    def run(*args: str, user: str | None = "clerk") -> Ran:
        command = [sys.executable, "-m", "billing_desk.cli.app"]
        if user:
            command += ["--user", user]
        done = subprocess.run(
            [*command, *args], capture_output=True, text=True, env=env, timeout=120, check=False
        )
        return Ran(done.returncode, done.stdout, done.stderr)

    return run


def _set_up(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for name in ("admin", "clerk", "manager", "auditor"):
        assert cli("user", "add", name, "--role", name, user="admin").code == 0
    added = cli(
        "facility", "add", "STMARY", "--name", "St. Mary's <Hospital>", "--json", user="admin"
    )
    assert added.code == 0, added.err
    assert added.json()["code"] == "STMARY"
    trips = tmp_path / "trips.csv"
    trips.write_text(TRIPS_CSV, encoding="utf-8")
    imported = cli("trip", "import", str(trips), "--json")
    assert imported.code == 0, imported.err
    assert imported.json()["added"] == 3


def test_the_billing_round_trip(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _set_up(cli, tmp_path)
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
def test_bad_usage_and_bad_input_exit_2(  # type: ignore[no-untyped-def]
    cli, tmp_path: Path, args: tuple[str, ...], code: int, message: str
) -> None:
    _set_up(cli, tmp_path)
    ran = cli(*args)
    assert ran.code == code, ran.err
    assert message in ran.err
    assert ran.out == ""


def test_permission_refusal_exits_3_with_one_sentence(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _set_up(cli, tmp_path)
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
    assert "Cannot use the database at postgresql" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_no_command_on_an_empty_database_says_how_to_load_demo_data(cli) -> None:  # type: ignore[no-untyped-def]
    ran = cli(user=None)
    assert ran.code == 0, ran.err
    assert "billing-desk demo" in ran.out
    assert "invoice" in ran.out


def test_db_upgrade_reports_up_to_date(cli) -> None:  # type: ignore[no-untyped-def]
    ran = cli("db", "upgrade", "--json")
    assert ran.code == 0, ran.err
    assert ran.json()["upgraded"] is False
