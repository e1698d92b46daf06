"""A long audit log, loaded fast with the driver (not through the services): for the audit
browser's million-entry test and bench, which page through the log and never verify it. The
entries are sealed into links (so they carry sequence numbers) whose hashes are placeholders:
the chain would not verify, and nothing here claims it does.

Every `INVOICE_EVERY`th entry concerns an invoice (a selective filter); the others are payment
entries of a few clerks, a millisecond apart."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

CHUNK = 50_000
INVOICE_EVERY = 1000
PLACEHOLDER_HASH = "0" * 64
START = datetime(2024, 1, 1, tzinfo=UTC)


def _entries(first_id: int, count: int) -> Iterator[tuple[object, ...]]:
    for n in range(count):
        entry_id = first_id + n
        at = (START + timedelta(milliseconds=n)).strftime("%Y-%m-%d %H:%M:%S.%f")
        invoice = entry_id % INVOICE_EVERY == 0
        yield (
            entry_id,
            at,
            f"clerk{entry_id % 7}",
            "clerk",
            None,
            "invoice.issue" if invoice else "payment.record",
            "invoice" if invoice else "payment",
            str(entry_id),
            None,
            f'{{"amount_minor":{entry_id % 100_000},"currency":"USD","id":{entry_id}}}',
            f"{entry_id:08x}-0000-4000-8000-{entry_id:012x}",
            PLACEHOLDER_HASH,
        )


def fill_sqlite(path: Path, count: int) -> int:
    """Add `count` entries and their links to the SQLite database at `path` (migrated); returns
    the last sequence number."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA synchronous=OFF")
        connection.execute("BEGIN IMMEDIATE")
        first_id = int(
            connection.execute("SELECT coalesce(max(id), 0) + 1 FROM audit_entry").fetchone()[0]
        )
        sequence = int(
            connection.execute("SELECT coalesce(max(sequence), 0) FROM audit_link").fetchone()[0]
        )
        sealed = START.strftime("%Y-%m-%d %H:%M:%S.%f")
        rows = _entries(first_id, count)
        while True:
            chunk = [row for _, row in zip(range(CHUNK), rows, strict=False)]
            if not chunk:
                break
            connection.executemany(
                "INSERT INTO audit_entry (id, recorded_at, user_name, user_role, facility_id, "
                "action, entity_type, entity_id, before, after, request_id, entry_digest) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                chunk,
            )
            links = []
            for row in chunk:
                sequence += 1
                links.append((sequence, row[0], 2, PLACEHOLDER_HASH, PLACEHOLDER_HASH, sealed))
            connection.executemany(
                "INSERT INTO audit_link (sequence, entry_id, hash_version, prev_hash, entry_hash, "
                "sealed_at) VALUES (?, ?, ?, ?, ?, ?)",
                links,
            )
        connection.execute(
            "UPDATE audit_chain_head SET last_sequence = ?, last_hash = ? WHERE id = 1",
            (sequence, PLACEHOLDER_HASH),
        )
        connection.execute("COMMIT")
        connection.execute("ANALYZE")
    finally:
        connection.close()
    return sequence


def fill_postgresql(url: str, count: int) -> int:
    """Add `count` entries and their links to the PostgreSQL database at `url` (migrated), with
    COPY; returns the last sequence number. The id sequence is moved past them."""
    import psycopg

    with psycopg.connect(url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(max(id), 0) + 1 FROM audit_entry")
        first_id = int(cursor.fetchone()[0])  # type: ignore[index]
        cursor.execute("SELECT coalesce(max(sequence), 0) FROM audit_link")
        sequence = int(cursor.fetchone()[0])  # type: ignore[index]
        entries = "(id, recorded_at, user_name, user_role, facility_id, action, entity_type, "
        entries += "entity_id, before, after, request_id, entry_digest)"
        with cursor.copy(f"COPY audit_entry {entries} FROM STDIN") as copy:
            for row in _entries(first_id, count):
                copy.write_row((*row[:1], f"{row[1]}+00", *row[2:]))
        sealed = START.isoformat()
        with cursor.copy(
            "COPY audit_link (sequence, entry_id, hash_version, prev_hash, entry_hash, sealed_at) "
            "FROM STDIN"
        ) as copy:
            for n in range(count):
                sequence += 1
                copy.write_row(
                    (sequence, first_id + n, 2, PLACEHOLDER_HASH, PLACEHOLDER_HASH, sealed)
                )
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence('audit_entry', 'id'), %s)",
            (first_id + count - 1,),
        )
        cursor.execute(
            "UPDATE audit_chain_head SET last_sequence = %s, last_hash = %s WHERE id = 1",
            (sequence, PLACEHOLDER_HASH),
        )
        connection.commit()
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("VACUUM ANALYZE audit_entry")
        connection.execute("VACUUM ANALYZE audit_link")
    return sequence
