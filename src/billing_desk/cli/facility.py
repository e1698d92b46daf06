"""`billing-desk facility add|list|balance`."""

from __future__ import annotations

from dataclasses import dataclass

import typer

from billing_desk.cli.output import echo, emit, table
from billing_desk.cli.state import state
from billing_desk.services.balances import FacilityBalance, facility_balances
from billing_desk.services.facilities import (
    FacilityInfo,
    NewFacility,
    add_facility,
    list_facilities,
)

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
    """List facilities with what each owes: open, credit, balance and how much is overdue."""
    workspace = state(ctx).workspace()
    rows = list_facilities(workspace)
    balances = {b.facility: b for b in facility_balances(workspace)}
    listed = [FacilityListed(f, balances[f.code]) for f in rows]
    emit(
        listed,
        as_json,
        lambda: table(
            ["code", "name", "terms", "billing contact", "open", "credit", "balance", "overdue"],
            [
                (
                    f.code,
                    f.name,
                    f"{f.payment_terms_days} days",
                    f.billing_contact_email or f.billing_contact_name or "",
                    b.open,
                    b.credit,
                    b.balance,
                    b.overdue,
                )
                for f, b in ((x.facility, x.balance) for x in listed)
            ],
            right={4, 5, 6, 7},
        ),
    )


@dataclass(frozen=True)
class FacilityListed:
    facility: FacilityInfo
    balance: FacilityBalance


@app.command("balance")
def balance(
    ctx: typer.Context,
    code: str = typer.Argument(..., help="Facility code, e.g. STMARY."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """What the facility owes: open invoices by days past due, credit and balance."""
    result = facility_balances(state(ctx).workspace(), code)[0]

    def human() -> None:
        echo(f"{result.facility}  {result.name}  ({result.currency})")
        table(
            ["aging", "invoices", "open"],
            [(a.bucket, a.invoices, a.amount) for a in result.aging],
            right={1, 2},
        )
        echo(f"Open:    {result.open} on {result.open_invoices} invoices")
        echo(f"Credit:  {result.credit} received and not yet applied")
        echo(f"Balance: {result.balance}")
        echo(
            f"Overdue: {result.overdue}"
            + (f" (oldest due {result.oldest_due})" if result.oldest_due else "")
        )

    emit(result, as_json, human)
