"""`billing-desk admin ...` as an administrator types it."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest
from psycopg import sql

from billing_desk.cli.app import run
from tests.conftest import pg_admin_connection, pg_url


def test_admin_sets_up_a_database_and_its_users(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"bd_admin_{uuid.uuid4().hex[:8]}"
    login = f"t{uuid.uuid4().hex[:8]}_ann"
    with pg_admin_connection() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    admin_url = pg_url(name)
    monkeypatch.setenv("BILLING_DESK_ADMIN_URL", admin_url)
    monkeypatch.setattr("typer._click.termui.hidden_prompt_func", lambda _p: "a-long-password-1")
    try:
        assert run(["admin", "init"]) == 0
        assert "is set up for sharing" in capsys.readouterr().out
        assert run(["admin", "init", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["created_roles"] == []
        # Facilities come first, added by a registered administrator of the database.
        assert (
            run(["--db", admin_url, "--user", "boss", "user", "add", "boss", "--role", "admin"])
            == 0
        )
        assert (
            run(["--db", admin_url, "--user", "boss", "facility", "add", "FACA", "--name", "A"])
            == 0
        )
        capsys.readouterr()
        # Bad input: one sentence, exit 2, nothing created.
        assert run(["admin", "user", "add", login, "--role", "clerk", "--facilities", "NOPE"]) == 2
        assert "No facility has the code NOPE" in capsys.readouterr().err
        assert run(["admin", "user", "add", login, "--role", "clerk", "--facilities", "FACA"]) == 0
        assert "Added" in capsys.readouterr().out
        assert run(["admin", "user", "list", "--json"]) == 0
        users = {u["name"]: u for u in json.loads(capsys.readouterr().out)}
        assert users[login]["facilities"] == ["FACA"] and users[login]["can_log_in"]
        with psycopg.connect(
            f"postgresql://{login}:a-long-password-1@127.0.0.1:5432/{name}"
        ) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (login,)
        # A connection that is not a superuser's is refused in one sentence.
        monkeypatch.setenv(
            "BILLING_DESK_ADMIN_URL",
            f"postgresql://{login}:a-long-password-1@127.0.0.1:5432/{name}",
        )
        assert run(["admin", "user", "list"]) == 3
        assert "is not a superuser" in capsys.readouterr().err
        monkeypatch.setenv("BILLING_DESK_ADMIN_URL", admin_url)
        assert run(["admin", "user", "disable", login]) == 0
        assert run(["admin", "user", "add", login, "--role", "clerk", "--all-facilities"]) == 3
        assert "already exists" in capsys.readouterr().err
        # The disabled login is refused at the door, in one sentence.
        monkeypatch.setenv(
            "BILLING_DESK_ADMIN_URL",
            f"postgresql://{login}:a-long-password-1@127.0.0.1:5432/{name}",
        )
        assert run(["admin", "user", "list"]) == 4
        err = capsys.readouterr().err.strip()
        assert "may no longer log in" in err and len(err.splitlines()) == 1
    finally:
        with pg_admin_connection() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(login)))
