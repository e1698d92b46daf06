"""`billing-desk demo`: realistic, deterministic demo data."""

from __future__ import annotations

import typer

from billing_desk.cli.output import echo, emit
from billing_desk.cli.state import state
from billing_desk.domain.periods import parse_date
from billing_desk.services.demo import load_demo_data


def demo(
    ctx: typer.Context,
    seed: int = typer.Option(7, "--seed", help="Same seed, same data."),
    facilities: int = typer.Option(12, "--facilities", help="How many facilities."),
    months: int = typer.Option(6, "--months", help="How many months of trips."),
    as_of: str | None = typer.Option(
        None, "--as-of", help="Pretend today is this date (YYYY-MM-DD); default today."
    ),
    anomalies: bool = typer.Option(
        False,
        "--anomalies",
        help="Also plant a handful of anomalies for `billing-desk monitor run` to find.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Fill an empty database with demo facilities, trips, invoices and one user per role."""
    summary = load_demo_data(
        state(ctx).workspace(),
        seed=seed,
        facilities=facilities,
        months=months,
        as_of=parse_date(as_of, "--as-of date") if as_of else None,
        anomalies=anomalies,
    )
    emit(
        summary,
        as_json,
        lambda: echo(
            f"Loaded demo data: {summary.facilities} facilities, {summary.trips} trips, "
            f"{summary.invoices} invoices, {summary.payments} payments in "
            f"{summary.deposits} deposits, {summary.bank_lines} bank statement lines "
            f"({summary.bank_lines - summary.bank_lines_matched} left for reconciliation); "
            f"users {', '.join(summary.users)}. "
            "Try: billing-desk --user clerk payment list"
            + ("; billing-desk --user manager monitor run" if anomalies else "")
        ),
    )
