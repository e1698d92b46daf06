"""Hash version 2: the PostgreSQL sealing function against the Python sealer and the spec, and the
verifier's fast entry encoder against canonical_bytes."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import create_engine, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from billing_desk.db.models import AuditChainHead, AuditEntry, AuditLink
from billing_desk.domain.hashing import canonical_bytes
from billing_desk.domain.integrity import (
    SEAL_FUNCTION,
    ZERO_HASH,
    entry_digest,
    link_hash,
    sealed_link_hash,
)
from billing_desk.services import verification
from billing_desk.services.audit_trail import _seal_in_python, entry_record, seal_pending
from billing_desk.services.unit_of_work import Workspace
from billing_desk.services.verification import verify_session
from tests.conftest import BACKENDS, Database
from tests.support import seed_users

AWKWARD = [
    'Résidence Les Érables — "Q2"',
    "tab\there, newline\nthere, nul-free \u0001 control",
    "back\\slash and / slash",
    "\u2028 line separator, emoji \U0001f600",
    "",
]


def _write_events(workspace: Workspace, texts: list[str]) -> None:
    for index, note in enumerate(texts):
        workspace.write(
            lambda unit, note=note, index=index: unit.record_event(
                "report.export",
                "report",
                f"r-{index}-{note[:8]}",
                facility_id=None if index % 2 else index,
                detail={"note": note, "rows": index},
            ),
            action="report.export",
        )


def _chain(workspace: Workspace) -> list[tuple[AuditLink, AuditEntry]]:
    with Session(workspace.engine) as session:
        rows = session.execute(
            select(AuditLink, AuditEntry)
            .join(AuditEntry, AuditEntry.id == AuditLink.entry_id)
            .order_by(AuditLink.sequence)
        ).all()
        session.expunge_all()
    return [(link, entry) for link, entry in rows]


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_sealer_builds_the_chain_python_recomputes(
    backend: str, fresh_database: Callable[[str], Database]
) -> None:
    """The database function (PostgreSQL) and the Python sealer (SQLite) both write links that
    the spec, computed in Python from the entries' content, reproduces exactly."""
    database: Database = fresh_database(backend)
    workspace = database.workspace("admin")
    seed_users(workspace)
    _write_events(workspace, AWKWARD)
    chain = _chain(workspace)
    assert len(chain) > len(AWKWARD)
    previous = ZERO_HASH
    for sequence, (link, entry) in enumerate(chain, start=1):
        record = entry_record(entry)
        assert link.sequence == sequence
        assert link.hash_version == 2
        assert link.prev_hash == previous
        assert entry.entry_digest == entry_digest(record)
        assert link.entry_hash == sealed_link_hash(sequence, previous, entry.entry_digest)
        assert link.entry_hash == link_hash(2, sequence, previous, record)
        previous = link.entry_hash
    with Session(workspace.engine) as session:
        head = session.get_one(AuditChainHead, 1)
        assert (head.last_sequence, head.last_hash, head.hash_version) == (
            len(chain),
            previous,
            2,
        )
        assert verify_session(session).ok


def test_the_database_function_and_the_python_sealer_agree(
    fresh_database: Callable[[str], Database],
) -> None:
    """The same writes sealed on PostgreSQL by the function and on SQLite by Python: each
    chain's links are what the other side's code computes from its stored digests."""
    chains = {}
    for backend in BACKENDS:
        workspace = fresh_database(backend).workspace("admin")
        _write_events(workspace, AWKWARD)
        with workspace.engine.connect() as connection:
            chains[backend] = connection.execute(
                select(
                    AuditLink.sequence,
                    AuditEntry.entry_digest,
                    AuditLink.prev_hash,
                    AuditLink.entry_hash,
                )
                .join(AuditEntry, AuditEntry.id == AuditLink.entry_id)
                .order_by(AuditLink.sequence)
            ).all()
    assert len(chains["sqlite"]) == len(chains["postgresql"]) == len(AWKWARD)
    for chain in chains.values():
        previous = ZERO_HASH
        for sequence, digest, prev_hash, link in chain:
            assert prev_hash == previous
            assert link == sealed_link_hash(sequence, previous, digest)
            previous = link
    # And Python's sealer, run on PostgreSQL over the function's own digests, in a transaction
    # rolled back afterwards, writes the very same links.
    workspace = fresh_database("postgresql").workspace("admin")
    _queue_without_sealing(workspace, 4)
    with Session(workspace.engine) as session, session.begin():
        ours = _seal_in_python(session, limit=100, now=datetime.now(UTC), skip_busy=False)
        python_links = session.execute(
            select(AuditLink.sequence, AuditLink.prev_hash, AuditLink.entry_hash).order_by(
                AuditLink.sequence
            )
        ).all()
        session.rollback()
    assert ours.sealed == 4
    assert workspace.seal().sealed == 4
    with workspace.engine.connect() as connection:
        database_links = connection.execute(
            select(AuditLink.sequence, AuditLink.prev_hash, AuditLink.entry_hash).order_by(
                AuditLink.sequence
            )
        ).all()
    assert python_links == database_links


@pytest.fixture
def pg(fresh_database: Callable[[str], Database]) -> Workspace:
    database: Database = fresh_database("postgresql")
    workspace = database.workspace("admin")
    seed_users(workspace)
    return workspace


def test_the_sealing_function_is_locked_down(pg: Workspace) -> None:
    with pg.engine.connect() as connection:
        definer, config, public_may = connection.execute(
            text(
                "SELECT p.prosecdef, p.proconfig, "
                "has_function_privilege('public', p.oid, 'EXECUTE') "
                "FROM pg_proc AS p WHERE p.oid = :name ::regproc"
            ),
            {"name": SEAL_FUNCTION},
        ).one()
    assert definer is True
    # The sealer waits at most 5 s for a chain head another session holds (0010).
    assert config == ["search_path=pg_catalog, pg_temp", "lock_timeout=5s"]
    assert public_may is False


def _queue_without_sealing(workspace: Workspace, count: int) -> None:
    """Entries written while the after-commit sealer stands aside (as if it had failed)."""
    original = Workspace._seal_after_commit
    Workspace._seal_after_commit = lambda self: None  # type: ignore[method-assign]
    try:
        _write_events(workspace, [f"queued {i}" for i in range(count)])
    finally:
        Workspace._seal_after_commit = original  # type: ignore[method-assign]


def test_a_busy_head_makes_the_function_return_at_once(pg: Workspace) -> None:
    _queue_without_sealing(pg, 3)
    holding = threading.Event()
    release = threading.Event()

    def hold_the_head() -> None:
        with pg.engine.begin() as connection:
            connection.execute(text("SELECT 1 FROM audit_chain_head WHERE id = 1 FOR UPDATE"))
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold_the_head)
    holder.start()
    try:
        assert holding.wait(10)
        with Session(pg.engine) as session, session.begin():
            started = datetime.now(UTC)
            result = seal_pending(session, now=started, skip_busy=True)
            assert result.sealed == 0
            assert datetime.now(UTC) - started < timedelta(seconds=2)
    finally:
        release.set()
        holder.join()
    assert pg.seal().sealed == 3
    with Session(pg.engine) as session:
        assert verify_session(session).ok


def test_the_function_refuses_an_entry_without_a_digest(pg: Workspace) -> None:
    engine = create_engine(pg.engine.url, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            entry_id = connection.execute(
                text(
                    "INSERT INTO audit_entry (recorded_at, user_name, action, entity_type, "
                    "entity_id, request_id) VALUES (now(), 'x', 'x', 'x', 'x', 'x') RETURNING id"
                )
            ).scalar_one()
            connection.execute(
                text("INSERT INTO audit_pending (entry_id) VALUES (:id)"), {"id": entry_id}
            )
        with pytest.raises(DBAPIError, match="no valid entry digest"), engine.begin() as conn:
            conn.execute(text(f"SELECT {SEAL_FUNCTION}(100, true)"))
    finally:
        engine.dispose()


def test_a_forged_digest_and_an_edited_digest_are_told_apart(
    fresh_database: Callable[[str], Database],
) -> None:
    database: Database = fresh_database("sqlite")
    workspace = database.workspace("admin")
    seed_users(workspace)
    _write_events(workspace, ["one", "two"])
    engine = create_engine(f"sqlite:///{database.url}", poolclass=NullPool)
    try:
        with engine.begin() as connection:
            connection.execute(text("DROP TRIGGER audit_entry_no_update"))
            last = connection.execute(text("SELECT max(entry_id) FROM audit_link")).scalar_one()
            connection.execute(
                text("UPDATE audit_entry SET entry_digest = :d WHERE id = :id"),
                {"d": "0" * 64, "id": last},
            )
        with Session(engine) as session:
            details = [f.detail for f in verify_session(session, tail_allowed=False).findings]
        assert len(details) == 1 and details[0].endswith("does not match its digest")
        with Session(engine) as session:
            entry = session.get_one(AuditEntry, last)
            entry.user_name = "mallory"
            entry.entry_digest = entry_digest(entry_record(entry))
            session.commit()
        with Session(engine) as session:
            details = [f.detail for f in verify_session(session, tail_allowed=False).findings]
        assert len(details) == 1 and details[0].endswith("does not match its hash")
    finally:
        engine.dispose()


# -- the fast encoder ---------------------------------------------------------------------------

_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
_optional = st.none() | _text
_plus_five = timezone(timedelta(hours=5))
_moment = st.datetimes(
    min_value=datetime(1, 1, 1),
    max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from([UTC, None]),
)


@given(
    moment=_moment,
    user_name=_text,
    user_role=_optional,
    facility_id=st.none() | st.integers(min_value=-(2**63), max_value=2**63),
    action=_text,
    entity_type=_text,
    entity_id=_text,
    before=_optional,
    after=_optional,
    request_id=_text,
)
def test_the_fast_entry_encoder_is_canonical_bytes(
    moment: datetime,
    user_name: str,
    user_role: str | None,
    facility_id: int | None,
    action: str,
    entity_type: str,
    entity_id: str,
    before: str | None,
    after: str | None,
    request_id: str,
) -> None:
    aware = moment.replace(tzinfo=UTC)
    record = {
        "recorded_at": aware,
        "user_name": user_name,
        "user_role": user_role,
        "facility_id": facility_id,
        "action": action,
        "entity_type": entity_type,
        "entity_id": entity_id,
        "before": before,
        "after": after,
        "request_id": request_id,
    }
    expected = canonical_bytes(record)
    stored_sqlite = aware.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
    for stored in (aware, stored_sqlite, aware.astimezone(_plus_five)):
        stamp = verification._stamp(stored)
        assert stamp is not None
        fast = verification._entry_bytes(
            stamp,
            user_name,
            user_role,
            facility_id,
            action,
            entity_type,
            entity_id,
            before,
            after,
            request_id,
        )
        assert fast == expected


@pytest.mark.parametrize(
    "value",
    [
        "2026-06-01T09:30:00.123456",  # not SQLite's stored shape
        "2026-06-01 09:30:00",  # no microseconds
        "2026-02-30 09:30:00.000000",  # no such day
        "２０２６-06-01 09:30:00.000000",  # not ASCII digits
        datetime(2026, 6, 1),  # naive
    ],
)
def test_unusual_stamps_take_the_general_path(value: object) -> None:
    assert verification._stamp(value) is None


class _Text(str):
    pass


@pytest.mark.parametrize(
    "odd",
    [
        {"user_name": _Text("clerk")},
        {"facility_id": True},
        {"before": 3},
        {"entity_id": None},
    ],
)
def test_unusual_values_take_the_general_path(odd: dict[str, object]) -> None:
    values: dict[str, object] = {
        "user_name": "clerk",
        "user_role": None,
        "facility_id": 1,
        "action": "a",
        "entity_type": "t",
        "entity_id": "1",
        "before": None,
        "after": "{}",
        "request_id": "r",
    }
    values.update(odd)
    assert verification._entry_bytes("2026-06-01T00:00:00.000000Z", **values) is None


def test_a_lone_surrogate_is_refused_as_canonical_bytes_refuses_it() -> None:
    with pytest.raises(ValueError):
        verification._entry_bytes(
            "2026-06-01T00:00:00.000000Z",
            "\ud800",
            None,
            None,
            "a",
            "t",
            "1",
            None,
            None,
            "r",
        )
