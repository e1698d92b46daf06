"""The billing database: facilities, clients, trips, invoices and users, as typed SQLAlchemy models.

Money columns hold integer minor units beside a currency code. Unique indexes on tenant tables
start with the facility, so a duplicate-key error can never speak of another facility's rows.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on both backends (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[type, object]] = {
        datetime: UtcDateTime(),
        date: Date(),
        int: Integer(),
        str: Text(),
    }


class User(Base):
    __tablename__ = "app_user"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]
    created_by: Mapped[str | None] = mapped_column(String(63))

    __table_args__ = (
        CheckConstraint("role IN ('clerk', 'manager', 'auditor', 'admin')", name="role"),
    )


class Facility(Base):
    __tablename__ = "facility"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)
    name: Mapped[str]
    billing_contact_name: Mapped[str | None]
    billing_contact_email: Mapped[str | None]
    billing_address: Mapped[str | None]
    currency: Mapped[str] = mapped_column(String(3))
    payment_terms_days: Mapped[int]
    created_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint("payment_terms_days >= 0", name="payment_terms"),
        CheckConstraint("length(currency) = 3", name="currency"),
    )


class Client(Base):
    """A rider the facility books trips for: a name only, nothing medical."""

    __tablename__ = "client"

    id: Mapped[int] = mapped_column(primary_key=True)
    facility_id: Mapped[int] = mapped_column(ForeignKey("facility.id"))
    name: Mapped[str]
    external_ref: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (UniqueConstraint("facility_id", "external_ref"),)


class Trip(Base):
    __tablename__ = "trip"

    id: Mapped[int] = mapped_column(primary_key=True)
    facility_id: Mapped[int] = mapped_column(ForeignKey("facility.id"))
    client_id: Mapped[int] = mapped_column(ForeignKey("client.id"))
    external_trip_id: Mapped[str] = mapped_column(String(64))
    service_date: Mapped[date]
    pickup: Mapped[str]
    dropoff: Mapped[str]
    status: Mapped[str] = mapped_column(String(16))
    fare_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    billable: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    client: Mapped[Client] = relationship(lazy="raise")

    __table_args__ = (
        UniqueConstraint("facility_id", "external_trip_id"),
        Index("ix_trip_facility_id_service_date", "facility_id", "service_date"),
        CheckConstraint("fare_minor >= 0", name="fare_not_negative"),
        CheckConstraint("status IN ('completed', 'cancelled', 'no-show')", name="status"),
    )


class InvoiceCounter(Base):
    """The last invoice number given per facility; taken inside the billing transaction, so a
    rolled-back run leaves no gap."""

    __tablename__ = "invoice_counter"

    facility_id: Mapped[int] = mapped_column(ForeignKey("facility.id"), primary_key=True)
    last_number: Mapped[int]


class Invoice(Base):
    __tablename__ = "invoice"

    id: Mapped[int] = mapped_column(primary_key=True)
    facility_id: Mapped[int] = mapped_column(ForeignKey("facility.id"))
    number: Mapped[str] = mapped_column(String(32))
    sequence: Mapped[int]
    period_start: Mapped[date]
    period_end: Mapped[date]
    issue_date: Mapped[date]
    due_date: Mapped[date]
    status: Mapped[str] = mapped_column(String(16))
    currency: Mapped[str] = mapped_column(String(3))
    total_minor: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(63))
    void_reason: Mapped[str | None]
    voided_by: Mapped[str | None] = mapped_column(String(63))
    voided_at: Mapped[datetime | None]
    # SHA-256 of the invoice with its lines (services.integrity), set whenever it changes.
    content_hash: Mapped[str | None] = mapped_column(String(64))

    lines: Mapped[list[InvoiceLine]] = relationship(
        back_populates="invoice", order_by="InvoiceLine.line_no", lazy="raise"
    )

    __table_args__ = (
        UniqueConstraint("facility_id", "number"),
        UniqueConstraint("facility_id", "sequence"),
        Index("ix_invoice_number", "number"),
        CheckConstraint("total_minor >= 0", name="total_not_negative"),
        CheckConstraint(
            "status IN ('draft', 'issued', 'partially paid', 'paid', 'void')", name="status"
        ),
    )


class InvoiceLine(Base):
    """One billed trip. `released` turns true only when the invoice is voided, which frees the
    trip for a new invoice; nothing else about a line ever changes."""

    __tablename__ = "invoice_line"

    id: Mapped[int] = mapped_column(primary_key=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoice.id"))
    facility_id: Mapped[int] = mapped_column(ForeignKey("facility.id"))
    trip_id: Mapped[int] = mapped_column(ForeignKey("trip.id"))
    line_no: Mapped[int]
    service_date: Mapped[date]
    description: Mapped[str]
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    released: Mapped[bool] = mapped_column(Boolean, default=False)

    invoice: Mapped[Invoice] = relationship(back_populates="lines", lazy="raise")

    __table_args__ = (
        # Promise 1: a trip is on at most one invoice that has not been voided.
        Index(
            "uq_invoice_line_trip_billed",
            "facility_id",
            "trip_id",
            unique=True,
            sqlite_where=text("NOT released"),
            postgresql_where=text("NOT released"),
        ),
        UniqueConstraint("invoice_id", "line_no"),
        Index("ix_invoice_line_trip_id", "trip_id"),
    )


class InvoiceStatusChange(Base):
    """One row per invoice status transition: who moved it, when and why."""

    __tablename__ = "invoice_status_change"

    id: Mapped[int] = mapped_column(primary_key=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoice.id"))
    facility_id: Mapped[int] = mapped_column(ForeignKey("facility.id"))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    changed_at: Mapped[datetime]
    changed_by: Mapped[str] = mapped_column(String(63))
    reason: Mapped[str | None]

    __table_args__ = (Index("ix_invoice_status_change_invoice_id", "invoice_id"),)


class DatabaseSecret(Base):
    """Keys made for this database alone, kept apart from the rows they protect (the account-number
    hash key). Never exported with billing data."""

    __tablename__ = "database_secret"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str]
    created_at: Mapped[datetime]


class Payment(Base):
    """Money a facility sent. The amount never changes; what happens to it is its status history,
    and where it went is its allocations (the unallocated rest is the facility's credit)."""

    __tablename__ = "payment"

    id: Mapped[int] = mapped_column(primary_key=True)
    facility_id: Mapped[int] = mapped_column(ForeignKey("facility.id"))
    method: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(24))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    received_date: Mapped[date]
    payer: Mapped[str | None]
    memo: Mapped[str | None]
    check_number: Mapped[str | None] = mapped_column(String(32))
    routing_number: Mapped[str | None] = mapped_column(String(16))
    account_last4: Mapped[str | None] = mapped_column(String(4))
    account_hash: Mapped[str | None] = mapped_column(String(64))
    transfer_reference: Mapped[str | None] = mapped_column(String(140))
    card_brand: Mapped[str | None] = mapped_column(String(32))
    card_last4: Mapped[str | None] = mapped_column(String(4))
    processor_ref: Mapped[str | None] = mapped_column(String(140))
    # What makes a second entry of the same instrument a duplicate; NULL once a manager has
    # approved a deliberate second entry (the override).
    natural_key: Mapped[str | None] = mapped_column(String(255))
    duplicate_of_id: Mapped[int | None] = mapped_column(ForeignKey("payment.id"))
    override_reason: Mapped[str | None]
    approved_by: Mapped[str | None] = mapped_column(String(63))
    approved_at: Mapped[datetime | None]
    allocation_request: Mapped[str | None]
    recorded_by: Mapped[str] = mapped_column(String(63))
    recorded_at: Mapped[datetime]
    # SHA-256 of the payment with its allocations (services.integrity), set whenever it changes.
    content_hash: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        # Promise 2, in the database: one payment per check or transfer reference per facility.
        Index(
            "uq_payment_natural_key",
            "facility_id",
            "natural_key",
            unique=True,
            sqlite_where=text("natural_key IS NOT NULL"),
            postgresql_where=text("natural_key IS NOT NULL"),
        ),
        Index("ix_payment_facility_id_received_date", "facility_id", "received_date"),
        # Matching bank lines: by amount near a date, and by the reference the payer gave.
        Index("ix_payment_amount_minor_received_date", "amount_minor", "received_date"),
        Index("ix_payment_transfer_reference", "transfer_reference"),
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        CheckConstraint("method IN ('check', 'transfer', 'card', 'cash')", name="method"),
    )


class PaymentStatusChange(Base):
    __tablename__ = "payment_status_change"

    id: Mapped[int] = mapped_column(primary_key=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payment.id"))
    facility_id: Mapped[int] = mapped_column(ForeignKey("facility.id"))
    from_status: Mapped[str | None] = mapped_column(String(24))
    to_status: Mapped[str] = mapped_column(String(24))
    changed_at: Mapped[datetime]
    changed_by: Mapped[str] = mapped_column(String(63))
    reason: Mapped[str | None]

    __table_args__ = (Index("ix_payment_status_change_payment_id", "payment_id"),)


class Allocation(Base):
    """Part of a payment applied to an invoice. Released (never deleted) when the payment is
    voided, returned or refunded; `via_credit` marks credit applied after the payment was
    recorded."""

    __tablename__ = "allocation"

    id: Mapped[int] = mapped_column(primary_key=True)
    facility_id: Mapped[int] = mapped_column(ForeignKey("facility.id"))
    payment_id: Mapped[int] = mapped_column(ForeignKey("payment.id"))
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoice.id"))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    via_credit: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(63))
    released: Mapped[bool] = mapped_column(Boolean, default=False)
    released_at: Mapped[datetime | None]
    released_by: Mapped[str | None] = mapped_column(String(63))

    __table_args__ = (
        Index("ix_allocation_invoice_id", "invoice_id"),
        Index("ix_allocation_payment_id", "payment_id"),
        CheckConstraint("amount_minor > 0", name="amount_positive"),
    )


class Refund(Base):
    """Money going back to the facility."""

    __tablename__ = "refund"

    id: Mapped[int] = mapped_column(primary_key=True)
    facility_id: Mapped[int] = mapped_column(ForeignKey("facility.id"))
    payment_id: Mapped[int] = mapped_column(ForeignKey("payment.id"))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    refunded_on: Mapped[date]
    reason: Mapped[str]
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(63))

    __table_args__ = (CheckConstraint("amount_minor > 0", name="amount_positive"),)


class Deposit(Base):
    """A bank deposit of checks (and cash): one slip, one bank line to match later."""

    __tablename__ = "deposit"

    id: Mapped[int] = mapped_column(primary_key=True)
    deposit_date: Mapped[date]
    bank_account: Mapped[str] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(String(3))
    total_minor: Mapped[int] = mapped_column(BigInteger)
    item_count: Mapped[int]
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(63))

    __table_args__ = (Index("ix_deposit_total_minor_deposit_date", "total_minor", "deposit_date"),)


class DepositItem(Base):
    __tablename__ = "deposit_item"

    id: Mapped[int] = mapped_column(primary_key=True)
    deposit_id: Mapped[int] = mapped_column(ForeignKey("deposit.id"))
    payment_id: Mapped[int] = mapped_column(ForeignKey("payment.id"))
    facility_id: Mapped[int] = mapped_column(ForeignKey("facility.id"))
    amount_minor: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        Index("ix_deposit_item_deposit_id", "deposit_id"),
        Index("ix_deposit_item_facility_id_payment_id", "facility_id", "payment_id"),
    )


class IdempotencyRecord(Base):
    """One per idempotency key: the request's fingerprint and the result first returned for it.
    Written in the same transaction as the change it guards."""

    __tablename__ = "idempotency_record"

    id: Mapped[int] = mapped_column(primary_key=True)
    # NULL for keys not scoped to one facility (deposits span facilities).
    facility_id: Mapped[int | None] = mapped_column(ForeignKey("facility.id"))
    key: Mapped[str] = mapped_column(String(200))
    operation: Mapped[str] = mapped_column(String(64))
    fingerprint: Mapped[str] = mapped_column(String(64))
    request: Mapped[str]
    result: Mapped[str]
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(63))

    __table_args__ = (
        Index(
            "uq_idempotency_record_facility_key",
            "facility_id",
            "key",
            unique=True,
            sqlite_where=text("facility_id IS NOT NULL"),
            postgresql_where=text("facility_id IS NOT NULL"),
        ),
        # A key of no facility (a deposit slip, an export) is its author's: one user's keys
        # can be neither probed nor taken by another.
        Index(
            "uq_idempotency_record_user_key",
            "created_by",
            "key",
            unique=True,
            sqlite_where=text("facility_id IS NULL"),
            postgresql_where=text("facility_id IS NULL"),
        ),
        Index("ix_idempotency_record_created_at", "created_at"),
    )


class MaintenanceRun(Base):
    """Housekeeping that removes rows (expired idempotency keys), recorded when it ran."""

    __tablename__ = "maintenance_run"

    id: Mapped[int] = mapped_column(primary_key=True)
    action: Mapped[str] = mapped_column(String(64))
    ran_at: Mapped[datetime]
    ran_by: Mapped[str] = mapped_column(String(63))
    detail: Mapped[str]


class AuditEntry(Base):
    """One change to one row (or one sensitive read), appended in the transaction that made it.
    Never updated: its place in the hash chain is a separate `AuditLink` added after commit."""

    __tablename__ = "audit_entry"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True
    )
    recorded_at: Mapped[datetime]
    user_name: Mapped[str] = mapped_column(String(63))
    user_role: Mapped[str | None] = mapped_column(String(16))
    facility_id: Mapped[int | None]
    action: Mapped[str] = mapped_column(String(64))
    entity_type: Mapped[str] = mapped_column(String(64))
    entity_id: Mapped[str] = mapped_column(String(64))
    before: Mapped[str | None]
    after: Mapped[str | None]
    request_id: Mapped[str] = mapped_column(String(36))
    # SHA-256 of the entry's canonical content, computed by its writer (hash version 2; null
    # only for entries written before it). The sealer chains this digest, never the content.
    entry_digest: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        Index("ix_audit_entry_facility_id_recorded_at", "facility_id", "recorded_at"),
        Index("ix_audit_entry_request_id", "request_id"),
        Index("ix_audit_entry_entity_type_entity_id", "entity_type", "entity_id"),
    )


class AuditPending(Base):
    """Entries committed but not yet sealed: the sealer's queue, emptied as it seals."""

    __tablename__ = "audit_pending"

    entry_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"),
        ForeignKey("audit_entry.id"),
        primary_key=True,
        autoincrement=False,
    )


class AuditLink(Base):
    """An entry's place in the chain: sequence, the previous link's hash and its own."""

    __tablename__ = "audit_link"

    sequence: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=False
    )
    entry_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("audit_entry.id"), unique=True)
    hash_version: Mapped[int]
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64))
    sealed_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint("hash_version >= 1", name="hash_version"),
        # Lets the version trigger read the highest version without scanning the chain.
        Index("ix_audit_link_hash_version", "hash_version"),
    )


class AuditChainHead(Base):
    """The one row sealers lock to take turns; it mirrors the newest link."""

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    last_sequence: Mapped[int] = mapped_column(BigInteger)
    last_hash: Mapped[str] = mapped_column(String(64))
    hash_version: Mapped[int]

    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)


class DatabaseIdentity(Base):
    """Which database this is: named in every signed checkpoint."""

    __tablename__ = "database_identity"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    database_id: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime]

    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)


class SigningKey(Base):
    """A checkpoint signer's public key and its owner."""

    __tablename__ = "signing_key"

    id: Mapped[int] = mapped_column(primary_key=True)
    key_name: Mapped[str] = mapped_column(String(128), unique=True)
    public_key: Mapped[str] = mapped_column(String(64))
    owner: Mapped[str] = mapped_column(String(63))
    registered_at: Mapped[datetime]
    registered_by: Mapped[str] = mapped_column(String(63))


class Checkpoint(Base):
    """A signed note pinning the chain head at a sequence number."""

    __tablename__ = "checkpoint"

    id: Mapped[int] = mapped_column(primary_key=True)
    sequence: Mapped[int] = mapped_column(BigInteger)
    head_hash: Mapped[str] = mapped_column(String(64))
    key_name: Mapped[str] = mapped_column(String(128))
    note: Mapped[str]
    signed_by: Mapped[str] = mapped_column(String(63))
    created_at: Mapped[datetime]


class FacilityAccess(Base):
    """Which facilities a user works for (shared PostgreSQL mode): row-level security lets a
    user see and write the rows of exactly these. `facility_id` NULL means every facility."""

    __tablename__ = "facility_access"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_name: Mapped[str] = mapped_column(String(63), ForeignKey("app_user.name"))
    facility_id: Mapped[int | None] = mapped_column(ForeignKey("facility.id"))
    granted_at: Mapped[datetime]
    granted_by: Mapped[str] = mapped_column(String(63))

    __table_args__ = (
        UniqueConstraint("user_name", "facility_id"),
        Index("ix_facility_access_facility_id", "facility_id"),
    )


class StatementFile(Base):
    """A bank statement file as it arrived: its bytes, kept whole, and who imported it when."""

    __tablename__ = "statement_file"

    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    format: Mapped[str] = mapped_column(String(16))
    imported_at: Mapped[datetime]
    imported_by: Mapped[str] = mapped_column(String(63))


class StatementFileContent(Base):
    """The file's bytes. Kept beside its audited row rather than in it: the audit trail records
    the SHA-256 and size, which prove these bytes, without copying megabytes into history."""

    __tablename__ = "statement_file_content"

    file_id: Mapped[int] = mapped_column(
        ForeignKey("statement_file.id"), primary_key=True, autoincrement=False
    )
    content: Mapped[bytes] = mapped_column(LargeBinary)


class BankStatement(Base):
    """One account's statement for one period, out of a file, with what the file declares."""

    __tablename__ = "bank_statement"

    id: Mapped[int] = mapped_column(primary_key=True)
    file_id: Mapped[int] = mapped_column(ForeignKey("statement_file.id"))
    account: Mapped[str]
    currency: Mapped[str] = mapped_column(String(3))
    statement_ref: Mapped[str | None]
    period_start: Mapped[date | None]
    period_end: Mapped[date | None]
    opening_minor: Mapped[int | None] = mapped_column(BigInteger)
    closing_minor: Mapped[int | None] = mapped_column(BigInteger)
    checks: Mapped[str]  # canonical JSON: [{name, ok, detail}, ...]

    __table_args__ = (Index("ix_bank_statement_file_id", "file_id"),)


class BankLine(Base):
    """One booked movement on a bank account. `fingerprint` recognises the same line in a later,
    overlapping file; `line_key` (file hash and place in the file) makes imports idempotent."""

    __tablename__ = "bank_line"

    id: Mapped[int] = mapped_column(primary_key=True)
    statement_id: Mapped[int] = mapped_column(ForeignKey("bank_statement.id"))
    account: Mapped[str]
    currency: Mapped[str] = mapped_column(String(3))
    booked: Mapped[date]
    value_date: Mapped[date | None]
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    bank_id: Mapped[str | None]
    reference: Mapped[str | None]
    counterparty: Mapped[str | None]
    description: Mapped[str | None]
    kind: Mapped[str | None]
    location: Mapped[str]
    raw: Mapped[str]  # canonical JSON of the bank's own fields
    fingerprint: Mapped[str] = mapped_column(String(64))
    line_key: Mapped[str] = mapped_column(String(64), unique=True)

    __table_args__ = (
        UniqueConstraint("account", "fingerprint"),
        Index("ix_bank_line_currency_amount_minor_booked", "currency", "amount_minor", "booked"),
        Index("ix_bank_line_reference", "reference"),
        Index("ix_bank_line_booked", "booked"),
    )


class CsvMappingRecord(Base):
    """A saved column mapping for one bank's CSV exports (domain.csv_mappings)."""

    __tablename__ = "csv_mapping"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    record: Mapped[str]  # canonical JSON of the mapping
    saved_at: Mapped[datetime]
    saved_by: Mapped[str] = mapped_column(String(63))


class BankMatch(Base):
    """Why a bank line is one payment's or one deposit's money: the rule and the fields that
    agreed, who matched it and who confirmed it. Unmatching keeps the row (active = false).

    A payment has at most one active match per direction: the credit that brought its money in
    and the debit that took it back out (a returned transfer, a chargeback, a refund)."""

    __tablename__ = "bank_match"

    id: Mapped[int] = mapped_column(primary_key=True)
    line_id: Mapped[int] = mapped_column(ForeignKey("bank_line.id"))
    # "credit" or "debit": the sign of the line, kept on the match so the unique index can
    # hold one of each per payment (a trigger refuses a direction the line does not have).
    direction: Mapped[str] = mapped_column(String(6))
    # A line explained by several payments or slips together (a card processor's payout of a
    # day's payments, two slips credited as one) has one match per target, parts 1, 2, ...;
    # the unique index on (line, part) lets two people matching the same line at once collide.
    part: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payment.id"))
    deposit_id: Mapped[int | None] = mapped_column(ForeignKey("deposit.id"))
    # The payment's facility (none for a deposit slip, whose items may be several
    # facilities'): what row-level security on a shared database reads by (migration 0015).
    facility_id: Mapped[int | None] = mapped_column(ForeignKey("facility.id"))
    rule: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str]  # canonical JSON: the fields that agreed
    matched_at: Mapped[datetime]
    matched_by: Mapped[str] = mapped_column(String(63))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    unmatched_at: Mapped[datetime | None]
    unmatched_by: Mapped[str | None] = mapped_column(String(63))
    unmatch_reason: Mapped[str | None]

    __table_args__ = (
        Index(
            "uq_bank_match_line_active",
            "line_id",
            "part",
            unique=True,
            sqlite_where=text("active"),
            postgresql_where=text("active"),
        ),
        Index(
            "uq_bank_match_payment_active",
            "payment_id",
            "direction",
            unique=True,
            sqlite_where=text("active AND payment_id IS NOT NULL"),
            postgresql_where=text("active AND payment_id IS NOT NULL"),
        ),
        Index(
            "uq_bank_match_deposit_active",
            "deposit_id",
            unique=True,
            sqlite_where=text("active AND deposit_id IS NOT NULL"),
            postgresql_where=text("active AND deposit_id IS NOT NULL"),
        ),
        CheckConstraint("(payment_id IS NULL) <> (deposit_id IS NULL)", name="one_target"),
        CheckConstraint("direction IN ('credit', 'debit')", name="direction"),
        CheckConstraint("part >= 1", name="part"),
    )


# Views, kept out of Base.metadata: migrations create them, and the schema check compares tables.
VIEWS = MetaData()

# Which parts of which bank lines are matched, and in which direction, whoever matched them
# (migration 0014). On a shared database a login reads only the bank matches of payments and
# slips it can see; this view is how anyone learns that a line is taken, and by nothing more.
LINE_MATCHES = Table(
    "bank_line_match",
    VIEWS,
    Column("line_id", Integer, nullable=False),
    Column("part", Integer, nullable=False),
    Column("direction", String(6), nullable=False),
)


class ReconciliationRun(Base):
    """Expected money against the bank's, for a period; closed runs are sealed by their hash."""

    __tablename__ = "reconciliation_run"

    id: Mapped[int] = mapped_column(primary_key=True)
    date_from: Mapped[date]
    date_to: Mapped[date]
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime]
    started_by: Mapped[str] = mapped_column(String(63))
    closed_at: Mapped[datetime | None]
    closed_by: Mapped[str | None] = mapped_column(String(63))
    content_hash: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (CheckConstraint("status IN ('open', 'closed')", name="status"),)


class Discrepancy(Base):
    """One difference a reconciliation run found, and how it was resolved."""

    __tablename__ = "discrepancy"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("reconciliation_run.id"))
    kind: Mapped[str] = mapped_column(String(48))
    facility_id: Mapped[int | None] = mapped_column(ForeignKey("facility.id"))
    line_id: Mapped[int | None] = mapped_column(ForeignKey("bank_line.id"))
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payment.id"))
    deposit_id: Mapped[int | None] = mapped_column(ForeignKey("deposit.id"))
    invoice_id: Mapped[int | None] = mapped_column(ForeignKey("invoice.id"))
    trip_id: Mapped[int | None] = mapped_column(ForeignKey("trip.id"))
    currency: Mapped[str | None] = mapped_column(String(3))
    expected_minor: Mapped[int | None] = mapped_column(BigInteger)
    actual_minor: Mapped[int | None] = mapped_column(BigInteger)
    detail: Mapped[str]
    status: Mapped[str] = mapped_column(String(16))
    resolved_at: Mapped[datetime | None]
    resolved_by: Mapped[str | None] = mapped_column(String(63))
    note: Mapped[str | None]

    __table_args__ = (
        Index("ix_discrepancy_run_id", "run_id"),
        CheckConstraint("status IN ('open', 'resolved')", name="status"),
    )


class Alert(Base):
    """What an anomaly rule found (services.monitoring): the rule, how serious, the facility,
    the rows involved and one sentence saying why; then a manager's acknowledgement or
    dismissal with a note. `fingerprint` names the finding, so running the rules again over
    the same rows raises nothing new."""

    __tablename__ = "anomaly_alert"

    id: Mapped[int] = mapped_column(primary_key=True)
    facility_id: Mapped[int] = mapped_column(ForeignKey("facility.id"))
    rule: Mapped[str] = mapped_column(String(48))
    severity: Mapped[str] = mapped_column(String(16))
    fingerprint: Mapped[str] = mapped_column(String(64))
    entities: Mapped[str]  # canonical JSON: {"payment": [ids], ...}
    explanation: Mapped[str]
    status: Mapped[str] = mapped_column(String(16))
    raised_at: Mapped[datetime]
    raised_by: Mapped[str] = mapped_column(String(63))
    closed_at: Mapped[datetime | None]
    closed_by: Mapped[str | None] = mapped_column(String(63))
    note: Mapped[str | None]

    __table_args__ = (
        UniqueConstraint("facility_id", "fingerprint"),
        Index("ix_anomaly_alert_status_raised_at", "status", "raised_at"),
        CheckConstraint("severity IN ('info', 'warning', 'critical')", name="severity"),
        CheckConstraint("status IN ('open', 'acknowledged', 'dismissed')", name="status"),
    )


class OperationFailure(Base):
    """A write the application refused or could not finish (services.monitoring): who tried
    what, when, and the sentence they were shown. Refused attempts are evidence too (a clerk
    trying to void their own payment), and the health view counts them."""

    __tablename__ = "operation_failure"

    id: Mapped[int] = mapped_column(primary_key=True)
    occurred_at: Mapped[datetime]
    user_name: Mapped[str] = mapped_column(String(63))
    action: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    message: Mapped[str]
    payment_id: Mapped[int | None]

    __table_args__ = (Index("ix_operation_failure_occurred_at", "occurred_at"),)


class ProviderSetting(Base):
    """Who the facilities pay and how (one row): the name, address and contacts printed on
    every statement, and the remittance details on its slip: a bank account for transfers
    (bank, account and ABA routing number) and/or a lockbox address for checks. A manager or an
    administrator changes it; each change is audited like any row."""

    __tablename__ = "provider_setting"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(200))
    address: Mapped[str | None]
    phone: Mapped[str | None] = mapped_column(String(64))
    email: Mapped[str | None] = mapped_column(String(254))
    bank_name: Mapped[str | None] = mapped_column(String(200))
    account_number: Mapped[str | None] = mapped_column(String(34))
    routing_number: Mapped[str | None] = mapped_column(String(9))
    lockbox_address: Mapped[str | None]
    updated_at: Mapped[datetime]
    updated_by: Mapped[str] = mapped_column(String(63))

    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)
