"""`billing-desk login|logout`: keep a shared database's password in the OS keyring."""

from __future__ import annotations

import typer

from billing_desk.cli.output import echo
from billing_desk.services import credentials

DB_URL = typer.Option(
    ...,
    "--db",
    envvar="BILLING_DESK_DB",
    help="The shared database, e.g. postgresql://alice@db.example.org/billing.",
)


def login(db: str = DB_URL) -> None:
    """Ask for your password once, check it with the server and keep it in the OS keyring;
    later commands connect without asking."""
    location = credentials.shared_location(db)
    password = typer.prompt(
        f"Password for {credentials.account_name(location.url)}", hide_input=True
    )
    result = credentials.login(db, password)
    role = f" as {result.role}" if result.role else ""
    if result.saved:
        echo(f"Logged in to {result.account}{role}; the password is in the OS keyring.")
    else:
        echo(f"Password checked for {result.account}{role}. {result.note}")


def logout(db: str = DB_URL) -> None:
    """Remove the saved password from the OS keyring."""
    location = credentials.shared_location(db)
    account = credentials.account_name(location.url)
    if credentials.logout(db):
        echo(f"Logged out of {account}; the saved password is gone.")
    else:
        echo(f"No password was saved for {account}.")
