"""`billing-desk admin init|user add|user disable|user list`: setting up a shared PostgreSQL
database and its people, through an administrator's superuser connection."""

from __future__ import annotations

import typer

from billing_desk.cli.output import echo, emit, table
from billing_desk.domain.errors import BadInput
from billing_desk.services import admin as service

app = typer.Typer(help="Set up a shared PostgreSQL database and its users.", no_args_is_help=True)
user_app = typer.Typer(help="Login roles of a shared database.", no_args_is_help=True)
app.add_typer(user_app, name="user")

ADMIN_URL = typer.Option(
    ...,
    "--admin-url",
    envvar="BILLING_DESK_ADMIN_URL",
    help="A superuser connection to the shared database, e.g. postgresql://postgres@host/billing "
    "(its password, if any, from PGPASSWORD or ~/.pgpass, never the command line).",
)


@app.command("init")
def init(
    admin_url: str = ADMIN_URL,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Create or upgrade the schema, then the roles, grants, row-level security and triggers of
    a shared database. Safe to run again."""
    report = service.init_shared(admin_url)
    emit(
        report,
        as_json,
        lambda: echo(
            f"{report.database} is set up for sharing: {report.tables} tables, "
            f"{report.policies} row-level security policies"
            + (f"; created roles {', '.join(report.created_roles)}" if report.created_roles else "")
            + ("; schema upgraded" if report.migrated else "")
            + "."
            + (
                f" Disabled the users named like a group role ({', '.join(report.disabled_users)}):"
                " on a shared database people log in under names of their own; add them with "
                "`billing-desk admin user add`."
                if report.disabled_users
                else ""
            )
        ),
    )


@user_app.command("add")
def add(
    name: str = typer.Argument(..., help="Login name (lower-case letters, digits, '_')."),
    role: str = typer.Option(..., "--role", help="clerk, manager, auditor or admin."),
    facilities: str | None = typer.Option(
        None, "--facilities", help="Facility codes the user works for, comma-separated."
    ),
    all_facilities: bool = typer.Option(
        False, "--all-facilities", help="The user works for every facility."
    ),
    admin_url: str = ADMIN_URL,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Create a login role for a person, in their role's group, with their facilities. Asks
    for their first password (twice); it travels to the server only as a SCRAM verifier."""
    codes = [c for c in (facilities or "").split(",") if c.strip()]
    if not codes and not all_facilities:
        raise BadInput(
            "Say which facilities the user works for: --facilities CODE,CODE or --all-facilities."
        )
    password = typer.prompt(f"Password for {name}", hide_input=True, confirmation_prompt=True)
    info = service.add_user(
        admin_url, name, role, password, facilities=codes, all_facilities=all_facilities
    )
    emit(
        info,
        as_json,
        lambda: echo(
            f"Added {info.name} as {info.role} for "
            + ("every facility" if info.facilities == ("*",) else ", ".join(info.facilities))
            + f"; they log in with `billing-desk login --db postgresql://{info.name}@HOST/DB`."
        ),
    )


@user_app.command("disable")
def disable(
    name: str = typer.Argument(...),
    admin_url: str = ADMIN_URL,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Stop a user logging in and end their open sessions; their history stays."""
    info = service.disable_user(admin_url, name)
    emit(info, as_json, lambda: echo(f"Disabled {info.name}; they can no longer log in."))


@user_app.command("list")
def list_(
    admin_url: str = ADMIN_URL,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Users of the shared database, their roles, facilities and whether they can log in."""
    rows = service.list_users(admin_url)
    emit(
        rows,
        as_json,
        lambda: table(
            ["name", "role", "active", "can log in", "facilities"],
            [
                (
                    u.name,
                    u.role,
                    "yes" if u.active else "no",
                    "yes" if u.can_log_in else "no",
                    "all" if u.facilities == ("*",) else ",".join(u.facilities),
                )
                for u in rows
            ],
        ),
    )
