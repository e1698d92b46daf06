"""Verifying the history: the audit chain, the integrity hashes, and signed checkpoints.

Everything is recomputed from the rows; nothing stored is taken on trust. Problems come back as a
list of typed findings, not exceptions. A chain that an administrator recomputed end to end
after a rewrite verifies link by link, which is why checkpoints matter: a signed head that the
chain no longer contains names the rewrite, the truncation or the rollback.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import exists, func, select
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
from billing_desk.domain.integrity import ZERO_HASH, content_hash, link_hash
from billing_desk.domain.roles import Permission
from billing_desk.services.audit_trail import NOT_AUDITED, entry_record, row_values, unsealed_tail
from billing_desk.services.integrity import invoice_record, payment_record
from billing_desk.services.unit_of_work import UnitOfWork, Workspace

CHUNK = 5000
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

    report = workspace.read(operation)
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


def _links(session: Session) -> Iterator[tuple[AuditLink, AuditEntry | None]]:
    """Every link in sequence order with its entry, read in keyset-paged chunks."""
    after = -1
    while True:
        rows = session.execute(
            select(AuditLink, AuditEntry)
            .outerjoin(AuditEntry, AuditEntry.id == AuditLink.entry_id)
            .where(AuditLink.sequence > after)
            .order_by(AuditLink.sequence)
            .limit(CHUNK)
        ).all()
        if not rows:
            return
        yield from ((link, entry) for link, entry in rows)
        after = rows[-1][0].sequence
        session.expunge_all()


def _walk_chain(
    session: Session, chain: _Chain, wanted: set[int], hashes: dict[int, str]
) -> tuple[int, int, str]:
    expected, previous, version, checked = 1, ZERO_HASH, 1, 0
    last_sequence = 0
    for link, entry in _links(session):
        checked += 1
        sequence = link.sequence
        if sequence > expected:
            missing = f"{expected}" if sequence == expected + 1 else f"{expected} to {sequence - 1}"
            chain.add("gap", f"sequence {missing}", "links are missing from the chain", expected)
        elif sequence < expected:
            chain.add("duplicate", f"sequence {sequence}", "sequence number repeated", sequence)
        if link.prev_hash != previous:
            chain.add(
                "broken link",
                f"sequence {sequence}",
                "does not follow the link before it (entries deleted, inserted or reordered)",
                sequence,
            )
        if link.hash_version < version:
            chain.add(
                "hash version downgraded",
                f"sequence {sequence}",
                f"hash version {link.hash_version} after version {version}",
                sequence,
            )
        version = max(version, link.hash_version)
        if entry is None:
            chain.add(
                "entry missing",
                f"sequence {sequence}",
                f"audit entry {link.entry_id} was deleted",
                sequence,
            )
        else:
            try:
                digest = link_hash(link.hash_version, sequence, link.prev_hash, entry_record(entry))
            except (ValueError, TypeError) as err:
                chain.add("unreadable entry", f"sequence {sequence}", str(err), sequence)
            else:
                if digest != link.entry_hash:
                    chain.add(
                        "entry altered",
                        f"sequence {sequence}",
                        f"audit entry {entry.id} ({entry.action} {entry.entity_type} "
                        f"{entry.entity_id}) does not match its hash",
                        sequence,
                    )
        if sequence in wanted:
            hashes[sequence] = link.entry_hash
        previous = link.entry_hash
        expected = max(expected, sequence + 1)
        last_sequence = sequence
    return checked, last_sequence, previous


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
        keys = mapper.primary_key
        for row in session.scalars(
            select(mapper).order_by(*keys).execution_options(yield_per=CHUNK)
        ):
            entity_id = ":".join(str(part) for part in mapper.primary_key_from_instance(row))
            now = _digest(canonical_bytes(row_values(row)).decode())
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
        session.expunge_all()
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
    while True:
        rows = session.scalars(
            select(parent).where(parent.id > after).order_by(parent.id).limit(CHUNK)
        ).all()
        if not rows:
            return count
        items: dict[int, list[Any]] = {}
        for item in session.scalars(select(children).where(owner.in_([r.id for r in rows]))):
            items.setdefault(getattr(item, owner.key), []).append(item)
        for row in rows:
            count += 1
            if row.content_hash != record(row, items.get(row.id, [])):
                chain.add(*finding(row))
        after = rows[-1].id
        session.expunge_all()


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
