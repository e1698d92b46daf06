"""`billing-desk deposit create|list|show`."""

from __future__ import annotations

import typer

from billing_desk.cli.output import echo, emit, table
from billing_desk.cli.state import state
from billing_desk.domain.errors import BadInput
from billing_desk.domain.periods import parse_date
from billing_desk.services.deposits import (
    DEFAULT_BANK_ACCOUNT,
    create_deposit,
    list_deposits,
    show_deposit,
)

app = typer.Typer(help="Deposits of checks and cash.", no_args_is_help=True)


def _ids(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise BadInput(f"'{text}' is not a list of payment ids; write them as 12,13,14.") from None


@app.command("create")
def create(
    ctx: typer.Context,
    payments: str = typer.Option(..., "--payments", help="Payment ids, comma-separated."),
    deposit_date: str = typer.Option(..., "--date", help="Deposit date, YYYY-MM-DD."),
    account: str = typer.Option(DEFAULT_BANK_ACCOUNT, "--account", help="Bank account name."),
    idempotency_key: str | None = typer.Option(
        None, "--idempotency-key", help="Default: derived from the payments and the date."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Group recorded checks and cash into one deposit slip; each moves to deposited."""
    slip = create_deposit(
        state(ctx).workspace(),
        _ids(payments),
        parse_date(deposit_date, "deposit date"),
        bank_account=account,
        idempotency_key=idempotency_key,
    )
    emit(
        slip,
        as_json,
        lambda: echo(
            f"Deposit {slip.deposit_id} on {slip.deposit_date} to {slip.bank_account}: "
            f"{len(slip.items)} items, {slip.total}" + (" (replayed)." if slip.replayed else ".")
        ),
    )


@app.command("list")
def list_(
    ctx: typer.Context,
    limit: int | None = typer.Option(
        None,
        "--limit",
        min=1,
        help="At most this many: the newest (the oldest with --oldest-first).",
    ),
    oldest_first: bool = typer.Option(False, "--oldest-first", help="The oldest deposit first."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """List deposits, the newest first."""
    rows = list_deposits(state(ctx).workspace(), limit=limit, oldest_first=oldest_first)
    emit(
        rows,
        as_json,
        lambda: table(
            ["id", "date", "account", "items", "total", "by"],
            [
                (d.deposit_id, d.deposit_date, d.bank_account, d.item_count, d.total, d.created_by)
                for d in rows
            ],
            right={3, 4},
        ),
    )


@app.command("show")
def show(
    ctx: typer.Context,
    deposit_id: int = typer.Argument(..., help="Deposit id (`deposit list` shows them)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Show one deposit and the payments in it."""
    slip = show_deposit(state(ctx).workspace(), deposit_id)

    def human() -> None:
        echo(f"Deposit {slip.deposit_id} on {slip.deposit_date} to {slip.bank_account}")
        table(
            ["payment", "facility", "method", "amount"],
            [(i.payment_id, i.facility, i.method, i.amount) for i in slip.items],
            right={3},
        )
        echo(f"Total: {slip.total} in {len(slip.items)} items")

    emit(slip, as_json, human)
