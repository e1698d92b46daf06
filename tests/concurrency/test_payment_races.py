"""Promise 2 under fire: sixteen processes submit a payment at the same instant, round after round.
With one idempotency key, exactly one payment is written per round and everyone else gets its
receipt back (or is told to retry); with sixteen keys for the same check, exactly one payment is
written and the fifteen others are refused as duplicates naming it."""

from __future__ import annotations

import json
import multiprocessing
import queue
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest

from billing_desk.domain.money import parse_money
from tests.concurrency.payment_worker import (
    ledger_problems,
    race_clerk,
    read_ledger,
    same_check_request,
    same_key_request,
    verification_findings,
)
from tests.conftest import Database
from tests.support import seed_facility, seed_users

CLERKS = 16
ROUNDS = 200
# How long a clerk waits at the barrier for the fifteen others before the round is given up.
BARRIER_SECONDS = 60.0
# How long all rounds may take before the clerks are killed and the test fails.
RACE_TIMEOUT_SECONDS = 600.0

# The unique indexes each race runs into, as each backend names them in a violation.
KEY_INDEX = (
    "uq_idempotency_record_facility_key",
    "idempotency_record.facility_id, idempotency_record.key",
)
NATURAL_KEY_INDEX = ("uq_payment_natural_key", "payment.facility_id, payment.natural_key")

pytestmark = pytest.mark.slow


def test_sixteen_submissions_of_one_key_record_one_payment_per_round(database: Database) -> None:
    _seed(database)
    clerks = RaceClerks(database.url, "same key")
    rounds = clerks.run()

    tally: Counter[str] = Counter()
    waits: Counter[str] = Counter()
    failures: list[str] = []
    winners: dict[int, int] = {}
    for round_no, outcomes in enumerate(rounds):
        where = f"{database.backend} round {round_no}"
        classified = [(_same_key_kind(o), o) for o in outcomes]
        tally.update(kind for kind, _ in classified)
        tally["caught by the index"] += sum(bool(o["integrity_errors"]) for o in outcomes)
        waits.update(o["message"] for kind, o in classified if kind == "in progress")
        failures += [f"{where}: {_describe(o)}" for kind, o in classified if kind == "other"]
        failures += _foreign_index_errors(where, outcomes, KEY_INDEX)
        recorded = [o for kind, o in classified if kind == "recorded"]
        if len(recorded) != 1:
            failures.append(f"{where}: {len(recorded)} payments recorded, not 1")
            continue
        first = recorded[0]
        winners[round_no] = first["payment_id"]
        draft, _ = same_key_request(round_no)
        if first["amount_minor"] != parse_money(draft.amount, "USD").minor:
            failures.append(f"{where}: recorded {first['amount_minor']} for {draft.amount}")
        failures += [
            f"{where}: replay {_receipt(o)} differs from {_receipt(first)}"
            for kind, o in classified
            if kind == "replayed" and _receipt(o) != _receipt(first)
        ]
    _report(database, "same key", clerks, tally, rounds)
    for message, count in waits.items():
        print(f"  {count} x in progress: {message}")
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures[:20])
    assert tally["recorded"] == ROUNDS
    assert tally["recorded"] + tally["replayed"] + tally["in progress"] == ROUNDS * CLERKS

    auditor = database.workspace("auditor")
    ledger = read_ledger(auditor)
    assert ledger_problems(ledger) == []
    assert verification_findings(auditor) == []
    assert len(ledger["payments"]) == ROUNDS
    assert {r["key"]: r for r in ledger["keys"]}.keys() == {
        same_key_request(n)[1] for n in range(ROUNDS)
    }
    paid_by_key = {
        record["key"]: _result_payment(record)
        for record in ledger["keys"]
        if record["operation"] == "payment.record"
    }
    assert paid_by_key == {same_key_request(n)[1]: winners[n] for n in range(ROUNDS)}
    if database.backend == "postgresql":
        # Some clerks claimed the key while the winner's transaction was still open: they waited
        # on the unique index and replayed. (SQLite's BEGIN IMMEDIATE serialises the clerks.)
        assert tally["caught by the index"] > 0, "no clerk met the key's unique index mid-race"


def test_sixteen_entries_of_one_check_record_it_once_and_refuse_the_rest(
    database: Database,
) -> None:
    _seed(database)
    clerks = RaceClerks(database.url, "same check")
    rounds = clerks.run()

    tally: Counter[str] = Counter()
    failures: list[str] = []
    winning_keys: dict[str, int] = {}
    for round_no, outcomes in enumerate(rounds):
        where = f"{database.backend} round {round_no}"
        failures += _foreign_index_errors(where, outcomes, NATURAL_KEY_INDEX)
        recorded = [o for o in outcomes if o["outcome"] == "receipt"]
        if len(recorded) != 1 or recorded[0]["replayed"]:
            failures.append(
                f"{where}: {[_receipt(o) for o in recorded]} instead of one payment; "
                + "; ".join(_describe(o) for o in outcomes if o["outcome"] == "error")
            )
            continue
        payment_id = recorded[0]["payment_id"]
        winner = outcomes.index(recorded[0])
        winning_keys[same_check_request(round_no, winner)[1]] = payment_id
        refused = [o for o in outcomes if _is_duplicate_refusal(o, payment_id)]
        tally.update(
            recorded=1,
            refused=len(refused),
            caught_by_the_index=sum(bool(o["integrity_errors"]) for o in refused),
        )
        failures += [
            f"{where}: {_describe(o)}"
            for o in outcomes
            if o is not recorded[0] and not _is_duplicate_refusal(o, payment_id)
        ]
    _report(database, "same check", clerks, tally, rounds)
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures[:20])
    assert tally["refused"] == ROUNDS * (CLERKS - 1)

    auditor = database.workspace("auditor")
    ledger = read_ledger(auditor)
    assert ledger_problems(ledger) == []
    assert verification_findings(auditor) == []
    assert len(ledger["payments"]) == ROUNDS
    assert len({p["natural_key"] for p in ledger["payments"]}) == ROUNDS
    # The refused entries wrote nothing, not even their keys.
    assert {r["key"]: _result_payment(r) for r in ledger["keys"]} == winning_keys
    if database.backend == "postgresql":
        assert tally["caught_by_the_index"] > 0, "no clerk met the check's unique index mid-race"


def _seed(database: Database) -> None:
    admin = database.workspace("admin")
    seed_users(admin)
    seed_facility(admin, "STMARY")


def _same_key_kind(outcome: dict[str, Any]) -> str:
    if outcome["outcome"] == "receipt":
        return "replayed" if outcome["replayed"] else "recorded"
    if outcome["type"] == "EnvironmentFault" and outcome["retryable"] is True:
        return "in progress"
    return "other"


def _is_duplicate_refusal(outcome: dict[str, Any], payment_id: int) -> bool:
    return (
        outcome["outcome"] == "error"
        and outcome["type"] == "Refused"
        and f"was already recorded as payment {payment_id} " in outcome["message"]
    )


def _foreign_index_errors(
    where: str, outcomes: Sequence[dict[str, Any]], index: tuple[str, str]
) -> list[str]:
    """Integrity errors raised by anything but the unique index the race is about."""
    return [
        f"{where}: integrity error outside {index[0]}: {error}"
        for o in outcomes
        for error in o["integrity_errors"]
        if not any(name in error for name in index)
    ]


def _receipt(outcome: dict[str, Any]) -> dict[str, Any]:
    """The receipt's content, without how it came back."""
    ignored = {"outcome", "replayed", "seconds", "integrity_errors"}
    return {k: v for k, v in outcome.items() if k not in ignored}


def _result_payment(record: dict[str, Any]) -> int:
    return int(json.loads(record["result"])["payment_id"])


def _describe(outcome: dict[str, Any]) -> str:
    if outcome["outcome"] == "receipt":
        return f"unexpected receipt {_receipt(outcome)}"
    return f"{outcome['module']}.{outcome['type']}: {outcome['message']}\n{outcome['traceback']}"


def _report(
    database: Database,
    scenario: str,
    clerks: RaceClerks,
    tally: Counter[str],
    rounds: Sequence[Sequence[dict[str, Any]]],
) -> None:
    first, last = clerks.round_finished[0], clerks.round_finished[len(rounds) - 1]
    per_round = (last - first) / max(1, len(rounds) - 1)
    slowest = max(o["seconds"] for outcomes in rounds for o in outcomes)
    counts = ", ".join(f"{name} {count}" for name, count in sorted(tally.items()))
    print(
        f"\n{database.backend} {scenario}: {len(rounds)} rounds x {CLERKS} clerks in "
        f"{last - clerks.started:.1f} s ({first - clerks.started:.1f} s to start and finish "
        f"round 0, then {per_round * 1000:.0f} ms a round; slowest submission {slowest:.2f} s): "
        f"{counts}"
    )


# -- the clerks: one process each, released together every round by a barrier ---------------


class RaceClerks:
    """CLERKS processes that run every round of `scenario` together. `run` returns the
    outcomes per round, in clerk order; a clerk that raises, dies or overruns fails the test, and
    no process outlives `run`."""

    def __init__(self, url: str, scenario: str) -> None:
        # Forked from a server that imported the application once: sixteen fresh interpreters
        # would each spend a second importing it. (The server ends with the test process.)
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload([race_clerk.__module__])
        self._messages = self._context.Queue()
        self._barrier = self._context.Barrier(CLERKS)
        self.started = 0.0
        self.round_finished: dict[int, float] = {}
        self._processes = [
            self._context.Process(
                target=race_clerk,
                args=(
                    url,
                    number,
                    scenario,
                    ROUNDS,
                    self._barrier,
                    self._messages,
                    BARRIER_SECONDS,
                ),
                name=f"payment-clerk-{number}",
                daemon=True,
            )
            for number in range(CLERKS)
        ]

    def run(self) -> list[list[dict[str, Any]]]:
        self.started = time.monotonic()
        outcomes: dict[int, dict[int, dict[str, Any]]] = {n: {} for n in range(ROUNDS)}
        finished = False
        try:
            for process in self._processes:
                process.start()
            self._collect(outcomes)
            finished = True
        finally:
            self._reap(patience=10.0 if finished else 0.0)
        return [[outcomes[r][c] for c in range(CLERKS)] for r in range(ROUNDS)]

    def _collect(self, outcomes: dict[int, dict[int, dict[str, Any]]]) -> None:
        deadline = time.monotonic() + RACE_TIMEOUT_SECONDS
        quiet_since = time.monotonic()
        left = ROUNDS * CLERKS
        while left:
            try:
                kind, number, round_no, payload = self._messages.get(timeout=0.5)
            except queue.Empty:
                dead = [p for p in self._processes if not p.is_alive() and p.exitcode != 0]
                if dead and self._messages.empty():
                    codes = ", ".join(f"{p.name} (exit code {p.exitcode})" for p in dead)
                    pytest.fail(f"clerk died: {codes}")
                now = time.monotonic()
                if now > deadline or now - quiet_since > BARRIER_SECONDS + 30:
                    pytest.fail(
                        f"clerks overran: {ROUNDS * CLERKS - left} of {ROUNDS * CLERKS} "
                        "submissions done"
                    )
                continue
            if kind == "crashed":
                pytest.fail(f"clerk {number} failed:\n{payload}")
            outcomes[round_no][number] = payload
            quiet_since = time.monotonic()
            left -= 1
            if len(outcomes[round_no]) == CLERKS:
                self.round_finished[round_no] = quiet_since

    def _reap(self, *, patience: float) -> None:
        """Let clerks that ran every round exit; kill whatever is left (at once on failure)."""
        for process in self._processes:
            if process.pid is not None:
                process.join(timeout=patience)
        for process in self._processes:
            if process.is_alive():
                process.kill()
                process.join(timeout=10)
        self._messages.close()
