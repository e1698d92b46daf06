"""The health view: is the database there and quick, is its schema current, is the audit chain
sealed and checkpointed, is housekeeping done, what failed and what is open. Each item is ok,
warning or failing with one sentence; nothing here writes.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text

from billing_desk.db.migrate import current_revision, head_revision
from billing_desk.db.models import (
    Alert,
    Checkpoint,
    Discrepancy,
    IdempotencyRecord,
    OperationFailure,
    ReconciliationRun,
)
from billing_desk.domain.errors import EnvironmentFault
from billing_desk.domain.roles import Permission
from billing_desk.services.audit_trail import unsealed_tail
from billing_desk.services.credentials import keyring_available
from billing_desk.services.idempotency import DEFAULT_KEY_RETENTION_DAYS
from billing_desk.services.provider import Provider, read_provider
from billing_desk.services.unit_of_work import MAX_UNSEALED, UnitOfWork, Workspace

OK, WARNING, FAILING = "ok", "warning", "failing"
ROUND_TRIPS = 5


@dataclass(frozen=True)
class HealthSettings:
    """When an item turns from ok to warning (or failing)."""

    slow_round_trip_ms: float = 100.0
    unsealed_warning_minutes: float = 10.0
    checkpoint_warning_days: int = 7
    key_retention_days: int = DEFAULT_KEY_RETENTION_DAYS
    discrepancy_warning_days: int = 14
    # Dead rows in the sealer's queue (PostgreSQL) past which sealing has slowed noticeably.
    queue_dead_rows_warning: int = 100_000

    @classmethod
    def from_environment(cls) -> HealthSettings:
        days = os.environ.get("BILLING_DESK_KEY_RETENTION_DAYS", "").strip()
        return cls(key_retention_days=int(days)) if days.isdigit() else cls()


@dataclass(frozen=True)
class HealthItem:
    name: str
    status: str
    sentence: str
    value: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HealthReport:
    checked_at: datetime
    database: str
    items: tuple[HealthItem, ...]

    @property
    def status(self) -> str:
        found = {item.status for item in self.items}
        return FAILING if FAILING in found else WARNING if WARNING in found else OK

    @property
    def failing(self) -> bool:
        return self.status == FAILING

    def to_record(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "checked_at": self.checked_at.isoformat(),
            "database": self.database,
            "items": [
                {"name": i.name, "status": i.status, "sentence": i.sentence, **i.value}
                for i in self.items
            ],
        }


def check_health(
    workspace: Workspace,
    *,
    failures_since: datetime | None = None,
    settings: HealthSettings | None = None,
    keyring_check: Callable[[], bool] = keyring_available,
) -> HealthReport:
    """Every health item. A database that cannot be reached is one failing item saying so (the
    items that need it are then left out); this never raises for an unreachable server."""
    limits = settings or HealthSettings.from_environment()
    now = workspace.clock()
    since = failures_since or now - timedelta(hours=24)
    where = workspace.location.describe()
    items: list[HealthItem] = []
    try:
        items.append(_round_trips(workspace, limits))
    except EnvironmentFault as err:
        items.append(
            HealthItem(
                "database",
                FAILING,
                f"The database cannot be reached: {err.message} Nothing else could be checked.",
                {"reachable": False},
            )
        )
    else:
        items.append(_schema(workspace))
        items += workspace.read(lambda unit: _from_database(unit, limits, since))
    items.append(_keyring(keyring_check))
    return HealthReport(now, where, tuple(items))


def _round_trips(workspace: Workspace, limits: HealthSettings) -> HealthItem:
    def probe(unit: UnitOfWork) -> list[float]:
        timings = []
        for _ in range(ROUND_TRIPS):
            started = time.perf_counter()
            unit.session.execute(text("SELECT 1")).scalar_one()
            timings.append((time.perf_counter() - started) * 1000)
        return timings

    started = time.perf_counter()
    timings = workspace.read(probe)
    connect_ms = (time.perf_counter() - started) * 1000
    median = statistics.median(timings)
    value = {"reachable": True, "round_trip_ms": round(median, 3), "open_ms": round(connect_ms, 1)}
    if median > limits.slow_round_trip_ms:
        return HealthItem(
            "database",
            WARNING,
            f"The database answers, but slowly: {median:.1f} ms a round trip (median of "
            f"{ROUND_TRIPS}), over {limits.slow_round_trip_ms:g} ms.",
            value,
        )
    return HealthItem(
        "database",
        OK,
        f"The database answers in {median:.2f} ms a round trip (median of {ROUND_TRIPS}).",
        value,
    )


def _schema(workspace: Workspace) -> HealthItem:
    current = current_revision(workspace.engine)
    head = head_revision()
    value = {"revision": current, "head": head}
    if current == head:
        return HealthItem("migrations", OK, f"The schema is at the newest revision, {head}.", value)
    return HealthItem(
        "migrations",
        FAILING,
        f"The schema is at revision {current or 'none'}, this billing-desk needs {head}; run "
        "`billing-desk db upgrade` (a shared database: `billing-desk admin init`).",
        value,
    )


def _age(now: datetime, then: datetime | None) -> float | None:
    return None if then is None else (now - then).total_seconds()


def _days(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} minutes"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds / 86400:.0f} days"


def _from_database(unit: UnitOfWork, limits: HealthSettings, since: datetime) -> list[HealthItem]:
    unit.require(Permission.READ)
    session, now = unit.session, unit.now
    items: list[HealthItem] = []

    tail = unsealed_tail(session)
    oldest = _age(now, tail.oldest)
    value: dict[str, Any] = {"count": tail.count, "oldest_seconds": oldest}
    if tail.count == 0:
        items.append(
            HealthItem("unsealed", OK, "Every audit entry is sealed into the chain.", value)
        )
    elif tail.count >= MAX_UNSEALED:
        items.append(
            HealthItem(
                "unsealed",
                FAILING,
                f"{tail.count} audit entries wait to be sealed, so writes are stopped; run "
                "`billing-desk audit seal`.",
                value,
            )
        )
    else:
        late = oldest is not None and oldest > limits.unsealed_warning_minutes * 60
        items.append(
            HealthItem(
                "unsealed",
                WARNING if late else OK,
                f"{tail.count} audit entries wait to be sealed, the oldest for "
                f"{_days(oldest or 0)}" + ("; run `billing-desk audit seal`." if late else "."),
                value,
            )
        )

    last = session.scalar(select(func.max(Checkpoint.created_at)))
    age = _age(now, last)
    value = {"last": last.isoformat() if last else None, "age_seconds": age}
    if age is None:
        items.append(
            HealthItem(
                "checkpoint",
                WARNING,
                "No checkpoint has been signed; a manager runs `billing-desk audit checkpoint`.",
                value,
            )
        )
    else:
        late = age > limits.checkpoint_warning_days * 86400
        items.append(
            HealthItem(
                "checkpoint",
                WARNING if late else OK,
                f"The last checkpoint was signed {_days(age)} ago"
                + (
                    f", more than {limits.checkpoint_warning_days} days; a manager runs "
                    "`billing-desk audit checkpoint`."
                    if late
                    else "."
                ),
                value,
            )
        )

    cutoff = now - timedelta(days=limits.key_retention_days)
    stale = (
        session.scalar(
            select(func.count())
            .select_from(IdempotencyRecord)
            .where(IdempotencyRecord.created_at < cutoff)
        )
        or 0
    )
    value = {"stale": stale, "retention_days": limits.key_retention_days}
    items.append(
        HealthItem(
            "idempotency_keys",
            WARNING if stale else OK,
            f"{stale} idempotency keys are older than {limits.key_retention_days} days; an "
            "administrator runs `billing-desk maintenance purge-keys`."
            if stale
            else f"No idempotency key is older than {limits.key_retention_days} days.",
            value,
        )
    )

    failures = dict(
        session.execute(
            select(OperationFailure.kind, func.count())
            .where(OperationFailure.occurred_at >= since)
            .group_by(OperationFailure.kind)
        ).all()
    )
    count = sum(failures.values())
    value = {"count": count, "since": since.isoformat(), "by_kind": failures}
    kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(failures.items()))
    items.append(
        HealthItem(
            "failed_operations",
            WARNING if count else OK,
            f"{count} operations were refused or failed since {since:%Y-%m-%d %H:%M} UTC "
            f"({kinds}); `billing-desk health --json` lists the kinds."
            if count
            else f"No operation was refused or failed since {since:%Y-%m-%d %H:%M} UTC.",
            value,
        )
    )

    row = session.execute(
        select(func.count(), func.min(ReconciliationRun.started_at))
        .select_from(Discrepancy)
        .join(ReconciliationRun, ReconciliationRun.id == Discrepancy.run_id)
        .where(Discrepancy.status == "open")
    ).one()
    count, first = int(row[0]), row[1]
    if first is not None and first.tzinfo is None:
        first = first.replace(tzinfo=UTC)
    age = _age(now, first)
    value = {"open": count, "oldest_seconds": age}
    late = age is not None and age > limits.discrepancy_warning_days * 86400
    items.append(
        HealthItem(
            "discrepancies",
            WARNING if count else OK,
            f"{count} reconciliation discrepancies are open, the oldest for {_days(age or 0)}; "
            "a manager resolves them with `billing-desk reconcile resolve`."
            + (f" Some are older than {limits.discrepancy_warning_days} days." if late else "")
            if count
            else "No reconciliation discrepancy is open.",
            value,
        )
    )

    if session.get_bind().dialect.name == "postgresql":
        items.append(_audit_queue(unit, limits))

    severities = dict(
        session.execute(
            select(Alert.severity, func.count())
            .where(Alert.status == "open")
            .group_by(Alert.severity)
        ).all()
    )
    count = sum(severities.values())
    critical = severities.get("critical", 0)
    items.append(
        HealthItem(
            "alerts",
            WARNING if critical else OK,
            f"{count} alerts are open ({critical} critical); `billing-desk alerts list --open`."
            if count
            else "No alert is open.",
            {"open": count, "by_severity": severities},
        )
    )
    items.append(_remittance(read_provider(unit)))
    return items


def _remittance(provider: Provider) -> HealthItem:
    """Statements tell facilities whom to pay and where: a warning until they can."""
    value = {"configured": not provider.remittance_missing, "bank_transfer": provider.transfer}
    if provider.remittance_missing:
        what = "Nothing is set" if not provider.name else "Neither a bank account nor an address"
        return HealthItem(
            "remittance",
            WARNING,
            f"Remittance details are missing ({what.lower()}): statements say so instead of "
            "where to pay; a manager sets them with `billing-desk provider set`.",
            value,
        )
    ways = [
        w
        for w, ok in (("bank transfer", provider.transfer), ("check", provider.check_address))
        if ok
    ]
    return HealthItem(
        "remittance",
        OK,
        f"Statements tell facilities to pay {provider.name} by {' or '.join(ways)}.",
        value,
    )


def _audit_queue(unit: UnitOfWork, limits: HealthSettings) -> HealthItem:
    """PostgreSQL: every write queues its entries and the sealer deletes them moments later, so
    the queue's dead rows pile up unless the table is vacuumed, and sealing slows with them."""
    session = unit.session
    dead = session.scalar(
        text("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = 'audit_pending'::regclass")
    )
    autovacuum = session.scalar(text("SELECT current_setting('autovacuum')")) == "on"
    dead_rows = int(dead or 0)
    sentence = f"The audit queue holds {dead_rows} dead rows"
    crowded = dead_rows >= limits.queue_dead_rows_warning
    if crowded:
        sentence += (
            ", which slow sealing; the server's administrator runs VACUUM ANALYZE audit_pending"
        )
    sentence += "."
    if not autovacuum:
        sentence += (
            " Autovacuum is off on this server; turn it on (autovacuum = on in postgresql.conf)."
        )
    return HealthItem(
        "audit_queue",
        WARNING if crowded else OK,
        sentence,
        {"dead_rows": dead_rows, "autovacuum": autovacuum},
    )


def _keyring(available: Callable[[], bool]) -> HealthItem:
    if available():
        return HealthItem("keyring", OK, "The OS keyring is available.", {"available": True})
    return HealthItem(
        "keyring",
        WARNING,
        "No OS keyring is available: checkpoint keys cannot be kept in it and shared-database "
        "passwords are asked each time.",
        {"available": False},
    )
