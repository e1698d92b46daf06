"""Logging in: the password is checked once, kept in the OS keyring, and later connections take
it from there; each way in which the server says no is one clear sentence (exit 4)."""

from __future__ import annotations

from collections.abc import Iterator

import keyring
import psycopg
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import fail

from billing_desk.cli.app import run
from billing_desk.domain.errors import EnvironmentFault
from billing_desk.services import credentials
from billing_desk.services.unit_of_work import open_workspace
from billing_desk.services.users import list_users
from tests.keyring_backend import MemoryKeyring
from tests.security.conftest import PASSWORD, SharedDatabase


@pytest.fixture
def memory_keyring() -> Iterator[MemoryKeyring]:
    previous: KeyringBackend = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)
    credentials.set_password_source(None)


@pytest.fixture
def no_keyring() -> Iterator[None]:
    previous: KeyringBackend = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    yield
    keyring.set_keyring(previous)


def test_password_auth_is_in_force_for_billing_roles(shared: SharedDatabase) -> None:
    """Without this the wrong-password tests below would prove nothing: `make test` (through
    tools/ensure-postgres) makes the local server ask billing roles for their password."""
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(shared.url("clerk_a", "not-the-password"), connect_timeout=5)


def test_login_keeps_the_password_and_later_connections_use_it(
    shared: SharedDatabase, memory_keyring: MemoryKeyring
) -> None:
    url = shared.url("clerk_a", None)
    result = credentials.login(url, PASSWORD)
    assert result.saved and result.role == "clerk"
    assert list(memory_keyring.secrets.values()) == [PASSWORD]
    credentials.use_saved_passwords(None)
    try:
        workspace = open_workspace(url)
        try:
            assert workspace.user_name == shared.login("clerk_a")
            assert [u.name for u in list_users(workspace)]
        finally:
            workspace.close()
        assert credentials.logout(url)
        assert memory_keyring.secrets == {}
        assert not credentials.logout(url)
    finally:
        credentials.set_password_source(None)


def test_the_cli_logs_in_and_out(
    shared: SharedDatabase,
    memory_keyring: MemoryKeyring,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = shared.url("manager_a", None)
    monkeypatch.setattr("typer._click.termui.hidden_prompt_func", lambda _prompt: PASSWORD)
    assert run(["login", "--db", url]) == 0
    assert "password is in the OS keyring" in capsys.readouterr().out
    assert run(["--db", url, "user", "list"]) == 0
    assert shared.login("manager_a") in capsys.readouterr().out
    assert run(["logout", "--db", url]) == 0
    assert "saved password is gone" in capsys.readouterr().out
    # Nothing saved and no terminal to ask at: one sentence, exit 4.
    monkeypatch.setattr("sys.stdin", _NoTerminal())
    assert run(["--db", url, "user", "list"]) == 4
    err = capsys.readouterr().err.strip()
    assert "wants a password" in err and len(err.splitlines()) == 1


def test_wrong_password_is_one_sentence_exit_4(
    shared: SharedDatabase,
    memory_keyring: MemoryKeyring,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        "typer._click.termui.hidden_prompt_func", lambda _prompt: "wrong-password-here"
    )
    assert run(["login", "--db", shared.url("clerk_b", None)]) == 4
    err = capsys.readouterr().err.strip()
    assert "refused the password" in err and len(err.splitlines()) == 1
    assert "wrong-password-here" not in err
    assert memory_keyring.secrets == {}


def test_an_expired_role_is_refused_in_one_sentence(shared: SharedDatabase) -> None:
    login = shared.login("manager_b")
    with psycopg.connect(shared.admin_url, autocommit=True) as conn:
        conn.execute(f"ALTER ROLE {login} VALID UNTIL '2000-01-01'")
    try:
        with pytest.raises(EnvironmentFault, match="expired") as refused:
            credentials.check_password(
                credentials.shared_location(shared.url("manager_b", None)), PASSWORD
            )
        assert refused.value.exit_code == 4
    finally:
        with psycopg.connect(shared.admin_url, autocommit=True) as conn:
            conn.execute(f"ALTER ROLE {login} VALID UNTIL 'infinity'")


def test_an_unreachable_server_is_one_retryable_sentence() -> None:
    location = credentials.shared_location("postgresql://nobody@127.0.0.1:1/billing")
    with pytest.raises(EnvironmentFault, match="Cannot reach the database server") as refused:
        credentials.check_password(location, "whatever-password")
    assert refused.value.retryable and refused.value.exit_code == 4


def test_without_a_keyring_login_says_so_and_saves_nothing(
    shared: SharedDatabase, no_keyring: None
) -> None:
    result = credentials.login(shared.url("auditor", None), PASSWORD)
    assert not result.saved
    assert result.note == credentials.NO_KEYRING


def test_a_password_in_the_url_is_refused() -> None:
    with pytest.raises(Exception, match="Leave the password out of the URL"):
        credentials.shared_location("postgresql://alice:secret@127.0.0.1/billing")


class _NoTerminal:
    def isatty(self) -> bool:
        return False
