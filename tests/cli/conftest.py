"""Running the command line in-process, as a user would type it, capturing what it prints."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from billing_desk.cli.app import run
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


Cli = Callable[..., Ran]


@pytest.fixture
def cli(
    database: Database, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Cli:
    monkeypatch.setenv("BILLING_DESK_DB", database.url)
    monkeypatch.delenv("BILLING_DESK_USER", raising=False)

    def invoke(*args: str, user: str | None = "clerk") -> Ran:
        capsys.readouterr()
        code = run([*(["--user", user] if user else []), *args])
        out, err = capsys.readouterr()
        return Ran(code, out, err)

    return invoke


def set_up_billing(cli: Cli, tmp_path: Path) -> None:
    """Users of every role, facility STMARY and three trips of May 2026."""
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
