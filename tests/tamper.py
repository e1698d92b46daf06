"""Tampering with a billing database behind the application's back, as an attacker with full write
access to it would: raw SQL on a plain connection, no unit of work, no audit capture.

The append-only triggers stop nobody who owns the database: on SQLite the attacker drops them,
on PostgreSQL a superuser disables them (and the foreign-key triggers with them). What is left
to catch the tampering is verification: the chain, the content hashes, and checkpoint notes kept
outside the database (docs/integrity.md, docs/checkpoints.md).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from psycopg import sql
from sqlalchemy import Connection, bindparam, create_engine, select, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from billing_desk.db.models import AuditEntry, AuditLink, Base
from billing_desk.domain.integrity import CURRENT_HASH_VERSION, ZERO_HASH, entry_digest, link_hash
from billing_desk.services.audit_trail import entry_record
from tests.conftest import pg_admin_connection, pg_url

ENTRY_FIELDS = (
    "recorded_at",
    "user_name",
    "user_role",
    "facility_id",
    "action",
    "entity_type",
    "entity_id",
    "before",
    "after",
    "request_id",
)
_ENTRY = Base.metadata.tables["audit_entry"]
_LINK = Base.metadata.tables["audit_link"]


# -- copies -----------------------------------------------------------------------------------


def copy_database(backend: str, source: str, folder: Path) -> str:
    """A copy of the database `source` (an SQLite path or a PostgreSQL database name): a new
    file, or `CREATE DATABASE ... TEMPLATE source` (nobody may be connected to the source)."""
    if backend == "sqlite":
        target = folder / f"copy-{uuid.uuid4().hex[:10]}.sqlite3"
        shutil.copyfile(source, target)
        wal = Path(f"{source}-wal")
        if wal.exists():  # a clean close leaves none; copy it along if one is left
            shutil.copyfile(wal, Path(f"{target}-wal"))
        return str(target)
    name = f"bd_tamper_{uuid.uuid4().hex[:12]}"
    with pg_admin_connection() as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(source)
            )
        )
    return name


def drop_database(backend: str, location: str) -> None:
    if backend == "sqlite":
        for suffix in ("", "-wal", "-shm"):
            Path(f"{location}{suffix}").unlink(missing_ok=True)
        return
    with pg_admin_connection() as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(location))
        )


class Dropper:
    """Drops copies in the background while the tests go on. Every DROP DATABASE waits for a
    checkpoint, a second or two each; dropped side by side they share checkpoints, and nobody
    waits for them until `close`."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="drop-copy")
        self._pending: list[Future[None]] = []

    def drop(self, locations: Iterable[str]) -> None:
        for location in locations:
            self._pending.append(self._pool.submit(drop_database, self.backend, location))

    def close(self) -> None:
        """Wait for every drop; the first failure is raised."""
        self._pool.shutdown(wait=True)
        for future in self._pending:
            future.result()


def app_url(backend: str, location: str) -> str:
    """What the application is given as --db for the database at `location`."""
    return location if backend == "sqlite" else pg_url(location)


def _raw_url(backend: str, location: str) -> URL:
    if backend == "sqlite":
        return URL.create("sqlite+pysqlite", database=location)
    return make_url(pg_url(location)).set(drivername="postgresql+psycopg")


# -- the attacker -------------------------------------------------------------------------------


class Tamperer:
    """Raw SQL on one connection, in one transaction, with the audit tables unlocked."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.dialect = conn.dialect.name
        self.session = Session(bind=conn, autoflush=False)

    def unlock(self) -> None:
        """Get past the append-only triggers (and, on PostgreSQL, the foreign keys)."""
        if self.dialect == "sqlite":
            for table in ("audit_entry", "audit_link"):
                for event in ("update", "delete"):
                    self.sql(f"DROP TRIGGER IF EXISTS {table}_no_{event}")
        else:
            for table in ("audit_entry", "audit_link"):
                self.sql(f"ALTER TABLE {table} DISABLE TRIGGER ALL")

    def unfreeze_trips(self) -> None:
        """Get past the trigger that keeps a billed trip's fare and date as invoiced."""
        if self.dialect == "sqlite":
            self.sql("DROP TRIGGER IF EXISTS trip_billed_fields_frozen")
        else:
            self.sql("ALTER TABLE trip DISABLE TRIGGER USER")

    def allow_any_hash_version(self) -> None:
        """Get past the CHECK (hash_version >= 1) on audit_link."""
        if self.dialect == "sqlite":
            self.sql("PRAGMA ignore_check_constraints = ON")
        else:
            self.sql("ALTER TABLE audit_link DROP CONSTRAINT ck_audit_link_hash_version")

    def sql(self, statement: str, **params: object) -> Any:
        return self.conn.execute(text(statement), params)

    def scalar(self, statement: str, **params: object) -> Any:
        return self.conn.execute(text(statement), params).scalar()

    # -- entries and links --

    def entry_at(self, sequence: int) -> AuditEntry:
        self.session.expire_all()
        return self.session.scalars(
            select(AuditEntry)
            .join(AuditLink, AuditLink.entry_id == AuditEntry.id)
            .where(AuditLink.sequence == sequence)
        ).one()

    def record_at(self, sequence: int) -> dict[str, object]:
        return entry_record(self.entry_at(sequence))

    def link_hash_at(self, sequence: int) -> str:
        if sequence == 0:
            return ZERO_HASH
        return str(self.scalar("SELECT entry_hash FROM audit_link WHERE sequence = :s", s=sequence))

    def set_entry(self, entry_id: int, values: Mapping[str, object]) -> None:
        """UPDATE audit_entry SET field = value, ... with each value bound as its column's type."""
        assignments = ", ".join(f"{name} = :{name}" for name in values)
        statement = text(f"UPDATE audit_entry SET {assignments} WHERE id = :entry_id").bindparams(
            *(bindparam(name, type_=_ENTRY.c[name].type) for name in values)
        )
        self.conn.execute(statement, {**values, "entry_id": entry_id})

    def insert_entry(self, record: Mapping[str, object]) -> int:
        """A new audit entry (no link, not pending) with the next free id and its correct
        digest, as the application would write it. On PostgreSQL the id sequence is moved past
        it too, so the application's next entry does not collide."""
        entry_id = int(self.scalar("SELECT coalesce(max(id), 0) + 1 FROM audit_entry"))
        names = ("id", *ENTRY_FIELDS, "entry_digest")
        statement = text(
            f"INSERT INTO audit_entry ({', '.join(names)}) "
            f"VALUES ({', '.join(':' + n for n in names)})"
        ).bindparams(*(bindparam(n, type_=_ENTRY.c[n].type) for n in ENTRY_FIELDS))
        content = {n: record[n] for n in ENTRY_FIELDS}
        self.conn.execute(
            statement, {"id": entry_id, **content, "entry_digest": entry_digest(content)}
        )
        if self.dialect == "postgresql":
            self.sql("SELECT setval(pg_get_serial_sequence('audit_entry', 'id'), :id)", id=entry_id)
        return entry_id

    def insert_link(self, sequence: int, entry_id: int, sealed_at: datetime) -> str:
        """A correctly computed link for `entry_id` at `sequence` after the link before it."""
        previous = self.link_hash_at(sequence - 1)
        self.session.expire_all()
        entry = self.session.get_one(AuditEntry, entry_id)
        digest = link_hash(CURRENT_HASH_VERSION, sequence, previous, entry_record(entry))
        statement = text(
            "INSERT INTO audit_link (sequence, entry_id, hash_version, prev_hash, entry_hash, "
            "sealed_at) VALUES (:sequence, :entry_id, :version, :prev, :hash, :sealed_at)"
        ).bindparams(bindparam("sealed_at", type_=_LINK.c.sealed_at.type))
        self.conn.execute(
            statement,
            {
                "sequence": sequence,
                "entry_id": entry_id,
                "version": CURRENT_HASH_VERSION,
                "prev": previous,
                "hash": digest,
                "sealed_at": sealed_at,
            },
        )
        return digest

    def shift_links(self, from_sequence: int, by: int = 1) -> None:
        """Renumber every link from `from_sequence` on (through negatives, so no key collides)."""
        self.sql(
            "UPDATE audit_link SET sequence = -(sequence + :by) WHERE sequence >= :s",
            by=by,
            s=from_sequence,
        )
        self.sql("UPDATE audit_link SET sequence = -sequence WHERE sequence < 0")

    def set_digest(self, entry_id: int) -> str:
        """Store the digest of the entry's (possibly edited) content, as its writer would have."""
        self.session.expire_all()
        digest = entry_digest(entry_record(self.session.get_one(AuditEntry, entry_id)))
        self.sql("UPDATE audit_entry SET entry_digest = :d WHERE id = :id", d=digest, id=entry_id)
        return digest

    def rechain(self, from_sequence: int) -> None:
        """The administrator's rewrite: recompute every link (and, from version 2, every entry
        digest) from `from_sequence` to the end so the chain is consistent again, and move the
        head to match."""
        previous = self.link_hash_at(from_sequence - 1)
        self.session.expire_all()
        rows = self.session.execute(
            select(AuditLink.sequence, AuditLink.hash_version, AuditEntry)
            .join(AuditEntry, AuditEntry.id == AuditLink.entry_id)
            .where(AuditLink.sequence >= from_sequence)
            .order_by(AuditLink.sequence)
        ).all()
        updates = []
        for sequence, version, entry in rows:
            record = entry_record(entry)
            if version >= 2 and entry.entry_digest != entry_digest(record):
                self.sql(
                    "UPDATE audit_entry SET entry_digest = :d WHERE id = :id",
                    d=entry_digest(record),
                    id=entry.id,
                )
            digest = link_hash(version, sequence, previous, record)
            updates.append({"s": sequence, "prev": previous, "hash": digest})
            previous = digest
        self.conn.execute(
            text("UPDATE audit_link SET prev_hash = :prev, entry_hash = :hash WHERE sequence = :s"),
            updates,
        )
        self.head_to_last_link()

    def head_to_last_link(self) -> None:
        """Make the chain-head row agree with the last link, as a careful attacker does."""
        last = self.scalar("SELECT max(sequence) FROM audit_link") or 0
        self.sql(
            "UPDATE audit_chain_head SET last_sequence = :s, last_hash = :h WHERE id = 1",
            s=last,
            h=self.link_hash_at(last),
        )

    def cut_tail(self, keep_through: int) -> None:
        """Delete every link after `keep_through` and its entry (the head row is left alone)."""
        self.sql(
            "DELETE FROM audit_entry WHERE id IN "
            "(SELECT entry_id FROM audit_link WHERE sequence > :s)",
            s=keep_through,
        )
        self.sql("DELETE FROM audit_link WHERE sequence > :s", s=keep_through)


@contextmanager
def tampering(backend: str, location: str) -> Iterator[Tamperer]:
    """One committed transaction of raw SQL on the database at `location`."""
    engine = create_engine(_raw_url(backend, location), poolclass=NullPool)
    try:
        with engine.begin() as conn:
            tamperer = Tamperer(conn)
            try:
                yield tamperer
            finally:
                tamperer.session.close()
    finally:
        engine.dispose()
