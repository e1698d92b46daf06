"""The auditor's archive: one SQLite file holding all billing data, the audit chain, the
registered public keys and the checkpoints, which the application opens read-only.

`export_archive` audits the export first (and seals it, so the archive holds its own export
entry), then copies every table but `database_secret` from ONE consistent read snapshot of the
live database (REPEATABLE READ, read only, on PostgreSQL; a deferred read transaction on SQLite,
which WAL makes a snapshot), streaming in chunks, into a new file migrated to head. The file is
built under a temporary name in the target folder and linked into place only when complete, so a
failed or cancelled export leaves nothing behind. The finished file is marked with
`PRAGMA application_id = ARCHIVE_APPLICATION_ID`, which `is_archive` reads back; it uses the
rollback journal (not WAL), so it opens read-only without writing sidecar files.

The account-number hash key is never exported: the archive keeps the stored account hashes, but
nobody can compute new ones from it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, Table, create_engine, delete, event, func, select
from sqlalchemy.engine import URL, ExceptionContext
from sqlalchemy.pool import NullPool

from billing_desk.db.engine import SQLITE_BEGIN
from billing_desk.db.migrate import upgrade_to_head
from billing_desk.db.models import AuditChainHead, AuditEntry, Base, DatabaseIdentity
from billing_desk.domain.errors import BadInput, EnvironmentFault, Refused
from billing_desk.domain.roles import Permission

if TYPE_CHECKING:
    # Annotations only: unit_of_work imports is_archive from here to open archives read-only.
    from billing_desk.services.unit_of_work import UnitOfWork, Workspace

Progress = Callable[[str, int, int], None]

# "BDAR": billing-desk archive, in the SQLite header's application id field.
ARCHIVE_APPLICATION_ID = 0x42444152
# How long an export from a read replica waits for it to catch up with the primary.
REPLICA_WAIT_SECONDS = 30.0
# Rows read and written per round trip; memory stays bounded whatever the table size.
CHUNK = 5000
# Page cache of the file being built: keeps index updates in memory for large tables.
ARCHIVE_CACHE_KIB = 64 * 1024
# Never leaves the live database.
EXCLUDED_TABLES = frozenset({"database_secret"})
EXPORT_ACTION = "audit.export"
# audit_entry.entity_id is a String(64).
_ENTITY_ID_LENGTH = 64


@dataclass(frozen=True)
class ArchiveOrigin:
    """What an archive is a copy of: the database it was exported from (as that database
    described itself; None for an archive made before the export recorded it), its identity,
    when and by whom."""

    source: str | None
    database_id: str
    exported_at: datetime | None
    exported_by: str | None
    head_sequence: int


@dataclass(frozen=True)
class ArchiveSummary:
    path: Path
    tables: dict[str, int]  # rows per exported table
    head_sequence: int
    head_hash: str
    database_id: str


def archived_tables() -> list[Table]:
    """The tables an archive carries, parents before children."""
    return [t for t in Base.metadata.sorted_tables if t.name not in EXCLUDED_TABLES]


def is_archive(path: Path) -> bool:
    """True when `path` is an SQLite file marked as a billing-desk archive. Reads the header
    pragma through a read-only connection; anything that is not such a file is simply False."""
    try:
        if not path.is_file():
            return False
        uri = f"{path.resolve().as_uri()}?mode=ro"
        connection = sqlite3.connect(uri, uri=True)
    except (OSError, ValueError, sqlite3.Error):
        return False
    try:
        row = connection.execute("PRAGMA application_id").fetchone()
    except sqlite3.Error:
        return False
    finally:
        connection.close()
    return row is not None and row[0] == ARCHIVE_APPLICATION_ID


def archive_origin(workspace: Workspace) -> ArchiveOrigin:
    """Where the open archive comes from, read from its own newest export entry (the export
    records itself before the snapshot is taken, so every archive carries it)."""

    def operation(unit: UnitOfWork) -> ArchiveOrigin:
        unit.require(Permission.READ)
        session = unit.session
        entry = session.scalars(
            select(AuditEntry)
            .where(AuditEntry.action == EXPORT_ACTION)
            .order_by(AuditEntry.id.desc())
            .limit(1)
        ).first()
        identity = session.scalar(select(DatabaseIdentity.database_id)) or ""
        head = session.scalar(select(AuditChainHead.last_sequence)) or 0
        if entry is None:
            return ArchiveOrigin(None, identity, None, None, int(head))
        try:
            detail = json.loads(entry.after or "{}")
        except ValueError:
            detail = {}
        source = detail.get("source") if isinstance(detail, dict) else None
        return ArchiveOrigin(
            source if isinstance(source, str) else None,
            identity,
            entry.recorded_at,
            entry.user_name,
            int(head),
        )

    return workspace.read(operation)


def export_archive(
    workspace: Workspace, out: Path, *, progress: Progress | None = None
) -> ArchiveSummary:
    """Write the whole database (but its secret) to the new SQLite file `out`.

    Refuses an existing `out` or a missing folder. Needs read permission (auditors export). The
    export is audited and sealed before the snapshot is taken, so the archive contains its own
    export entry. `progress(table, rows_done, rows_total)` is called per chunk; raising from it
    cancels the export, leaving no file.
    """
    if workspace.read_only:
        raise Refused(
            "This is already an audit archive, opened read-only; copy the file itself, or export "
            "again from the live database."
        )
    named = out.expanduser()
    out = named.resolve()
    if named.exists() or named.is_symlink() or out.exists():
        raise BadInput(f"{named} already exists; export to a new file name.")
    if not out.parent.is_dir():
        raise BadInput(f"The folder {out.parent} does not exist; create it or export elsewhere.")
    workspace.read(lambda unit: unit.require(Permission.READ))
    if not workspace.schema_is_current():
        raise Refused(
            "This database's schema is not the one this version of billing-desk uses; open it "
            "once with this version to upgrade it, then export."
        )
    report = progress or _no_progress
    partial = out.parent / f".{out.name}.{uuid.uuid4().hex[:12]}.partial"
    try:
        target = _archive_engine(partial, out)
        try:
            upgrade_to_head(target)
            _record_export(workspace, out)
            workspace.seal()
            source = workspace.reports
            if source is not workspace:
                _wait_for_replica(workspace, source)
            summary = _guard_source(source, lambda: _copy_snapshot(source, target, out, report))
        finally:
            target.dispose()
        _sync(partial)
        _publish(partial, out)
    except BaseException:
        _remove(partial)
        raise
    return summary


def _no_progress(stage: str, done: int, total: int) -> None:
    return None


def _record_export(workspace: Workspace, out: Path) -> None:
    def operation(unit: UnitOfWork) -> None:
        unit.require(Permission.READ)
        unit.record_event(
            EXPORT_ACTION,
            "archive",
            out.name[:_ENTITY_ID_LENGTH],
            detail={
                "path": str(out),
                # Which database the archive is of (a server's address without its password).
                "source": workspace.location.describe(),
                "format": "sqlite",
                "application_id": ARCHIVE_APPLICATION_ID,
                "excluded": sorted(EXCLUDED_TABLES),
            },
        )

    workspace.write(operation, action=EXPORT_ACTION)


def _wait_for_replica(primary: Workspace, replica: Workspace) -> None:
    """Exporting from a read replica: wait until it has replayed the history up to the export's
    own entry, so the archive holds its export entry as it would from the primary."""

    def head(unit: UnitOfWork) -> int:
        return int(unit.session.scalar(select(AuditChainHead.last_sequence)) or 0)

    wanted = primary.read(head)
    deadline = time.monotonic() + REPLICA_WAIT_SECONDS
    while True:
        have = replica.read(head)
        if have >= wanted:
            return
        if time.monotonic() >= deadline:
            raise EnvironmentFault(
                f"The report database is behind the primary (its history reaches entry {have} "
                f"of {wanted}); try again in a moment, or export without --report-db.",
                retryable=True,
            )
        time.sleep(0.2)


def _guard_source(workspace: Workspace, work: Callable[[], ArchiveSummary]) -> ArchiveSummary:
    """The live database's failures (lost server, locked file) in the workspace's own words;
    the archive's own failures are already an EnvironmentFault naming the archive."""
    return workspace._guard(work)


# -- the archive file ------------------------------------------------------------------------


def _archive_engine(path: Path, out: Path) -> Engine:
    """An engine on the file being built: rollback journal (the archive must open read-only
    without WAL sidecars), no fsync per commit (the finished file is synced once, before it is
    linked into place), explicit transactions, and any failure reported as one sentence."""
    engine = create_engine(URL.create("sqlite+pysqlite", database=str(path)), poolclass=NullPool)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=DELETE")
            cursor.execute("PRAGMA synchronous=OFF")
            cursor.execute(f"PRAGMA cache_size=-{ARCHIVE_CACHE_KIB}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    @event.listens_for(engine, "handle_error")
    def _on_error(context: ExceptionContext) -> BaseException | None:
        original = context.original_exception
        if isinstance(original, sqlite3.OperationalError):
            text = str(original).strip().splitlines()[0] if str(original).strip() else "failed"
            return EnvironmentFault(
                f"Cannot write the archive {out} ({text}); check the folder's free space and "
                "permissions, then export again."
            )
        return None

    return engine


@contextmanager
def _snapshot(workspace: Workspace) -> Iterator[Connection]:
    """One read transaction whose every statement sees the same committed state."""
    if workspace.location.is_sqlite:
        engine = workspace.engine.execution_options(**{SQLITE_BEGIN: "DEFERRED"})
        with engine.connect() as connection, connection.begin():
            yield connection
        return
    with workspace.engine.connect() as raw:
        connection = raw.execution_options(
            isolation_level="REPEATABLE READ", postgresql_readonly=True
        )
        with connection.begin():
            yield connection


def _copy_snapshot(
    workspace: Workspace, target: Engine, out: Path, progress: Progress
) -> ArchiveSummary:
    tables = archived_tables()
    with _snapshot(workspace) as source, target.begin() as sink:
        # The first read fixes the snapshot; everything below comes from the same instant.
        head = source.execute(
            select(AuditChainHead.last_sequence, AuditChainHead.last_hash).where(
                AuditChainHead.id == 1
            )
        ).one()
        database_id = source.execute(select(DatabaseIdentity.database_id)).scalar_one()
        totals = {
            t.name: int(source.execute(select(func.count()).select_from(t)).scalar_one())
            for t in tables
        }
        # The migrations seeded a chain head, an identity and a secret of the archive's own:
        # the source's rows replace the first two, and no key stays in the file.
        for table in reversed(Base.metadata.sorted_tables):
            if sink.execute(select(func.count()).select_from(table)).scalar_one():
                sink.execute(delete(table))
        copied = {t.name: _copy_table(source, sink, t, totals[t.name], progress) for t in tables}
        problems = sink.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if problems:
            raise RuntimeError(f"the archive has dangling references: {problems[:5]}")
        sink.exec_driver_sql(f"PRAGMA application_id = {ARCHIVE_APPLICATION_ID}")
    return ArchiveSummary(out, copied, int(head.last_sequence), str(head.last_hash), database_id)


def _copy_table(
    source: Connection, sink: Connection, table: Table, total: int, progress: Progress
) -> int:
    """Stream one table in primary-key order, CHUNK rows per round trip."""
    columns = list(table.columns)
    quote = sink.dialect.identifier_preparer.quote
    statement = (
        f"INSERT INTO {quote(table.name)} ({', '.join(quote(c.name) for c in columns)}) "
        f"VALUES ({', '.join('?' for _ in columns)})"
    )
    done = 0
    progress(table.name, done, total)
    for rows in _read_chunks(source, table, sink):
        sink.exec_driver_sql(statement, rows)
        done += len(rows)
        progress(table.name, done, total)
    if done != total:
        raise RuntimeError(f"{table.name}: counted {total} rows but read {done}; not a snapshot")
    return done


def _read_chunks(
    source: Connection, table: Table, sink: Connection
) -> Iterator[Sequence[Sequence[Any]]]:
    """Rows as parameter tuples for the archive. From SQLite they are copied as stored (the same
    dialect wrote them in the same format); from PostgreSQL each value goes through its
    column's type, the way the application reads it and would write it to SQLite."""
    columns = list(table.columns)
    order = ", ".join(source.dialect.identifier_preparer.quote(c.name) for c in table.primary_key)
    if source.dialect.name == "sqlite":
        names = ", ".join(source.dialect.identifier_preparer.quote(c.name) for c in columns)
        query = f"SELECT {names} FROM {source.dialect.identifier_preparer.quote(table.name)}"
        with source.exec_driver_sql(f"{query} ORDER BY {order}") as raw:
            while chunk := raw.cursor.fetchmany(CHUNK):
                yield chunk
        return
    binds = [c.type.dialect_impl(sink.dialect).bind_processor(sink.dialect) for c in columns]
    plain = all(bind is None for bind in binds)
    statement = select(*columns).order_by(*table.primary_key.columns)
    # A server-side cursor; closed even when progress cancels mid-table.
    with source.execution_options(yield_per=CHUNK).execute(statement) as result:
        for rows in result.partitions(CHUNK):
            if plain:
                yield [tuple(row) for row in rows]
            else:
                yield [
                    tuple(
                        value if bind is None or value is None else bind(value)
                        for bind, value in zip(binds, row, strict=True)
                    )
                    for row in rows
                ]


def _sync(path: Path) -> None:
    """Make the finished file durable once (it was written without fsync per commit)."""
    with path.open("r+b") as handle:
        os.fsync(handle.fileno())


def _publish(partial: Path, out: Path) -> None:
    """Give the finished file its name without ever replacing a file that appeared meanwhile."""
    try:
        os.link(partial, out)
    except FileExistsError:
        raise BadInput(f"{out} already exists; export to a new file name.") from None
    except OSError:
        # No hard links on this file system (some network shares, FAT): rename, after a last
        # look (rename refuses an existing name on Windows; elsewhere the window is tiny).
        if out.exists():
            raise BadInput(f"{out} already exists; export to a new file name.") from None
        partial.rename(out)
    else:
        partial.unlink()
    _sync_folder(out.parent)


def _sync_folder(folder: Path) -> None:
    if os.name != "posix":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _remove(partial: Path) -> None:
    for suffix in ("", "-journal", "-wal", "-shm"):
        Path(f"{partial}{suffix}").unlink(missing_ok=True)


__all__ = [
    "ARCHIVE_APPLICATION_ID",
    "EXCLUDED_TABLES",
    "EXPORT_ACTION",
    "ArchiveOrigin",
    "ArchiveSummary",
    "archive_origin",
    "archived_tables",
    "export_archive",
    "is_archive",
]
