"""`billing-desk maintenance purge-keys`."""

from __future__ import annotations

import typer

from billing_desk.cli.output import echo, emit
from billing_desk.cli.state import state
from billing_desk.services.idempotency import DEFAULT_KEY_RETENTION_DAYS, purge_keys

app = typer.Typer(help="Housekeeping.", no_args_is_help=True)


@app.command("purge-keys")
def purge(
    ctx: typer.Context,
    older_than_days: int = typer.Option(
        DEFAULT_KEY_RETENTION_DAYS,
        "--older-than-days",
        envvar="BILLING_DESK_KEY_RETENTION_DAYS",
        help="Keep keys this many days.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Remove idempotency keys older than the retention period (default 30 days); the run is
    recorded."""
    result = purge_keys(state(ctx).workspace(), older_than_days=older_than_days)
    emit(
        result,
        as_json,
        lambda: echo(
            f"Removed {result.removed} idempotency keys older than {result.older_than_days} days."
        ),
    )
