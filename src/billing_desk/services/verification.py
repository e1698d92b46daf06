"""Verifying the history: the audit chain, the integrity hashes, and signed checkpoints.

Everything is recomputed from the rows; nothing stored is taken on trust. Problems come back as a
list of typed findings, not exceptions. A chain that an administrator recomputed end to end
after a rewrite verifies link by link, which is why checkpoints matter: a signed head that the
chain no longer contains names the rewrite, the truncation or the rollback.
"""

from __future__ import annotations

import hashlib
import json.encoder
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import (
    Date,
    DateTime,
    Select,
    String,
    bindparam,
    exists,
    func,
    inspect,
    literal_column,
    select,
    text,
    type_coerce,
)
from sqlalchemy.orm import Mapper, Session
from sqlalchemy.types import TypeDecorator, TypeEngine

from billing_desk.db.models import (
    Allocation,
    AuditChainHead,
    AuditEntry,
    AuditLink,
    AuditPending,
    Base,
    Invoice,
    InvoiceLine,
    Payment,
)
from billing_desk.domain.hashing import canonical_bytes
from billing_desk.domain.integrity import (
    ZERO_HASH,
    content_hash,
    is_hex_digest,
    sealed_link_hash,
)
from billing_desk.domain.roles import Permission
from billing_desk.services.audit_trail import NOT_AUDITED, entry_record, unsealed_tail
from billing_desk.services.integrity import (
    ALLOCATION_FIELDS,
    INVOICE_FIELDS,
    LINE_FIELDS,
    PAYMENT_FIELDS,
    invoice_record,
    payment_record,
)
from billing_desk.services.unit_of_work import UnitOfWork, Workspace

CHUNK = 5000
# A row of `_links`: the link's columns, then its entry's (the driver's tuple).
_LinkRow = Any
# Findings of one kind listed one by one before they are summarised.
MAX_LISTED = 200


@dataclass(frozen=True)
class Finding:
    """One problem. Besides the words, where it is, for a browser to open it: the chain's
    `sequence` or the audit `entry_id` concerned, or the row (`table` and its id as the audit trail
    names it, `row`; an invoice's `number` too)."""

    kind: str
    entity: str
    detail: str
    sequence: int | None = None
    entry_id: int | None = None
    table: str | None = None
    row: str | None = None
    number: str | None = None


@dataclass(frozen=True)
class CheckpointClaim:
    """What a checkpoint note asserts, after its signatures were checked (services.checkpoints)."""

    source: str
    sequence: int
    head_hash: str
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class Unsealed:
    count: int
    oldest: datetime | None


@dataclass(frozen=True)
class VerificationReport:
    ok: bool
    entries_checked: int
    first_broken_sequence: int | None
    findings: tuple[Finding, ...]
    unsealed: Unsealed
    head_sequence: int
    head_hash: str
    payments_checked: int
    invoices_checked: int
    checkpoints_checked: int
    # The hash version of the chain's last link (what an incremental check continues with).
    head_hash_version: int = 1


# Reports how far a verification is: (done, total, what it is doing); may raise to cancel.
VerifyProgress = Callable[[int, int, str], None]


@dataclass
class _Chain:
    findings: list[Finding] = field(default_factory=list)
    first_broken: int | None = None
    counts: dict[str, int] = field(default_factory=dict)

    def add(
        self,
        kind: str,
        entity: str,
        detail: str,
        sequence: int | None = None,
        *,
        opens_at: int | None = None,
        entry_id: int | None = None,
        table: str | None = None,
        row: str | None = None,
        number: str | None = None,
    ) -> None:
        """`sequence` is where the chain breaks (the first one is reported); `opens_at` the
        sequence a browser shows for it, when not that one."""
        if sequence is not None and (self.first_broken is None or sequence < self.first_broken):
            self.first_broken = sequence
        seen = self.counts.get(kind, 0) + 1
        self.counts[kind] = seen
        if seen <= MAX_LISTED:
            at = opens_at if opens_at is not None else sequence
            self.findings.append(Finding(kind, entity, detail, at, entry_id, table, row, number))

    def summarise(self) -> None:
        for kind, seen in sorted(self.counts.items()):
            if seen > MAX_LISTED:
                self.findings.append(
                    Finding(kind, "(more)", f"{seen - MAX_LISTED} more findings of this kind")
                )


def verify(
    workspace: Workspace,
    checkpoints: Sequence[CheckpointClaim] = (),
    *,
    progress: VerifyProgress | None = None,
) -> VerificationReport:
    """Recompute the whole history; the run itself is audited. `progress(done, total, text)`
    counts the links and rows checked; an exception raised from it stops the run, which then
    records nothing."""
    # SQLite seals every entry in the transaction that wrote it: a live SQLite database has no
    # legitimate unsealed tail. An archive keeps whatever tail its source had.
    tail_allowed = not (workspace.location.is_sqlite and not workspace.read_only)

    def operation(unit: UnitOfWork) -> VerificationReport:
        unit.require(Permission.READ)
        return verify_session(
            unit.session, checkpoints, tail_allowed=tail_allowed, progress=progress
        )

    report = workspace.reports.read(operation)
    if not workspace.read_only:
        workspace.write(
            lambda unit: unit.record_event(
                "audit.verify",
                "audit_chain",
                str(report.head_sequence),
                detail={
                    "ok": report.ok,
                    "entries_checked": report.entries_checked,
                    "findings": len(report.findings),
                    "first_broken_sequence": report.first_broken_sequence,
                },
            ),
            action="audit.verify",
        )
    return report


def verify_session(
    session: Session,
    checkpoints: Sequence[CheckpointClaim] = (),
    *,
    tail_allowed: bool = True,
    progress: VerifyProgress | None = None,
) -> VerificationReport:
    chain = _Chain()
    hashes_by_sequence: dict[int, str] = {}
    wanted = {c.sequence for c in checkpoints}
    counter = _Counter(session, progress) if progress is not None else None
    checked, last_sequence, last_hash, version = _walk_chain(
        session, chain, wanted, hashes_by_sequence, counter=counter
    )
    _check_orphans(session, chain)
    if not tail_allowed:
        _check_no_tail(session, chain)
    _check_head(session, chain, last_sequence, last_hash)
    payments, invoices = _check_rows(session, chain, counter)
    _check_checkpoints(session, chain, checkpoints, hashes_by_sequence, last_sequence)
    chain.summarise()
    tail = unsealed_tail(session)
    return VerificationReport(
        ok=not chain.findings,
        entries_checked=checked,
        first_broken_sequence=chain.first_broken,
        findings=tuple(chain.findings),
        unsealed=Unsealed(tail.count, tail.oldest),
        head_sequence=last_sequence,
        head_hash=last_hash,
        payments_checked=payments,
        invoices_checked=invoices,
        checkpoints_checked=len(checkpoints),
        head_hash_version=version,
    )


class _Counter:
    """Progress over one verification: the chain's links, then the rows of every audited
    table, counted up front (cheap next to reading them)."""

    def __init__(self, session: Session, report: VerifyProgress) -> None:
        self.report = report
        links = session.scalar(select(func.count()).select_from(AuditLink)) or 0
        rows = 0
        for mapper in Base.registry.mappers:
            table = mapper.local_table
            if str(getattr(table, "name", "")) not in NOT_AUDITED:
                rows += session.scalar(select(func.count()).select_from(table)) or 0
        self.total = max(int(links) + int(rows), 1)
        self.done = 0
        report(0, self.total, "Checking the chain's links")

    def add(self, count: int, text: str) -> None:
        self.done = min(self.done + count, self.total)
        self.report(self.done, self.total, text)


@dataclass(frozen=True)
class ChainCheck:
    """How far the chain is known good: verified up to link `sequence` (whose hash is
    `head_hash`), what was found wrong on the way, and the tail not yet sealed."""

    sequence: int
    head_hash: str
    hash_version: int
    findings: tuple[Finding, ...]
    unsealed: Unsealed
    checked_at: datetime
    # On a shared database a login that works for some facilities sees only their entries, so
    # it cannot walk a chain that links every facility's: nothing was checked, nothing found.
    partial_view: bool = False

    @property
    def ok(self) -> bool:
        return not self.findings


def _reads_every_entry(unit: UnitOfWork) -> bool:
    """Whether row-level security lets this login read every audit entry (PostgreSQL's
    auditors and administrators; anyone on an embedded database)."""
    session = unit.session
    if session.get_bind().dialect.name != "postgresql":
        return True
    shared = session.scalar(
        text("SELECT to_regprocedure('public.billing_desk_reads_all()') IS NOT NULL")
    )
    if not shared:
        return True  # a database not set up for login roles: no row-level security
    return bool(session.scalar(text("SELECT public.billing_desk_reads_all()")))


def check_chain(workspace: Workspace, since: ChainCheck | None = None) -> ChainCheck:
    """Walk the chain from where `since` stopped (from its first link without it) to the head:
    every link, and every entry against its digest. A check that found problems starts again
    from the first link. This is the desktop's integrity badge, run at start and after each
    seal: it writes nothing and is not audited. A person's verification (`verify`) also checks
    the payments' and invoices' stored hashes and the checkpoints, and is audited."""
    start = since if since is not None and since.ok else None

    def operation(unit: UnitOfWork) -> ChainCheck:
        unit.require(Permission.READ)
        if not _reads_every_entry(unit):
            tail = unsealed_tail(unit.session)
            return ChainCheck(
                0, "", 0, (), Unsealed(tail.count, tail.oldest), unit.now, partial_view=True
            )
        chain = _Chain()
        begin = (start.sequence, start.head_hash, start.hash_version) if start else None
        _checked, last, head, version = _walk_chain(unit.session, chain, set(), {}, begin)
        _check_head(unit.session, chain, last, head)
        chain.summarise()
        tail = unsealed_tail(unit.session)
        return ChainCheck(
            last,
            head,
            version,
            tuple(chain.findings),
            Unsealed(tail.count, tail.oldest),
            unit.now,
        )

    return workspace.read(operation)


def _links(session: Session, after: int = -1) -> Iterator[tuple[Any, ...]]:
    """Every link in sequence order with its entry's columns (all None when the entry row is
    gone), as the driver's own tuples in keyset-paged chunks. `recorded_at` comes as text: on
    SQLite as stored (see `_stamp`), on PostgreSQL already in canonical form (see `_PG_STAMP`)."""
    if session.get_bind().dialect.name == "sqlite":
        recorded_at: Any = type_coerce(AuditEntry.recorded_at, String())
    else:
        recorded_at = literal_column(_PG_STAMP, String())
    statement = (
        select(
            AuditLink.sequence,
            AuditLink.entry_id,
            AuditLink.hash_version,
            AuditLink.prev_hash,
            AuditLink.entry_hash,
            AuditEntry.id,
            recorded_at,
            AuditEntry.user_name,
            AuditEntry.user_role,
            AuditEntry.facility_id,
            AuditEntry.action,
            AuditEntry.entity_type,
            AuditEntry.entity_id,
            AuditEntry.before,
            AuditEntry.after,
            AuditEntry.request_id,
            AuditEntry.entry_digest,
        )
        .outerjoin(AuditEntry, AuditEntry.id == AuditLink.entry_id)
        .where(AuditLink.sequence > bindparam("after"))
        .order_by(AuditLink.sequence)
        .limit(CHUNK)
    )
    chunk = _driver_query(session, statement)
    while rows := chunk(after=after):
        yield from rows
        after = rows[-1][0]


def _driver_query(
    session: Session, statement: Select[*tuple[Any, ...]]
) -> Callable[..., list[Any]]:
    """`statement`, compiled once, as a function of its parameters returning the driver's own
    tuples, read on the session's connection (so in its transaction) without a SQLAlchemy row
    per row: the walk reads a million of them. Parameters go to the driver as they are, so only
    plain ints and text belong in them."""
    connection = session.connection()
    compiled = statement.compile(dialect=connection.dialect)
    sql = str(compiled)

    def rows(**params: object) -> list[Any]:
        values = compiled.construct_params(params)
        arguments: Any = values
        if compiled.positional:
            arguments = tuple(values[name] for name in compiled.positiontup or ())
        cursor = connection.connection.cursor()
        try:
            cursor.execute(sql, arguments)
            return list(cursor.fetchall())
        finally:
            cursor.close()

    return rows


_quote = json.encoder.encode_basestring  # the escaper of json.dumps(..., ensure_ascii=False)
_SQLITE_STAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}")
# PostgreSQL writes `recorded_at` in canonical form itself (UTC, six fractional digits), so no
# datetime is built per entry. Only for the years a datetime can hold and canonical_bytes writes
# as four digits (to_char would write 44 BC as 0044): NULL otherwise, and the general path says.
_PG_STAMP = (
    "CASE WHEN audit_entry.recorded_at AT TIME ZONE 'UTC' "
    "BETWEEN '0001-01-01 00:00:00' AND '9999-12-31 23:59:59.999999' "
    "THEN to_char(audit_entry.recorded_at AT TIME ZONE 'UTC', "
    '\'YYYY-MM-DD"T"HH24:MI:SS.US"Z"\') END'
)


def _stamp(value: object) -> str | None:
    """`recorded_at` as canonical text, or None when only the general path can say: SQLite's
    stored `YYYY-MM-DD HH:MM:SS.ffffff` (naive UTC) or PostgreSQL's aware datetime."""
    if type(value) is str:
        if _SQLITE_STAMP.fullmatch(value) is None:
            return None
        try:
            datetime.fromisoformat(value)  # a real date and time, as the general path parses
        except ValueError:
            return None
        return f"{value[:10]}T{value[11:]}Z"
    if type(value) is datetime and value.tzinfo is not None:
        text = value.astimezone(UTC).isoformat(timespec="microseconds")
        return f"{text[:-6]}Z" if text.endswith("+00:00") and len(text) == 32 else None
    return None


def _entry_bytes(
    stamp: str,
    user_name: object,
    user_role: object,
    facility_id: object,
    action: object,
    entity_type: object,
    entity_id: object,
    before: object,
    after: object,
    request_id: object,
) -> bytes | None:
    """canonical_bytes(entry_record(entry)) for the usual shape, concatenated in sorted key
    order; None when a value is not exactly str (or None where allowed) or int, so the caller
    takes the general encoder. A lone surrogate raises ValueError, as canonical_bytes does."""
    if not (
        type(user_name) is str
        and type(action) is str
        and type(entity_type) is str
        and type(entity_id) is str
        and type(request_id) is str
        and (user_role is None or type(user_role) is str)
        and (before is None or type(before) is str)
        and (after is None or type(after) is str)
        and (facility_id is None or type(facility_id) is int)
    ):
        return None
    return "".join(
        (
            '{"action":',
            _quote(action),
            ',"after":',
            "null" if after is None else _quote(after),
            ',"before":',
            "null" if before is None else _quote(before),
            ',"entity_id":',
            _quote(entity_id),
            ',"entity_type":',
            _quote(entity_type),
            ',"facility_id":',
            "null" if facility_id is None else str(facility_id),
            ',"recorded_at":"',
            stamp,
            '","request_id":',
            _quote(request_id),
            ',"user_name":',
            _quote(user_name),
            ',"user_role":',
            "null" if user_role is None else _quote(user_role),
            "}",
        )
    ).encode()


def _pg_stamp(value: object) -> str | None:
    """PostgreSQL's `recorded_at`, already canonical text (`_PG_STAMP`), or None."""
    return value if type(value) is str else None


def _general_content_bytes(session: Session, entry_id: int) -> bytes:
    """The canonical bytes of an entry's content through the ORM and the general encoder, for
    an entry the fast encoder does not take (exactly as written)."""
    return canonical_bytes(entry_record(session.get_one(AuditEntry, entry_id)))


def _link_digest(version: int, sequence: int, prev_hash: str, content: bytes) -> str:
    """The version-1 link hash over entry content bytes (the entry object nests as-is)."""
    if version != 1:
        raise ValueError(f"hash version {version} is not one this verifier knows")
    if type(prev_hash) is not str:
        raise TypeError(f"prev_hash: {type(prev_hash).__name__} is not allowed")
    tail = f',"prev_hash":{_quote(prev_hash)},"sequence":{sequence},"v":1}}'.encode()
    return hashlib.sha256(b'{"entry":' + content + tail).hexdigest()


def _walk_chain(
    session: Session,
    chain: _Chain,
    wanted: set[int],
    hashes: dict[int, str],
    begin: tuple[int, str, int] | None = None,
    *,
    counter: _Counter | None = None,
) -> tuple[int, int, str, int]:
    """Check every link after `begin` (sequence, hash and hash version of a link already
    verified; the chain's start without it). Returns how many links were checked, and the
    last link's sequence, hash and version."""
    # `recorded_at` as the canonical text, or None when only the general path can say.
    stamp_of = _stamp if session.get_bind().dialect.name == "sqlite" else _pg_stamp
    expected, previous, version, checked = 1, ZERO_HASH, 1, 0
    if begin is not None:
        expected, previous, version = begin[0] + 1, begin[1], begin[2]
    # Whether `previous` is known to be 64 lower-case hex digits (the zero hash, or a stored link
    # hash equal to the one recomputed), so that a version-2 link may be written by
    # concatenation without matching its prev_hash against the pattern once more.
    previous_is_hex = True
    last_sequence = expected - 1
    for row in _links(session, after=last_sequence if begin is not None else -1):
        checked += 1
        if counter is not None and checked % CHUNK == 0:
            counter.add(CHUNK, "Checking the chain's links")
        sequence, entry_id, link_version, prev_hash, stored_hash = row[:5]
        if sequence > expected:
            missing = f"{expected}" if sequence == expected + 1 else f"{expected} to {sequence - 1}"
            chain.add("gap", f"sequence {missing}", "links are missing from the chain", expected)
        elif sequence < expected:
            chain.add(
                "duplicate",
                f"sequence {sequence}",
                "sequence number repeated",
                sequence,
                entry_id=entry_id,
            )
        if prev_hash != previous:
            chain.add(
                "broken link",
                f"sequence {sequence}",
                "does not follow the link before it (entries deleted, inserted or reordered)",
                sequence,
                entry_id=entry_id,
            )
            previous_is_hex = False
        if link_version < version:
            chain.add(
                "hash version downgraded",
                f"sequence {sequence}",
                f"hash version {link_version} after version {version}",
                sequence,
                entry_id=entry_id,
            )
        version = max(version, link_version)
        if row[5] is None:
            chain.add(
                "entry missing",
                f"sequence {sequence}",
                f"audit entry {entry_id} was deleted",
                sequence,
                entry_id=entry_id,
            )
            previous_is_hex = False
        else:
            problem = _check_link(session, row, stamp_of(row[6]), previous_is_hex)
            if problem is not None:
                kind, detail = problem
                chain.add(kind, f"sequence {sequence}", detail, sequence, entry_id=entry_id)
            previous_is_hex = problem is None
        if sequence in wanted:
            hashes[sequence] = stored_hash
        previous = stored_hash
        expected = max(expected, sequence + 1)
        last_sequence = sequence
    if counter is not None:
        counter.add(checked % CHUNK, "Checking the chain's links")
    return checked, last_sequence, previous, version


def _check_link(
    session: Session, row: _LinkRow, stamp: str | None, prev_is_hex: bool
) -> tuple[str, str] | None:
    """What is wrong with one link over a present entry: its content against its stored digest
    (version 2) and the link hash against the link (from the stored digest in version 2, from
    the content in version 1); None when nothing is. `prev_is_hex` vouches that the link's
    prev_hash is 64 lower-case hex digits (False: not known)."""
    sequence, _entry_id, link_version, prev_hash, stored_hash = row[:5]
    stored_digest = row[16]
    try:
        content = _entry_bytes(stamp, *row[7:16]) if stamp is not None else None
        if content is None:
            content = _general_content_bytes(session, row[5])
        if link_version == 2:
            if stored_digest != hashlib.sha256(content).hexdigest():
                return "entry altered", f"{_entry_named(row)} does not match its digest"
            # The stored digest now equals a hex digest; prev_hash is checked unless vouched for.
            if prev_is_hex or is_hex_digest(prev_hash):
                link = hashlib.sha256(
                    f'{{"entry_digest":"{stored_digest}","prev_hash":"{prev_hash}",'
                    f'"sequence":{sequence},"v":2}}'.encode()
                ).hexdigest()
            else:
                link = sealed_link_hash(sequence, prev_hash, stored_digest)  # raises ValueError
        else:
            link = _link_digest(link_version, sequence, prev_hash, content)
    except (ValueError, TypeError) as err:
        return "unreadable entry", str(err)
    if link != stored_hash:
        return "entry altered", f"{_entry_named(row)} does not match its hash"
    return None


def _entry_named(row: _LinkRow) -> str:
    return f"audit entry {row[5]} ({row[10]} {row[11]} {row[12]})"


def _check_orphans(session: Session, chain: _Chain) -> None:
    """Entries neither in the chain nor waiting to be sealed were put there behind its back."""
    orphans = session.scalars(
        select(AuditEntry.id)
        .where(
            # NOT EXISTS plans as an anti-join; NOT IN over a million links made PostgreSQL rescan
            # the links for every entry once the subquery no longer fitted in work_mem.
            ~exists().where(AuditLink.entry_id == AuditEntry.id),
            ~exists().where(AuditPending.entry_id == AuditEntry.id),
        )
        .order_by(AuditEntry.id)
        .limit(MAX_LISTED + 1)
    ).all()
    for entry_id in orphans:
        chain.add(
            "entry outside the chain",
            f"audit entry {entry_id}",
            "neither sealed nor waiting to be sealed",
            entry_id=entry_id,
        )


def _check_no_tail(session: Session, chain: _Chain) -> None:
    queued = session.scalars(
        select(AuditPending.entry_id).order_by(AuditPending.entry_id).limit(MAX_LISTED + 1)
    ).all()
    for entry_id in queued:
        chain.add(
            "entry outside the chain",
            f"audit entry {entry_id}",
            "queued for sealing after its transaction ended, which this database never does",
            entry_id=entry_id,
        )


def _check_rows(
    session: Session, chain: _Chain, counter: _Counter | None = None
) -> tuple[int, int]:
    """One pass over each table of billing data. Each row must be what its newest audit entry
    says it became; a row the trail does not know, or a row gone without an entry, was changed
    behind its back. While the payments and invoices go by, their content hashes are recomputed
    too (with their allocations or lines); those findings come after the others. Returns how
    many payments and invoices were checked."""
    content: dict[str, _ContentCheck] = {c.table: c for c in (_PAYMENTS, _INVOICES)}
    mismatches: list[Finding] = []
    counts = {name: 0 for name in content}
    connection = session.connection()
    for mapper in sorted(
        Base.registry.mappers, key=lambda m: str(getattr(m.local_table, "name", ""))
    ):
        table = str(getattr(mapper.local_table, "name", ""))
        if table in NOT_AUDITED:
            continue
        newest = (
            select(func.max(AuditEntry.id))
            .where(AuditEntry.entity_type == table)
            .group_by(AuditEntry.entity_id)
        )
        recorded: dict[str, bytes | None] = {
            entity_id: None if after is None else hashlib.sha256(after.encode()).digest()
            for entity_id, after in _driver_query(
                session,
                select(AuditEntry.entity_id, AuditEntry.after).where(AuditEntry.id.in_(newest)),
            )()
        }
        # Plain rows with the ORM's own column types (so the same values as row_values of an
        # entity), without building an entity per row.
        names = [attr.key for attr in mapper.column_attrs]
        row_of = _RowEncoder(mapper, names)
        columns = [attr.columns[0].label(attr.key) for attr in mapper.column_attrs]
        keys = [names.index(mapper.get_property_by_column(c).key) for c in mapper.primary_key]
        check = content.get(table)
        result = connection.execute(
            select(*columns).order_by(*mapper.primary_key).execution_options(yield_per=CHUNK)
        )
        for rows in result.partitions():
            if counter is not None:
                counter.add(len(rows), f"Checking the {table.replace('_', ' ')} rows")
            if check is not None:
                counts[table] += len(rows)
                mismatches += check.mismatches(session, names, rows)
            for row in rows:
                entity_id = ":".join([str(row[i]) for i in keys])
                now = hashlib.sha256(row_of.canonical_bytes(row)).digest()
                if entity_id not in recorded:
                    chain.add(
                        "row without audit entry",
                        f"{table} {entity_id}",
                        "no audit entry ever recorded this row",
                        table=table,
                        row=entity_id,
                    )
                elif recorded.pop(entity_id) != now:
                    chain.add(
                        "row differs from its audit trail",
                        f"{table} {entity_id}",
                        "the row is not what its newest audit entry says it became",
                        table=table,
                        row=entity_id,
                    )
        for entity_id, after in recorded.items():
            if after is not None:
                chain.add(
                    "row deleted without audit entry",
                    f"{table} {entity_id}",
                    "the trail says the row exists, but it is gone",
                    table=table,
                    row=entity_id,
                )
    for finding in mismatches:
        chain.add(
            finding.kind,
            finding.entity,
            finding.detail,
            table=finding.table,
            row=finding.row,
            number=finding.number,
        )
    return counts[_PAYMENTS.table], counts[_INVOICES.table]


# What canonical_bytes writes as itself once datetimes and dates are text (see _RowEncoder).
_PLAIN_TYPES = frozenset({str, int, bool, type(None)})
# json.dumps as canonical_bytes calls it, but for records built with their keys already in
# sorted order (sorting each row's keys again was a third of the row check's time). The output
# is the same for an acyclic record of plain values.
_dumps_sorted = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False, check_circular=False
).encode


def _is_time(column_type: TypeEngine[Any]) -> bool:
    if isinstance(column_type, TypeDecorator):
        column_type = column_type.impl_instance
    return isinstance(column_type, Date | DateTime)


def _plain_time(value: object) -> object:
    """A UTC datetime or a date as canonical_bytes writes it; anything else as it is."""
    if type(value) is datetime and value.tzinfo is UTC:
        return f"{value.isoformat(timespec='microseconds')[:26]}Z"
    if type(value) is date:
        return value.isoformat()
    return value


def _picker(columns: Sequence[str], names: Sequence[str]) -> Callable[[Sequence[object]], Any]:
    """The values of the fields `names`, in that order, out of a row with the columns
    `columns`."""
    getter = itemgetter(*(list(columns).index(name) for name in names))
    return getter if len(names) > 1 else lambda row: (getter(row),)


class _RowEncoder:
    """canonical_bytes({name: value}) of a row of fixed field names, without its general walk.

    canonical_bytes is json.dumps (sorted keys, compact, UTF-8) of the record after a walk that,
    for these values, only writes datetimes and dates as text. So when every value is exactly a
    str, int, bool or None once the UTC datetimes and dates are text, json.dumps of them, keys
    in sorted order, gives the same bytes. Any other value (an Enum, a naive datetime, a float that
    SQLite's loose typing let in, a str subclass, bytes ...), or a lone surrogate, goes to
    canonical_bytes itself, which encodes or refuses it exactly as written."""

    def __init__(
        self, mapper: Mapper[Any], names: Sequence[str], columns: Sequence[str] | None = None
    ) -> None:
        """Records of the fields `names` of `mapper`'s entity, out of rows with the columns
        `columns` (by default, exactly `names`)."""
        # The fields in sorted order, so that a record is built with its keys sorted.
        self.names = sorted(names)
        # Only the date and time columns are looked at one by one; a datetime anywhere else
        # would fail the type check below and take the general path all the same.
        self.times = [i for i, name in enumerate(self.names) if _is_time(mapper.columns[name].type)]
        self.pick = _picker(columns or names, self.names)
        # The general path gets the record in the fields' own order, as the entity gives it
        # (canonical_bytes refuses the first bad value it meets).
        self.fields = list(names)
        self.pick_as_given = _picker(columns or names, self.fields)

    def plain(self, row: Sequence[object]) -> dict[str, object] | None:
        """The row's fields as a record of plain values with its keys in sorted order, or None
        when canonical_bytes must say."""
        values = list(self.pick(row))
        for i in self.times:
            values[i] = _plain_time(values[i])
        if not _PLAIN_TYPES.issuperset(map(type, values)):
            return None
        return dict(zip(self.names, values, strict=True))

    def canonical_bytes(self, row: Sequence[object]) -> bytes:
        plain = self.plain(row)
        if plain is not None:
            try:
                return _dumps_sorted(plain).encode()
            except UnicodeEncodeError:
                pass  # a lone surrogate: canonical_bytes raises its own error
        return canonical_bytes(dict(zip(self.fields, self.pick_as_given(row), strict=True)))


@dataclass(frozen=True)
class _ContentCheck:
    """How to recompute the stored content hash of a payment (with its allocations) or an
    invoice (with its lines), from plain rows read by attribute name."""

    table: str
    kind: str
    parent: Any
    fields: tuple[str, ...]
    children: Any
    owner: Any
    child_fields: tuple[str, ...]
    items: str  # the record's key for the children: "allocations", "lines"
    record: Callable[[Any, list[Any]], dict[str, object]]
    finding: Callable[[Any], Finding]

    def mismatches(self, session: Session, names: list[str], rows: Sequence[Any]) -> list[Finding]:
        """The findings for those of `rows` (a chunk of parents, with the columns `names`)
        whose stored hash differs."""
        items: dict[int, list[Any]] = {}
        for item in session.connection().execute(
            select(*_columns_of(self.children)).where(self.owner.in_([r.id for r in rows]))
        ):
            items.setdefault(getattr(item, self.owner.key), []).append(item)
        parent = _RowEncoder(inspect(self.parent), self.fields, names)
        kid_mapper = inspect(self.children)
        kid_names = [attr.key for attr in kid_mapper.column_attrs]
        child = _RowEncoder(kid_mapper, self.child_fields, kid_names)
        found = []
        for row in rows:
            kids = sorted(items.get(row.id, []), key=lambda kid: kid.id)
            if row.content_hash != self._hash(row, kids, parent, child):
                found.append(self.finding(row))
        return found

    def _hash(self, row: Any, kids: list[Any], parent: _RowEncoder, child: _RowEncoder) -> str:
        record = parent.plain(row)
        kid_records = [child.plain(kid) for kid in kids]
        if record is not None and None not in kid_records:
            record = dict(sorted({**record, self.items: kid_records}.items()))
            try:
                text = _dumps_sorted({"kind": self.kind, "record": record, "v": 1}).encode()
                return hashlib.sha256(text).hexdigest()
            except UnicodeEncodeError:
                pass  # a lone surrogate: the general path raises its own error
        return content_hash(self.kind, self.record(row, kids))


_PAYMENTS = _ContentCheck(
    table="payment",
    kind="payment",
    parent=Payment,
    fields=PAYMENT_FIELDS,
    children=Allocation,
    owner=Allocation.payment_id,
    child_fields=ALLOCATION_FIELDS,
    items="allocations",
    record=payment_record,
    finding=lambda p: Finding(
        "payment hash mismatch",
        f"payment {p.id}",
        "its amount, state or allocations changed without an audited change",
        table="payment",
        row=str(p.id),
    ),
)
_INVOICES = _ContentCheck(
    table="invoice",
    kind="invoice",
    parent=Invoice,
    fields=INVOICE_FIELDS,
    children=InvoiceLine,
    owner=InvoiceLine.invoice_id,
    child_fields=LINE_FIELDS,
    items="lines",
    record=invoice_record,
    finding=lambda i: Finding(
        "invoice hash mismatch",
        f"invoice {i.number}",
        "its total, state or lines changed without an audited change",
        table="invoice",
        row=str(i.id),
        number=str(i.number),
    ),
)


def _check_head(session: Session, chain: _Chain, last_sequence: int, last_hash: str) -> None:
    head = session.get(AuditChainHead, 1)
    if head is None:
        chain.add("head missing", "audit chain head", "the chain head row is gone")
        return
    if (head.last_sequence, head.last_hash) != (last_sequence, last_hash):
        chain.add(
            "head mismatch",
            "audit chain head",
            f"the head says sequence {head.last_sequence} but the chain ends at {last_sequence} "
            "(links removed or added behind the sealer's back)",
            min(head.last_sequence, last_sequence) + 1,
            opens_at=last_sequence or None,
        )


def _columns_of(entity: Any) -> list[Any]:
    """An entity's columns, each labelled with its attribute name."""
    mapper = inspect(entity)
    return [attr.columns[0].label(attr.key) for attr in mapper.column_attrs]


def _check_checkpoints(
    session: Session,
    chain: _Chain,
    checkpoints: Sequence[CheckpointClaim],
    hashes: dict[int, str],
    last_sequence: int,
) -> None:
    for claim in checkpoints:
        where = f"checkpoint {claim.source}"
        for problem in claim.problems:
            chain.add("checkpoint not trusted", where, problem)
        if claim.sequence > last_sequence:
            chain.add(
                "chain behind checkpoint",
                where,
                f"the checkpoint pins sequence {claim.sequence} but the chain ends at "
                f"{last_sequence}: entries were truncated or an older copy was restored",
                last_sequence + 1,
                opens_at=last_sequence or None,
            )
        elif claim.sequence > 0 and hashes.get(claim.sequence) != claim.head_hash:
            chain.add(
                "checkpoint contradicted",
                where,
                f"sequence {claim.sequence} has another hash than the signed one: the history "
                "up to it was rewritten (fork)",
                claim.sequence,
            )


def as_chain_check(report: VerificationReport, checked_at: datetime) -> ChainCheck:
    """What a full verification says about the chain, as the integrity badge keeps it."""
    return ChainCheck(
        report.head_sequence,
        report.head_hash,
        report.head_hash_version,
        report.findings,
        report.unsealed,
        checked_at,
    )


def chain_size(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(AuditLink)) or 0
