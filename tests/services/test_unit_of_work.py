"""The unit-of-work runner: retries what the database asks to retry, and turns a lost server
into one sentence."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy.exc import OperationalError

from billing_desk.domain.errors import EnvironmentFault
from billing_desk.services import unit_of_work
from billing_desk.services.unit_of_work import UnitOfWork
from tests.conftest import Database


class _Serialization(Exception):
    sqlstate = "40001"


class _Other(Exception):
    sqlstate = "23505"


def _failing(times: int, orig: Exception) -> Callable[[UnitOfWork], str]:
    calls = {"n": 0}

    def operation(_unit: UnitOfWork) -> str:
        calls["n"] += 1
        if calls["n"] <= times:
            raise OperationalError("SELECT 1", {}, orig)
        return f"done after {calls['n']}"

    return operation


@pytest.fixture(autouse=True)
def _no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(unit_of_work, "BACKOFF_BASE_SECONDS", 0.0)


def test_a_serialization_failure_is_retried_until_it_passes(database: Database) -> None:
    workspace = database.workspace()
    assert workspace.write(_failing(3, _Serialization()), action="test.retry") == "done after 4"


def test_retries_are_bounded(database: Database) -> None:
    workspace = database.workspace()
    with pytest.raises(OperationalError):
        workspace.write(_failing(unit_of_work.MAX_ATTEMPTS, _Serialization()), action="test.retry")


def test_other_database_errors_are_not_retried(database: Database) -> None:
    workspace = database.workspace()
    with pytest.raises(EnvironmentFault):
        workspace.write(_failing(1, _Other()), action="test.retry")
