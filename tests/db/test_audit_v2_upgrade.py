"""Upgrading a database with a version-1 chain to hash version 2 (migration 0004): the old links
keep verifying, entries waiting to be sealed get their digest, and new links are version 2."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from billing_desk.db.migrate import alembic_config, upgrade_to_head
from billing_desk.db.models import AuditChainHead, AuditEntry, AuditLink, Base
from billing_desk.domain.hashing import canonical_bytes
from billing_desk.domain.integrity import ZERO_HASH, entry_digest, link_hash
from billing_desk.services.unit_of_work import Workspace, open_workspace
from billing_desk.services.verification import verify_session
from tests.conftest import BACKENDS, pg_admin_connection, pg_url

ENTRY = Base.metadata.tables["audit_entry"]
LINK = Base.metadata.tables["audit_link"]
PENDING = Base.metadata.tables["audit_pending"]


@pytest.fixture(params=BACKENDS)
def at_0003(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database migrated to revision 0003 (hash version 1 only)."""
    if request.param == "sqlite":
        url = str(tmp_path / "v1.sqlite3")
    else:
        name = f"bd_v1_{uuid.uuid4().hex[:12]}"
        with pg_admin_connection() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

        def drop() -> None:
            with pg_admin_connection() as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

        request.addfinalizer(drop)
        url = pg_url(name)
    workspace = open_workspace(url, "admin", migrate=False)
    try:
        config = alembic_config()
        with workspace.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0003")
    finally:
        workspace.close()
    return url


def _content(index: int, moment: datetime) -> dict[str, object]:
    return {
        "recorded_at": moment,
        "user_name": "amélie",
        "user_role": None,
        "facility_id": index,
        "action": "report.export",
        "entity_type": "report",
        "entity_id": f"r-{index}",
        "before": None,
        "after": canonical_bytes({"note": f'"Q{index}" — été'}).decode(),
        "request_id": str(uuid.uuid4()),
    }


def _write_version_1_chain(workspace: Workspace, *, waiting: bool) -> dict[str, object]:
    """Three sealed version-1 entries as the old sealer wrote them; with `waiting`, a fourth
    committed but not yet sealed. Returns the waiting entry's content."""
    moment = datetime(2026, 6, 1, 9, 30, 0, 123456, tzinfo=UTC)
    previous = ZERO_HASH
    late = _content(4, moment + timedelta(minutes=4))
    with workspace.engine.begin() as connection:
        for sequence in range(1, 4):
            content = _content(sequence, moment + timedelta(minutes=sequence))
            entry_id = connection.execute(
                insert(ENTRY).values(**content).returning(ENTRY.c.id)
            ).scalar_one()
            digest = link_hash(1, sequence, previous, content)
            connection.execute(
                insert(LINK).values(
                    sequence=sequence,
                    entry_id=entry_id,
                    hash_version=1,
                    prev_hash=previous,
                    entry_hash=digest,
                    sealed_at=moment,
                )
            )
            previous = digest
        connection.execute(
            update(Base.metadata.tables["audit_chain_head"]).values(
                last_sequence=3, last_hash=previous
            )
        )
        if waiting:
            entry_id = connection.execute(
                insert(ENTRY).values(**late).returning(ENTRY.c.id)
            ).scalar_one()
            connection.execute(insert(PENDING).values(entry_id=entry_id))
    return late


def test_a_version_1_chain_keeps_verifying_and_grows_with_version_2(at_0003: str) -> None:
    workspace = open_workspace(at_0003, "admin", migrate=False)
    try:
        postgresql = not workspace.location.is_sqlite
        late = _write_version_1_chain(workspace, waiting=postgresql)
        assert upgrade_to_head(workspace.engine)
        if postgresql:
            with Session(workspace.engine) as session:
                stored = session.scalars(
                    select(AuditEntry.entry_digest).where(AuditEntry.entity_id == "r-4")
                ).one()
            assert stored == entry_digest(late)
            assert workspace.seal().sealed == 1
        workspace.write(
            lambda unit: unit.record_event("report.export", "report", "after-upgrade"),
            action="report.export",
        )
        with Session(workspace.engine) as session:
            versions = session.scalars(
                select(AuditLink.hash_version).order_by(AuditLink.sequence)
            ).all()
            head = session.get_one(AuditChainHead, 1)
            report = verify_session(session, tail_allowed=postgresql)
        assert versions == [1, 1, 1, *([2] * (len(versions) - 3))]
        assert len(versions) == (5 if postgresql else 4)
        assert head.hash_version == 2
        assert report.ok, report.findings
        assert report.entries_checked == len(versions)
    finally:
        workspace.close()
