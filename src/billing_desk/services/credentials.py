"""Logging in to a shared PostgreSQL database: the password lives in the OS keyring.

`login` checks the password against the server once and keeps it in the keyring under the
connection it belongs to (user@host:port/database); afterwards every engine asks the keyring
when it connects (db.engine's password source), so the password is never in a URL, a config
file, a log or a command line. Where no keyring exists, the front end is asked each time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import keyring
from keyring.errors import KeyringError, PasswordDeleteError
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from billing_desk.db.engine import (
    DatabaseLocation,
    make_engine,
    resolve_location,
    set_password_source,
)
from billing_desk.domain.errors import BadInput, EnvironmentFault

SERVICE = "billing-desk"
NO_KEYRING = (
    "No OS keyring is available on this machine, so billing-desk cannot keep your password; "
    "it will ask for it each time it connects."
)


@dataclass(frozen=True)
class LoginResult:
    account: str
    role: str | None  # the billing role the database gives this login, if any
    saved: bool
    note: str | None = None


def account_name(url: URL) -> str:
    """The keyring entry a connection's password is kept under."""
    return f"{url.username}@{url.host or 'localhost'}:{url.port or 5432}/{url.database}"


def shared_location(db: str) -> DatabaseLocation:
    location = resolve_location(db)
    if not location.is_postgresql or not location.url.username:
        raise BadInput(
            "Log in to a shared database with its URL and your user name, for example "
            "--db postgresql://alice@db.example.org/billing."
        )
    if location.url.password:
        raise BadInput(
            "Leave the password out of the URL; billing-desk asks for it and keeps it in the "
            "OS keyring."
        )
    return location


def keyring_available() -> bool:
    """Whether an OS keyring that keeps secrets safely is there (the same test as for signing
    keys: none on a headless machine, and a plain-text file does not count)."""
    # Imported here: checkpoints needs the unit of work, which needs this module.
    from billing_desk.services.checkpoints import usable_keyring

    try:
        usable_keyring()
    except EnvironmentFault:
        return False
    return True


def login(db: str, password: str) -> LoginResult:
    """Check `password` against the server, then keep it in the keyring (when there is one)."""
    location = shared_location(db)
    role = check_password(location, password)
    account = account_name(location.url)
    if not keyring_available():
        return LoginResult(account, role, saved=False, note=NO_KEYRING)
    try:
        keyring.set_password(SERVICE, account, password)
    except KeyringError as err:
        return LoginResult(
            account,
            role,
            saved=False,
            note=f"The OS keyring refused the password ({err}). "
            "billing-desk will ask for it each time it connects.",
        )
    return LoginResult(account, role, saved=True)


def logout(db: str) -> bool:
    """Forget the saved password; False when none was saved."""
    account = account_name(shared_location(db).url)
    if not keyring_available():
        return False
    try:
        keyring.delete_password(SERVICE, account)
    except PasswordDeleteError:
        return False
    return True


def saved_password(url: URL) -> str | None:
    if not url.username or not keyring_available():
        return None
    try:
        return keyring.get_password(SERVICE, account_name(url))
    except KeyringError:
        return None


def use_saved_passwords(ask: Callable[[str], str | None] | None = None) -> None:
    """Let every PostgreSQL connection of this process take its password from the keyring, or
    (with no keyring, or nothing saved) from `ask`, once per account."""
    asked: dict[str, str | None] = {}

    def source(url: URL) -> str | None:
        found = saved_password(url)
        if found is not None or ask is None or not url.username:
            return found
        account = account_name(url)
        if account not in asked:
            asked[account] = ask(account)
        return asked[account]

    set_password_source(source)


def check_password(location: DatabaseLocation, password: str) -> str | None:
    """Connect once with `password`; the billing role of the login, or an EnvironmentFault."""
    probe = replace(location, url=location.url.set(password=password))
    engine = make_engine(probe, pool_size=1)
    try:
        with engine.connect() as connection:
            return connection.execute(
                text(
                    "SELECT r.rolname FROM pg_catalog.pg_roles r WHERE r.rolname IN "
                    "('clerk', 'manager', 'auditor', 'admin') AND "
                    "pg_catalog.pg_has_role(current_user, r.oid, 'MEMBER') ORDER BY 1 LIMIT 1"
                )
            ).scalar()
    except DBAPIError as err:
        raise connection_failure(location, err) from err
    finally:
        engine.dispose()


def connection_failure(location: DatabaseLocation, err: DBAPIError) -> EnvironmentFault:
    """One sentence for why the server would not let us in."""
    url = location.url
    where = f"{url.host or 'localhost'}:{url.port or 5432}"
    lines = str(err.orig if err.orig is not None else err).strip().splitlines()
    detail = lines[0] if lines else type(err).__name__
    lowered = detail.lower()
    if "no password supplied" in lowered:
        return EnvironmentFault(
            f"The server at {where} wants a password for {url.username}; run `billing-desk "
            f"login --db {location.describe()}` once to keep it in the OS keyring."
        )
    if "password authentication failed" in lowered:
        return EnvironmentFault(
            f"The server at {where} refused the password for {url.username} (wrong password, "
            f"or the account has expired); run `billing-desk login --db "
            f"{location.describe()}` with the right one, or ask an administrator."
        )
    if "not permitted to log in" in lowered:
        return EnvironmentFault(
            f"{url.username} may no longer log in to {where}; ask an administrator."
        )
    if "does not exist" in lowered and "database" in lowered:
        return EnvironmentFault(f"There is no database {url.database} at {where}; check the URL.")
    if "permission denied for database" in lowered:
        return EnvironmentFault(
            f"{url.username} has no access to the database {url.database} at {where}; ask an "
            "administrator to add you with `billing-desk admin user add`."
        )
    return EnvironmentFault(
        f"Cannot reach the database server at {where} ({detail}); check that it is running "
        "and the URL is right, then try again.",
        retryable=True,
    )
