"""The audit trail's write side: every row a unit of work changes becomes an audit entry in the
same transaction, and entries are sealed into the hash chain after commit.

Capture hangs on the session's flush: each inserted, updated or deleted row of an audited table
yields one entry (entity type = table, entity id = primary key, before and after = the row's
canonical JSON). Bulk statements that would bypass the flush are refused outright, so no write
path can skip the trail. A unit's entries wait in memory and are written together by
`write_waiting` before it commits; inside a savepoint they are written at once, so that they
roll back with it. Every entry is written with its digest (hash version 2), so sealing never
reads entry content. Sealing takes the chain head row as a lock, so sealers take turns
while business transactions never wait on it; it gives the unsealed entries, oldest first, the
next sequence numbers and their link hashes (see docs/integrity.md). On PostgreSQL the database
function SEAL_FUNCTION does it (no application role may write links); on SQLite, Python, with the
same bytes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Table,
    case,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
    text,
    type_coerce,
    update,
)
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction
from sqlalchemy.orm.attributes import get_history
from sqlalchemy.sql.elements import TextClause

from billing_desk.db.models import (
    AuditEntry,
    AuditPending,
    Base,
    Facility,
    UtcDateTime,
)
from billing_desk.domain.hashing import canonical_bytes
from billing_desk.domain.integrity import (
    CURRENT_HASH_VERSION,
    SEAL_FUNCTION,
    ZERO_HASH,
    entry_digest,
    sealed_link_hash,
)

# Tables whose rows are history or secrets rather than billing data.
NOT_AUDITED = frozenset(
    {
        "audit_entry",
        "audit_link",
        "audit_pending",
        "audit_chain_head",
        "database_secret",
        # A statement file's bytes: its audited statement_file row holds their SHA-256.
        "statement_file_content",
        "database_identity",
    }
)
SEAL_BATCH = 2000
_WRITE_STATEMENT = re.compile(
    r'\s*(INSERT\s+INTO|UPDATE|DELETE\s+FROM|TRUNCATE(?:\s+TABLE)?)\s+"?(\w+)"?', re.IGNORECASE
)

ENTRY_TABLE: Table = Base.metadata.tables["audit_entry"]
PENDING_TABLE: Table = Base.metadata.tables["audit_pending"]
LINK_TABLE: Table = Base.metadata.tables["audit_link"]
HEAD_TABLE: Table = Base.metadata.tables["audit_chain_head"]
_HEAD = select(HEAD_TABLE.c.last_sequence, HEAD_TABLE.c.last_hash).where(HEAD_TABLE.c.id == 1)


@dataclass
class AuditContext:
    """Who is acting, in which user action, for the entries of one unit of work."""

    user_name: str
    user_role: str | None
    request_id: str
    action: str
    now: datetime
    # SQLite: the unit seals its own entries before it commits, so they never wait in the
    # sealer's queue (audit_pending); PostgreSQL queues them for the sealer after commit.
    sealed_by_unit: bool = False
    touched: dict[str, set[int]] = field(default_factory=dict)
    # Captured entries not yet written, in the order their changes were flushed.
    waiting: list[dict[str, Any]] = field(default_factory=list)
    # Written entries as (id, digest), oldest first; the savepoints open around them, as the
    # number written when each began, so a rolled-back savepoint takes its entries back.
    written: list[tuple[int, str]] = field(default_factory=list)
    savepoints: list[int] = field(default_factory=list)
    # Set for a read, and once a write has written its entries: a later one would escape the
    # trail.
    closed: bool = False

    def entry(
        self,
        *,
        facility_id: int | None,
        entity_type: str,
        entity_id: str,
        before: Mapping[str, object] | None,
        after: Mapping[str, object] | None,
        action: str | None = None,
    ) -> dict[str, Any]:
        return {
            "recorded_at": self.now,
            "user_name": self.user_name,
            "user_role": self.user_role,
            "facility_id": facility_id,
            "action": action or self.action,
            "entity_type": entity_type,
            "entity_id": entity_id,
            "before": canonical_bytes(before).decode() if before is not None else None,
            "after": canonical_bytes(after).decode() if after is not None else None,
            "request_id": self.request_id,
        }


def capture(session: Session, context: AuditContext) -> None:
    """Audit every row change `session` flushes, and refuse bulk statements."""

    @event.listens_for(session, "after_flush")
    def _after_flush(flushed: Session, _flush: UOWTransaction) -> None:
        rows: list[dict[str, Any]] = []
        for obj in flushed.new:
            rows += _entries(context, obj, before=None, after=row_values(obj))
        # The identity map keeps updated rows in no fixed order: by table and key, the trail of
        # the same work is the same on every run.
        for obj in sorted(flushed.dirty, key=_row_order):
            if flushed.is_modified(obj, include_collections=False):
                rows += _entries(context, obj, before=_values_before(obj), after=row_values(obj))
        for obj in flushed.deleted:
            rows += _entries(context, obj, before=row_values(obj), after=None)
        if rows:
            _add_entries(flushed, context, rows)

    connection = session.connection()

    @event.listens_for(connection, "savepoint")
    def _savepoint_begins(on: Connection, *_args: object) -> None:
        # Before the SAVEPOINT itself: what waits belongs outside it, and must not roll back
        # with it.
        write_waiting(on, context)
        context.savepoints.append(len(context.written))

    @event.listens_for(connection, "release_savepoint")
    def _savepoint_released(*_args: object) -> None:
        context.savepoints.pop()

    @event.listens_for(connection, "rollback_savepoint")
    def _savepoint_rolled_back(*_args: object) -> None:
        del context.written[context.savepoints.pop() :]

    flushing = False

    @event.listens_for(session, "before_flush")
    def _flush_starts(*_args: object) -> None:
        nonlocal flushing
        flushing = True

    @event.listens_for(session, "after_flush_postexec")
    def _flush_ends(*_args: object) -> None:
        nonlocal flushing
        flushing = False

    @event.listens_for(connection, "before_cursor_execute")
    def _refuse_sql_around_the_orm(
        _conn: object, _cursor: object, statement: str, *_rest: object
    ) -> None:
        # Text SQL and Core statements on the connection never reach the flush hook above.
        if flushing:
            return
        match = _WRITE_STATEMENT.match(statement)
        if match and match.group(2).lower() not in NOT_AUDITED:
            raise RuntimeError(
                f"{match.group(1).split()[0]} on {match.group(2)} outside the ORM bypasses the "
                "audit trail; change rows through the ORM instead"
            )

    @event.listens_for(session, "do_orm_execute")
    def _refuse_bulk(state: ORMExecuteState) -> None:
        if state.is_insert or state.is_update or state.is_delete:
            raise RuntimeError(
                "bulk INSERT/UPDATE/DELETE through the session bypasses the audit trail; "
                "change rows through the ORM instead"
            )


def record_event(
    session: Session,
    context: AuditContext,
    *,
    action: str,
    entity_type: str,
    entity_id: str,
    facility_id: int | None = None,
    detail: Mapping[str, object] | None = None,
) -> None:
    """An entry for something other than a row change: a sensitive read, an export, a run.
    Its entity type is never a table's name, so it cannot pass for a row's history."""
    if entity_type in Base.metadata.tables and entity_type not in NOT_AUDITED:
        raise ValueError(f"event entries may not use the table name {entity_type!r}")
    _add_entries(
        session,
        context,
        [
            context.entry(
                facility_id=facility_id,
                entity_type=entity_type,
                entity_id=entity_id,
                before=None,
                after=detail or {},
                action=action,
            )
        ],
    )


def _queued_insert() -> TextClause:
    """PostgreSQL: insert entries given as one array per column and queue them for the sealer,
    in one statement that is compiled once whatever the number of entries. Text columns arrive
    as text arrays; the insert checks their lengths."""
    types = {"recorded_at": "timestamptz", "facility_id": "integer"}
    arrays = ", ".join(f"CAST(:{name} AS {types.get(name, 'text')}[])" for name in _QUEUED_COLUMNS)
    return text(
        f"WITH entries AS (INSERT INTO audit_entry ({', '.join(_QUEUED_COLUMNS)}) "
        f"SELECT * FROM unnest({arrays}) RETURNING id) "
        "INSERT INTO audit_pending (entry_id) SELECT id FROM entries"
    )


def _add_entries(session: Session, context: AuditContext, rows: list[dict[str, Any]]) -> None:
    if context.closed:
        raise RuntimeError(
            "this unit of work writes no more audit entries (it reads, or has written them): "
            "an entry now would escape the trail"
        )
    context.waiting += rows
    if session.in_nested_transaction():
        # A savepoint may yet roll back: its entries go in with its rows.
        write_waiting(session.connection(), context)


def write_waiting(connection: Connection, context: AuditContext) -> None:
    """Write the entries waiting in `context`, each with its digest, on the unit's own
    connection: the only way entries are written. On PostgreSQL they are queued for the
    sealer in the same statement; on SQLite the unit seals them itself (`seal_written`)."""
    rows, context.waiting = context.waiting, []
    if not rows:
        return
    for row in rows:
        row["entry_digest"] = entry_digest(entry_record_of(row))
    if context.sealed_by_unit:
        inserted = connection.execute(
            insert(ENTRY_TABLE).returning(ENTRY_TABLE.c.id, ENTRY_TABLE.c.entry_digest), rows
        )
        context.written += sorted((int(i), str(d)) for i, d in inserted)
        return
    connection.execute(
        _QUEUED_INSERT, {name: [row[name] for row in rows] for name in _QUEUED_COLUMNS}
    )


def _entries(
    context: AuditContext,
    obj: object,
    *,
    before: dict[str, object] | None,
    after: dict[str, object] | None,
) -> list[dict[str, Any]]:
    table = _table_name(obj)
    if table is None or table in NOT_AUDITED:
        return []
    # A row inserted by this flush has no identity key yet, but its primary key is set.
    state = inspect(obj)
    identity = tuple(state.mapper.primary_key_from_instance(obj))
    entity_id = ":".join(str(part) for part in identity)
    values = after if after is not None else before or {}
    facility_id = obj.id if isinstance(obj, Facility) else values.get("facility_id")
    if identity and len(identity) == 1 and isinstance(identity[0], int):
        context.touched.setdefault(table, set()).add(identity[0])
    for owner in ("payment", "invoice"):
        owner_id = values.get(f"{owner}_id")
        if isinstance(owner_id, int):
            context.touched.setdefault(owner, set()).add(owner_id)
    return [
        context.entry(
            facility_id=facility_id if isinstance(facility_id, int) else None,
            entity_type=table,
            entity_id=entity_id,
            before=before,
            after=after,
        )
    ]


def _row_order(obj: object) -> tuple[str, tuple[Any, ...]]:
    state = inspect(obj)
    return (
        str(getattr(state.mapper.local_table, "name", "")),
        tuple(state.identity or ()),
    )


def _table_name(obj: object) -> str | None:
    if not isinstance(obj, Base):
        return None
    return str(getattr(inspect(obj).mapper.local_table, "name", ""))


def row_values(obj: object) -> dict[str, object]:
    mapper = inspect(obj).mapper
    return {attr.key: getattr(obj, attr.key) for attr in mapper.column_attrs}


def _values_before(obj: object) -> dict[str, object]:
    values: dict[str, object] = {}
    for attr in inspect(obj).mapper.column_attrs:
        history = get_history(obj, attr.key)
        values[attr.key] = history.deleted[0] if history.deleted else getattr(obj, attr.key)
    return values


# -- sealing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SealResult:
    sealed: int
    head_sequence: int
    head_hash: str


def seal_pending(
    session: Session,
    *,
    limit: int = SEAL_BATCH,
    now: datetime,
    skip_busy: bool = False,
) -> SealResult:
    """Give queued entries their place in the chain, oldest first, inside the caller's
    transaction. Safe when several sealers run: they queue on the chain head row, or with
    `skip_busy` leave the work to the one holding it (and report sealing nothing). On
    PostgreSQL the database function SEAL_FUNCTION seals; it reads only the digests the writers
    stored."""
    if session.get_bind().dialect.name == "postgresql":
        sealed = seal_committed(session, limit=limit, skip_busy=skip_busy)
        head = chain_head(session)
        return SealResult(sealed, head.head_sequence, head.head_hash)
    return _seal_in_python(session, limit=limit, now=now, skip_busy=skip_busy)


def seal_committed(session: Session, *, limit: int = SEAL_BATCH, skip_busy: bool) -> int:
    """PostgreSQL: one call of the sealing function; how many entries it sealed."""
    sealed = session.scalar(
        text(f"SELECT {SEAL_FUNCTION}(:limit, :wait)"),
        {"limit": limit, "wait": not skip_busy},
    )
    return int(sealed or 0)


def chain_head(session: Session) -> SealResult:
    """The newest link, as a result that sealed nothing."""
    head = session.execute(_HEAD).one()
    return SealResult(0, head.last_sequence, head.last_hash)


def seal_written(session: Session, context: AuditContext) -> SealResult:
    """SQLite: seal the entries this unit wrote, in its own transaction. SQLite's writers take
    turns (BEGIN IMMEDIATE), so the chain head cannot move under it, and the digests are the
    ones the unit computed; nothing goes through the queue."""
    connection = session.connection()
    head = connection.execute(_HEAD).one()
    return _chain(connection, head.last_sequence, head.last_hash, context.written, context.now)


def _chain(
    connection: Connection,
    sequence: int,
    previous: str,
    entries: Sequence[tuple[int, str | None]],
    now: datetime,
) -> SealResult:
    """Link `entries` (id, digest), oldest first, after the head (`sequence`, `previous`),
    write the links and move the head: the same version-2 bytes the database function
    builds."""
    links: list[dict[str, Any]] = []
    for entry_id, digest in entries:
        if digest is None:
            raise ValueError(f"audit entry {entry_id} has no entry digest and cannot be sealed")
        sequence += 1
        link = sealed_link_hash(sequence, previous, digest)
        links.append(
            {
                "sequence": sequence,
                "entry_id": entry_id,
                "hash_version": CURRENT_HASH_VERSION,
                "prev_hash": previous,
                "entry_hash": link,
                "sealed_at": now,
            }
        )
        previous = link
    if links:
        connection.execute(insert(LINK_TABLE), links)
        newer = HEAD_TABLE.c.hash_version < CURRENT_HASH_VERSION
        connection.execute(
            update(HEAD_TABLE)
            .where(HEAD_TABLE.c.id == 1)
            .values(
                last_sequence=sequence,
                last_hash=previous,
                hash_version=case((newer, CURRENT_HASH_VERSION), else_=HEAD_TABLE.c.hash_version),
            )
        )
    return SealResult(len(links), sequence, previous)


def _seal_in_python(
    session: Session,
    *,
    limit: int,
    now: datetime,
    skip_busy: bool,
) -> SealResult:
    """The queue-driven sealer in Python: the same version-2 links the database function
    builds, from the queue (on SQLite only entries written behind the application's back wait
    there, and `Workspace.seal` leaves them for the verifier)."""
    connection = session.connection()
    head = connection.execute(_HEAD.with_for_update(skip_locked=skip_busy)).one_or_none()
    if head is None:
        # Another sealer holds the head: it, or the next writer, seals what is waiting.
        return SealResult(0, -1, "")
    # Driven by the (small) pending queue, so its cost follows the tail, not the whole log.
    pending = [
        (entry_id, digest)
        for entry_id, digest in connection.execute(
            select(AuditEntry.id, AuditEntry.entry_digest)
            .select_from(AuditPending)
            .join(AuditEntry, AuditEntry.id == AuditPending.entry_id)
            .order_by(AuditPending.entry_id)
            .limit(limit)
        )
    ]
    result = _chain(connection, head.last_sequence, head.last_hash, pending, now)
    if pending:
        connection.execute(
            delete(PENDING_TABLE).where(PENDING_TABLE.c.entry_id.in_([i for i, _ in pending]))
        )
    return result


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


_QUEUED_COLUMNS = (*ENTRY_FIELDS, "entry_digest")
_QUEUED_INSERT = _queued_insert()


def entry_record_of(row: Mapping[str, Any]) -> dict[str, object]:
    """The hashed content of an entry given as a mapping of its columns."""
    return {name: row[name] for name in ENTRY_FIELDS}


def entry_record(entry: AuditEntry) -> dict[str, object]:
    """The entry's hashed content (docs/integrity.md): what version 1 chains, and what version 2
    digests into `entry_digest`."""
    return {
        "recorded_at": entry.recorded_at,
        "user_name": entry.user_name,
        "user_role": entry.user_role,
        "facility_id": entry.facility_id,
        "action": entry.action,
        "entity_type": entry.entity_type,
        "entity_id": entry.entity_id,
        "before": entry.before,
        "after": entry.after,
        "request_id": entry.request_id,
    }


def tail_exceeds(session: Session, limit: int) -> bool:
    """Whether more than `limit` entries wait, reading at most limit + 1 queue rows."""
    waiting = select(AuditPending.entry_id).limit(limit + 1).subquery()
    return (session.scalar(select(func.count()).select_from(waiting)) or 0) > limit


@dataclass(frozen=True)
class UnsealedTail:
    count: int
    oldest: datetime | None


def unsealed_tail(session: Session) -> UnsealedTail:
    row = session.execute(
        select(func.count(), func.min(type_coerce(AuditEntry.recorded_at, UtcDateTime())))
        .join(AuditEntry, AuditEntry.id == AuditPending.entry_id)
        .select_from(AuditPending)
    ).one()
    return UnsealedTail(int(row[0]), row[1])


__all__ = [
    "ENTRY_FIELDS",
    "SEAL_FUNCTION",
    "ZERO_HASH",
    "AuditContext",
    "SealResult",
    "UnsealedTail",
    "capture",
    "chain_head",
    "entry_record",
    "record_event",
    "row_values",
    "seal_committed",
    "seal_pending",
    "seal_written",
    "unsealed_tail",
    "write_waiting",
]
