"""`billing-desk credit apply|show`."""

from __future__ import annotations

import uuid

import typer

from billing_desk.cli.output import echo, emit
from billing_desk.cli.state import state
from billing_desk.services.credits import apply_credit, credit_balance

app = typer.Typer(help="Facility credit from overpayments.", no_args_is_help=True)


@app.command("apply")
def apply(
    ctx: typer.Context,
    facility: str = typer.Option(..., "--facility", help="Facility code."),
    invoice: str = typer.Option(..., "--invoice", help="Invoice number."),
    amount: str = typer.Option(..., "--amount", help="Amount of credit to apply."),
    idempotency_key: str | None = typer.Option(
        None,
        "--idempotency-key",
        help="Pass one to make retries safe; without it each run is a new request.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Apply facility credit to one of its open invoices."""
    result = apply_credit(
        state(ctx).workspace(),
        facility,
        invoice,
        amount,
        idempotency_key or f"credit-{uuid.uuid4()}",
    )
    emit(
        result,
        as_json,
        lambda: echo(
            f"Applied {result.amount} of credit to {result.invoice_number}; "
            f"{result.facility} has {result.credit_left} credit left."
        ),
    )


@app.command("show")
def show(
    ctx: typer.Context,
    facility: str = typer.Option(..., "--facility", help="Facility code."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """The facility's unapplied credit."""
    balance = credit_balance(state(ctx).workspace(), facility)
    emit(balance, as_json, lambda: echo(f"{balance.facility} credit: {balance.credit}"))
