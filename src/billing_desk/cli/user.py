"""`billing-desk user add|list`: local users and roles of the embedded database."""

from __future__ import annotations

import typer

from billing_desk.cli.output import echo, emit, table
from billing_desk.cli.state import state
from billing_desk.services.users import add_user, list_users

app = typer.Typer(
    help="Users and their roles (clerk, manager, auditor, admin).", no_args_is_help=True
)


@app.command("add")
def add(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Login name, e.g. the OS user name."),
    role: str = typer.Option(..., "--role", help="clerk, manager, auditor or admin."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Add a user. The first user of a new database may be added by anyone; after that, by an
    administrator."""
    info = add_user(state(ctx).workspace(), name, role)
    emit(info, as_json, lambda: echo(f"Added {info.name} as {info.role}."))


@app.command("list")
def list_(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """List users."""
    rows = list_users(state(ctx).workspace())
    emit(
        rows,
        as_json,
        lambda: table(
            ["name", "role", "active"],
            [(u.name, u.role, "yes" if u.active else "no") for u in rows],
        ),
    )
