"""The auditor's archive: a self-contained SQLite copy of one consistent snapshot, on both
backends, that never carries the database's secret and records its own export."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, date
from pathlib import Path
from typing import Any

import pytest
import typer
from sqlalchemy import Engine, Table, create_engine, func, select
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from billing_desk.cli.audit_export import export_command
from billing_desk.cli.state import CliState
from billing_desk.db.models import AuditEntry, AuditLink, Base, Facility, Payment
from billing_desk.domain.errors import BadInput, PermissionDenied, Refused
from billing_desk.services import archive
from billing_desk.services.archive import (
    ARCHIVE_APPLICATION_ID,
    archived_tables,
    export_archive,
    is_archive,
)
from billing_desk.services.invoices import list_invoices, run_invoice
from billing_desk.services.payments import PaymentDraft, record_payment
from billing_desk.services.unit_of_work import open_workspace
from billing_desk.services.verification import verify, verify_session
from tests.conftest import Database
from tests.support import load_trips, seed_facility, seed_users, trip

NEVER_EXPORTED = "database_secret"


@pytest.fixture
def billed(database: Database) -> Database:
    """Users, two facilities, trips, an invoice and a check payment with an account hash."""
    admin = database.workspace("admin")
    seed_users(admin)
    seed_facility(admin, "STMARY")
    seed_facility(admin, "OAKVIEW")
    load_trips(
        database.workspace("manager"),
        [
            trip("T1", day=date(2026, 5, 1), fare="40.00", client="Ana Sousa"),
            trip("T2", day=date(2026, 5, 2), fare="12.34", client="José Núñez"),
            trip("T3", day=date(2026, 5, 3), fare="7.66"),
            trip("O1", facility="OAKVIEW", day=date(2026, 5, 9), fare="99.99"),
        ],
    )
    clerk = database.workspace("clerk")
    run_invoice(clerk, "STMARY", "2026-05", issue_date=date(2026, 6, 1))
    record_payment(
        clerk,
        PaymentDraft(
            facility="STMARY",
            method="check",
            amount="60.00",
            received=date(2026, 6, 2),
            check_number="1001",
            routing_number="021000021",
            account_number="000123456789",
            auto_allocate=True,
        ),
        "archive-test-1",
    )
    return database


@pytest.fixture
def exports(tmp_path: Path) -> Path:
    """A folder of its own for the archives (the SQLite test database lives in tmp_path)."""
    folder = tmp_path / "exports"
    folder.mkdir()
    return folder


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Several chunks per table even with a small data set."""
    monkeypatch.setattr(archive, "CHUNK", 7)


def read_only_engine(path: Path) -> Engine:
    url = URL.create("sqlite+pysqlite", database=path.as_uri(), query={"mode": "ro", "uri": "true"})
    return create_engine(url, poolclass=NullPool)


@pytest.fixture
def opened() -> Iterator[list[Engine]]:
    engines: list[Engine] = []
    yield engines
    for engine in engines:
        engine.dispose()


def rows(engine: Engine, table: Table) -> list[tuple[Any, ...]]:
    with engine.connect() as connection:
        result = connection.execute(select(table).order_by(*table.primary_key.columns))
        return [tuple(row) for row in result]


def count(engine: Engine, table: Table) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


def stdlib_ro(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)


def test_archive_holds_every_exported_row_of_the_source(
    billed: Database, exports: Path, small_chunks: None, opened: list[Engine]
) -> None:
    out = exports / "archive.sqlite3"
    summary = export_archive(billed.workspace("auditor"), out)

    assert summary.path == out.resolve()
    assert out.is_file()
    source = billed.workspace("admin").engine
    target = read_only_engine(out)
    opened.append(target)
    names = {t.name for t in archived_tables()}
    assert names == {t.name for t in Base.metadata.sorted_tables} - {NEVER_EXPORTED}
    assert set(summary.tables) == names
    for table in archived_tables():
        source_rows = rows(source, table)
        assert summary.tables[table.name] == len(source_rows), table.name
        assert rows(target, table) == source_rows, table.name
    # The data is really there, not only empty tables.
    assert summary.tables["trip"] == 4
    assert summary.tables["invoice"] == 1
    assert summary.tables["payment"] == 1
    assert summary.tables["audit_entry"] > 20


def test_archive_carries_no_secret_but_keeps_the_account_hashes(
    billed: Database, exports: Path, opened: list[Engine]
) -> None:
    out = exports / "archive.sqlite3"
    export_archive(billed.workspace("auditor"), out)
    source = billed.workspace("admin").engine
    target = read_only_engine(out)
    opened.append(target)
    secret_table = Base.metadata.tables[NEVER_EXPORTED]
    assert count(source, secret_table) == 1
    assert count(target, secret_table) == 0
    with source.connect() as connection:
        secret_value = connection.execute(select(secret_table.c.value)).scalar_one()
    assert secret_value.encode() not in out.read_bytes()
    hashes = select(Payment.account_hash)
    with source.connect() as a, target.connect() as b:
        source_hashes = a.execute(hashes).scalars().all()
        assert source_hashes == b.execute(hashes).scalars().all()
    assert source_hashes and all(source_hashes)


def test_audit_chain_is_identical_and_verifies_in_the_archive(
    billed: Database, exports: Path, opened: list[Engine]
) -> None:
    out = exports / "archive.sqlite3"
    summary = export_archive(billed.workspace("auditor"), out)
    source = billed.workspace("admin").engine
    target = read_only_engine(out)
    opened.append(target)
    chain = select(
        AuditLink.sequence, AuditLink.entry_id, AuditLink.prev_hash, AuditLink.entry_hash
    ).order_by(AuditLink.sequence)
    with source.connect() as a, target.connect() as b:
        links = a.execute(chain).all()
        assert links == b.execute(chain).all()
    assert (summary.head_sequence, summary.head_hash) == (links[-1][0], links[-1][3])
    with Session(target) as session:
        report = verify_session(session)
    assert report.ok, report.findings
    assert (report.head_sequence, report.head_hash) == (summary.head_sequence, summary.head_hash)
    assert report.unsealed.count == 0
    identity = Base.metadata.tables["database_identity"]
    assert rows(target, identity) == rows(source, identity)
    assert rows(target, identity)[0][1] == summary.database_id


def test_the_export_is_audited_in_the_source_and_in_the_archive(
    billed: Database, exports: Path, opened: list[Engine]
) -> None:
    out = exports / "archive.sqlite3"
    summary = export_archive(billed.workspace("auditor"), out)
    query = (
        select(AuditEntry.user_name, AuditEntry.entity_id, AuditEntry.after, AuditLink.sequence)
        .join(AuditLink, AuditLink.entry_id == AuditEntry.id)
        .where(AuditEntry.action == "audit.export")
    )
    source = billed.workspace("admin").engine
    target = read_only_engine(out)
    opened.append(target)
    with source.connect() as a, target.connect() as b:
        in_source = a.execute(query).all()
        in_archive = b.execute(query).all()
    assert in_source == in_archive
    [(user, entity_id, after, sequence)] = in_archive
    assert (user, entity_id) == ("auditor", "archive.sqlite3")
    assert after is not None
    assert json.loads(after)["path"] == str(out.resolve())
    # Sealed, and the archive's own export is the newest link it holds.
    assert sequence == summary.head_sequence


def test_archive_opens_read_only_with_the_standard_library(billed: Database, exports: Path) -> None:
    out = exports / "archive.sqlite3"
    export_archive(billed.workspace("clerk"), out)
    connection = stdlib_ro(out)
    try:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        assert connection.execute("PRAGMA application_id").fetchone() == (ARCHIVE_APPLICATION_ID,)
        codes = [c for (c,) in connection.execute("SELECT code FROM facility ORDER BY code")]
        assert codes == ["OAKVIEW", "STMARY"]
        assert connection.execute("SELECT count(*) FROM trip").fetchone() == (4,)
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            connection.execute("INSERT INTO facility (code) VALUES ('X')")
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert connection.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        connection.close()
    # One file: no journal, WAL or shared-memory file beside it.
    assert sorted(p.name for p in exports.iterdir()) == ["archive.sqlite3"]


def test_is_archive_tells_an_archive_from_anything_else(billed: Database, exports: Path) -> None:
    out = exports / "archive.sqlite3"
    export_archive(billed.workspace("auditor"), out)
    assert is_archive(out)
    text = exports / "notes.txt"
    text.write_text("not a database\n" * 20, encoding="utf-8")
    assert not is_archive(text)
    assert not is_archive(exports / "missing.sqlite3")
    assert not is_archive(exports)
    if billed.backend == "sqlite":
        assert not is_archive(Path(billed.url))
    odd = exports / "a folder #1 ?%" / "archive copy.sqlite3"
    odd.parent.mkdir()
    export_archive(billed.workspace("auditor"), odd)
    assert is_archive(odd)


def test_an_existing_file_is_never_replaced(
    billed: Database, exports: Path, opened: list[Engine]
) -> None:
    out = exports / "archive.sqlite3"
    out.write_bytes(b"keep me")
    with pytest.raises(BadInput, match="already exists"):
        export_archive(billed.workspace("auditor"), out)
    assert out.read_bytes() == b"keep me"
    assert sorted(p.name for p in exports.iterdir()) == ["archive.sqlite3"]
    with pytest.raises(BadInput, match="does not exist"):
        export_archive(billed.workspace("auditor"), exports / "nowhere" / "archive.sqlite3")
    assert _export_entries(billed) == 0


def test_only_users_of_the_database_export(billed: Database, exports: Path) -> None:
    with pytest.raises(PermissionDenied):
        export_archive(billed.workspace("stranger"), exports / "archive.sqlite3")
    assert list(exports.iterdir()) == []
    assert _export_entries(billed) == 0


def test_a_failure_mid_copy_leaves_no_file(
    billed: Database, exports: Path, small_chunks: None
) -> None:
    folder = exports / "exports"
    folder.mkdir()
    seen: list[tuple[str, int, int]] = []

    def cancel(stage: str, done: int, total: int) -> None:
        seen.append((stage, done, total))
        if stage == "audit_entry" and done > 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export_archive(billed.workspace("auditor"), folder / "archive.sqlite3", progress=cancel)
    assert list(folder.iterdir()) == []
    assert ("audit_entry", 7, seen[-1][2]) == seen[-1]
    # The attempt itself stays in the source's history; a new export still works.
    assert _export_entries(billed) == 1
    summary = export_archive(billed.workspace("auditor"), folder / "archive.sqlite3")
    assert is_archive(summary.path)


def test_progress_reports_every_table_up_to_its_total(
    billed: Database, exports: Path, small_chunks: None
) -> None:
    seen: dict[str, list[tuple[int, int]]] = {}

    def watch(stage: str, done: int, total: int) -> None:
        seen.setdefault(stage, []).append((done, total))

    summary = export_archive(billed.workspace("auditor"), exports / "a.sqlite3", progress=watch)
    assert list(seen) == [t.name for t in archived_tables()]
    for name, calls in seen.items():
        assert calls[0] == (0, summary.tables[name])
        assert calls[-1] == (summary.tables[name], summary.tables[name])
        assert [done for done, _ in calls] == sorted(done for done, _ in calls)


def test_a_write_committed_during_the_export_is_not_in_the_archive(
    billed: Database, exports: Path, small_chunks: None, opened: list[Engine]
) -> None:
    """The copy is one snapshot: a facility added while audit rows are being copied is in
    neither the archive's facilities nor its audit trail, and the counts still agree."""
    admin = billed.workspace("admin")
    done: list[bool] = []

    def write_meanwhile(stage: str, rows_done: int, total: int) -> None:
        if stage == "audit_entry" and rows_done > 0 and not done:
            seed_facility(admin, "LATE")
            done.append(True)

    out = exports / "archive.sqlite3"
    summary = export_archive(billed.workspace("auditor"), out, progress=write_meanwhile)
    assert done
    target = read_only_engine(out)
    opened.append(target)
    late = select(Facility.code).where(Facility.code == "LATE")
    late_entries = select(func.count()).where(
        AuditEntry.entity_type == "facility", AuditEntry.after.contains('"LATE"')
    )
    with admin.engine.connect() as a, target.connect() as b:
        assert a.execute(late).scalars().all() == ["LATE"]
        assert b.execute(late).scalars().all() == []
        assert a.execute(late_entries).scalar_one() == 1
        assert b.execute(late_entries).scalar_one() == 0
    assert count(target, Base.metadata.tables["audit_entry"]) == summary.tables["audit_entry"]
    with Session(target) as session:
        assert verify_session(session).ok


def test_datetimes_stay_aware_and_equal(
    billed: Database, exports: Path, opened: list[Engine]
) -> None:
    """PostgreSQL timestamptz and SQLite's naive UTC text both come back as the same instant."""
    out = exports / "archive.sqlite3"
    export_archive(billed.workspace("auditor"), out)
    source = billed.workspace("admin").engine
    target = read_only_engine(out)
    opened.append(target)
    stamps = select(AuditEntry.id, AuditEntry.recorded_at).order_by(AuditEntry.id)
    with source.connect() as a, target.connect() as b:
        before = a.execute(stamps).all()
        after = b.execute(stamps).all()
    assert after == before
    assert all(s.tzinfo is not None and s.utcoffset() == UTC.utcoffset(None) for _, s in after)
    assert any(s.microsecond for _, s in after), "sub-second precision is kept"
    connection = stdlib_ro(out)
    try:
        [(raw,)] = connection.execute(
            "SELECT recorded_at FROM audit_entry ORDER BY id LIMIT 1"
        ).fetchall()
    finally:
        connection.close()
    # Stored as SQLite stores every UTC timestamp of the application: naive text in UTC.
    assert raw == before[0][1].astimezone(UTC).replace(tzinfo=None).isoformat(" ")


def test_export_command_prints_a_summary(
    billed: Database, exports: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = typer.Typer()

    @app.callback()
    def root(ctx: typer.Context) -> None:
        ctx.obj = CliState(billed.url, "auditor")
        ctx.call_on_close(ctx.obj.close)

    app.command("export")(export_command)
    out = exports / "archive.sqlite3"
    with pytest.raises(SystemExit) as done:
        app(args=["export", "--out", str(out), "--json"], standalone_mode=True)
    assert done.value.code == 0
    document = json.loads(capsys.readouterr().out)
    assert document["path"] == str(out.resolve())
    assert document["tables"]["trip"] == 4
    assert NEVER_EXPORTED not in document["tables"]
    assert is_archive(out)
    with pytest.raises(SystemExit) as again:
        app(args=["export", "--out", str(exports / "second.sqlite3")], standalone_mode=True)
    assert again.value.code == 0
    assert "second.sqlite3" in capsys.readouterr().out


def _export_entries(database: Database) -> int:
    with database.workspace("admin").engine.connect() as connection:
        return int(
            connection.execute(
                select(func.count()).where(AuditEntry.action == "audit.export")
            ).scalar_one()
        )


def test_the_application_opens_an_archive_read_only_and_never_writes_it(
    billed: Database, exports: Path
) -> None:
    out = exports / "archive.sqlite3"
    export_archive(billed.workspace("auditor"), out)
    before = hashlib.sha256(out.read_bytes()).hexdigest()
    workspace = open_workspace(str(out), "auditor")
    try:
        assert workspace.read_only
        assert verify(workspace).ok
        assert [i.number for i in list_invoices(workspace)] == ["STMARY-000001"]
        with pytest.raises(Refused, match="audit archive, opened read-only") as refused:
            seed_facility(workspace, "LATE")
        assert refused.value.exit_code == 3
        with pytest.raises(Refused, match="audit archive"):
            workspace.seal()
        with pytest.raises(Refused, match="audit archive"):
            export_archive(workspace, exports / "again.sqlite3")
    finally:
        workspace.close()
    assert hashlib.sha256(out.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in exports.iterdir()) == ["archive.sqlite3"]
