"""`billing-desk provider show|set`: the provider's details and remittance settings printed on
statements (a manager or an administrator sets them)."""

from __future__ import annotations

import typer

from billing_desk.cli.output import echo, emit
from billing_desk.cli.state import state
from billing_desk.services.provider import (
    Provider,
    ProviderChange,
    change_provider,
    provider_details,
)

app = typer.Typer(
    help="The provider's name, address and remittance details printed on statements.",
    no_args_is_help=True,
)

_LINES = "lines separated by '; '"


def describe(provider: Provider) -> None:
    """The settings as a person reads them, with what is missing."""
    if not provider.name and provider.updated_at is None:
        echo(
            "Nothing is set: statements say that remittance details are missing. A manager sets "
            "them with `billing-desk provider set --name ... --address ... --bank-name ... "
            "--account ... --routing ...` (or --lockbox ...)."
        )
        return
    rows = [
        ("Name", provider.name),
        ("Address", provider.address),
        ("Phone", provider.phone),
        ("Email", provider.email),
        ("Bank", provider.bank_name),
        ("Account number", provider.account_number),
        ("Routing number", provider.routing_number),
        ("Lockbox", provider.lockbox_address),
    ]
    for label, value in rows:
        shown = (value or "-").replace("\n", "; ")
        echo(f"{label + ':':16} {shown}")
    if provider.updated_at is not None:
        echo(f"{'Changed:':16} {provider.updated_at:%Y-%m-%d %H:%M} UTC by {provider.updated_by}")
    if provider.remittance_missing:
        echo(
            "Remittance details are missing: statements cannot say where to pay. Give "
            "--bank-name, --account and --routing, or --lockbox (or --address)."
        )
    elif not provider.transfer:
        echo("No bank account is set: statements tell facilities to pay by check only.")


@app.command("show")
def show(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """The provider's details and remittance settings, and what is missing."""
    provider = provider_details(state(ctx).workspace())
    emit(provider.to_record(), as_json, lambda: describe(provider))


@app.command("set")
def set_(
    ctx: typer.Context,
    name: str | None = typer.Option(None, "--name", help="The provider's name (the payee)."),
    address: str | None = typer.Option(None, "--address", help=f"Postal address, {_LINES}."),
    phone: str | None = typer.Option(None, "--phone", help="Billing office phone."),
    email: str | None = typer.Option(None, "--email", help="Billing office e-mail."),
    bank_name: str | None = typer.Option(None, "--bank-name", help="Bank for transfers."),
    account: str | None = typer.Option(None, "--account", help="Bank account number."),
    routing: str | None = typer.Option(
        None, "--routing", help="ABA routing number (9 digits, check digit verified)."
    ),
    lockbox: str | None = typer.Option(
        None, "--lockbox", help=f"Where checks are mailed, if not the address ({_LINES})."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Change the given details (an empty value clears one); a manager or an administrator
    only, and audited."""
    change = ProviderChange(name, address, email, phone, bank_name, account, routing, lockbox)
    provider = change_provider(state(ctx).workspace(), change)

    def human() -> None:
        echo("Saved the provider's details:")
        describe(provider)

    emit(provider.to_record(), as_json, human)
