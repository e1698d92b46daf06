"""The tamper matrix: an attacker with full write access changes the history behind the
application's back, in every way listed here, and verification detects each change and names it
by its finding kind.

One base database per backend holds demo data (thousands of audit entries), payments recorded
and voided through the services, and three checkpoints signed with a key file. Each case works on
a copy of it (a copied file, or `CREATE DATABASE ... TEMPLATE`), changes it with raw SQL
(tests/tamper.py: the append-only triggers dropped or disabled first, as the owner of the
database can), then verifies it with the signed notes, checked against the one trusted key the
way `billing-desk audit verify --checkpoint ... --trust-key ...` does.

Where the chain stands (S1 < S2 < S3 are the three checkpoints, the target entry sits between
S1 and S2, and a few entries follow S3):

    1 ... demo data ... S1 ... target ... S2 | older copy ends here | ... S3 ... head

Besides the chain, the content hashes and the notes, every row of billing data is held to the
`after` of its newest audit entry, so a tamper shows up in the rows it leaves unexplained too.
Kept apart at the end: a tail cut after the last checkpoint with the head moved back (seen only
through the rows it leaves behind), and forged entries queued for the sealer, which the two
backends treat differently.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from billing_desk.db.models import (
    Allocation,
    AuditChainHead,
    AuditEntry,
    AuditLink,
    Base,
    DatabaseIdentity,
    Facility,
    Invoice,
    InvoiceLine,
    Payment,
)
from billing_desk.domain.hashing import canonical_bytes
from billing_desk.domain.integrity import content_hash, entry_digest
from billing_desk.domain.notes import (
    NoteSignature,
    build_body,
    format_note,
    key_id,
    origin_for,
    parse_skey,
)
from billing_desk.services.audit import audit_log, database_id
from billing_desk.services.audit_trail import NOT_AUDITED
from billing_desk.services.checkpoints import (
    TrustedKey,
    check_note,
    generate_key,
    register_key,
    sign_checkpoint,
)
from billing_desk.services.demo import load_demo_data
from billing_desk.services.integrity import payment_record
from billing_desk.services.payments import PaymentDraft, change_status, record_payment
from billing_desk.services.unit_of_work import UnitOfWork, Workspace, open_workspace
from billing_desk.services.verification import (
    CheckpointClaim,
    VerificationReport,
    verify_session,
)
from tests.conftest import BACKENDS
from tests.tamper import (
    ENTRY_FIELDS,
    Dropper,
    Tamperer,
    app_url,
    copy_database,
    tampering,
)

AS_OF = date(2026, 5, 20)
RECEIVED = date(2026, 5, 19)
FACILITIES = 5
MONTHS = 3
KEY_NAME = "manager-tamper"
NOTE_FILES = ("checkpoint-1.note", "checkpoint-2.note", "checkpoint-3.note")


def _where(note_file: str) -> str:
    """How verification names a checkpoint in a finding's entity."""
    return f"checkpoint {note_file}"


# -- the base database --------------------------------------------------------------------------


@dataclass(frozen=True)
class History:
    """The base database of one backend and what the cases aim at in it."""

    backend: str
    location: str  # SQLite path or PostgreSQL database name
    older: str  # a copy taken before the last checkpoint was signed
    older_head: int
    folder: Path
    notes: tuple[str, ...]  # the three signed notes, oldest first
    checkpoints: tuple[int, ...]  # the sequences they pin: S1, S2, S3
    head: int
    head_hash: str
    last_entry: int  # the highest audit entry id
    database_id: str
    vkey: str
    key_file: Path
    target: int  # the sequence every entry tamper aims at (S1 < target < S2)
    target_entry: int  # its audit entry id: the manager voiding `voided_payment`
    payment: int  # a live payment with a live allocation
    voided_payment: int
    allocation: int
    invoice: int
    invoice_number: str
    line: int
    trip: int  # a trip billed on `invoice`
    # Each row the trail changed after S2, as ("table id", first sequence, last sequence): what a
    # cut of the tail leaves without its entries.
    recent_rows: tuple[tuple[str, int, int], ...]
    dropper: Dropper = field(compare=False, repr=False)

    @property
    def trusted(self) -> list[TrustedKey]:
        return [TrustedKey.from_vkey(self.vkey, "auditor's trusted-keys")]

    def genuine_notes(self) -> list[tuple[str, str]]:
        return list(zip(NOTE_FILES, self.notes, strict=True))

    def signer(self) -> Ed25519PrivateKey:
        seed = parse_skey(self.key_file.read_text(encoding="utf-8")).seed
        return Ed25519PrivateKey.from_private_bytes(seed)


class _Opened:
    """Workspaces opened while building, all closed before the database is copied."""

    def __init__(self, backend: str, location: str) -> None:
        self.url = app_url(backend, location)
        self.workspaces: list[Workspace] = []

    def __call__(self, user: str) -> Workspace:
        workspace = open_workspace(self.url, user, migrate=False)
        self.workspaces.append(workspace)
        return workspace

    def close(self) -> None:
        for workspace in self.workspaces:
            workspace.close()
        self.workspaces.clear()


def _open_invoices(workspace: Workspace) -> list[tuple[int, str, str]]:
    def operation(unit: UnitOfWork) -> list[tuple[int, str, str]]:
        rows = unit.session.execute(
            select(Invoice.id, Invoice.number, Facility.code)
            .join(Facility, Facility.id == Invoice.facility_id)
            .where(Invoice.status == "issued")
            .order_by(Invoice.id)
        ).all()
        return [(row[0], row[1], row[2]) for row in rows]

    return workspace.read(operation)


def _transfer(facility: str, amount: str, reference: str, invoice: str) -> PaymentDraft:
    return PaymentDraft(
        facility,
        "transfer",
        amount,
        RECEIVED,
        reference=reference,
        allocations=((invoice, amount),),
    )


def _build(backend: str, location: str, folder: Path, made: list[str], dropper: Dropper) -> History:
    opened = _Opened(backend, location)
    try:
        load_demo_data(opened("newcomer"), facilities=FACILITIES, months=MONTHS, as_of=AS_OF)
        manager, clerk = opened("manager"), opened("clerk")
        key_file = folder / f"{KEY_NAME}.key"
        vkey = generate_key(KEY_NAME, key_file=key_file).vkey
        register_key(manager, vkey)
        notes = [sign_checkpoint(manager, KEY_NAME, key_file=key_file)]

        invoices = _open_invoices(clerk)
        assert len({code for _, _, code in invoices}) >= 2, invoices
        invoice_id, number, code = invoices[0]
        _, other_number, other_code = next(i for i in invoices if i[2] != code)
        paid = record_payment(clerk, _transfer(code, "100.00", "TAMPER-1", number), "tamper-1")
        voided = record_payment(clerk, _transfer(code, "50.00", "TAMPER-2", number), "tamper-2")
        change_status(manager, voided.payment_id, "voided", "entered twice", "tamper-void-2")
        notes.append(sign_checkpoint(manager, KEY_NAME, key_file=key_file))

        opened.close()  # nobody may be connected to a PostgreSQL template
        older = copy_database(backend, location, folder)
        made.append(older)
        manager, clerk = opened("manager"), opened("clerk")
        draft = _transfer(other_code, "75.00", "TAMPER-3", other_number)
        record_payment(clerk, draft, "tamper-3")
        notes.append(sign_checkpoint(manager, KEY_NAME, key_file=key_file))
        draft = _transfer(other_code, "25.00", "TAMPER-4", other_number)
        fourth = record_payment(clerk, draft, "tamper-4")  # the tail after the last checkpoint
        clerk.seal()

        def facts(unit: UnitOfWork) -> dict[str, Any]:
            session = unit.session
            head = session.get_one(AuditChainHead, 1)
            target_entry = session.scalar(
                select(func.min(AuditEntry.id)).where(
                    AuditEntry.action == "payment.transition",
                    AuditEntry.entity_type == "payment",
                    AuditEntry.entity_id == str(voided.payment_id),
                    AuditEntry.before.is_not(None),
                )
            )
            # Neither payment's newest entry is the target: the void wrote more entries for the
            # voided payment after it, and the live payment was recorded before it.
            newest = {
                payment_id: session.scalar(
                    select(func.max(AuditEntry.id)).where(
                        AuditEntry.entity_type == "payment",
                        AuditEntry.entity_id == str(payment_id),
                    )
                )
                or 0
                for payment_id in (paid.payment_id, voided.payment_id)
            }
            assert target_entry is not None
            assert newest[paid.payment_id] < target_entry < newest[voided.payment_id], newest
            return {
                "head": head.last_sequence,
                "head_hash": head.last_hash,
                "last_entry": session.scalar(select(func.max(AuditEntry.id))),
                "database_id": session.scalar(select(DatabaseIdentity.database_id)),
                "target_entry": target_entry,
                "target": session.scalar(
                    select(AuditLink.sequence).where(AuditLink.entry_id == target_entry)
                ),
                "allocation": session.scalar(
                    select(Allocation.id).where(Allocation.payment_id == paid.payment_id)
                ),
                "line": session.scalar(
                    select(func.min(InvoiceLine.id)).where(InvoiceLine.invoice_id == invoice_id)
                ),
                "trip": session.scalar(
                    select(InvoiceLine.trip_id)
                    .where(InvoiceLine.invoice_id == invoice_id, InvoiceLine.released.is_(False))
                    .order_by(InvoiceLine.id)
                    .limit(1)
                ),
                "recent_rows": _rows_changed_after(session, notes[1].sequence),
            }

        found = clerk.read(facts)
    finally:
        opened.close()
    older_head = _head_of(backend, older)
    history = History(
        backend=backend,
        location=location,
        older=older,
        older_head=older_head,
        folder=folder,
        notes=tuple(n.note_text for n in notes),
        checkpoints=tuple(n.sequence for n in notes),
        vkey=vkey,
        key_file=key_file,
        payment=paid.payment_id,
        voided_payment=voided.payment_id,
        invoice=invoice_id,
        invoice_number=number,
        dropper=dropper,
        **found,
    )
    s1, s2, s3 = history.checkpoints
    assert s1 < history.target < s2 < history.older_head < s3 < history.head, history
    assert f"payment {fourth.payment_id}" in {
        r for r, first, _ in history.recent_rows if first > s3
    }
    assert history.head >= 1000, "the matrix runs on thousands of entries"
    return history


def _rows_changed_after(session: Session, sequence: int) -> tuple[tuple[str, int, int], ...]:
    audited = [name for name in Base.metadata.tables if name not in NOT_AUDITED]
    rows = session.execute(
        select(
            AuditEntry.entity_type,
            AuditEntry.entity_id,
            func.min(AuditLink.sequence),
            func.max(AuditLink.sequence),
        )
        .join(AuditLink, AuditLink.entry_id == AuditEntry.id)
        .where(AuditEntry.entity_type.in_(audited))
        .group_by(AuditEntry.entity_type, AuditEntry.entity_id)
        .having(func.max(AuditLink.sequence) > sequence)
        .order_by(func.max(AuditLink.sequence))
    ).all()
    return tuple((f"{table} {key}", first, last) for table, key, first, last in rows)


def _head_of(backend: str, location: str) -> int:
    workspace = open_workspace(app_url(backend, location), "auditor", migrate=False)
    try:
        return workspace.read(lambda unit: unit.session.get_one(AuditChainHead, 1).last_sequence)
    finally:
        workspace.close()


@pytest.fixture(scope="module", params=BACKENDS)
def history(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[History]:
    """The base database of one backend, built once."""
    backend: str = request.param
    folder = tmp_path_factory.mktemp(f"tamper-{backend}")
    template = (
        str(request.getfixturevalue("sqlite_template"))
        if backend == "sqlite"
        else request.getfixturevalue("pg_template")
    )
    dropper = Dropper(backend)
    made: list[str] = []
    try:
        made.append(copy_database(backend, template, folder))
        yield _build(backend, made[0], folder, made, dropper)
    finally:
        dropper.drop(made)
        dropper.close()


@pytest.fixture
def copy_of(history: History) -> Iterator[Callable[[str], str]]:
    """Make a copy of the base, or of the older copy: a file, or CREATE DATABASE ... TEMPLATE.
    Copies are dropped in the background once the test is over."""
    made: list[str] = []

    def make(source: str = "base") -> str:
        location = copy_database(
            history.backend,
            history.location if source == "base" else history.older,
            history.folder,
        )
        made.append(location)
        return location

    yield make
    history.dropper.drop(made)


def verify_copy(
    history: History, location: str, notes: list[tuple[str, str]] | None = None
) -> VerificationReport:
    """What an auditor runs: the database's own id, the notes checked against the one trusted
    key, then the whole history recomputed and held to them. Like `verify()`, it allows no
    unsealed tail on a live SQLite database (each copy is one), which seals as it writes."""
    workspace = open_workspace(app_url(history.backend, location), "auditor", migrate=False)
    tail_allowed = not (workspace.location.is_sqlite and not workspace.read_only)
    try:
        identity = database_id(workspace)
        claims = []
        for source, text in history.genuine_notes() if notes is None else notes:
            checked = check_note(text, history.trusted, database_id=identity)
            claims.append(
                CheckpointClaim(
                    source, checked.sequence, checked.head_hash, tuple(checked.problems)
                )
            )
        return workspace.read(
            lambda unit: verify_session(unit.session, claims, tail_allowed=tail_allowed)
        )
    finally:
        workspace.close()


# -- the clean copy -----------------------------------------------------------------------------


def test_the_untouched_copy_verifies_clean_with_every_note(
    history: History, copy_of: Callable[[str], str]
) -> None:
    report = verify_copy(history, copy_of("base"))
    assert report.findings == ()
    assert report.ok
    assert report.first_broken_sequence is None
    assert report.entries_checked == report.head_sequence == history.head
    assert report.checkpoints_checked == 3
    assert report.unsealed.count == 0
    assert report.payments_checked > 0 and report.invoices_checked > 0


def test_the_older_copy_alone_is_clean_up_to_its_own_notes(
    history: History, copy_of: Callable[[str], str]
) -> None:
    """The rollback case below is caught by the newer note alone, not by anything else."""
    report = verify_copy(history, copy_of("older"), history.genuine_notes()[:2])
    assert report.ok, report.findings


# -- the matrix -------------------------------------------------------------------------------

Tamper = Callable[[Tamperer, History], None]
Expected = Callable[[History], set[tuple[str, str]]]


@dataclass(frozen=True)
class Case:
    name: str
    tamper: Tamper | None
    kinds: frozenset[str]
    first_broken: Callable[[History], int | None]
    findings: Expected  # the (kind, entity) pairs reported, and nothing else
    notes: Callable[[History], list[tuple[str, str]]] | None = None  # default: the genuine ones
    source: str = "base"


def _seq(sequence: int) -> str:
    return f"sequence {sequence}"


def _edit_entry_field(name: str) -> Tamper:
    def tamper(t: Tamperer, h: History) -> None:
        t.unlock()
        entry = t.entry_at(h.target)
        old = getattr(entry, name)
        new = _altered(name, old, h)
        assert new != old
        t.set_entry(entry.id, {name: new})

    return tamper


def _altered(name: str, value: object, h: History) -> object:
    """A plausible new value for one hashed field of the target entry (a manager's void)."""
    if name == "recorded_at":
        assert isinstance(value, datetime)
        return value - timedelta(days=1)  # backdated
    if name == "user_name":
        return "clerk"  # someone else did it
    if name == "user_role":
        return "clerk"
    if name == "facility_id":
        assert isinstance(value, int)
        return value % FACILITIES + 1  # another facility's
    if name == "action":
        return "payment.record"
    if name == "entity_type":
        return "refund"
    if name == "entity_id":
        return str(h.payment)  # another payment
    if name in ("before", "after"):
        assert isinstance(value, str)
        row = json.loads(value)
        row["amount_minor"] += 10_000 if name == "before" else -10_000
        return canonical_bytes(row).decode()  # still canonical JSON, only the amount changed
    if name == "request_id":
        return str(uuid.uuid4())
    raise AssertionError(name)


def _swap_with_previous(t: Tamperer, h: History) -> None:
    t.unlock()
    first, second = t.entry_at(h.target - 1), t.entry_at(h.target)
    first_record, second_record = t.record_at(h.target - 1), t.record_at(h.target)
    assert first_record != second_record
    t.set_entry(first.id, second_record)
    t.set_entry(second.id, first_record)


def _edit_digest(t: Tamperer, h: History) -> None:
    """The stored digest of a sealed entry changed (its content left alone)."""
    t.unlock()
    entry = t.entry_at(h.target)
    assert entry.entry_digest is not None
    t.set_entry(entry.id, {"entry_digest": entry_digest({"forged": entry.entry_digest})})


def _edit_entry_with_matching_digest(t: Tamperer, h: History) -> None:
    """An entry edited and its digest recomputed to match, the links left as they were."""
    t.unlock()
    entry = t.entry_at(h.target)
    t.set_entry(entry.id, {"user_name": "clerk", "request_id": str(uuid.uuid4())})
    t.set_digest(entry.id)


def _delete_entry_and_link(t: Tamperer, h: History) -> None:
    t.unlock()
    t.sql("DELETE FROM audit_link WHERE sequence = :s", s=h.target)
    t.sql("DELETE FROM audit_entry WHERE id = :id", id=h.target_entry)


def _delete_link_only(t: Tamperer, h: History) -> None:
    t.unlock()
    t.sql("DELETE FROM audit_link WHERE sequence = :s", s=h.target)


def _delete_entry_only(t: Tamperer, h: History) -> None:
    t.unlock()
    t.sql("DELETE FROM audit_entry WHERE id = :id", id=h.target_entry)


def _forged_record(t: Tamperer, h: History) -> dict[str, object]:
    """An entry saying the manager voided the live payment too, in the target's words."""
    record = t.record_at(h.target)
    record["entity_id"] = str(h.payment)
    record["request_id"] = str(uuid.uuid4())
    return record


def _insert_forged_in_the_middle(t: Tamperer, h: History) -> None:
    t.unlock()
    forged = t.insert_entry(_forged_record(t, h))
    t.shift_links(h.target)
    t.insert_link(h.target, forged, sealed_at=datetime.now(UTC))
    t.head_to_last_link()


def _append_forged_outside_the_chain(t: Tamperer, h: History) -> None:
    t.insert_entry(_forged_record(t, h))  # INSERT is not even blocked by the triggers


def _lower_hash_version(t: Tamperer, h: History) -> None:
    t.unlock()
    t.allow_any_hash_version()
    t.sql("UPDATE audit_link SET hash_version = 0 WHERE sequence = :s", s=h.target)


def _delete_head(t: Tamperer, h: History) -> None:
    t.sql("DELETE FROM audit_chain_head")


def _cut_before_last_checkpoint(h: History) -> int:
    return (h.checkpoints[1] + h.checkpoints[2]) // 2


def _truncate_before_last_checkpoint(t: Tamperer, h: History) -> None:
    t.unlock()
    t.cut_tail(_cut_before_last_checkpoint(h))
    t.head_to_last_link()  # the head agrees: only the checkpoint knows


def _truncate_after_last_checkpoint(t: Tamperer, h: History) -> None:
    t.unlock()
    t.cut_tail(h.checkpoints[2])  # the head row is left alone


def _rewrite_from(sequence: Callable[[History], int]) -> Tamper:
    """The administrator's rewrite: change an entry, then recompute every link after it and
    the head, so the chain verifies link by link."""

    def tamper(t: Tamperer, h: History) -> None:
        t.unlock()
        start = sequence(h)
        entry = t.entry_at(start)
        t.set_entry(entry.id, {"user_name": "mallory", "request_id": str(uuid.uuid4())})
        t.rechain(start)

    return tamper


def _sql(statement: str, **params: Callable[[History], object]) -> Tamper:
    def tamper(t: Tamperer, h: History) -> None:
        t.sql(statement, **{name: value(h) for name, value in params.items()})

    return tamper


def _forged_note(h: History) -> list[tuple[str, str]]:
    """A note for the real head, signed by a key the attacker made under the trusted key's
    name (and could register in the database): a different key id, so not trusted."""
    attacker = Ed25519PrivateKey.generate()
    body = build_body(origin_for(h.database_id), h.head, h.head_hash)
    return [*h.genuine_notes(), ("forged.note", _sign(body, KEY_NAME, attacker))]


def _altered_signature(h: History) -> list[tuple[str, str]]:
    text = h.notes[2]
    body, signature_line = text.rstrip("\n").rsplit("\n", 1)
    prefix, encoded = signature_line.rsplit(" ", 1)
    raw = bytearray(base64.b64decode(encoded))
    raw[-1] ^= 0x01
    damaged = f"{body}\n{prefix} {base64.b64encode(bytes(raw)).decode()}\n"
    return [*h.genuine_notes()[:2], (NOTE_FILES[2], damaged)]


def _other_database_note(h: History) -> list[tuple[str, str]]:
    """The trusted key's genuine signature on a note for another database, pinning this
    database's very head."""
    body = build_body(origin_for(str(uuid.uuid4())), h.head, h.head_hash)
    return [*h.genuine_notes(), ("other-database.note", _sign(body, KEY_NAME, h.signer()))]


def _sign(body: str, name: str, private: Ed25519PrivateKey) -> str:
    public = private.public_key().public_bytes_raw()
    signature = NoteSignature(name, key_id(name, public), private.sign(body.encode("utf-8")))
    return format_note(body, [signature])


def _restamped_payment(t: Tamperer, h: History) -> None:
    """Edit the amount and store the hash the spec says it should have: the content hash is a
    plain SHA-256 anyone can recompute (docs/integrity.md, section 3)."""
    payment = t.session.get_one(Payment, h.payment)
    allocations = t.session.scalars(select(Allocation).where(Allocation.payment_id == h.payment))
    record = payment_record(payment, allocations)
    record["amount_minor"] = int(payment.amount_minor) + 10_000
    t.sql(
        "UPDATE payment SET amount_minor = :amount, content_hash = :digest WHERE id = :id",
        amount=record["amount_minor"],
        digest=content_hash("payment", record),
        id=h.payment,
    )


def _billed_trip_fare(t: Tamperer, h: History) -> None:
    t.unfreeze_trips()
    t.sql("UPDATE trip SET fare_minor = fare_minor + 10000 WHERE id = :id", id=h.trip)


def _queue_forged_entry(t: Tamperer, h: History) -> None:
    """A forged entry queued for the sealer: no trigger stops INSERTs into the audit tables."""
    record = _forged_record(t, h)
    record["recorded_at"] = datetime.now(UTC)
    entry_id = t.insert_entry(record)
    t.sql("INSERT INTO audit_pending (entry_id) VALUES (:id)", id=entry_id)


def _no_sequence(h: History) -> None:
    return None


def _cp(index: int) -> tuple[str, str]:
    return ("checkpoint contradicted", _where(NOTE_FILES[index]))


def _not_trusted(source: str) -> tuple[str, str]:
    return ("checkpoint not trusted", _where(source))


def _differs(row: str) -> tuple[str, str]:
    return ("row differs from its audit trail", row)


def _rows_left_by_cut(h: History, keep_through: int) -> set[tuple[str, str]]:
    """The rows a cut of the tail after `keep_through` leaves unexplained: a row first written
    after the cut has no entry left at all; a row written before it and changed after it is
    still what the cut entries made it, not what the newest entry left says."""
    return {
        ("row without audit entry", row) if first > keep_through else _differs(row)
        for row, first, last in h.recent_rows
        if last > keep_through
    }


CASES = [
    *(
        Case(
            f"entry {name} edited",
            _edit_entry_field(name),
            frozenset({"entry altered"}),
            lambda h: h.target,
            lambda h: {("entry altered", _seq(h.target))},
        )
        for name in ENTRY_FIELDS
        if name not in ("entity_type", "entity_id")
    ),
    # An entry moved to another row changes which entry is that row's newest. The voided
    # payment keeps its own trail: the void wrote newer entries for it than the target.
    Case(
        "entry entity_type edited",
        _edit_entry_field("entity_type"),
        frozenset({"entry altered", "row deleted without audit entry"}),
        lambda h: h.target,
        lambda h: {
            ("entry altered", _seq(h.target)),
            # the trail now says a refund with the payment's id was written; none exists
            ("row deleted without audit entry", f"refund {h.voided_payment}"),
        },
    ),
    Case(
        "entry entity_id edited",
        _edit_entry_field("entity_id"),
        frozenset({"entry altered", "row differs from its audit trail"}),
        lambda h: h.target,
        lambda h: {
            ("entry altered", _seq(h.target)),
            # now the live payment's newest entry, saying it became the voided payment
            _differs(f"payment {h.payment}"),
        },
    ),
    Case(
        "two entries swapped",
        _swap_with_previous,
        frozenset({"entry altered"}),
        lambda h: h.target - 1,
        lambda h: {("entry altered", _seq(h.target - 1)), ("entry altered", _seq(h.target))},
    ),
    Case(
        "entry digest of a sealed entry edited",
        _edit_digest,
        frozenset({"entry altered"}),
        lambda h: h.target,
        lambda h: {("entry altered", _seq(h.target))},
    ),
    Case(
        "entry edited with its digest forged to match, link left alone",
        _edit_entry_with_matching_digest,
        frozenset({"entry altered"}),
        lambda h: h.target,
        lambda h: {("entry altered", _seq(h.target))},
    ),
    Case(
        "middle entry deleted with its link",
        _delete_entry_and_link,
        frozenset({"gap", "broken link"}),
        lambda h: h.target,
        lambda h: {("gap", _seq(h.target)), ("broken link", _seq(h.target + 1))},
    ),
    Case(
        "middle link deleted, entry kept",
        _delete_link_only,
        frozenset({"gap", "broken link", "entry outside the chain"}),
        lambda h: h.target,
        lambda h: {
            ("gap", _seq(h.target)),
            ("broken link", _seq(h.target + 1)),
            ("entry outside the chain", f"audit entry {h.target_entry}"),
        },
    ),
    Case(
        "middle entry deleted, link kept",
        _delete_entry_only,
        frozenset({"entry missing"}),
        lambda h: h.target,
        lambda h: {("entry missing", _seq(h.target))},
    ),
    Case(
        "forged entry inserted in the middle, links renumbered",
        _insert_forged_in_the_middle,
        frozenset(
            {
                "broken link",
                "entry altered",
                "row differs from its audit trail",
                "checkpoint contradicted",
            }
        ),
        lambda h: h.target + 1,
        lambda h: {
            ("broken link", _seq(h.target + 1)),
            # every renumbered link, from the displaced target to the old head
            *(("entry altered", _seq(s)) for s in range(h.target + 1, h.head + 2)),
            # the forged entry is the live payment's newest and says it was voided
            _differs(f"payment {h.payment}"),
            _cp(1),
            _cp(2),
        },
    ),
    Case(
        "forged entry appended outside the chain",
        _append_forged_outside_the_chain,
        frozenset({"entry outside the chain", "row differs from its audit trail"}),
        _no_sequence,
        lambda h: {
            ("entry outside the chain", f"audit entry {h.last_entry + 1}"),
            # stored, if unsealed, it is the live payment's newest entry: it says voided
            _differs(f"payment {h.payment}"),
        },
    ),
    Case(
        "hash version lowered",
        _lower_hash_version,
        frozenset({"hash version downgraded", "unreadable entry"}),
        lambda h: h.target,
        lambda h: {
            ("hash version downgraded", _seq(h.target)),
            ("unreadable entry", _seq(h.target)),
        },
    ),
    Case(
        "chain head row deleted",
        _delete_head,
        frozenset({"head missing"}),
        _no_sequence,
        lambda h: {("head missing", "audit chain head")},
    ),
    Case(
        "tail truncated before the last checkpoint, head adjusted",
        _truncate_before_last_checkpoint,
        frozenset(
            {
                "chain behind checkpoint",
                "row without audit entry",
                "row differs from its audit trail",
            }
        ),
        lambda h: _cut_before_last_checkpoint(h) + 1,
        lambda h: {
            ("chain behind checkpoint", _where(NOTE_FILES[2])),
            # the cut runs through the third payment's transaction: its later entries are gone
            *_rows_left_by_cut(h, _cut_before_last_checkpoint(h)),
        },
    ),
    Case(
        "tail truncated after the last checkpoint, head left alone",
        _truncate_after_last_checkpoint,
        frozenset({"head mismatch", "row without audit entry"}),
        lambda h: h.checkpoints[2] + 1,
        lambda h: {
            ("head mismatch", "audit chain head"),
            # the last payment and the last checkpoint's row, written after it
            *_rows_left_by_cut(h, h.checkpoints[2]),
        },
    ),
    Case(
        "administrator's consistent rewrite between checkpoints",
        _rewrite_from(lambda h: h.target),
        frozenset({"checkpoint contradicted"}),
        lambda h: h.checkpoints[1],
        lambda h: {_cp(1), _cp(2)},
    ),
    Case(
        "administrator's consistent rewrite of the whole chain",
        _rewrite_from(lambda h: 1),
        frozenset({"checkpoint contradicted"}),
        lambda h: h.checkpoints[0],
        lambda h: {_cp(0), _cp(1), _cp(2)},
    ),
    Case(
        "older copy restored",
        None,
        frozenset({"chain behind checkpoint"}),
        lambda h: h.older_head + 1,
        lambda h: {("chain behind checkpoint", _where(NOTE_FILES[2]))},
        source="older",
    ),
    Case(
        "payment amount edited",
        _sql(
            "UPDATE payment SET amount_minor = amount_minor + 10000 WHERE id = :id",
            id=lambda h: h.payment,
        ),
        frozenset({"payment hash mismatch", "row differs from its audit trail"}),
        _no_sequence,
        lambda h: {
            ("payment hash mismatch", f"payment {h.payment}"),
            _differs(f"payment {h.payment}"),
        },
    ),
    Case(
        "payment amount edited, content hash restamped",
        _restamped_payment,
        frozenset({"row differs from its audit trail"}),
        _no_sequence,
        lambda h: {_differs(f"payment {h.payment}")},
    ),
    Case(
        "voided payment revived",
        _sql(
            "UPDATE payment SET status = 'recorded' WHERE id = :id", id=lambda h: h.voided_payment
        ),
        frozenset({"payment hash mismatch", "row differs from its audit trail"}),
        _no_sequence,
        lambda h: {
            ("payment hash mismatch", f"payment {h.voided_payment}"),
            _differs(f"payment {h.voided_payment}"),
        },
    ),
    Case(
        "allocation amount edited",
        _sql(
            "UPDATE allocation SET amount_minor = amount_minor + 5000 WHERE id = :id",
            id=lambda h: h.allocation,
        ),
        frozenset({"payment hash mismatch", "row differs from its audit trail"}),
        _no_sequence,
        lambda h: {
            ("payment hash mismatch", f"payment {h.payment}"),
            _differs(f"allocation {h.allocation}"),
        },
    ),
    Case(
        "allocation released flag flipped",
        _sql(
            "UPDATE allocation SET released = NOT released WHERE id = :id",
            id=lambda h: h.allocation,
        ),
        frozenset({"payment hash mismatch", "row differs from its audit trail"}),
        _no_sequence,
        lambda h: {
            ("payment hash mismatch", f"payment {h.payment}"),
            _differs(f"allocation {h.allocation}"),
        },
    ),
    Case(
        "invoice total edited",
        _sql(
            "UPDATE invoice SET total_minor = total_minor - 10000 WHERE id = :id",
            id=lambda h: h.invoice,
        ),
        frozenset({"invoice hash mismatch", "row differs from its audit trail"}),
        _no_sequence,
        lambda h: {
            ("invoice hash mismatch", f"invoice {h.invoice_number}"),
            _differs(f"invoice {h.invoice}"),
        },
    ),
    Case(
        "invoice line amount edited",
        _sql(
            "UPDATE invoice_line SET amount_minor = amount_minor - 1000 WHERE id = :id",
            id=lambda h: h.line,
        ),
        frozenset({"invoice hash mismatch", "row differs from its audit trail"}),
        _no_sequence,
        lambda h: {
            ("invoice hash mismatch", f"invoice {h.invoice_number}"),
            _differs(f"invoice_line {h.line}"),
        },
    ),
    Case(
        "billed trip's fare edited",
        _billed_trip_fare,
        frozenset({"row differs from its audit trail"}),
        _no_sequence,
        lambda h: {_differs(f"trip {h.trip}")},
    ),
    Case(
        "database identity replaced",
        _sql(
            "UPDATE database_identity SET database_id = :other", other=lambda h: str(uuid.uuid4())
        ),
        frozenset({"checkpoint not trusted"}),
        _no_sequence,
        lambda h: {_not_trusted(name) for name in NOTE_FILES},
    ),
    Case(
        "checkpoint signed by an untrusted key",
        None,
        frozenset({"checkpoint not trusted"}),
        _no_sequence,
        lambda h: {_not_trusted("forged.note")},
        notes=_forged_note,
    ),
    Case(
        "checkpoint signature altered",
        None,
        frozenset({"checkpoint not trusted"}),
        _no_sequence,
        lambda h: {_not_trusted(NOTE_FILES[2])},
        notes=_altered_signature,
    ),
    Case(
        "checkpoint for another database",
        None,
        frozenset({"checkpoint not trusted"}),
        _no_sequence,
        lambda h: {_not_trusted("other-database.note")},
        notes=_other_database_note,
    ),
]


def _apply(history: History, location: str, tamper: Tamper | None) -> None:
    if tamper is not None:
        with tampering(history.backend, location) as tamperer:
            tamper(tamperer, history)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_tampering_is_detected_and_named(
    case: Case, history: History, copy_of: Callable[[str], str]
) -> None:
    location = copy_of(case.source)
    _apply(history, location, case.tamper)
    notes = case.notes(history) if case.notes is not None else None
    report = verify_copy(history, location, notes)

    assert not report.ok
    assert {f.kind for f in report.findings} == case.kinds, report.findings
    assert {(f.kind, f.entity) for f in report.findings} == case.findings(history), report.findings
    assert report.first_broken_sequence == case.first_broken(history)


# -- cuts and forged entries the chain alone does not show -----------------------------------------


def test_a_tail_cut_after_the_last_checkpoint_with_the_head_adjusted_is_seen_in_the_rows(
    history: History, copy_of: Callable[[str], str]
) -> None:
    """Cut the entries after the newest checkpoint and move the head row back to match: the
    chain that is left is consistent, the head agrees with it, and every note still holds (none
    pins anything after it). The rows give it away: the last payment and the last checkpoint's
    row are still there, and no entry is left that ever recorded them.

    What still goes unseen is a cut that rewinds the rows with it: an older copy of the whole
    database restored. Its chain, head and rows agree; only a note signed after the copy was
    taken shows it (the "older copy restored" case), which is why checkpoints should be signed
    often."""
    location = copy_of("base")

    def tamper(t: Tamperer, h: History) -> None:
        _truncate_after_last_checkpoint(t, h)
        t.head_to_last_link()

    _apply(history, location, tamper)
    report = verify_copy(history, location)
    assert not report.ok
    assert {f.kind for f in report.findings} == {"row without audit entry"}, report.findings
    expected = _rows_left_by_cut(history, history.checkpoints[2])
    assert {(f.kind, f.entity) for f in report.findings} == expected, report.findings
    assert report.first_broken_sequence is None  # the chain itself is consistent
    assert report.head_sequence == history.checkpoints[2] < history.head


def _next_write(history: History, location: str) -> None:
    """An ordinary audited write after the tamper: an auditor reads the log. On PostgreSQL it
    seals every committed entry after it commits; on SQLite it seals only its own entry."""
    workspace = open_workspace(app_url(history.backend, location), "auditor", migrate=False)
    try:
        audit_log(workspace, limit=1)
    finally:
        workspace.close()


def test_a_forged_entry_queued_for_sealing_is_caught_by_the_row_it_describes(
    history: History, copy_of: Callable[[str], str]
) -> None:
    """A forged entry (the live payment voided, in the target's words) queued for the sealer,
    then the next write. On PostgreSQL the sealer takes it into the chain like any committed
    entry, and only the row it describes contradicts it. On SQLite the writer seals only its
    own entries, so the forged one stays queued, which no entry of a live SQLite database ever
    is, and it is named as outside the chain as well."""
    location = copy_of("base")
    _apply(history, location, _queue_forged_entry)
    _next_write(history, location)
    report = verify_copy(history, location)

    expected = {_differs(f"payment {history.payment}")}
    if history.backend == "sqlite":
        expected.add(("entry outside the chain", f"audit entry {history.last_entry + 1}"))
        assert report.unsealed.count == 1
    else:
        assert report.unsealed.count == 0
    assert not report.ok
    assert {(f.kind, f.entity) for f in report.findings} == expected, report.findings
    assert report.first_broken_sequence is None


def test_a_forged_event_entry_queued_for_sealing(
    history: History, copy_of: Callable[[str], str]
) -> None:
    """A forged event entry, one that describes no row, queued for the sealer, then the next
    write. On SQLite it stays queued and is named as outside the chain. On PostgreSQL the
    sealer takes it into the chain, and nothing tells it from a genuine event: the documented
    limit of docs/integrity.md section 6 (the application's roles must be able to append)."""
    location = copy_of("base")

    def tamper(t: Tamperer, h: History) -> None:
        record = _forged_record(t, h)
        record.update(
            recorded_at=datetime.now(UTC),
            action="audit.export",
            entity_type="archive",
            entity_id="archive-forged.sqlite3",
            before=None,
            after=canonical_bytes({"rows": 0}).decode(),
        )
        t.sql("INSERT INTO audit_pending (entry_id) VALUES (:id)", id=t.insert_entry(record))

    _apply(history, location, tamper)
    _next_write(history, location)
    report = verify_copy(history, location)

    if history.backend == "sqlite":
        forged = ("entry outside the chain", f"audit entry {history.last_entry + 1}")
        assert {(f.kind, f.entity) for f in report.findings} == {forged}, report.findings
        assert report.first_broken_sequence is None
        assert report.unsealed.count == 1
    else:
        assert report.ok, report.findings
        assert report.unsealed.count == 0
        assert report.entries_checked == history.head + 2  # the forged entry and the log read


def test_the_matrix_has_a_case_for_every_hashed_entry_field() -> None:
    from billing_desk.services.audit_trail import entry_record

    assert set(entry_record(AuditEntry(**dict.fromkeys(ENTRY_FIELDS)))) == set(ENTRY_FIELDS)
