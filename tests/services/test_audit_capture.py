"""How a unit of work writes its audit entries: together before it commits, at once inside a
savepoint (so that they roll back with it), in the same order on every run, and never after the
unit has written them. On SQLite the unit seals its own entries without the sealer's queue; on
PostgreSQL a writer counts the unsealed tail only when its last seal did not leave it short."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from billing_desk.db.models import AuditEntry, AuditLink, AuditPending, Facility
from billing_desk.services import unit_of_work
from billing_desk.services.unit_of_work import UnitOfWork, Workspace
from billing_desk.services.verification import verify_session
from tests.conftest import Database
from tests.support import seed_users

# Created in this order, so their keys ascend with their codes.
ORDERED = ("ORDA", "ORDB", "ORDC", "ORDD", "ORDE", "ORDF")


class Abandoned(Exception):
    """Raised inside a savepoint to roll it back."""


def _facility(unit: UnitOfWork, code: str) -> Facility:
    row = Facility(
        code=code, name=f"{code} Home", currency="USD", payment_terms_days=30, created_at=unit.now
    )
    unit.session.add(row)
    return row


def _adding(code: str) -> Callable[[UnitOfWork], None]:
    def operation(unit: UnitOfWork) -> None:
        _facility(unit, code)

    return operation


def _codes(workspace: Workspace, action: str) -> list[tuple[str, str]]:
    """(facility code, name) after each entry of `action`, oldest first."""
    with Session(workspace.engine) as session:
        afters = session.scalars(
            select(AuditEntry.after).where(AuditEntry.action == action).order_by(AuditEntry.id)
        ).all()
    rows = [json.loads(after) for after in afters if after is not None]
    return [(row["code"], row["name"]) for row in rows]


def _verified(workspace: Workspace) -> None:
    workspace.seal()
    with Session(workspace.engine) as session:
        report = verify_session(session)
    assert report.ok, report


def _admin(database: Database) -> Workspace:
    workspace = database.workspace("admin")
    seed_users(workspace)
    return workspace


def test_a_rolled_back_savepoint_takes_its_entries_and_nothing_else(database: Database) -> None:
    workspace = _admin(database)

    def operation(unit: UnitOfWork) -> None:
        _facility(unit, "KEPT1")
        unit.session.flush()  # waits in memory, outside the savepoint
        try:
            with unit.session.begin_nested():
                _facility(unit, "GONE")
                unit.session.flush()  # written inside the savepoint
                raise Abandoned
        except Abandoned:
            pass
        with unit.session.begin_nested():
            _facility(unit, "KEPT2")
        _facility(unit, "KEPT3")

    workspace.write(operation, action="test.savepoints")
    assert [code for code, _ in _codes(workspace, "test.savepoints")] == ["KEPT1", "KEPT2", "KEPT3"]
    with Session(workspace.engine) as session:
        codes = session.scalars(select(Facility.code).order_by(Facility.id)).all()
        assert "GONE" not in codes
        # Every entry is in the chain exactly once, and nothing waits.
        linked = session.scalar(select(func.count()).select_from(AuditLink))
        entries = session.scalar(select(func.count()).select_from(AuditEntry))
    workspace.seal()
    with Session(workspace.engine) as session:
        assert session.scalar(select(func.count()).select_from(AuditPending)) == 0
        if workspace.location.is_sqlite:
            assert linked == entries
    _verified(workspace)


def test_entries_keep_the_order_of_the_changes(database: Database) -> None:
    workspace = _admin(database)

    def create(unit: UnitOfWork) -> None:
        for code in ORDERED:
            _facility(unit, code)

    workspace.write(create, action="test.create")

    def rename(unit: UnitOfWork) -> None:
        rows = unit.session.scalars(select(Facility).where(Facility.code.in_(ORDERED))).all()
        # Changed in reverse order, flushed together: the trail lists them by key.
        for row in sorted(rows, key=lambda r: -r.id):
            row.name = f"{row.code} renamed"
        unit.session.flush()
        _facility(unit, "ORDZ")

    workspace.write(rename, action="test.rename")
    assert _codes(workspace, "test.rename") == [
        *((code, f"{code} renamed") for code in ORDERED),
        ("ORDZ", "ORDZ Home"),
    ]
    _verified(workspace)


def test_a_change_after_the_entries_are_written_is_refused(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace = _admin(database)
    finish = Workspace._finish

    def finish_then_change(self: Workspace, unit: UnitOfWork) -> None:
        finish(self, unit)
        _facility(unit, "LATE")  # flushed by the commit, after the trail was written

    monkeypatch.setattr(Workspace, "_finish", finish_then_change)
    with pytest.raises(RuntimeError, match="escape the trail"):
        workspace.write(_adding("EARLY"), action="test.late")
    monkeypatch.undo()
    with Session(workspace.engine) as session:
        assert session.scalar(select(Facility).where(Facility.code == "EARLY")) is None
    _verified(workspace)


def test_sqlite_units_seal_without_the_queue(
    fresh_database: Callable[[str], Database],
) -> None:
    database = fresh_database("sqlite")
    workspace = _admin(database)
    with workspace.engine.begin() as connection:
        connection.execute(
            text(
                "CREATE TRIGGER no_queue BEFORE INSERT ON audit_pending BEGIN "
                "SELECT RAISE(ABORT, 'queued'); END"
            )
        )
    workspace.write(_adding("DIRECT"), action="test.direct")
    _verified(workspace)


def test_postgresql_counts_the_tail_only_after_a_seal_that_did_not_leave_it_short(
    fresh_database: Callable[[str], Database], monkeypatch: pytest.MonkeyPatch
) -> None:
    database = fresh_database("postgresql")
    workspace = _admin(database)
    counted: list[str] = []

    @event.listens_for(workspace.engine, "before_cursor_execute")
    def note(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
        if "FROM audit_pending" in statement and "count" in statement:
            counted.append(statement)

    def write(code: str) -> None:
        workspace.write(_adding(code), action="test.tail")

    write("TAIL1")  # the last seal was seeding's: short, so no count
    assert counted == []
    # A seal that fails (or finds the head busy) leaves the next writer to count the tail.
    monkeypatch.setattr(unit_of_work, "seal_committed", _failing_seal)
    write("TAIL2")
    monkeypatch.undo()
    write("TAIL3")
    assert len(counted) == 1
    write("TAIL4")
    assert len(counted) == 1
    # And the bound still holds: past it, writes stop until the chain is sealed.
    monkeypatch.setattr(unit_of_work, "MAX_UNSEALED", 0)
    monkeypatch.setattr(unit_of_work, "seal_committed", lambda *_a, **_k: 0)
    write("TAIL5")  # leaves its own entries queued, and the workspace uncertain of the tail
    with pytest.raises(unit_of_work.EnvironmentFault, match="unsealed entries"):
        write("TAIL6")
    monkeypatch.undo()
    _verified(workspace)


def _failing_seal(*_args: object, **_kwargs: object) -> int:
    raise DBAPIError("SELECT seal", {}, Exception("sealing broke"))


def test_an_event_in_a_read_is_refused_not_lost(database: Database) -> None:
    workspace = _admin(database)
    with pytest.raises(RuntimeError, match="escape the trail"):
        workspace.read(lambda unit: unit.record_event("test.read", "report", "1"))
