"""An exported archive opens for its auditor: the command `audit export` prints works exactly as
printed, by someone who is not a user of the source database, and every read works without
--user while any write is refused."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from billing_desk.services.invoices import run_invoice
from tests.cli.conftest import Cli
from tests.conftest import Database
from tests.support import load_trips, seed_facility, seed_users, trip

BILLING_DESK = Path(sys.executable).with_name("billing-desk")


def _as_new_user(command: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BILLING_DESK")}
    # A login name no source database knows: the auditor's own machine.
    env.update(USER="newauditor", LOGNAME="newauditor", HOME=str(home))
    return subprocess.run(
        [str(BILLING_DESK), *command], env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_the_printed_archive_command_works_as_printed_without_user(
    cli: Cli, database: Database, tmp_path: Path
) -> None:
    admin = database.workspace("admin")
    seed_users(admin)
    seed_facility(admin, "STMARY")
    load_trips(database.workspace("manager"), [trip("T1", day=date(2026, 5, 1), fare="40.00")])
    run_invoice(database.workspace("clerk"), "STMARY", "2026-05", issue_date=date(2026, 6, 1))
    out = tmp_path / "for the auditor.sqlite3"
    exported = cli("audit", "export", "--out", str(out), user="auditor")
    assert exported.code == 0, exported.err
    printed = next(
        line.removeprefix("Check it with: ")
        for line in exported.out.splitlines()
        if line.startswith("Check it with: ")
    )
    words = shlex.split(printed)
    assert words[0] == "billing-desk" and "--user" not in words
    home = tmp_path / "home"
    home.mkdir()
    verified = _as_new_user(words[1:], home)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "Intact." in verified.stdout
    for read in (["invoice", "list"], ["facility", "balance", "STMARY"], ["audit", "log"]):
        ran = _as_new_user(["--db", str(out), *read], home)
        assert ran.returncode == 0, (read, ran.stderr)
    before = out.read_bytes()
    wrote = _as_new_user(["--db", str(out), "facility", "add", "LATE", "--name", "Late"], home)
    assert wrote.returncode != 0 and "read-only" in wrote.stderr, wrote.stderr
    assert out.read_bytes() == before
