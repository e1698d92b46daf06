"""Verifying a long audit chain, against reading the same rows through the same driver and
SHA-256-hashing them; and what sealing adds to recording a payment.

The chain (default 1,000,000 entries; `--entries N`, `--quick` = 100,000) is the history of a
billing database in which clerks recorded check payments, built quickly but with the entries,
rows and hashes the application itself would have written:

    seed       users, two facilities (BULK, SEAL), trips and issued invoices, through the services
               (bench/record_payment.py's `seed`); the first sealer measurement (below) then adds
               its payments on SEAL, through the services too. Then one check payment in BULK
               through `record_payment` (unallocated: it becomes the facility's credit); its five
               audit entries (idempotency claim, payment, status change, idempotency result,
               payment hash stamp) and its three rows are the template.
    bulk       the template cloned until the chain holds the wanted number of entries (any
               remainder of fewer than five is event entries describing no row): new ids, check
               numbers, idempotency keys, times (1 ms apart) and request ids; the payment's
               content hash, the idempotency fingerprint, every entry digest and every (version
               2) link hash recomputed. The JSON
               is rendered once with markers and filled in with str.format, which builds a
               million entries in about 25 s; the first link hash of every batch is checked
               against the application's `link_hash`, and the verification checks them all. The
               rows the clones describe (payment, payment_status_change, idempotency_record) are
               loaded too and the chain head row is set, so the full verification does all of its
               work and must report nothing (the script says whether it did). Loaded with the
               driver (sqlite3 executemany; psycopg COPY) with foreign keys checked; the audit
               tables' INSERT triggers (the hash-version guard) are suspended during the load and
               restored afterwards, every loaded link having the current version. PostgreSQL's
               tables are then VACUUM ANALYZEd.

Verification:
    ours      `verify_session` in a read transaction of a `Workspace` (as `verify` runs it, without
              recording the audit.verify event), with each of its steps timed: the chain walk
              (`_walk_chain`: audit_link left-joined with audit_entry in keyset chunks of
              verification.CHUNK, every entry digest and link hash recomputed) and the full
              verification (walk, orphans, head, and `_check_rows`: every row against its
              newest entry, with the payment and invoice hashes in the same pass).
              On PostgreSQL `_check_orphans` is first run alone under a statement timeout
              (`--orphans-timeout`): past a few hundred thousand links its NOT IN subquery no
              longer fits work_mem and runs once per entry. If it times out, its plan is printed
              and verify_session is measured with work_mem raised on this bench's connections.
    baseline  the same SELECTs through the same driver and connection set-up
              (`engine.raw_connection()`), keyset-paged alike, SHA-256 of each row's fields joined
              with a separator: for the walk, the link-entry join with the same columns; for the
              full verification, that plus every row of every audited table, the newest entry
              per row, payments with allocations and invoices with lines.
    rounds    `--repeat` rounds (default 3), ours and the baselines back to back, the baselines
              first in odd-numbered rounds and ours first in even ones, each round printed with
              the load average. A figure is the round with the median ratio: the machine may be
              shared, and its load moves within minutes.
    target    ours within 2x of the baseline (time ratio ours / baseline <= 2), for the walk and
              for the full verification.

Sealer cost, measured on the seeded database (a chain of a few hundred entries) and again on the
long chain: `record_payment` exactly as bench/record_payment.py's guarded path (a new check and
idempotency key each time, auto-allocated) on the SEAL facility, timed in this process with
sealing on and off in alternating rounds (`--payments` per mode, fewer if the rounds with sealing
would take longer than `--sealer-seconds`). Off means the seal is replaced by a no-op in this
process only: on SQLite the in-transaction `seal_written` call of `Workspace._finish` (its
entries are queued instead, one INSERT), on PostgreSQL `Workspace._seal_after_commit`. After each
round without sealing the queued entries are sealed, untimed, so every round starts with an empty
queue.

`--profile` runs the chain walk once more under cProfile (about twice as slow; use with
`--quick`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sqlite3
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from sqlalchemy import Boolean, DateTime, Engine, event, func, insert, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from _common import (
    Row,
    exit_on_sigterm,
    format_table,
    load_average,
    machine_description,
    pg_server_version,
    profile_operations,
    say,
    temp_sqlite_file,
    throwaway_pg_database,
    time_operations,
)
from billing_desk.db.models import (
    AuditChainHead,
    AuditEntry,
    Base,
    UtcDateTime,
)
from billing_desk.domain.hashing import canonical_bytes
from billing_desk.domain.integrity import CURRENT_HASH_VERSION, entry_digest, link_hash
from billing_desk.services import unit_of_work, verification
from billing_desk.services.audit_trail import (
    NOT_AUDITED,
    PENDING_TABLE,
    AuditContext,
    SealResult,
    seal_pending,
)
from billing_desk.services.integrity import PAYMENT_FIELDS
from billing_desk.services.payments import PaymentDraft, record_payment
from billing_desk.services.unit_of_work import Workspace, open_workspace
from record_payment import ACCOUNT, CLERK, ROUTING, ClientArgs, guarded_operation, seed

TARGET_TIME_RATIO = 2.0
DEFAULT_ENTRIES = 1_000_000
QUICK_ENTRIES = 100_000
BULK, SEAL = "BULK", "SEAL"
LOAD_CHUNK = 50_000  # entries generated and loaded per batch
SEAL_PHASE = 7  # check numbers of the sealer measurements (bench/record_payment.py's scheme)
TEMPLATE_TABLES = frozenset({"payment", "payment_status_change", "idempotency_record"})
ENTRY_COLUMNS = (
    "id",
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
    "entry_digest",
)
LINK_COLUMNS = ("sequence", "entry_id", "hash_version", "prev_hash", "entry_hash", "sealed_at")


# -- the chain ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TemplateEntry:
    user_name: str
    user_role: str | None
    facility_id: int | None
    action: str
    entity_type: str
    before: str | None
    after: str | None


@dataclass(frozen=True)
class Template:
    """The audit entries and ids of one payment recorded through the service."""

    entries: tuple[TemplateEntry, ...]
    ids: dict[str, int]  # table -> the template row's id (the highest id in its table)
    recorded_at: datetime


@dataclass
class Chain:
    """Where the bulk part starts: the chain head and the next free ids."""

    sequence: int
    head_hash: str
    next_entry_id: int


@dataclass
class Batch:
    entries: list[tuple[Any, ...]] = field(default_factory=list)
    links: list[tuple[Any, ...]] = field(default_factory=list)
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def _stamp(moment: datetime) -> str:
    """A UTC datetime as canonical JSON writes it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _json(value: object) -> str:
    """canonical_bytes(value).decode() for values that are already plain JSON (str, int, None,
    bool, lists, dicts): the same json.dumps call without the type walk."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# What differs from one clone to the next, as placeholders in the template's JSON texts. The
# JSON is rendered once with a marker "@@X@@" in each varying place and turned into a format
# string, so a clone costs a few str.format calls and SHA-256s instead of JSON encoding.
INT_FIELDS = ("P", "S", "I")  # payment, status change and idempotency record ids


def _marker(name: str) -> str:
    return f"@@{name}@@"


def _unquote(text: str, ints: tuple[str, ...]) -> str:
    """An id is a JSON number: drop the quotes around its marker."""
    for name in ints:
        text = text.replace(f'"{_marker(name)}"', _marker(name))
    return text


def _format_string(marked: str) -> str:
    return re.sub(r"@@(\w+)@@", r"{\1}", marked.replace("{", "{{").replace("}", "}}"))


class Cloner:
    """Clone n of the template payment: ids shifted by n, check number and idempotency key
    made unique, times n milliseconds later, a new request id; the payment's content hash, the
    idempotency fingerprint and every link hash recomputed. Each batch checks its first link
    hash against the application's `link_hash`; the verification then checks all of it."""

    def __init__(self, template: Template) -> None:
        self.template = template
        self.marked: dict[str, str] = {}  # template text -> the same with markers
        self.request = ""
        self.content = ""
        self.nk_prefix = ""
        for entry in template.entries:
            for side in (entry.before, entry.after):
                if side is not None and side not in self.marked:
                    self.marked[side] = self._mark(entry.entity_type, side)
        self.texts = {side: _format_string(marked) for side, marked in self.marked.items()}
        # Each entry's canonical content (what its digest covers), with markers.
        self.links = [
            _format_string(
                _json(
                    {
                        "recorded_at": _marker("T"),
                        "user_name": e.user_name,
                        "user_role": e.user_role,
                        "facility_id": e.facility_id,
                        "action": e.action,
                        "entity_type": e.entity_type,
                        "entity_id": _marker("E"),
                        "before": self._in_link(e.before),
                        "after": self._in_link(e.after),
                        "request_id": _marker("R"),
                    }
                )
            )
            for e in template.entries
        ]

    def _in_link(self, side: str | None) -> str | None:
        """A before or after text inside the link's JSON, where it is escaped once more: so is
        the request text that fills its RQ marker (RQ2)."""
        if side is None:
            return None
        return self.marked[side].replace(_marker("RQ"), _marker("RQ2"))

    def _mark(self, table: str, text: str) -> str:
        values = json.loads(text)
        if table == "payment":
            values["id"] = _marker("P")
            values["check_number"] = _marker("N")
            self.nk_prefix = values["natural_key"].rsplit(":", 1)[0] + ":"
            values["natural_key"] = _marker("K")
            values["recorded_at"] = _marker("T")
            record = {name: values[name] for name in PAYMENT_FIELDS}
            self.content = _format_string(
                _unquote(
                    _json({"kind": "payment", "v": 1, "record": {**record, "allocations": []}}),
                    INT_FIELDS,
                )
            )
            if values.get("content_hash") is not None:
                values["content_hash"] = _marker("C")
        elif table == "payment_status_change":
            values["id"] = _marker("S")
            values["payment_id"] = _marker("P")
            values["changed_at"] = _marker("T")
        elif table == "idempotency_record":
            values["id"] = _marker("I")
            values["key"] = _marker("Y")
            values["created_at"] = _marker("T")
            request = json.loads(values["request"])
            request["check_number"] = _marker("N")
            self.request = _format_string(_unquote(_json(request), INT_FIELDS))
            values["request"] = _marker("RQ")
            values["fingerprint"] = _marker("F")
            if values["result"]:
                result = json.loads(values["result"])
                result["payment_id"] = _marker("P")
                values["result"] = _json(result).replace(f'"{_marker("P")}"', _marker("P"))
        else:
            raise SystemExit(f"the template payment wrote a {table} entry this bench cannot clone")
        # The request is embedded as a JSON string: its marker RQ takes the escaped text.
        return _unquote(_json(values), INT_FIELDS)

    def batches(self, chain: Chain, clones: int, pad: int) -> Iterator[Batch]:
        """`clones` payments of len(template) entries each, then `pad` event entries, linked
        after `chain` (which is advanced), in batches of about LOAD_CHUNK entries."""
        sealed_at = datetime.now(UTC)
        ids = self.template.ids
        entries = self.template.entries
        per_batch = max(1, LOAD_CHUNK // len(entries))
        for first in range(1, clones + 1, per_batch):
            batch = Batch()
            for n in range(first, min(clones, first + per_batch - 1) + 1):
                moment = self.template.recorded_at + timedelta(milliseconds=n)
                number = str(n + 1)  # the template is check number 1
                values = {
                    "P": ids["payment"] + n,
                    "S": ids["payment_status_change"] + n,
                    "I": ids["idempotency_record"] + n,
                    "N": number,
                    "K": self.nk_prefix + number,
                    "T": _stamp(moment),
                    "Y": f"bulk-{n}",
                }
                request = self.request.format(**values)
                values["F"] = _sha256(request)
                values["RQ"] = json.dumps(request, ensure_ascii=False)[1:-1]
                values["RQ2"] = json.dumps(values["RQ"], ensure_ascii=False)[1:-1]
                values["C"] = _sha256(self.content.format(**values))
                texts = {side: compiled.format(**values) for side, compiled in self.texts.items()}
                request_id = str(uuid.uuid4())
                final: dict[str, str] = {}
                for entry, link in zip(entries, self.links, strict=True):
                    before = None if entry.before is None else texts[entry.before]
                    after = None if entry.after is None else texts[entry.after]
                    if after is not None:
                        final[entry.entity_type] = after
                    entity_id = str(ids[entry.entity_type] + n)
                    self._append(
                        batch,
                        chain,
                        sealed_at,
                        moment,
                        entry,
                        entity_id,
                        request_id,
                        before,
                        after,
                        link.format(**values, **{"E": entity_id, "R": request_id}),
                    )
                for table, row in final.items():
                    batch.rows.setdefault(table, []).append(json.loads(row))
            yield batch
        if pad:
            batch = Batch()
            moment = datetime.now(UTC)
            event = TemplateEntry(CLERK, "clerk", None, "report.export", "report", None, None)
            for i in range(pad):
                after = canonical_bytes({"format": "csv", "rows": i}).decode()
                request_id = str(uuid.uuid4())
                self._append(
                    batch, chain, sealed_at, moment, event, f"bulk-{i}", request_id, None, after
                )
            yield batch

    @staticmethod
    def _append(
        batch: Batch,
        chain: Chain,
        sealed_at: datetime,
        moment: datetime,
        entry: TemplateEntry,
        entity_id: str,
        request_id: str,
        before: str | None,
        after: str | None,
        entry_text: str | None = None,
    ) -> None:
        entry_id = chain.next_entry_id
        chain.next_entry_id += 1
        chain.sequence += 1
        content = {
            "recorded_at": moment,
            "user_name": entry.user_name,
            "user_role": entry.user_role,
            "facility_id": entry.facility_id,
            "action": entry.action,
            "entity_type": entry.entity_type,
            "entity_id": entity_id,
            "before": before,
            "after": after,
            "request_id": request_id,
        }
        if entry_text is None or not batch.links:
            # The application's own hashes: always for event entries, and for the first entry
            # of every batch, to check the format-string shortcut.
            content_digest = entry_digest(content)
            digest = link_hash(CURRENT_HASH_VERSION, chain.sequence, chain.head_hash, content)
            if entry_text is not None and _sha256(entry_text) != content_digest:
                raise SystemExit("the cloned entry digest differs from the application's")
        else:
            content_digest = _sha256(entry_text)
            digest = None
        link_text = (
            f'{{"entry_digest":"{content_digest}","prev_hash":"{chain.head_hash}",'
            f'"sequence":{chain.sequence},"v":2}}'
        )
        if digest is not None and _sha256(link_text) != digest:
            raise SystemExit("the cloned link hash differs from the application's link_hash")
        digest = _sha256(link_text)
        batch.entries.append(
            (entry_id, *(content[name] for name in ENTRY_COLUMNS[1:-1]), content_digest)
        )
        batch.links.append(
            (chain.sequence, entry_id, CURRENT_HASH_VERSION, chain.head_hash, digest, sealed_at)
        )
        chain.head_hash = digest


def make_template(url: str, received: datetime) -> tuple[Template, Chain]:
    """Record the template payment through the service and read back what it wrote."""
    workspace = open_workspace(url, CLERK, migrate=False)
    try:
        draft = PaymentDraft(
            facility=BULK,
            method="check",
            amount="25.00",
            received=received.date(),
            check_number="1",
            routing_number=ROUTING,
            account_number=ACCOUNT,
            payer="Bulk Care Home",
            auto_allocate=False,
        )
        receipt = record_payment(workspace, draft, "bulk-0")
        with workspace.engine.connect() as connection:
            entries = connection.execute(
                select(AuditEntry)
                .where(
                    AuditEntry.request_id
                    == select(AuditEntry.request_id)
                    .where(
                        AuditEntry.entity_type == "payment",
                        AuditEntry.entity_id == str(receipt.payment_id),
                    )
                    .limit(1)
                    .scalar_subquery()
                )
                .order_by(AuditEntry.id)
            ).all()
            ids: dict[str, int] = {}
            for entry in entries:
                table = Base.metadata.tables[entry.entity_type]
                highest = connection.scalar(select(func.max(table.c.id)))
                if int(entry.entity_id) != highest:
                    raise SystemExit(f"the template's {entry.entity_type} row is not the newest")
                ids[entry.entity_type] = int(entry.entity_id)
            head = connection.execute(
                select(AuditChainHead.last_sequence, AuditChainHead.last_hash)
            ).one()
            next_entry = (connection.scalar(select(func.max(AuditEntry.id))) or 0) + 1
    finally:
        workspace.close()
    if set(ids) != TEMPLATE_TABLES:
        raise SystemExit(f"the template payment touched {sorted(ids)}, not {TEMPLATE_TABLES}")
    template = Template(
        tuple(
            TemplateEntry(
                e.user_name,
                e.user_role,
                e.facility_id,
                e.action,
                e.entity_type,
                e.before,
                e.after,
            )
            for e in entries
        ),
        ids,
        entries[0].recorded_at,
    )
    return template, Chain(head.last_sequence, head.last_hash, next_entry)


def build_chain(url: str, is_sqlite: bool, entries: int) -> int:
    """Clone the template payment until the chain holds `entries` entries; returns the chain
    length."""
    received = datetime.now(UTC) - timedelta(days=1)
    template, chain = make_template(url, received)
    per_payment = len(template.entries)
    clones, pad = divmod(max(0, entries - chain.sequence), per_payment)
    started = time.perf_counter()
    load = _load_sqlite if is_sqlite else _load_postgresql
    generating = load(url, Cloner(template).batches(chain, clones, pad), chain)
    say(
        f"  loaded {clones:,} cloned payments ({clones * per_payment:,} entries, {pad} event "
        f"entries) after {template.ids['payment']} payments through the services, in "
        f"{time.perf_counter() - started:.1f}s ({generating:.1f}s of it generating entries and "
        f"link hashes in Python); chain length {chain.sequence:,}"
    )
    return chain.sequence


def _timed(batches: Iterator[Batch]) -> Iterator[tuple[Batch, float]]:
    """Each batch with the seconds it took to generate; progress every ~200,000 entries."""
    started, done, shown = time.perf_counter(), 0, 0
    while True:
        before = time.perf_counter()
        batch = next(batches, None)
        if batch is None:
            return
        yield batch, time.perf_counter() - before
        done += len(batch.entries)
        if done - shown >= 200_000:
            shown = done
            say(f"    {done:,} entries loaded, {time.perf_counter() - started:.0f}s")


def _sqlite_value(column: Any, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(column.type, Boolean):
        return int(value)
    if isinstance(column.type, DateTime | UtcDateTime):
        return f"{value[:10]} {value[11:-1]}"  # canonical text to SQLAlchemy's SQLite format
    return value


def _sqlite_stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _load_sqlite(url: str, batches: Iterator[Batch], chain: Chain) -> float:
    generating = 0.0
    db = sqlite3.connect(url, isolation_level=None)
    try:
        db.execute("PRAGMA foreign_keys=ON")
        db.execute("PRAGMA synchronous=OFF")
        # INSERT triggers on the audit tables are suspended while loading and then recreated
        # from their own SQL: the hash-version guard on audit_link reads max(hash_version) over
        # the whole table for every inserted link, which would make the load quadratic. Every
        # loaded link has the current version, so the guard would never have fired.
        triggers = db.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
            "AND tbl_name IN ('audit_entry', 'audit_link') AND upper(sql) LIKE '% INSERT ON %'"
        ).fetchall()
        for name, _sql in triggers:
            db.execute(f'DROP TRIGGER "{name}"')
        entry_sql = _insert_sql("audit_entry", ENTRY_COLUMNS, "?")
        link_sql = _insert_sql("audit_link", LINK_COLUMNS, "?")
        for batch, seconds in _timed(batches):
            generating += seconds
            db.execute("BEGIN")
            db.executemany(entry_sql, [(e[0], _sqlite_stamp(e[1]), *e[2:]) for e in batch.entries])
            db.executemany(link_sql, [(*link[:5], _sqlite_stamp(link[5])) for link in batch.links])
            for name, rows in batch.rows.items():
                table = Base.metadata.tables[name]
                columns = [c.name for c in table.columns]
                db.executemany(
                    _insert_sql(name, columns, "?"),
                    [tuple(_sqlite_value(c, row[c.name]) for c in table.columns) for row in rows],
                )
            db.execute("COMMIT")
        for _name, sql in triggers:
            db.execute(sql)
        db.execute(
            "UPDATE audit_chain_head SET last_sequence = ?, last_hash = ? WHERE id = 1",
            (chain.sequence, chain.head_hash),
        )
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
    return generating


def _pg_conninfo(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _load_postgresql(url: str, batches: Iterator[Batch], chain: Chain) -> float:
    generating = 0.0
    # As on SQLite, the audit tables' own triggers (the hash-version guard: max(hash_version)
    # over audit_link for every inserted link) are off while loading; foreign keys stay checked.
    with psycopg.connect(_pg_conninfo(url), autocommit=True) as db:
        for table in ("audit_entry", "audit_link"):
            db.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
    for batch, seconds in _timed(batches):
        generating += seconds
        # A new connection per batch: PostgreSQL caches the plans of its foreign-key checks per
        # connection, and a plan made while audit_entry was small scans the whole table.
        with psycopg.connect(_pg_conninfo(url)) as db, db.cursor() as cursor:
            cursor.execute("SET synchronous_commit = off")
            _copy(cursor, "audit_entry", ENTRY_COLUMNS, batch.entries)
            _copy(cursor, "audit_link", LINK_COLUMNS, batch.links)
            for name, rows in batch.rows.items():
                columns = [c.name for c in Base.metadata.tables[name].columns]
                _copy(cursor, name, columns, [tuple(r[c] for c in columns) for r in rows])
    with psycopg.connect(_pg_conninfo(url)) as db:
        for table in ("audit_entry", "audit_link"):
            db.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")
        db.execute(
            "UPDATE audit_chain_head SET last_sequence = %s, last_hash = %s WHERE id = 1",
            (chain.sequence, chain.head_hash),
        )
        for name in ("audit_entry", *sorted(TEMPLATE_TABLES)):
            db.execute(
                f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                f"(SELECT max(id) FROM {name}))"
            )
    started = time.perf_counter()
    with psycopg.connect(_pg_conninfo(url), autocommit=True) as db:
        db.execute("VACUUM ANALYZE")
    say(f"  VACUUM ANALYZE took {time.perf_counter() - started:.1f}s")
    return generating


def _copy(cursor: Any, table: str, columns: Any, rows: list[tuple[Any, ...]]) -> None:
    names = ", ".join(f'"{c}"' for c in columns)
    with cursor.copy(f'COPY "{table}" ({names}) FROM STDIN') as copy:
        for row in rows:
            copy.write_row(row)


def _insert_sql(table: str, columns: Any, mark: str) -> str:
    names = ", ".join(f'"{c}"' for c in columns)
    marks = ", ".join(mark for _ in columns)
    return f'INSERT INTO "{table}" ({names}) VALUES ({marks})'


# -- verification ---------------------------------------------------------------------------

VERIFY_STEPS = (
    "_walk_chain",
    "_check_orphans",
    "_check_no_tail",
    "_check_head",
    "_check_rows",
    "_check_checkpoints",
    "unsealed_tail",
)


@contextmanager
def timed_steps(cpu: dict[str, float] | None = None) -> Iterator[dict[str, float]]:
    """Time each step `verify_session` calls (module globals, looked up at call time); and into
    `cpu`, the CPU seconds of this process in each."""
    seconds: dict[str, float] = {}
    cpu_seconds = {} if cpu is None else cpu
    originals = {name: getattr(verification, name) for name in VERIFY_STEPS}

    def timer(name: str, step: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            started, cpu_started = time.perf_counter(), time.process_time()
            try:
                return step(*args, **kwargs)
            finally:
                seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - started
                cpu_seconds[name] = cpu_seconds.get(name, 0.0) + time.process_time() - cpu_started

        return run

    for name, step in originals.items():
        setattr(verification, name, timer(name, step))
    try:
        yield seconds
    finally:
        for name, step in originals.items():
            setattr(verification, name, step)


def run_verification(workspace: Workspace) -> tuple[verification.VerificationReport, float]:
    # As `verify` runs it: a live SQLite database has no legitimate unsealed tail.
    tail_allowed = not (workspace.location.is_sqlite and not workspace.read_only)
    started = time.perf_counter()
    report = workspace.read(
        lambda unit: verification.verify_session(unit.session, tail_allowed=tail_allowed)
    )
    return report, time.perf_counter() - started


def _row_digest(row: Any) -> bytes:
    return hashlib.sha256("\x1f".join(map(str, row)).encode()).digest()


CHAIN_SQL = (
    "SELECT l.sequence, l.entry_id, l.hash_version, l.prev_hash, l.entry_hash, l.sealed_at, "
    + ", ".join(f'e."{c}"' for c in ENTRY_COLUMNS)
    + " FROM audit_link AS l LEFT OUTER JOIN audit_entry AS e ON e.id = l.entry_id"
    " WHERE l.sequence > {mark} ORDER BY l.sequence LIMIT {limit}"
)


@contextmanager
def raw_cursor(engine: Engine) -> Iterator[tuple[Any, str]]:
    """A cursor of the engine's own driver and connection set-up, in one read transaction;
    and the driver's parameter mark."""
    connection = engine.raw_connection()
    sqlite = engine.dialect.name == "sqlite"
    try:
        cursor = connection.cursor()
        if sqlite:
            cursor.execute("BEGIN DEFERRED")
        yield cursor, "?" if sqlite else "%s"
        if sqlite:
            cursor.execute("COMMIT")
        else:
            connection.rollback()
        cursor.close()
    finally:
        connection.close()


def baseline_chain(engine: Engine) -> int:
    """The walk's rows, read the same way (keyset chunks), each row's fields SHA-256-hashed."""
    rows = 0
    with raw_cursor(engine) as (cursor, mark):
        statement = CHAIN_SQL.format(mark=mark, limit=verification.CHUNK)
        after = -1
        while True:
            cursor.execute(statement, (after,))
            chunk = cursor.fetchall()
            if not chunk:
                return rows
            for row in chunk:
                _row_digest(row)
            rows += len(chunk)
            after = chunk[-1][0]


def baseline_rest(engine: Engine) -> int:
    """What the full verification reads beyond the walk: every row of every audited table, the
    newest entry per row, payments with allocations, invoices with lines."""
    rows = 0
    tables = sorted(
        name
        for name in Base.metadata.tables
        if name not in NOT_AUDITED and name in _mapped_tables()
    )
    with raw_cursor(engine) as (cursor, mark):

        def scan(statement: str, params: tuple[Any, ...] = ()) -> None:
            nonlocal rows
            cursor.execute(statement, params)
            while chunk := cursor.fetchmany(verification.CHUNK):
                for row in chunk:
                    _row_digest(row)
                rows += len(chunk)

        for name in tables:
            table = Base.metadata.tables[name]
            keys = ", ".join(f'"{c.name}"' for c in table.primary_key.columns)
            scan(
                'SELECT entity_id, "after" FROM audit_entry WHERE id IN (SELECT max(id) '
                f"FROM audit_entry WHERE entity_type = {mark} GROUP BY entity_id)",
                (name,),
            )
            scan(f'SELECT * FROM "{name}" ORDER BY {keys}')
        scan("SELECT * FROM payment ORDER BY id")
        scan("SELECT * FROM allocation ORDER BY payment_id, id")
        scan("SELECT * FROM invoice ORDER BY id")
        scan("SELECT * FROM invoice_line ORDER BY invoice_id, id")
    return rows


def _mapped_tables() -> set[str]:
    return {str(getattr(m.local_table, "name", "")) for m in Base.registry.mappers}


@dataclass(frozen=True)
class VerifyRound:
    """One round: ours (the walk as timed inside verify_session, and all of it) and the
    baselines, back to back; in wall-clock seconds, and in CPU seconds of this process (the
    database server's work not included, but less moved by other load on the machine)."""

    walk: float
    total: float
    chain_base: float
    rest_base: float
    load: str
    cpu: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # the same four

    @property
    def walk_ratio(self) -> float:
        return self.walk / self.chain_base

    @property
    def full_ratio(self) -> float:
        return self.total / (self.chain_base + self.rest_base)

    @property
    def cpu_ratios(self) -> tuple[float, float]:
        walk, total, chain_base, rest_base = self.cpu
        return walk / chain_base, total / (chain_base + rest_base)


def verify_round(
    workspace: Workspace, *, ours_first: bool
) -> tuple[VerifyRound, verification.VerificationReport, int, dict[str, float]]:
    """Ours and the baselines back to back; with the report, the rows the full baseline read
    beyond the chain, and the seconds of each step of ours."""
    engine = workspace.engine
    cpu: dict[str, float] = {}

    def ours() -> tuple[verification.VerificationReport, float, dict[str, float]]:
        started = time.process_time()
        with timed_steps(cpu) as steps:
            report, total = run_verification(workspace)
        cpu["total"] = time.process_time() - started
        return report, total, steps

    if ours_first:
        report, total, steps = ours()
    started = time.process_time()
    chain_base = _seconds(lambda: baseline_chain(engine))
    cpu["chain"] = time.process_time() - started
    rest_base, rest_rows = _seconds_and(lambda: baseline_rest(engine))
    cpu["rest"] = time.process_time() - started - cpu["chain"]
    if not ours_first:
        report, total, steps = ours()
    done = VerifyRound(
        steps.get("_walk_chain", 0.0),
        total,
        chain_base,
        rest_base,
        load_average(),
        (cpu.get("_walk_chain", 0.0), cpu["total"], cpu["chain"], cpu["rest"]),
    )
    return done, report, rest_rows, steps


def _median_round(rounds: list[VerifyRound], ratio: Callable[[VerifyRound], float]) -> VerifyRound:
    """The round whose ratio is the median (the upper one of an even count)."""
    return sorted(rounds, key=ratio)[len(rounds) // 2]


@dataclass
class VerifyResult:
    rows: list[Row]
    target_met: bool
    valid: bool


def measure_verification(name: str, url: str, length: int, options: Any) -> VerifyResult:
    """`--repeat` rounds of ours and the baselines, interleaved (the baselines first in even
    rounds, ours first in odd ones), so that the machine's changing load falls on both; each
    figure is the round with the median ratio."""
    workspace = open_workspace(url, CLERK, migrate=False)
    rounds: list[VerifyRound] = []
    clean = True
    try:
        if not workspace.location.is_sqlite:
            probe_orphans(workspace, options.orphans_timeout)
        for index in range(max(1, options.repeat)):
            done, report, rest_rows, steps = verify_round(workspace, ours_first=index % 2 == 1)
            clean = clean and report.ok and report.entries_checked == length
            rounds.append(done)
            say(
                f"  round {index + 1} ({'baseline' if index % 2 == 0 else 'ours'} first, "
                f"{done.load}): walk {done.walk:.1f}s vs {done.chain_base:.1f}s "
                f"({done.walk_ratio:.2f}x); full {done.total:.1f}s vs "
                f"{done.chain_base + done.rest_base:.1f}s ({done.full_ratio:.2f}x); CPU of this "
                f"process: walk {done.cpu_ratios[0]:.2f}x, full {done.cpu_ratios[1]:.2f}x; steps "
                + ", ".join(
                    f"{step} {seconds:.1f}s"
                    for step, seconds in sorted(steps.items(), key=lambda item: -item[1])
                    if seconds >= 0.05
                )
            )
        if options.profile:
            profile_walk(workspace, options.top)
    finally:
        workspace.close()

    valid = clean
    say(
        f"  verify_session: ok={report.ok}, entries checked {report.entries_checked:,} of "
        f"{length:,}, payments {report.payments_checked:,}, invoices {report.invoices_checked}, "
        f"findings {len(report.findings)}"
    )
    for finding in report.findings[:10]:
        say(f"    finding: {finding.kind}: {finding.entity}: {finding.detail}")
    walk = _median_round(rounds, lambda r: r.walk_ratio)
    full = _median_round(rounds, lambda r: r.full_ratio)
    rows = [
        Row(f"{name}: chain walk, {length:,} entries", walk.walk, walk.chain_base, "s"),
        Row(
            f"{name}: full verify_session",
            full.total,
            full.chain_base + full.rest_base,
            "s",
        ),
    ]
    say(
        f"  median of {len(rounds)} rounds: walk {walk.walk_ratio:.2f}x (rounds "
        + ", ".join(f"{r.walk_ratio:.2f}" for r in rounds)
        + f"), full {full.full_ratio:.2f}x (rounds "
        + ", ".join(f"{r.full_ratio:.2f}" for r in rounds)
        + ")"
    )
    say(
        f"  CPU of this process, median of {len(rounds)} rounds: walk "
        f"{statistics.median(r.cpu_ratios[0] for r in rounds):.2f}x, full "
        f"{statistics.median(r.cpu_ratios[1] for r in rounds):.2f}x"
    )
    say(
        f"  rates (median round): walk {length / walk.walk:,.0f} entries/s, baseline "
        f"{length / walk.chain_base:,.0f} entries/s; full verification read {rest_rows:,} rows "
        "beyond the chain"
    )
    return VerifyResult(
        rows,
        walk.walk_ratio <= TARGET_TIME_RATIO and full.full_ratio <= TARGET_TIME_RATIO,
        valid,
    )


def probe_orphans(workspace: Workspace, timeout: float) -> None:
    """PostgreSQL: time `_check_orphans` alone under a statement timeout. Its
    `id NOT IN (SELECT entry_id FROM audit_link)` is a hashed subplan only while the link ids
    fit in work_mem x hash_mem_multiplier; past that (a few hundred thousand links at the
    default 4MB) it is a plain subplan that rescans the links for every entry: quadratic, hours
    at a million. If it does not finish, its plan is shown and the verification is measured
    with work_mem raised on this bench's connections, so the other steps still get a figure."""
    statements: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_rest: Any) -> None:
        statements.append((statement, parameters))

    started = time.perf_counter()
    event.listen(workspace.engine, "before_cursor_execute", capture)
    try:
        with Session(bind=workspace.engine) as session, session.begin():
            session.execute(text(f"SET LOCAL statement_timeout = '{int(timeout * 1000)}ms'"))
            work_mem = session.scalar(text("SHOW work_mem"))
            verification._check_orphans(session, verification._Chain())
    except OperationalError as err:
        if "statement timeout" not in str(err):
            raise
        seconds = time.perf_counter() - started
        statement, parameters = statements[-1]
        with raw_cursor(workspace.engine) as (cursor, _mark):
            cursor.execute(f"EXPLAIN {statement}", parameters)
            plan = [row[0] for row in cursor.fetchall()]
        say(
            f"  _check_orphans alone: NOT finished after {seconds:.0f}s (statement timeout) at "
            f"work_mem={work_mem}. Its plan:"
        )
        for line in plan:
            if "JIT" in line:
                break
            say(f"      {line}")
        say(
            f"  verify_session below runs with work_mem={RAISED_WORK_MEM} on this bench's "
            "connections"
        )
        workspace.engine.dispose()
        event.listen(workspace.engine, "connect", _raise_work_mem)
        return
    finally:
        event.remove(workspace.engine, "before_cursor_execute", capture)
    say(f"  _check_orphans alone: {time.perf_counter() - started:.2f}s at work_mem={work_mem}")


RAISED_WORK_MEM = "256MB"


def _raise_work_mem(dbapi_connection: Any, _record: Any) -> None:
    with dbapi_connection.cursor() as cursor:
        cursor.execute(f"SET work_mem = '{RAISED_WORK_MEM}'")
    dbapi_connection.commit()


def _seconds(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def _seconds_and(work: Callable[[], int]) -> tuple[float, int]:
    started = time.perf_counter()
    result = work()
    return time.perf_counter() - started, result


AREAS: list[tuple[str, tuple[str, ...]]] = [
    ("sqlite3 (step, fetch)", ("sqlite3",)),
    ("psycopg (round trips, parsing)", ("psycopg",)),
    ("SQLAlchemy (result rows, ORM loading)", ("sqlalchemy",)),
    ("canonical JSON: domain/hashing.py", ("hashing.py",)),
    ("json encoder (C)", ("json", "encode", "iterencode")),
    ("SHA-256", ("sha256", "hexdigest")),
    ("billing_desk, other", ("billing_desk",)),
]


def profile_walk(workspace: Workspace, top: int) -> None:
    def walk(_seq: int) -> object:
        return workspace.read(
            lambda unit: verification._walk_chain(unit.session, verification._Chain(), set(), {})
        )

    profile = profile_operations(walk, 1)
    say(f"  cProfile of one chain walk ({profile.seconds:.1f}s under the profiler), own time:")
    for area, seconds in profile.self_time_by_area(AREAS):
        say(f"    {area:<42}{seconds:8.2f}s")
    say(f"  top {top} cumulative entries:")
    say(profile.top("billing_desk|sqlalchemy|json|hashlib", top))


# -- sealer cost ----------------------------------------------------------------------------


@contextmanager
def sealing_disabled(workspace: Workspace) -> Iterator[None]:
    """Replace the seal with a stand-in in this process (application code untouched): on SQLite
    the `seal_written` that `Workspace._finish` calls inside the transaction, whose entries are
    queued instead so that `seal_backlog` can seal them later; on PostgreSQL
    `Workspace._seal_after_commit`, with a no-op."""

    def queue_instead(session: Session, context: AuditContext) -> SealResult:
        session.connection().execute(
            insert(PENDING_TABLE), [{"entry_id": entry_id} for entry_id, _ in context.written]
        )
        return SealResult(0, 0, "")

    def no_seal_after_commit(_self: Workspace) -> None:
        return None

    owner: object
    stand_in: Callable[..., object]
    if workspace.location.is_sqlite:
        owner, name, stand_in = unit_of_work, "seal_written", queue_instead
    else:
        owner, name, stand_in = Workspace, "_seal_after_commit", no_seal_after_commit
    original = getattr(owner, name)
    setattr(owner, name, stand_in)
    try:
        yield
    finally:
        setattr(owner, name, original)


def seal_backlog(workspace: Workspace) -> None:
    """Seal what a round without sealing left queued, as the skipped seals would have (on
    SQLite `Workspace.seal` deliberately leaves queued entries alone)."""
    while True:
        with Session(bind=workspace.engine) as session, session.begin():
            if seal_pending(session, now=datetime.now(UTC)).sealed == 0:
                return


def measure_sealer(name: str, url: str, phase: int, options: Any) -> list[Row]:
    """`record_payment` with sealing on and off, in alternating rounds."""
    workspace = open_workspace(url, CLERK, migrate=False)
    received = (datetime.now(UTC) - timedelta(days=1)).date()
    head = select(AuditChainHead.last_sequence)
    try:
        length = _scalar(workspace, head)
        operation = guarded_operation(workspace, ClientArgs(url, phase, (SEAL,), received), 0)
        warmup = time_operations(operation, 5)
        # Fewer payments when sealing is slow (it grows with the chain), so that the rounds
        # with sealing take about --sealer-seconds.
        affordable = options.sealer_seconds / options.rounds / (warmup.wall_seconds / 5)
        per_round = max(5, min(options.payments // options.rounds, int(affordable)))
        seq = 5
        timings: dict[str, list[float]] = {"on": [], "off": []}
        cpu: dict[str, float] = {"on": 0.0, "off": 0.0}
        sealed_entries = 0
        for round_ in range(options.rounds):
            for mode in ("on", "off") if round_ % 2 == 0 else ("off", "on"):
                before = _scalar(workspace, head)
                if mode == "on":
                    timing = time_operations(operation, per_round, first_seq=seq)
                    sealed_entries += _scalar(workspace, head) - before
                else:
                    with sealing_disabled(workspace):
                        timing = time_operations(operation, per_round, first_seq=seq)
                    if _scalar(workspace, head) != before:
                        raise SystemExit("sealing was not switched off")
                    seal_backlog(workspace)  # untimed: every round starts with an empty queue
                seq += per_round
                timings[mode].append(timing.wall_seconds)
                cpu[mode] += timing.cpu_seconds
    finally:
        workspace.close()
    count = per_round * options.rounds
    on = count / sum(timings["on"])
    off = count / sum(timings["off"])
    say(
        f"  sealer cost on a chain of {length:,} entries ({load_average()}): record_payment "
        f"{count} times with sealing and {count} without, {options.rounds} alternating rounds"
    )
    for mode, label in (("on", "sealing on "), ("off", "sealing off")):
        rounds = ", ".join(f"{per_round / s:,.1f}" for s in timings[mode])
        say(
            f"    {label}: {count / sum(timings[mode]):7.1f} payments/s (rounds: {rounds}); "
            f"CPU of this process {1000 * cpu[mode] / count:.2f} ms/payment"
        )
    say(
        f"    sealing adds {1000 / on - 1000 / off:.2f} ms per payment "
        f"({sealed_entries / count:.1f} entries sealed per payment)"
    )
    return [
        Row(f"{name}: record_payment, chain {length:,}, sealing on/off", on, off, "payments/s"),
        Row(
            f"{name}: same, per CPU second of this process",
            count / cpu["on"],
            count / cpu["off"],
            "payments/s",
        ),
    ]


def _scalar(workspace: Workspace, statement: Any) -> Any:
    with workspace.engine.connect() as connection:
        return connection.scalar(statement)


# -- main -----------------------------------------------------------------------------------


@dataclass
class BackendResult:
    name: str
    rows: list[Row]
    target_met: bool
    valid: bool


def measure_backend(name: str, url: str, is_sqlite: bool, options: Any) -> BackendResult:
    started = time.perf_counter()
    seed(url, [BULK, SEAL], (datetime.now(UTC) - timedelta(days=1)).date())
    say(f"  seeded through the services in {time.perf_counter() - started:.1f}s")
    rows = measure_sealer(name, url, SEAL_PHASE, options)
    length = build_chain(url, is_sqlite, options.entries)
    verified = measure_verification(name, url, length, options)
    rows += measure_sealer(name, url, SEAL_PHASE + 1, options)
    say()
    say(format_table([*verified.rows, *rows]))
    say(
        f"  chain walk and full verification within {TARGET_TIME_RATIO:g}x of their baselines: "
        f"{'met' if verified.target_met else 'NOT met'} ({verified.rows[0].ratio:.2f}x, "
        f"{verified.rows[1].ratio:.2f}x)"
        + ("" if verified.valid else "  [INVALID: the chain did not verify cleanly]")
    )
    return BackendResult(name, [*verified.rows, *rows], verified.target_met, verified.valid)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--entries", type=int, help=f"chain length (default {DEFAULT_ENTRIES:,})")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ENTRIES:,} entries")
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument(
        "--payments", type=int, default=300, help="payments per sealer mode and chain length"
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternating sealer rounds")
    parser.add_argument(
        "--sealer-seconds",
        type=float,
        default=40.0,
        help="fewer payments when the rounds with sealing would take longer than this",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="interleaved rounds of ours and the baselines; figures are the median round",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile one more chain walk")
    parser.add_argument(
        "--orphans-timeout",
        type=float,
        default=20.0,
        help="PostgreSQL: seconds _check_orphans may take alone before work_mem is raised",
    )
    parser.add_argument("--top", type=int, default=20, help="profile entries shown")
    options = parser.parse_args(argv)
    if options.entries is None:
        options.entries = QUICK_ENTRIES if options.quick else DEFAULT_ENTRIES
    exit_on_sigterm()

    say("verify_chain: verifying the audit chain vs reading and hashing the same rows; sealer cost")
    say(f"machine: {machine_description()}; {load_average()}")
    started = time.perf_counter()
    results: list[BackendResult] = []
    if options.backend in ("sqlite", "both"):
        say("\n== SQLite (temp file; WAL, synchronous=FULL)")
        with temp_sqlite_file("verify_chain") as path:
            results.append(measure_backend("SQLite", str(path), True, options))
    if options.backend in ("postgresql", "both"):
        say(f"\n== {pg_server_version()} (throwaway database)")
        with throwaway_pg_database("verify_chain") as url:
            results.append(measure_backend("PostgreSQL", url, False, options))
    say(f"\n== summary ({time.perf_counter() - started:.0f}s in all)")
    say(format_table([row for result in results for row in result.rows]))
    say(
        "verification rows: ratio = our time / baseline time (target <= 2); sealer rows: ratio = "
        "payments/s with sealing / without"
    )
    for result in results:
        say(
            f"{result.name}: chain walk and full verification within {TARGET_TIME_RATIO:g}x "
            f"{'met' if result.target_met else 'NOT met'}"
            + ("" if result.valid else " (INVALID: the chain did not verify cleanly)")
        )
    # A figure is reported, never asserted: a missed target does not fail `make bench`.
    return 0


if __name__ == "__main__":
    sys.exit(main())
