"""`billing-desk facility add|list`."""

from __future__ import annotations

import typer

from billing_desk.cli.output import echo, emit, table
from billing_desk.cli.state import state
from billing_desk.services.facilities import NewFacility, add_facility, list_facilities

app = typer.Typer(help="Facilities that book trips and receive invoices.", no_args_is_help=True)


@app.command("add")
def add(
    ctx: typer.Context,
    code: str = typer.Argument(..., help="Short code, e.g. STMARY; prefixes invoice numbers."),
    name: str = typer.Option(..., "--name", help="The facility's name as printed on invoices."),
    currency: str = typer.Option("USD", "--currency", help="ISO 4217 code it is billed in."),
    terms: int = typer.Option(30, "--terms", help="Payment terms in days."),
    contact: str | None = typer.Option(None, "--contact", help="Billing contact's name."),
    email: str | None = typer.Option(None, "--email", help="Billing contact's e-mail."),
    address: str | None = typer.Option(None, "--address", help="Billing address."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Add a facility."""
    info = add_facility(
        state(ctx).workspace(),
        NewFacility(code, name, currency, terms, contact, email, address),
    )
    emit(info, as_json, lambda: echo(f"Added facility {info.code}: {info.name}."))


@app.command("list")
def list_(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """List facilities."""
    rows = list_facilities(state(ctx).workspace())
    emit(
        rows,
        as_json,
        lambda: table(
            ["code", "name", "currency", "terms", "billing contact"],
            [
                (
                    f.code,
                    f.name,
                    f.currency,
                    f"{f.payment_terms_days} days",
                    f.billing_contact_email or f.billing_contact_name or "",
                )
                for f in rows
            ],
        ),
    )
