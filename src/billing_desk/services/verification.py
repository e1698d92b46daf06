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
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, String, exists, func, inspect, select, type_coerce
from sqlalchemy.orm import Session

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
from billing_desk.services.integrity import invoice_record, payment_record
from billing_desk.services.unit_of_work import UnitOfWork, Workspace

CHUNK = 5000
# A row of `_links`: the link's columns, then its entry's (a SQLAlchemy Row, indexed).
_LinkRow = Any
# Findings of one kind listed one by one before they are summarised.
MAX_LISTED = 200


@dataclass(frozen=True)
class Finding:
    kind: str
    entity: str
    detail: str


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


@dataclass
class _Chain:
    findings: list[Finding] = field(default_factory=list)
    first_broken: int | None = None
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, entity: str, detail: str, sequence: int | None = None) -> None:
        if sequence is not None and (self.first_broken is None or sequence < self.first_broken):
            self.first_broken = sequence
        seen = self.counts.get(kind, 0) + 1
        self.counts[kind] = seen
        if seen <= MAX_LISTED:
            self.findings.append(Finding(kind, entity, detail))

    def summarise(self) -> None:
        for kind, seen in sorted(self.counts.items()):
            if seen > MAX_LISTED:
                self.findings.append(
                    Finding(kind, "(more)", f"{seen - MAX_LISTED} more findings of this kind")
                )


def verify(workspace: Workspace, checkpoints: Sequence[CheckpointClaim] = ()) -> VerificationReport:
    """Recompute the whole history; the run itself is audited."""
    # SQLite seals every entry in the transaction that wrote it: a live SQLite database has no
    # legitimate unsealed tail. An archive keeps whatever tail its source had.
    tail_allowed = not (workspace.location.is_sqlite and not workspace.read_only)

    def operation(unit: UnitOfWork) -> VerificationReport:
        unit.require(Permission.READ)
        return verify_session(unit.session, checkpoints, tail_allowed=tail_allowed)

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
    session: Session, checkpoints: Sequence[CheckpointClaim] = (), *, tail_allowed: bool = True
) -> VerificationReport:
    chain = _Chain()
    hashes_by_sequence: dict[int, str] = {}
    wanted = {c.sequence for c in checkpoints}
    checked, last_sequence, last_hash = _walk_chain(session, chain, wanted, hashes_by_sequence)
    _check_orphans(session, chain)
    if not tail_allowed:
        _check_no_tail(session, chain)
    _check_head(session, chain, last_sequence, last_hash)
    _check_rows_against_trail(session, chain)
    payments = _check_payments(session, chain)
    invoices = _check_invoices(session, chain)
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
    )


def _links(session: Session) -> Iterator[_LinkRow]:
    """Every link in sequence order with its entry's columns (all None when the entry row is
    gone), read as plain rows in keyset-paged chunks. On SQLite `recorded_at` comes as the
    stored text, on PostgreSQL as the driver's aware datetime (see `_entry_bytes`)."""
    if session.get_bind().dialect.name == "sqlite":
        recorded_at: Any = type_coerce(AuditEntry.recorded_at, String())
    else:
        recorded_at = type_coerce(AuditEntry.recorded_at, DateTime(timezone=True))
    columns = (
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
    after = -1
    while True:
        rows = session.execute(
            select(*columns)
            .outerjoin(AuditEntry, AuditEntry.id == AuditLink.entry_id)
            .where(AuditLink.sequence > after)
            .order_by(AuditLink.sequence)
            .limit(CHUNK)
        ).all()
        if not rows:
            return
        yield from rows
        after = rows[-1][0]


_quote = json.encoder.encode_basestring  # the escaper of json.dumps(..., ensure_ascii=False)
_SQLITE_STAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}")


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


def _content_bytes(session: Session, row: _LinkRow) -> bytes:
    """The canonical bytes of a link row's entry content: fast when it has the usual shape,
    otherwise through the ORM and the general encoder (exactly as written)."""
    stamp = _stamp(row[6])
    if stamp is not None:
        fast = _entry_bytes(stamp, *row[7:16])
        if fast is not None:
            return fast
    entry = session.get_one(AuditEntry, row[5])
    return canonical_bytes(entry_record(entry))


def _link_digest(version: int, sequence: int, prev_hash: str, content: bytes) -> str:
    """The version-1 link hash over entry content bytes (the entry object nests as-is)."""
    if version != 1:
        raise ValueError(f"hash version {version} is not one this verifier knows")
    if type(prev_hash) is not str:
        raise TypeError(f"prev_hash: {type(prev_hash).__name__} is not allowed")
    tail = f',"prev_hash":{_quote(prev_hash)},"sequence":{sequence},"v":1}}'.encode()
    return hashlib.sha256(b'{"entry":' + content + tail).hexdigest()


def _walk_chain(
    session: Session, chain: _Chain, wanted: set[int], hashes: dict[int, str]
) -> tuple[int, int, str]:
    expected, previous, version, checked = 1, ZERO_HASH, 1, 0
    last_sequence = 0
    for row in _links(session):
        checked += 1
        sequence, entry_id, link_version, prev_hash, stored_hash = row[:5]
        if sequence > expected:
            missing = f"{expected}" if sequence == expected + 1 else f"{expected} to {sequence - 1}"
            chain.add("gap", f"sequence {missing}", "links are missing from the chain", expected)
        elif sequence < expected:
            chain.add("duplicate", f"sequence {sequence}", "sequence number repeated", sequence)
        if prev_hash != previous:
            chain.add(
                "broken link",
                f"sequence {sequence}",
                "does not follow the link before it (entries deleted, inserted or reordered)",
                sequence,
            )
        if link_version < version:
            chain.add(
                "hash version downgraded",
                f"sequence {sequence}",
                f"hash version {link_version} after version {version}",
                sequence,
            )
        version = max(version, link_version)
        if row[5] is None:
            chain.add(
                "entry missing",
                f"sequence {sequence}",
                f"audit entry {entry_id} was deleted",
                sequence,
            )
        else:
            problem = _check_link(session, row)
            if problem is not None:
                kind, detail = problem
                chain.add(kind, f"sequence {sequence}", detail, sequence)
        if sequence in wanted:
            hashes[sequence] = stored_hash
        previous = stored_hash
        expected = max(expected, sequence + 1)
        last_sequence = sequence
    return checked, last_sequence, previous


def _check_link(session: Session, row: _LinkRow) -> tuple[str, str] | None:
    """What is wrong with one link over a present entry: its content against its stored digest
    (version 2) and the link hash against the link (from the stored digest in version 2, from
    the content in version 1); None when nothing is."""
    sequence, _entry_id, link_version, prev_hash, stored_hash = row[:5]
    entry = f"audit entry {row[5]} ({row[10]} {row[11]} {row[12]})"
    stored_digest = row[16]
    try:
        if link_version == 2:
            content_digest = hashlib.sha256(_content_bytes(session, row)).hexdigest()
            if stored_digest != content_digest:
                return "entry altered", f"{entry} does not match its digest"
            if not (is_hex_digest(prev_hash) and is_hex_digest(stored_digest)):
                link = sealed_link_hash(sequence, prev_hash, stored_digest)  # raises ValueError
            else:
                link = hashlib.sha256(
                    f'{{"entry_digest":"{stored_digest}","prev_hash":"{prev_hash}",'
                    f'"sequence":{sequence},"v":2}}'.encode()
                ).hexdigest()
        else:
            link = _link_digest(link_version, sequence, prev_hash, _content_bytes(session, row))
    except (ValueError, TypeError) as err:
        return "unreadable entry", str(err)
    if link != stored_hash:
        return "entry altered", f"{entry} does not match its hash"
    return None


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
        )


def _check_rows_against_trail(session: Session, chain: _Chain) -> None:
    """Each row of billing data must be what its newest audit entry says it became; a row the
    trail does not know, or a row gone without an entry, was changed behind its back."""
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
            entity_id: _digest(after)
            for entity_id, after in session.execute(
                select(AuditEntry.entity_id, AuditEntry.after).where(AuditEntry.id.in_(newest))
            )
        }
        # Plain rows with the ORM's own column types (so the same values as row_values of an
        # entity), without building an entity per row.
        names = [attr.key for attr in mapper.column_attrs]
        columns = [attr.columns[0].label(attr.key) for attr in mapper.column_attrs]
        key_names = [mapper.get_property_by_column(c).key for c in mapper.primary_key]
        for row in session.execute(
            select(*columns).order_by(*mapper.primary_key).execution_options(yield_per=CHUNK)
        ).mappings():
            entity_id = ":".join(str(row[name]) for name in key_names)
            now = _digest(canonical_bytes({name: row[name] for name in names}).decode())
            if entity_id not in recorded:
                chain.add(
                    "row without audit entry",
                    f"{table} {entity_id}",
                    "no audit entry ever recorded this row",
                )
            elif recorded.pop(entity_id) != now:
                chain.add(
                    "row differs from its audit trail",
                    f"{table} {entity_id}",
                    "the row is not what its newest audit entry says it became",
                )
        for entity_id, after in recorded.items():
            if after is not None:
                chain.add(
                    "row deleted without audit entry",
                    f"{table} {entity_id}",
                    "the trail says the row exists, but it is gone",
                )


def _digest(text: str | None) -> bytes | None:
    return None if text is None else hashlib.sha256(text.encode()).digest()


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
        )


def _check_payments(session: Session, chain: _Chain) -> int:
    return _check_content_hashes(
        session,
        chain,
        parent=Payment,
        children=Allocation,
        owner=Allocation.payment_id,
        record=lambda p, items: content_hash("payment", payment_record(p, items)),
        finding=lambda p: (
            "payment hash mismatch",
            f"payment {p.id}",
            "its amount, state or allocations changed without an audited change",
        ),
    )


def _check_invoices(session: Session, chain: _Chain) -> int:
    return _check_content_hashes(
        session,
        chain,
        parent=Invoice,
        children=InvoiceLine,
        owner=InvoiceLine.invoice_id,
        record=lambda i, items: content_hash("invoice", invoice_record(i, items)),
        finding=lambda i: (
            "invoice hash mismatch",
            f"invoice {i.number}",
            "its total, state or lines changed without an audited change",
        ),
    )


def _check_content_hashes(
    session: Session,
    chain: _Chain,
    *,
    parent: Any,
    children: Any,
    owner: Any,
    record: Callable[[Any, list[Any]], str],
    finding: Callable[[Any], tuple[str, str, str]],
) -> int:
    """Recompute the stored content hash of every payment (with its allocations) or invoice
    (with its lines), in keyset-paged chunks."""
    count = 0
    after = 0
    # Plain rows, read by attribute name like the entities the records are built from.
    parents = _columns_of(parent)
    kids = _columns_of(children)
    while True:
        rows = session.execute(
            select(*parents).where(parent.id > after).order_by(parent.id).limit(CHUNK)
        ).all()
        if not rows:
            return count
        items: dict[int, list[Any]] = {}
        for item in session.execute(select(*kids).where(owner.in_([r.id for r in rows]))):
            items.setdefault(getattr(item, owner.key), []).append(item)
        for row in rows:
            count += 1
            if row.content_hash != record(row, items.get(row.id, [])):
                chain.add(*finding(row))
        after = rows[-1].id


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
            )
        elif claim.sequence > 0 and hashes.get(claim.sequence) != claim.head_hash:
            chain.add(
                "checkpoint contradicted",
                where,
                f"sequence {claim.sequence} has another hash than the signed one: the history "
                "up to it was rewritten (fork)",
                claim.sequence,
            )


def chain_size(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(AuditLink)) or 0
