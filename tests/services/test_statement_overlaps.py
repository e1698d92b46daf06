"""Per format: the same file twice changes nothing, and a later file overlapping an earlier one
adds only its new lines; also two clerks importing the same file at once save it once, and a
file too large to be a statement is refused before it is read."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from billing_desk.db.models import BankLine, StatementFile
from billing_desk.domain.errors import BadInput
from billing_desk.domain.statements import Statement
from billing_desk.importers.statements import csv_statement, registry
from billing_desk.importers.statements.writers import WRITERS, BankEntry
from billing_desk.services.statements import import_statements
from billing_desk.services.unit_of_work import Workspace
from tests.conftest import Database
from tests.support import seed_users

ACCOUNT = "200300400"
DAYS = [date(2026, 6, 1) + timedelta(days=n) for n in range(9)]
ENTRIES = [
    BankEntry(day, 1000 + 100 * n, f"T{n}", f"REF{n}", "St Mary") for n, day in enumerate(DAYS)
]


def parsed(name: str, data: bytes) -> list[Statement]:
    if name == "csv":
        statements = csv_statement.parse_with(data, csv_statement.guess_mapping(data))
        return [replace(s, account=ACCOUNT) for s in statements]
    return registry.parse(data, name)


def lines(workspace: Workspace) -> int:
    return int(workspace.read(lambda u: u.session.scalar(select(func.count(BankLine.id)))))


@pytest.fixture
def clerk(database: Database) -> Workspace:
    seed_users(database.workspace("admin"))
    return database.workspace("clerk")


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_reimport_and_overlap(clerk: Workspace, name: str) -> None:
    write = WRITERS[name]
    first = write(ACCOUNT, "USD", ENTRIES[:6])
    later = write(ACCOUNT, "USD", ENTRIES[3:])
    done = import_statements(clerk, "first", first, name, parsed(name, first), commit=True)
    assert (done.count("new"), lines(clerk)) == (6, 6)
    again = import_statements(clerk, "first", first, name, parsed(name, first), commit=True)
    assert again.file_already_imported and not again.committed and lines(clerk) == 6
    overlap = import_statements(clerk, "later", later, name, parsed(name, later), commit=True)
    assert (overlap.count("already imported"), overlap.count("new")) == (3, 3)
    assert lines(clerk) == 9


def test_two_clerks_importing_one_file_at_once_save_it_once(database: Database) -> None:
    seed_users(database.workspace("admin"))
    data = WRITERS["camt053"](ACCOUNT, "USD", ENTRIES)
    statements = registry.parse(data, "camt053")
    results = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def run(workspace: Workspace) -> None:
        try:
            barrier.wait()
            results.append(
                import_statements(workspace, "same", data, "camt053", statements, commit=True)
            )
        except BaseException as err:
            errors.append(err)

    workers = [threading.Thread(target=run, args=(database.workspace("clerk"),)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert errors == []
    assert sorted(r.committed for r in results) == [False, True]
    clerk = database.workspace("clerk")
    assert lines(clerk) == len(ENTRIES)
    files = clerk.read(lambda u: u.session.scalar(select(func.count(StatementFile.id))))
    assert files == 1


def test_a_file_too_large_to_be_a_statement_is_refused_unread(tmp_path: Path) -> None:
    huge = tmp_path / "huge.sta"
    with huge.open("wb") as handle:
        handle.truncate(200 * 1024 * 1024)  # sparse: 200 MB that take no disk
    with pytest.raises(BadInput, match="200 MB, larger than the 50 MB"):
        registry.read_statement_file(huge)
