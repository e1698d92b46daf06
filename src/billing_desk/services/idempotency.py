"""Idempotency keys: a retried request returns the first result, and nothing is written twice.

A write claims its key at the start of its transaction by inserting an `IdempotencyRecord`
(facility, key, fingerprint of the canonical request). The unique index refuses a key already
used, and makes a concurrent request with the same key wait for the first: when the first
commits, the second finds its record and replays it; when the first rolls back, the second
carries on as if alone. The result is stored in the same transaction as the change, so a key
exists exactly when its change does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from billing_desk.db.models import IdempotencyRecord, MaintenanceRun
from billing_desk.domain.errors import BadInput, EnvironmentFault, Refused
from billing_desk.domain.hashing import canonical_bytes, record_digest
from billing_desk.domain.roles import Permission
from billing_desk.services.unit_of_work import UnitOfWork, Workspace

DEFAULT_KEY_RETENTION_DAYS = 30
# How long a request waits for another still running with the same key (PostgreSQL).
IN_PROGRESS_WAIT = "20s"
_KEY = re.compile(r"[\x21-\x7e]{1,200}")
_LOCK_NOT_AVAILABLE = "55P03"


def checked_key(key: str | None) -> str:
    if key is None or not key.strip():
        raise BadInput(
            "Every payment change needs an idempotency key; pass --idempotency-key with a value "
            "unique to this request (reuse it only to retry the same request)."
        )
    cleaned = key.strip()
    if not _KEY.fullmatch(cleaned):
        raise BadInput(
            f"'{key}' is not a usable idempotency key; use 1 to 200 visible ASCII characters "
            "without spaces."
        )
    return cleaned


@dataclass(frozen=True)
class Claim:
    """A key claimed by this transaction; `complete` stores the result beside it."""

    record: IdempotencyRecord


@dataclass(frozen=True)
class Replay:
    """The result first returned for this key and request."""

    result: dict[str, Any]


def claim(
    unit: UnitOfWork,
    *,
    facility_id: int | None,
    key: str,
    operation: str,
    request: Mapping[str, object],
    inserting: Sequence[object] = (),
) -> Claim | Replay:
    """Claim `key` for `request`, or return the replay of the request that already used it.
    Refuses (writing nothing) a key used for a different request, naming the fields that
    differ. `inserting`: new rows of the request, written in the same flush as the key; when
    one of them breaks a unique index and the key is free, that IntegrityError is raised (and
    nothing is written) for the caller to explain."""
    fields = {"operation": operation, **request}
    fingerprint = record_digest(fields)
    session = unit.session
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"SET LOCAL lock_timeout = '{IN_PROGRESS_WAIT}'"))
    record = IdempotencyRecord(
        facility_id=facility_id,
        key=key,
        operation=operation,
        fingerprint=fingerprint,
        request=canonical_bytes(fields).decode(),
        result="",
        created_at=unit.now,
        created_by=unit.actor.name,
    )
    try:
        with session.begin_nested():
            session.add(record)
            session.add_all(inserting)
            session.flush()
    except IntegrityError:
        # The key is taken, by a request that committed before or while we waited on the
        # unique index; or another index refused. Whichever it was, the key decides first.
        # (Trying the insert first spares the common case a look-up.)
        found = _find(unit, facility_id, key)
        if found is None:
            raise
        return _replay(found, fingerprint, fields, key)
    except DBAPIError as err:
        if getattr(err.orig, "sqlstate", None) == _LOCK_NOT_AVAILABLE:
            raise EnvironmentFault(
                f"A request with idempotency key {key} is still being processed; try again in a "
                "moment with the same key.",
                retryable=True,
            ) from err
        raise
    return Claim(record)


def complete(unit: UnitOfWork, claimed: Claim, result: Mapping[str, object]) -> None:
    claimed.record.result = canonical_bytes(result).decode()
    unit.session.flush()


def _find(unit: UnitOfWork, facility_id: int | None, key: str) -> IdempotencyRecord | None:
    query = select(IdempotencyRecord).where(IdempotencyRecord.key == key)
    if facility_id is None:
        query = query.where(
            IdempotencyRecord.facility_id.is_(None),
            IdempotencyRecord.created_by == unit.actor.name,
        )
    else:
        query = query.where(IdempotencyRecord.facility_id == facility_id)
    return unit.session.scalars(query).first()


def _replay(
    record: IdempotencyRecord, fingerprint: str, fields: Mapping[str, object], key: str
) -> Replay:
    if record.fingerprint != fingerprint:
        raise Refused(
            f"Idempotency key {key} was already used for a different request "
            f"({_differences(record.request, fields)}); use a new key for a new request."
        )
    return Replay(json.loads(record.result))


def _differences(stored_request: str, fields: Mapping[str, object]) -> str:
    before = json.loads(stored_request)
    now = json.loads(canonical_bytes(fields))
    changed = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
    if not changed:
        return "its canonical form differs"
    names = ", ".join(changed)
    return f"{names} differ{'s' if len(changed) == 1 else ''}"


@dataclass(frozen=True)
class PurgeResult:
    removed: int
    older_than_days: int


def purge_keys(
    workspace: Workspace, *, older_than_days: int = DEFAULT_KEY_RETENTION_DAYS
) -> PurgeResult:
    """Remove idempotency records older than the retention period, and record that it ran."""
    if older_than_days < 1:
        raise BadInput("Keys must be kept at least 1 day; give --older-than-days 1 or more.")

    def operation(unit: UnitOfWork) -> PurgeResult:
        unit.require(Permission.MAINTAIN)
        cutoff = unit.now - timedelta(days=older_than_days)
        count = (
            unit.session.scalar(
                select(func.count())
                .select_from(IdempotencyRecord)
                .where(IdempotencyRecord.created_at < cutoff)
            )
            or 0
        )
        for record in unit.session.scalars(
            select(IdempotencyRecord).where(IdempotencyRecord.created_at < cutoff)
        ):
            unit.session.delete(record)
        unit.session.add(
            MaintenanceRun(
                action="purge idempotency keys",
                ran_at=unit.now,
                ran_by=unit.actor.name,
                detail=json.dumps(
                    {
                        "removed": count,
                        "older_than_days": older_than_days,
                        "cutoff": cutoff.isoformat(),
                    }
                ),
            )
        )
        return PurgeResult(count, older_than_days)

    return workspace.write(operation, action="maintenance.purge_keys")
