"""`--report-db`: long read-only work (verification, the audit log, exports) reads from a
replica while what it records goes to the primary. A copy of the primary stands in for the
replica here; it never catches up, which is how a lagging replica looks."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from billing_desk.domain.errors import BadInput, EnvironmentFault, Refused
from billing_desk.services import archive
from billing_desk.services.audit import audit_log
from billing_desk.services.unit_of_work import open_workspace
from billing_desk.services.verification import verify
from tests.conftest import Database, pg_admin_connection, pg_url
from tests.support import load_trips, seed_facility, seed_users, trip


@pytest.fixture
def primary_and_copy(fresh_database) -> Iterator[tuple[str, str]]:  # type: ignore[no-untyped-def]
    primary: Database = fresh_database("postgresql")
    setup = open_workspace(primary.url, "admin", migrate=False)
    seed_users(setup)
    seed_facility(setup)
    setup.close()
    clerk = open_workspace(primary.url, "clerk", migrate=False)
    load_trips(clerk, [trip("T1")])
    clerk.close()
    copy = f"bd_replica_{uuid.uuid4().hex[:10]}"
    with pg_admin_connection() as conn:
        template = primary.url.rsplit("/", 1)[1]
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(copy), sql.Identifier(template)
            )
        )
    yield primary.url, pg_url(copy)
    with pg_admin_connection() as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(copy))
        )


def _entries(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM audit_entry").fetchone()
    assert row is not None
    return int(row[0])


def test_verification_and_the_log_read_the_replica_and_record_on_the_primary(
    primary_and_copy: tuple[str, str],
) -> None:
    primary_url, replica_url = primary_and_copy
    writer = open_workspace(primary_url, "clerk", migrate=False)
    load_trips(writer, [trip("T2")])  # the replica does not have this yet
    writer.close()
    on_primary, on_replica = _entries(primary_url), _entries(replica_url)
    assert on_primary > on_replica
    workspace = open_workspace(primary_url, "auditor", report_db=replica_url)
    try:
        report = verify(workspace)
        assert report.ok, report.findings
        assert report.entries_checked == on_replica
        log = audit_log(workspace, limit=100_000)
        # The replica's entries only: verify's own event went to the primary.
        assert len(log) == on_replica
    finally:
        workspace.close()
    # Both runs were recorded on the primary, none on the replica.
    assert _entries(primary_url) == on_primary + 2
    assert _entries(replica_url) == on_replica


def test_an_export_from_a_lagging_replica_is_refused_in_one_sentence(
    primary_and_copy: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    primary_url, replica_url = primary_and_copy
    monkeypatch.setattr(archive, "REPLICA_WAIT_SECONDS", 0.3)
    workspace = open_workspace(primary_url, "auditor", report_db=replica_url)
    try:
        with pytest.raises(EnvironmentFault, match="report database is behind the primary"):
            archive.export_archive(workspace, tmp_path / "a.sqlite3")
        assert not (tmp_path / "a.sqlite3").exists()
    finally:
        workspace.close()


def test_the_replica_is_never_written(primary_and_copy: tuple[str, str]) -> None:
    primary_url, replica_url = primary_and_copy
    workspace = open_workspace(primary_url, "admin", report_db=replica_url)
    try:
        with pytest.raises(Refused):
            workspace.reports.write(lambda unit: None, action="test")
    finally:
        workspace.close()


def test_a_report_db_needs_postgresql(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="--report-db"):
        open_workspace(str(tmp_path / "x.sqlite3"), "admin", report_db=str(tmp_path / "y"))
