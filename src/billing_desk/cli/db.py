"""`billing-desk db upgrade`."""

from __future__ import annotations

import typer

from billing_desk.cli.output import echo, emit
from billing_desk.cli.state import state
from billing_desk.services.unit_of_work import open_workspace

app = typer.Typer(help="The database schema.", no_args_is_help=True)


@app.command("upgrade")
def upgrade(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Migrate the database to the newest schema (the application also does it on start)."""
    options = state(ctx)
    workspace = open_workspace(options.db, options.user, migrate=False)
    try:
        changed = workspace.upgrade()
        where = workspace.location.describe()
    finally:
        workspace.close()
    result = {"database": where, "upgraded": changed}
    emit(
        result,
        as_json,
        lambda: echo(
            f"Upgraded {where} to the newest schema." if changed else f"{where} is up to date."
        ),
    )
