"""Two clerks matching at once, as separate processes, 50 rounds on each backend: in even rounds
both match the same bank line (to two different payments of its amount), in odd rounds the same
payment to two different lines. Each round exactly one wins; the other is refused with a
sentence saying what is already matched, and no line or payment ever holds two live matches."""

from __future__ import annotations

import multiprocessing
import queue
import time
import traceback
from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy import func, select

from billing_desk.db.models import BankMatch, Payment
from billing_desk.domain.errors import Refused
from billing_desk.services.matching import match_line
from billing_desk.services.unit_of_work import open_workspace
from tests.conftest import Database
from tests.services.test_matching_and_reconciliation import Books, _transfer

ROUNDS = 50
ROUND_TIMEOUT_SECONDS = 60.0
Pair = tuple[int, int]  # (bank line, payment)

pytestmark = pytest.mark.slow


def test_two_clerks_matching_at_once_one_wins(database: Database) -> None:
    books = Books(database)
    plans: list[tuple[Pair, Pair]] = []
    for round_no in range(ROUNDS):
        amount = f"{100 + round_no}.00"
        if round_no % 2 == 0:
            first = books.pay(_transfer(f"R{round_no}-A", amount))
            second = books.pay(_transfer(f"R{round_no}-B", amount))
            (line,) = books.bank((4, amount, None))
            plans.append(((line, first), (line, second)))
        else:
            payment = books.pay(_transfer(f"R{round_no}", amount))
            one, two = books.bank((4, amount, None), (5, amount, None))
            plans.append(((one, payment), (two, payment)))
    context = multiprocessing.get_context("spawn")
    messages: Any = context.Queue()
    go = [context.Event() for _ in plans]
    processes = [
        context.Process(
            target=_clerk,
            args=(database.url, number, [p[number] for p in plans], messages, go),
            daemon=True,
        )
        for number in range(2)
    ]
    for process in processes:
        process.start()
    refusals: list[str] = []
    try:
        for round_no in range(ROUNDS):
            _await(messages, "ready", round_no)
            go[round_no].set()
            outcomes = _await(messages, "done", round_no)
            wins = [o for o in outcomes.values() if o == "matched"]
            lost = [o for o in outcomes.values() if o != "matched"]
            assert len(wins) == 1 and len(lost) == 1, (round_no, outcomes)
            assert lost[0].startswith("refused: "), (round_no, outcomes)
            assert "already matched" in lost[0] or "matched by someone else" in lost[0]
            refusals.append(lost[0])
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
    per_line, per_payment, cleared = books.clerk.read(
        lambda u: (
            u.session.execute(
                select(func.max(func.count()).over())
                .select_from(BankMatch)
                .where(BankMatch.active)
                .group_by(BankMatch.line_id)
            ).scalar(),
            u.session.execute(
                select(func.count())
                .select_from(BankMatch)
                .where(BankMatch.active)
                .group_by(BankMatch.payment_id)
                .order_by(func.count().desc())
            ).scalar(),
            u.session.scalar(
                select(func.count()).select_from(Payment).where(Payment.status == "cleared")
            ),
        )
    )
    assert per_line == 1 and per_payment == 1
    assert cleared == ROUNDS  # exactly the winners' payments cleared
    print(f"\n{database.backend}: {ROUNDS} rounds, {len(refusals)} losers refused")


_INBOX: dict[tuple[str, int], dict[int, Any]] = {}


def _await(messages: Any, wanted: str, round_no: int) -> dict[int, Any]:
    # A quick clerk may report ready for the next round before the other is done.
    deadline = time.monotonic() + ROUND_TIMEOUT_SECONDS
    got = _INBOX.setdefault((wanted, round_no), {})
    while len(got) < 2:
        try:
            kind, number, seen_round, payload = messages.get(
                timeout=max(0.1, deadline - time.monotonic())
            )
        except queue.Empty:
            pytest.fail(f"round {round_no}: clerks did not report {wanted} in time")
        if kind == "crashed":
            pytest.fail(f"clerk {number} crashed:\n{payload}")
        _INBOX.setdefault((kind, seen_round), {})[number] = payload
    return _INBOX.pop((wanted, round_no))


def _clerk(url: str, number: int, pairs: Sequence[Pair], messages: Any, go: Sequence[Any]) -> None:
    try:
        workspace = open_workspace(url, "clerk", migrate=False)
        try:
            for round_no, (line, payment) in enumerate(pairs):
                workspace.read(lambda unit: None)  # connected and warm before the start
                messages.put(("ready", number, round_no, None))
                if not go[round_no].wait(ROUND_TIMEOUT_SECONDS):
                    raise TimeoutError(f"round {round_no} was never started")
                try:
                    match_line(workspace, line, payment_id=payment)
                    outcome = "matched"
                except Refused as refused:
                    outcome = f"refused: {refused}"
                messages.put(("done", number, round_no, outcome))
        finally:
            workspace.close()
    except BaseException:
        messages.put(("crashed", number, None, traceback.format_exc()))
