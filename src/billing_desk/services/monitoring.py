"""Anomaly rules over payments, and the alerts they raise.

Each rule is a small named unit (`RULES`) with its thresholds in `MonitoringConfig`; it reads the
payments of a scope and returns findings, each with the facility, the rows involved and one
sentence saying why it fired. The rules run on demand over a period (`run_monitor`) and, once a
workspace is `watch`ed, after every payment recorded or moved, after its commit, so the clerk
never waits on them and a rule that fails is logged, never the payment's failure. A finding is
stored as an `Alert` once (its fingerprint names the rule and rows), audited under the action
`alert.raise`, which live updates announce on PostgreSQL; a manager acknowledges or dismisses it
with a note. Writes that were refused or failed are kept as `OperationFailure` rows: a clerk's
refused attempt to void their own payment is evidence for the segregation rule, and the health
view counts them.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import json
import logging
import os
import re
import statistics
import threading
import time as clock
import weakref
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from billing_desk.db.models import (
    Alert,
    Allocation,
    Facility,
    Invoice,
    OperationFailure,
    Payment,
    PaymentStatusChange,
    ReconciliationRun,
)
from billing_desk.domain.errors import BadInput, BillingError, EnvironmentFault, PermissionDenied
from billing_desk.domain.hashing import canonical_bytes
from billing_desk.domain.payments import LIVE_STATUSES, PaymentStatus
from billing_desk.domain.roles import Permission
from billing_desk.services.live import subscribe
from billing_desk.services.unit_of_work import UnitOfWork, Workspace

log = logging.getLogger(__name__)

RAISE_ACTION = "alert.raise"
CLOSE_ACTION = "alert.close"
FAILURE_ACTION = "operation.failed"
SEVERITIES = ("info", "warning", "critical")
ALERT_STATUSES = ("open", "acknowledged", "dismissed")
ENVIRONMENT_PREFIX = "BILLING_DESK_MONITOR_"
# Payments whose money counts: what a facility has actually paid.
_COUNTED = frozenset(s.value for s in LIVE_STATUSES)
_VOIDING = frozenset({PaymentStatus.VOIDED.value, PaymentStatus.REFUNDED.value})
_AWAITING = PaymentStatus.AWAITING_APPROVAL.value
# The sentence services.payments gives a manager who tries to void, refund or approve their own
# payment; the failure log keeps the payment it names.
_OWN_PAYMENT = re.compile(r"recorded payment (\d+), so another manager must (\w+) it")


# -- configuration --------------------------------------------------------------------------


@dataclass(frozen=True)
class MonitoringConfig:
    """Every rule's thresholds. Each can be set from the environment as
    BILLING_DESK_MONITOR_<FIELD> (e.g. BILLING_DESK_MONITOR_OUTLIER_ROBUST_Z=8)."""

    # amount-outlier: robust z = 0.6745 * |amount - median| / MAD over the facility's history,
    # and at least this many times above or below the median (a part payment is no alarm; an
    # extra zero is).
    outlier_robust_z: float = 10.0
    outlier_min_ratio: float = 4.0
    outlier_min_history: int = 5
    outlier_history_days: int = 365
    # overpayment: more than the facility owes (billed minus paid before it), by more than
    # this share of what it owed and this many minor units: a check rounded up to the next
    # hundred is no alarm.
    overpayment_tolerance_percent: float = 1.0
    overpayment_tolerance_minor: int = 10_000
    # velocity: more than this many payments recorded, or voids, at one facility in the window.
    velocity_window_minutes: int = 60
    velocity_max_payments: int = 12
    velocity_max_voids: int = 3
    # after-hours: business hours and days (Monday = 0) in the office's time zone.
    business_start: time = time(7, 0)
    business_end: time = time(19, 0)
    business_days: frozenset[int] = frozenset({0, 1, 2, 3, 4})
    business_timezone: str = "UTC"
    # near-duplicate: the same amount at one facility within this many days.
    near_duplicate_days: int = 3

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> MonitoringConfig:
        """Defaults, overridden by BILLING_DESK_MONITOR_* variables; a bad value is refused
        naming the variable."""
        env = os.environ if environ is None else environ
        changes: dict[str, Any] = {}
        for item in dataclasses.fields(cls):
            name = ENVIRONMENT_PREFIX + item.name.upper()
            text = env.get(name)
            if text is None or not text.strip():
                continue
            default = getattr(cls(), item.name)
            try:
                changes[item.name] = _parse_setting(text.strip(), default)
            except ValueError:
                raise BadInput(
                    f"{name}={text!r} is not a valid setting; give it like the default "
                    f"{_show_setting(default)}."
                ) from None
        config = dataclasses.replace(cls(), **changes)
        config.zone()  # refuse an unknown time zone now, not in the middle of a run
        return config

    def zone(self) -> ZoneInfo:
        try:
            return ZoneInfo(self.business_timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise BadInput(
                f"{self.business_timezone!r} is not a time zone; set "
                f"{ENVIRONMENT_PREFIX}BUSINESS_TIMEZONE to a name like America/New_York."
            ) from None


def _parse_setting(text: str, default: object) -> object:
    if isinstance(default, bool):
        raise ValueError(text)
    if isinstance(default, int):
        return int(text)
    if isinstance(default, float):
        return float(text)  # a threshold, not money
    if isinstance(default, time):
        return time.fromisoformat(text)
    if isinstance(default, frozenset):
        return frozenset(int(part) for part in text.split(",") if part.strip())
    return text


def _show_setting(value: object) -> str:
    if isinstance(value, frozenset):
        return ",".join(str(v) for v in sorted(value))
    if isinstance(value, time):
        return value.strftime("%H:%M")
    return str(value)


# -- what the rules read --------------------------------------------------------------------


@dataclass(frozen=True)
class PaymentFact:
    id: int
    facility_id: int
    method: str
    status: str
    amount_minor: int
    currency: str
    received: date
    check_number: str | None
    routing_number: str | None
    account_hash: str | None
    reference: str | None
    recorded_by: str
    recorded_at: datetime
    duplicate_of_id: int | None


@dataclass(frozen=True)
class MoveFact:
    """A status change that takes a manager: a void, a refund or an approval."""

    payment_id: int
    facility_id: int
    from_status: str | None
    to_status: str
    changed_by: str
    changed_at: datetime


@dataclass(frozen=True)
class RefusalFact:
    payment_id: int
    user_name: str
    occurred_at: datetime
    message: str


@dataclass(frozen=True)
class ClosedRun:
    id: int
    date_from: date
    date_to: date
    closed_at: datetime


@dataclass
class Evidence:
    """What one run of the rules reads, once, for every rule. `candidates` are the payments
    the run is about (a period's, or one just recorded); the rest is their context."""

    config: MonitoringConfig
    payments: list[PaymentFact]
    candidates: frozenset[int] | None  # None: every payment read is a candidate
    moves: list[MoveFact]
    refusals: list[RefusalFact]
    closed_runs: list[ClosedRun]
    billed: dict[int, list[tuple[date, int]]]  # facility -> (issue date, total), by date
    applied: dict[int, int]  # payment -> what of it is applied to invoices (not released)
    applied_before: dict[int, int]  # facility -> applied by payments received before the window
    facility_codes: dict[int, str]
    _by_id: dict[int, PaymentFact] = field(default_factory=dict)

    def is_candidate(self, payment_id: int) -> bool:
        return self.candidates is None or payment_id in self.candidates

    def payment(self, payment_id: int) -> PaymentFact | None:
        if not self._by_id:
            self._by_id = {p.id: p for p in self.payments}
        return self._by_id.get(payment_id)

    def code(self, facility_id: int) -> str:
        return self.facility_codes.get(facility_id, str(facility_id))


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: str
    facility_id: int
    entities: Mapping[str, tuple[int, ...]]
    explanation: str

    @property
    def fingerprint(self) -> str:
        named = {kind: sorted(ids) for kind, ids in self.entities.items()}
        return hashlib.sha256(canonical_bytes({"rule": self.rule, "entities": named})).hexdigest()


@dataclass(frozen=True)
class Rule:
    name: str
    severity: str
    summary: str
    find: Callable[[Evidence], list[Finding]]


def _money(minor: int, currency: str) -> str:
    sign = "-" if minor < 0 else ""
    whole, cents = divmod(abs(minor), 100)
    return f"{sign}{whole:,}.{cents:02d} {currency}"


# -- the rules ------------------------------------------------------------------------------


# Up to this many payments in a facility's window, each is judged against exactly the ones
# before it.
_EXACT_HISTORY = 64


def amount_outliers(ev: Evidence) -> list[Finding]:
    """A payment far from what its facility usually pays: robust z-score over the facility's
    own history (median and MAD, which a few odd payments cannot drag along)."""
    by_facility: dict[int, list[PaymentFact]] = defaultdict(list)
    for p in ev.payments:
        if p.status != PaymentStatus.VOIDED.value:
            by_facility[p.facility_id].append(p)
    found: list[Finding] = []
    for rows in by_facility.values():
        targets = [p for p in rows if ev.is_candidate(p.id)]
        if not targets:
            continue
        if len(rows) <= _EXACT_HISTORY or (ev.candidates is not None and len(targets) <= 4):
            # Each payment against the history before it, nothing later: what the rule sees
            # right after the payment is recorded.
            for p in targets:
                history = [q.amount_minor for q in rows if (q.received, q.id) < (p.received, p.id)]
                found += _outlier(ev, p, _spread(history))
            continue
        # A long history: one median and MAD for the whole window, which one payment more or
        # less hardly moves (the point of robust statistics), instead of one per payment.
        stats = _spread([q.amount_minor for q in rows])
        for p in targets:
            found += _outlier(ev, p, stats)
    return found


def _spread(history: Sequence[int]) -> tuple[int, float, float]:
    """(how many, median, MAD) of a history; (0, 0, 0) when it is empty."""
    if not history:
        return 0, 0.0, 0.0
    median = statistics.median(history)
    return len(history), median, statistics.median(abs(a - median) for a in history)


def _outlier(ev: Evidence, p: PaymentFact, stats: tuple[int, float, float]) -> list[Finding]:
    cfg = ev.config
    count, median, mad = stats
    if count < cfg.outlier_min_history:
        return []
    # A facility that always pays the same has no spread: a cent of it would make everything
    # an outlier, so the spread is at least 1% of the median.
    spread = max(mad, abs(median) * 0.01, 1.0)
    z = 0.6745 * abs(p.amount_minor - median) / spread
    times = p.amount_minor / median if median else float("inf")  # a ratio, not money
    if z <= cfg.outlier_robust_z or 1 / cfg.outlier_min_ratio < times < cfg.outlier_min_ratio:
        return []
    return [
        Finding(
            "amount-outlier",
            "warning",
            p.facility_id,
            {"payment": (p.id,)},
            f"Payment {p.id} of {_money(p.amount_minor, p.currency)} is {times:.2g} times "
            f"{ev.code(p.facility_id)}'s median payment of "
            f"{_money(round(median), p.currency)} (robust z {z:.1f}, over "
            f"{cfg.outlier_robust_z:g}, over {count} payments of its history).",
        )
    ]


def overpayments(ev: Evidence) -> list[Finding]:
    """A payment larger than what the facility still owes: everything billed to it by the day
    the payment arrived, less what earlier payments were applied to. (Credit left unapplied
    does not lower what is owed: an invoice paid in full beside old credit is no alarm.)"""
    cfg = ev.config
    found: list[Finding] = []
    by_facility: dict[int, list[PaymentFact]] = defaultdict(list)
    for p in ev.payments:
        if p.status in _COUNTED:
            by_facility[p.facility_id].append(p)
    for facility_id, rows in by_facility.items():
        rows.sort(key=lambda p: (p.received, p.id))
        invoices = ev.billed.get(facility_id, [])
        issue_dates = [d for d, _ in invoices]
        running: list[int] = []
        total = 0
        for _, amount in invoices:
            total += amount
            running.append(total)
        paid = ev.applied_before.get(facility_id, 0)
        for p in rows:
            if ev.is_candidate(p.id):
                at = bisect.bisect_right(issue_dates, p.received)
                billed = running[at - 1] if at else 0
                owed = max(billed - paid, 0)
                allowed = max(
                    cfg.overpayment_tolerance_minor, owed * cfg.overpayment_tolerance_percent / 100
                )
                if p.amount_minor - owed > allowed:
                    found.append(
                        Finding(
                            "overpayment",
                            "warning",
                            facility_id,
                            {"payment": (p.id,)},
                            f"Payment {p.id} of {_money(p.amount_minor, p.currency)} is "
                            f"{_money(p.amount_minor - owed, p.currency)} more than the "
                            f"{_money(owed, p.currency)} {ev.code(facility_id)} owed on "
                            f"{p.received}.",
                        )
                    )
            paid += ev.applied.get(p.id, 0)
    return found


def _bursts(
    events: Sequence[tuple[datetime, int]], window: timedelta, most: int
) -> Iterator[tuple[int, list[int]]]:
    """For events (time, id) sorted by time: each place where more than `most` fall within
    `window`, as (index of the event that crossed, ids in its window); once per burst."""
    start = 0
    over = False
    for index, (at, _) in enumerate(events):
        while events[start][0] <= at - window:
            start += 1
        count = index - start + 1
        if count > most and not over:
            yield index, [i for _, i in events[start : index + 1]]
        over = count > most


def velocity(ev: Evidence) -> list[Finding]:
    """Many payments recorded, or many voids, at one facility within a short window."""
    cfg = ev.config
    window = timedelta(minutes=cfg.velocity_window_minutes)
    found: list[Finding] = []
    recorded: dict[int, list[tuple[datetime, int]]] = defaultdict(list)
    for p in ev.payments:
        recorded[p.facility_id].append((p.recorded_at, p.id))
    voids: dict[int, list[tuple[datetime, int]]] = defaultdict(list)
    for m in ev.moves:
        if m.to_status == PaymentStatus.VOIDED.value:
            voids[m.facility_id].append((m.changed_at, m.payment_id))
    for what, series, most in (
        ("payments recorded", recorded, cfg.velocity_max_payments),
        ("voids", voids, cfg.velocity_max_voids),
    ):
        for facility_id, events in series.items():
            events.sort()
            for index, ids in _bursts(events, window, most):
                if not ev.is_candidate(events[index][1]):
                    continue
                at = events[index][0]
                found.append(
                    Finding(
                        "velocity",
                        "warning",
                        facility_id,
                        {"payment": tuple(ids)},
                        f"{len(ids)} {what} at {ev.code(facility_id)} within "
                        f"{cfg.velocity_window_minutes} minutes up to "
                        f"{at:%Y-%m-%d %H:%M} UTC, more than the {most} allowed.",
                    )
                )
    return found


def after_hours(ev: Evidence) -> list[Finding]:
    """Payments recorded, and voids, refunds or approvals made, outside business hours."""
    cfg = ev.config
    zone = cfg.zone()

    def outside(moment: datetime) -> datetime | None:
        local = moment.astimezone(zone)
        if local.weekday() not in cfg.business_days or not (
            cfg.business_start <= local.time() < cfg.business_end
        ):
            return local
        return None

    hours = (
        f"{cfg.business_start:%H:%M}-{cfg.business_end:%H:%M} "
        f"{_weekdays(cfg.business_days)} ({cfg.business_timezone})"
    )
    found: list[Finding] = []
    for p in ev.payments:
        if ev.is_candidate(p.id) and (local := outside(p.recorded_at)) is not None:
            found.append(
                Finding(
                    "after-hours",
                    "info",
                    p.facility_id,
                    {"payment": (p.id,)},
                    f"Payment {p.id} was recorded by {p.recorded_by} at "
                    f"{local:%a %Y-%m-%d %H:%M}, outside business hours {hours}.",
                )
            )
    for m in ev.moves:
        if ev.is_candidate(m.payment_id) and (local := outside(m.changed_at)) is not None:
            found.append(
                Finding(
                    "after-hours",
                    "info",
                    m.facility_id,
                    {"payment": (m.payment_id,), "move": (_minute(m.changed_at),)},
                    f"Payment {m.payment_id} was moved to {m.to_status} by {m.changed_by} at "
                    f"{local:%a %Y-%m-%d %H:%M}, outside business hours {hours}.",
                )
            )
    return found


def _minute(moment: datetime) -> int:
    return int(moment.timestamp()) // 60


def _weekdays(days: frozenset[int]) -> str:
    names = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
    ordered = sorted(days)
    if ordered and ordered == list(range(ordered[0], ordered[-1] + 1)) and len(ordered) > 2:
        return f"{names[ordered[0]]}-{names[ordered[-1]]}"
    return ",".join(names[d] for d in ordered)


def own_payment_moves(ev: Evidence) -> list[Finding]:
    """One user both recording a payment and voiding, refunding or approving it; a refused
    attempt to do so counts too."""
    found: list[Finding] = []
    for m in ev.moves:
        p = ev.payment(m.payment_id)
        if p is None or not ev.is_candidate(p.id) or m.changed_by != p.recorded_by:
            continue
        approving = m.from_status == _AWAITING and m.to_status not in _VOIDING
        verb = "approved" if approving else m.to_status
        found.append(
            Finding(
                "own-payment",
                "critical",
                p.facility_id,
                {"payment": (p.id,), "move": (_minute(m.changed_at),)},
                f"{m.changed_by} recorded payment {p.id} and also {verb} it on "
                f"{m.changed_at:%Y-%m-%d %H:%M} UTC (segregation of duties).",
            )
        )
    for r in ev.refusals:
        p = ev.payment(r.payment_id)
        if p is None or not ev.is_candidate(p.id) or r.user_name != p.recorded_by:
            continue
        match = _OWN_PAYMENT.search(r.message)
        verb = match.group(2) if match else "change"
        found.append(
            Finding(
                "own-payment",
                "warning",
                p.facility_id,
                {"payment": (p.id,), "attempt": (_minute(r.occurred_at),)},
                f"{r.user_name} recorded payment {p.id} and tried to {verb} it on "
                f"{r.occurred_at:%Y-%m-%d %H:%M} UTC; it was refused (segregation of duties).",
            )
        )
    return found


def reused_check_numbers(ev: Evidence) -> list[Finding]:
    """The same check (routing, account, number) at one facility with different amounts."""
    groups: dict[tuple[int, str, str, str], list[PaymentFact]] = defaultdict(list)
    for p in ev.payments:
        if p.check_number and p.routing_number and p.account_hash:
            groups[(p.facility_id, p.routing_number, p.account_hash, p.check_number)].append(p)
    found: list[Finding] = []
    for (facility_id, _, _, number), rows in groups.items():
        amounts = {p.amount_minor for p in rows}
        if len(amounts) < 2 or not any(ev.is_candidate(p.id) for p in rows):
            continue
        rows.sort(key=lambda p: p.id)
        listed = ", ".join(f"{p.id} ({_money(p.amount_minor, p.currency)})" for p in rows)
        found.append(
            Finding(
                "reused-check",
                "warning",
                facility_id,
                {"payment": tuple(p.id for p in rows)},
                f"Check number {number} from the same account was entered for "
                f"{ev.code(facility_id)} with different amounts: payments {listed}.",
            )
        )
    return found


def near_duplicates(ev: Evidence) -> list[Finding]:
    """The same amount from one facility within a few days under a different reference: a
    double entry the natural-key guard cannot see."""
    days = ev.config.near_duplicate_days
    groups: dict[tuple[int, int], list[PaymentFact]] = defaultdict(list)
    for p in ev.payments:
        if p.status in _COUNTED:
            groups[(p.facility_id, p.amount_minor)].append(p)
    found: list[Finding] = []
    for (facility_id, _), rows in groups.items():
        if len(rows) < 2:
            continue
        rows.sort(key=lambda p: (p.received, p.id))
        for i, first in enumerate(rows):
            for second in rows[i + 1 :]:
                if (second.received - first.received).days > days:
                    break
                if not (ev.is_candidate(first.id) or ev.is_candidate(second.id)):
                    continue
                if first.reference == second.reference and first.reference is not None:
                    continue  # the same instrument: the natural-key guard's business
                if second.duplicate_of_id == first.id or first.duplicate_of_id == second.id:
                    continue  # a second entry a manager approved knowingly
                found.append(
                    Finding(
                        "near-duplicate",
                        "warning",
                        facility_id,
                        {"payment": (first.id, second.id)},
                        f"Payments {first.id} and {second.id} from {ev.code(facility_id)} are "
                        f"both {_money(first.amount_minor, first.currency)}, received "
                        f"{first.received} and {second.received}, under different references "
                        f"({first.reference or 'none'} and {second.reference or 'none'}).",
                    )
                )
    return found


def closed_period_changes(ev: Evidence) -> list[Finding]:
    """A payment recorded or moved after the reconciliation run covering its date was closed."""
    if not ev.closed_runs:
        return []
    runs = sorted(ev.closed_runs, key=lambda r: r.date_from)
    starts = [r.date_from for r in runs]

    def closed_run_of(day: date, moment: datetime) -> ClosedRun | None:
        at = bisect.bisect_right(starts, day)
        for run in reversed(runs[:at]):
            if run.date_from <= day <= run.date_to and moment > run.closed_at:
                return run
        return None

    found: list[Finding] = []
    for p in ev.payments:
        if ev.is_candidate(p.id) and (run := closed_run_of(p.received, p.recorded_at)):
            found.append(
                Finding(
                    "closed-period",
                    "critical",
                    p.facility_id,
                    {"payment": (p.id,), "reconciliation_run": (run.id,)},
                    f"Payment {p.id} (received {p.received}) was recorded on "
                    f"{p.recorded_at:%Y-%m-%d}, after reconciliation run {run.id} for "
                    f"{run.date_from} to {run.date_to} was closed on {run.closed_at:%Y-%m-%d}.",
                )
            )
    for m in ev.moves:
        moved = ev.payment(m.payment_id)
        if moved is None or not ev.is_candidate(moved.id):
            continue
        if (run := closed_run_of(moved.received, m.changed_at)) is not None:
            p = moved
            found.append(
                Finding(
                    "closed-period",
                    "critical",
                    p.facility_id,
                    {
                        "payment": (p.id,),
                        "reconciliation_run": (run.id,),
                        "move": (_minute(m.changed_at),),
                    },
                    f"Payment {p.id} (received {p.received}) was moved to {m.to_status} on "
                    f"{m.changed_at:%Y-%m-%d}, after reconciliation run {run.id} for "
                    f"{run.date_from} to {run.date_to} was closed on {run.closed_at:%Y-%m-%d}.",
                )
            )
    return found


RULES: tuple[Rule, ...] = (
    Rule("amount-outlier", "warning", "amount far outside the facility's history", amount_outliers),
    Rule("overpayment", "warning", "more than the facility's open balance", overpayments),
    Rule("velocity", "warning", "many payments or voids in a short window", velocity),
    Rule("after-hours", "info", "entered outside business hours", after_hours),
    Rule("own-payment", "critical", "one user recording and voiding/approving", own_payment_moves),
    Rule(
        "reused-check", "warning", "a check number reused with another amount", reused_check_numbers
    ),
    Rule("near-duplicate", "warning", "same amount within days, other reference", near_duplicates),
    Rule(
        "closed-period",
        "critical",
        "a change inside a closed reconciliation",
        closed_period_changes,
    ),
)
RULE_NAMES = tuple(rule.name for rule in RULES)


# -- reading the evidence -------------------------------------------------------------------


def gather(
    session: Session,
    config: MonitoringConfig,
    *,
    date_from: date | None = None,
    date_to: date | None = None,
    payment_ids: Sequence[int] = (),
) -> Evidence:
    """Read what the rules need: the payments of the period (or the facilities of
    `payment_ids` around their dates) with the history before them."""
    pay = Payment
    base = select(
        pay.id,
        pay.facility_id,
        pay.method,
        pay.status,
        pay.amount_minor,
        pay.currency,
        pay.received_date,
        pay.check_number,
        pay.routing_number,
        pay.account_hash,
        pay.transfer_reference,
        pay.processor_ref,
        pay.recorded_by,
        pay.recorded_at,
        pay.duplicate_of_id,
    )
    history = timedelta(days=config.outlier_history_days)
    ahead = timedelta(days=config.near_duplicate_days)
    candidates: frozenset[int] | None = None
    facilities: list[int] | None = None
    if payment_ids:
        anchors = session.execute(
            select(pay.id, pay.facility_id, pay.received_date).where(pay.id.in_(payment_ids))
        ).all()
        candidates = frozenset(row.id for row in anchors)
        facilities = sorted({row.facility_id for row in anchors})
        if not anchors:
            return _empty(config)
        low = min(row.received_date for row in anchors) - history
        high = max(row.received_date for row in anchors) + ahead
        query = base.where(pay.facility_id.in_(facilities))
    else:
        low = date_from - history if date_from is not None else None
        high = date_to + ahead if date_to is not None else None
        query = base
    if low is not None:
        query = query.where(pay.received_date >= low)
    if high is not None:
        query = query.where(pay.received_date <= high)
    payments = [
        PaymentFact(
            r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9],
            _reference(r[2], r[10], r[11], r[7]), r[12], r[13], r[14],
        )
        for r in session.execute(query)
    ]  # fmt: skip
    if candidates is None and (date_from is not None or date_to is not None):
        candidates = frozenset(
            p.id
            for p in payments
            if (date_from is None or p.received >= date_from)
            and (date_to is None or p.received <= date_to)
        )
    known = {p.id for p in payments}

    moves_query = (
        select(
            PaymentStatusChange.payment_id,
            PaymentStatusChange.facility_id,
            PaymentStatusChange.from_status,
            PaymentStatusChange.to_status,
            PaymentStatusChange.changed_by,
            PaymentStatusChange.changed_at,
        )
        .where(
            or_(
                PaymentStatusChange.to_status.in_(sorted(_VOIDING)),
                PaymentStatusChange.from_status == _AWAITING,
            )
        )
        .order_by(PaymentStatusChange.id)
    )
    if facilities is not None:
        moves_query = moves_query.where(PaymentStatusChange.facility_id.in_(facilities))
    moves = [MoveFact(*row) for row in session.execute(moves_query) if row[0] in known]

    refusal_query = select(
        OperationFailure.payment_id,
        OperationFailure.user_name,
        OperationFailure.occurred_at,
        OperationFailure.message,
    ).where(OperationFailure.kind == "segregation", OperationFailure.payment_id.is_not(None))
    refusals = [
        RefusalFact(int(row[0]), row[1], row[2], row[3])
        for row in session.execute(refusal_query)
        if row[0] in known
    ]

    runs = [
        ClosedRun(row[0], row[1], row[2], row[3])
        for row in session.execute(
            select(
                ReconciliationRun.id,
                ReconciliationRun.date_from,
                ReconciliationRun.date_to,
                ReconciliationRun.closed_at,
            ).where(ReconciliationRun.status == "closed", ReconciliationRun.closed_at.is_not(None))
        )
        if row[3] is not None
    ]

    invoices = select(Invoice.facility_id, Invoice.issue_date, Invoice.total_minor).where(
        Invoice.status.not_in(("void", "draft"))
    )
    if facilities is not None:
        invoices = invoices.where(Invoice.facility_id.in_(facilities))
    billed: dict[int, list[tuple[date, int]]] = defaultdict(list)
    for facility_id, issued, total in session.execute(invoices):
        billed[facility_id].append((issued, total))
    for rows in billed.values():
        rows.sort()

    applied_query = (
        select(Allocation.payment_id, func.sum(Allocation.amount_minor))
        .where(Allocation.released.is_(False))
        .group_by(Allocation.payment_id)
    )
    if facilities is not None:
        applied_query = applied_query.where(Allocation.facility_id.in_(facilities))
    applied = {int(p): int(s or 0) for p, s in session.execute(applied_query)}
    applied_before: dict[int, int] = {}
    if low is not None:
        earlier = (
            select(Payment.facility_id, func.sum(Allocation.amount_minor))
            .join(Allocation, Allocation.payment_id == Payment.id)
            .where(
                Payment.received_date < low,
                Payment.status.in_(sorted(_COUNTED)),
                Allocation.released.is_(False),
            )
            .group_by(Payment.facility_id)
        )
        if facilities is not None:
            earlier = earlier.where(Payment.facility_id.in_(facilities))
        applied_before = {f: int(s or 0) for f, s in session.execute(earlier)}

    codes = dict(session.execute(select(Facility.id, Facility.code)).all())
    return Evidence(
        config, payments, candidates, moves, refusals, runs, billed, applied, applied_before, codes
    )


def _empty(config: MonitoringConfig) -> Evidence:
    return Evidence(config, [], frozenset(), [], [], [], {}, {}, {}, {})


def _reference(
    method: str, transfer: str | None, processor: str | None, check: str | None
) -> str | None:
    if method == "transfer":
        return transfer
    if method == "card":
        return processor
    if method == "check":
        return f"check {check}" if check else None
    return None


def evaluate(evidence: Evidence, rules: Iterable[Rule] = RULES) -> list[Finding]:
    """Every finding of `rules` over `evidence`, in rule order."""
    found: list[Finding] = []
    for rule in rules:
        found += rule.find(evidence)
    return found


# -- alerts ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertInfo:
    id: int
    rule: str
    severity: str
    facility: str
    entities: Mapping[str, tuple[int, ...]]
    explanation: str
    status: str
    raised_at: datetime
    raised_by: str
    closed_at: datetime | None = None
    closed_by: str | None = None
    note: str | None = None

    def to_record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "rule": self.rule,
            "severity": self.severity,
            "facility": self.facility,
            "entities": {kind: list(ids) for kind, ids in self.entities.items()},
            "explanation": self.explanation,
            "status": self.status,
            "raised_at": self.raised_at.isoformat(),
            "raised_by": self.raised_by,
            "closed_at": self.closed_at.isoformat() if self.closed_at else None,
            "closed_by": self.closed_by,
            "note": self.note,
        }


@dataclass(frozen=True)
class MonitorRun:
    """What one run of the rules found: the alerts it raised, and how many of its findings
    were already alerts."""

    raised: tuple[AlertInfo, ...]
    findings: int
    already_raised: int
    payments_checked: int
    seconds: float


def run_monitor(
    workspace: Workspace,
    date_from: date | None = None,
    date_to: date | None = None,
    *,
    config: MonitoringConfig | None = None,
) -> MonitorRun:
    """Run every rule over the payments received in the period (all of them without one) and
    store each new finding as an open alert. Findings already alerted are not raised again."""
    if date_from is not None and date_to is not None and date_from > date_to:
        raise BadInput(f"The period starts ({date_from}) after it ends ({date_to}); swap them.")
    settings = config or MonitoringConfig.from_environment()

    def operation(unit: UnitOfWork) -> MonitorRun:
        unit.require(Permission.RECORD_PAYMENTS)
        started = clock.perf_counter()
        evidence = gather(unit.session, settings, date_from=date_from, date_to=date_to)
        findings = evaluate(evidence)
        raised = raise_alerts(unit, findings, evidence.facility_codes)
        checked = (
            len(evidence.payments) if evidence.candidates is None else len(evidence.candidates)
        )
        return MonitorRun(
            tuple(raised),
            len(findings),
            len(findings) - len(raised),
            checked,
            clock.perf_counter() - started,
        )

    return workspace.write(operation, action=RAISE_ACTION)


def raise_alerts(
    unit: UnitOfWork, findings: Sequence[Finding], codes: Mapping[int, str]
) -> list[AlertInfo]:
    """Store each finding not yet alerted as an open alert, in the caller's unit of work
    (whose action should be RAISE_ACTION, which live updates announce)."""
    if not findings:
        return []
    facilities = sorted({f.facility_id for f in findings})
    known = {
        (facility_id, fingerprint)
        for facility_id, fingerprint in unit.session.execute(
            select(Alert.facility_id, Alert.fingerprint).where(Alert.facility_id.in_(facilities))
        )
    }
    rows: list[Alert] = []
    for finding in findings:
        key = (finding.facility_id, finding.fingerprint)
        if key in known:
            continue
        known.add(key)
        rows.append(
            Alert(
                facility_id=finding.facility_id,
                rule=finding.rule,
                severity=finding.severity,
                fingerprint=finding.fingerprint,
                entities=canonical_bytes(
                    {kind: sorted(ids) for kind, ids in finding.entities.items()}
                ).decode(),
                explanation=finding.explanation,
                status="open",
                raised_at=unit.now,
                raised_by=unit.actor.name,
            )
        )
    unit.session.add_all(rows)
    unit.session.flush()
    return [_info(row, codes.get(row.facility_id, str(row.facility_id))) for row in rows]


def _info(row: Alert, facility: str) -> AlertInfo:
    entities = {kind: tuple(ids) for kind, ids in json.loads(row.entities).items()}
    return AlertInfo(
        row.id,
        row.rule,
        row.severity,
        facility,
        entities,
        row.explanation,
        row.status,
        row.raised_at,
        row.raised_by,
        row.closed_at,
        row.closed_by,
        row.note,
    )


def list_alerts(
    workspace: Workspace,
    *,
    open_only: bool = False,
    facility: str | None = None,
    after_id: int | None = None,
    limit: int | None = None,
) -> list[AlertInfo]:
    """Alerts, newest first (oldest first with `after_id`: those raised after that one)."""

    def operation(unit: UnitOfWork) -> list[AlertInfo]:
        unit.require(Permission.READ)
        query = select(Alert, Facility.code).join(Facility, Facility.id == Alert.facility_id)
        if open_only:
            query = query.where(Alert.status == "open")
        if facility is not None:
            query = query.where(Facility.code == facility.strip().upper())
        if after_id is not None:
            query = query.where(Alert.id > after_id).order_by(Alert.id)
        else:
            query = query.order_by(Alert.id.desc())
        if limit is not None:
            query = query.limit(limit)
        return [_info(row, code) for row, code in unit.session.execute(query)]

    return workspace.read(operation)


def alert_counts(workspace: Workspace) -> dict[str, int]:
    """Open alerts by severity, for a status bar."""

    def operation(unit: UnitOfWork) -> dict[str, int]:
        unit.require(Permission.READ)
        counts = dict.fromkeys(SEVERITIES, 0)
        rows = unit.session.execute(
            select(Alert.severity, func.count())
            .where(Alert.status == "open")
            .group_by(Alert.severity)
        )
        for severity, count in rows:
            counts[severity] = int(count)
        return counts

    return workspace.read(operation)


def close_alert(
    workspace: Workspace, alert_id: int, note: str, *, dismiss: bool = False
) -> AlertInfo:
    """A manager acknowledges an alert (it was real and is being dealt with) or dismisses it
    (it was not), with a note saying why; an alert is closed once."""
    why = note.strip()
    if not why:
        raise BadInput("Closing an alert needs a note saying why; give it with --note.")
    target = "dismissed" if dismiss else "acknowledged"

    def operation(unit: UnitOfWork) -> AlertInfo:
        unit.require(Permission.RESOLVE_DISCREPANCIES)
        row = unit.session.get(Alert, alert_id)
        if row is None:
            raise BadInput(f"There is no alert {alert_id}; `billing-desk alerts list` shows them.")
        if row.status != "open":
            raise BadInput(
                f"Alert {alert_id} was already {row.status} by {row.closed_by}; it stays closed."
            )
        row.status = target
        row.closed_at = unit.now
        row.closed_by = unit.actor.name
        row.note = why
        unit.session.flush()
        code = unit.session.scalar(select(Facility.code).where(Facility.id == row.facility_id))
        return _info(row, code or str(row.facility_id))

    return workspace.write(operation, action=CLOSE_ACTION)


# -- after every payment --------------------------------------------------------------------

_PAYMENT_ACTIONS = frozenset({"payment.record", "payment.transition"})
# How long closing a workspace waits for its background checks (they take milliseconds; a
# database that stopped answering must not hold the window or the command open for long).
CLOSE_GRACE_SECONDS = 10.0
_WATCHED: weakref.WeakKeyDictionary[Workspace, _BackgroundChecks | None] = (
    weakref.WeakKeyDictionary()
)


def watch(
    workspace: Workspace, config: MonitoringConfig | None = None, *, background: bool = False
) -> None:
    """Run the rules after each payment `workspace` records or moves (after its commit), and
    keep a record of every write it refuses or fails. Idempotent per workspace.

    By default the rules run before the service call returns (the command line: its process
    ends with the call). With `background` they run on a worker thread of the workspace, so the
    call returns as soon as the payment is committed (a desktop session); `settle` waits for
    them. Checks still queued when the process ends are lost, and the next `monitor run` over
    their period raises what they would have."""
    if workspace in _WATCHED:
        return
    settings = config or MonitoringConfig.from_environment()
    checker = _BackgroundChecks(workspace, settings) if background else None
    workspace.after_commit.append(lambda action, result: _after_commit(
        workspace, settings, action, result, checker
    ))  # fmt: skip
    workspace.after_failure.append(lambda action, err: _after_failure(workspace, action, err))
    if checker is not None:
        workspace.before_close.append(lambda: checker.settle(CLOSE_GRACE_SECONDS))
    _WATCHED[workspace] = checker


def settle(workspace: Workspace, timeout: float | None = None) -> bool:
    """Wait until the background checks of `workspace` are done; False on timeout."""
    checker = _WATCHED.get(workspace)
    return checker.settle(timeout) if checker is not None else True


class _BackgroundChecks:
    """One worker thread per workspace, started when there is work and gone when there is
    none, taking the payments to check in the order they committed."""

    IDLE_SECONDS = 1.0

    def __init__(self, workspace: Workspace, config: MonitoringConfig) -> None:
        self._workspace = weakref.ref(workspace)
        self._config = config
        self._pending: list[int] = []
        self._busy = 0
        self._lock = threading.Condition()
        self._worker: threading.Thread | None = None

    def submit(self, payment_id: int) -> None:
        with self._lock:
            self._pending.append(payment_id)
            if self._worker is None:
                self._worker = threading.Thread(
                    target=self._run, name="billing-desk anomaly rules", daemon=True
                )
                self._worker.start()
            self._lock.notify_all()

    def settle(self, timeout: float | None) -> bool:
        with self._lock:
            return self._lock.wait_for(lambda: not self._pending and not self._busy, timeout)

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._lock.wait_for(lambda: self._pending, self.IDLE_SECONDS):
                    self._worker = None
                    return
                batch, self._pending = self._pending, []
                self._busy = len(batch)
            workspace = self._workspace()
            try:
                if workspace is not None:
                    _check_safely(workspace, self._config, batch)
            finally:
                with self._lock:
                    self._busy = 0
                    self._lock.notify_all()


def _after_commit(
    workspace: Workspace,
    config: MonitoringConfig,
    action: str,
    result: object,
    checker: _BackgroundChecks | None = None,
) -> None:
    if action not in _PAYMENT_ACTIONS or getattr(result, "replayed", False):
        return
    payment_id = getattr(result, "payment_id", None)
    if not isinstance(payment_id, int):
        return
    if checker is not None:
        checker.submit(payment_id)
    else:
        _check_safely(workspace, config, [payment_id])


def _check_safely(workspace: Workspace, config: MonitoringConfig, payment_ids: list[int]) -> None:
    try:
        _check_payments(workspace, config, payment_ids)
    except Exception:
        # The payment stands; the next `monitor run` over its period finds what this missed.
        log.warning("anomaly rules after payments %s failed", payment_ids, exc_info=True)


def _check_payments(
    workspace: Workspace, config: MonitoringConfig, payment_ids: Sequence[int]
) -> list[AlertInfo]:
    """The rules about these payments: read first, and a write (of alerts) only when they
    found something, which most payments never make."""

    def judge(unit: UnitOfWork) -> list[Finding]:
        return evaluate(gather(unit.session, config, payment_ids=payment_ids))

    findings = workspace.read(judge)
    if not findings:
        return []

    def operation(unit: UnitOfWork) -> list[AlertInfo]:
        codes = dict(unit.session.execute(select(Facility.id, Facility.code)).all())
        return raise_alerts(unit, findings, codes)

    return workspace.write(operation, action=RAISE_ACTION)


def _after_failure(workspace: Workspace, action: str, err: Exception) -> None:
    if isinstance(err, (BadInput, EnvironmentFault)) or workspace.read_only:
        # A typo is no event; a database that cannot be reached or is locked cannot take the
        # note either (trying would only keep the user waiting), and health reports it; an
        # archive records nothing.
        return
    message = err.message if isinstance(err, BillingError) else f"{type(err).__name__}: {err}"
    own = _OWN_PAYMENT.search(message) if isinstance(err, PermissionDenied) else None
    if own is not None:
        kind = "segregation"
    elif isinstance(err, PermissionDenied):
        kind = "permission"
    elif isinstance(err, BillingError):
        kind = "refused"
    else:
        kind = "internal"
    payment_id = int(own.group(1)) if own is not None else None
    try:
        _log_failure(workspace, action, kind, message[:2000], payment_id)
        if payment_id is not None:
            _check_payments(workspace, MonitoringConfig.from_environment(), [payment_id])
    except Exception:
        log.warning("could not record the failure of %s", action, exc_info=True)


def _log_failure(
    workspace: Workspace, action: str, kind: str, message: str, payment_id: int | None
) -> None:
    def operation(unit: UnitOfWork) -> None:
        unit.session.add(
            OperationFailure(
                occurred_at=unit.now,
                user_name=unit.actor.name,
                action=action,
                kind=kind,
                message=message,
                payment_id=payment_id,
            )
        )

    workspace.write(operation, action=FAILURE_ACTION)


@dataclass(frozen=True)
class FailureInfo:
    id: int
    occurred_at: datetime
    user_name: str
    action: str
    kind: str
    message: str


def failures_since(workspace: Workspace, since: datetime) -> list[FailureInfo]:
    """Writes refused or failed since `since`, oldest first."""

    def operation(unit: UnitOfWork) -> list[FailureInfo]:
        unit.require(Permission.READ)
        rows = unit.session.execute(
            select(
                OperationFailure.id,
                OperationFailure.occurred_at,
                OperationFailure.user_name,
                OperationFailure.action,
                OperationFailure.kind,
                OperationFailure.message,
            )
            .where(OperationFailure.occurred_at >= since)
            .order_by(OperationFailure.id)
        )
        return [FailureInfo(*row) for row in rows]

    return workspace.read(operation)


# -- hearing of new alerts ------------------------------------------------------------------


class AlertPoller:
    """New alerts by asking now and then (SQLite, or any backend): `poll()` returns those
    raised since the last call; iterating waits `interval` seconds between polls until
    `stop()`."""

    def __init__(self, workspace: Workspace, *, interval: float = 5.0) -> None:
        self._workspace = workspace
        self._interval = interval
        self._stopped = threading.Event()
        newest = list_alerts(workspace, limit=1)
        self._last_id = newest[0].id if newest else 0

    def poll(self) -> list[AlertInfo]:
        found = list_alerts(self._workspace, after_id=self._last_id)
        if found:
            self._last_id = found[-1].id
        return found

    def stop(self) -> None:
        self._stopped.set()

    def __iter__(self) -> Iterator[AlertInfo]:
        while not self._stopped.is_set():
            yield from self.poll()
            self._stopped.wait(self._interval)


def subscribe_alerts(workspace: Workspace, *, interval: float = 5.0) -> Iterable[object]:
    """New alerts as they are raised: on PostgreSQL a live-updates subscription of kind
    "alert" (services.live: LiveEvent, whose entity_id is the alert's id); elsewhere an
    AlertPoller yielding AlertInfo."""
    if workspace.location.is_postgresql:
        return subscribe(workspace, {"alert"})
    return AlertPoller(workspace, interval=interval)


__all__ = [
    "RULES",
    "RULE_NAMES",
    "AlertInfo",
    "AlertPoller",
    "Finding",
    "MonitorRun",
    "MonitoringConfig",
    "alert_counts",
    "close_alert",
    "evaluate",
    "failures_since",
    "gather",
    "list_alerts",
    "raise_alerts",
    "run_monitor",
    "settle",
    "subscribe_alerts",
    "watch",
]
