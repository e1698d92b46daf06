"""`billing-desk trip import|list`."""

from __future__ import annotations

from pathlib import Path

import typer

from billing_desk.cli.output import echo, emit, table
from billing_desk.cli.state import state
from billing_desk.domain.periods import parse_period
from billing_desk.domain.trips import TripFileRejected
from billing_desk.importers.trips_csv import read_trip_file
from billing_desk.services.trips import import_trips, list_trips

app = typer.Typer(help="Trips exported by the dispatch system.", no_args_is_help=True)


@app.command("import")
def import_(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="CSV file of trips (columns in the README)."),
    skip_bad: bool = typer.Option(
        False, "--skip-bad", help="Import the good rows and report the bad ones."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Load trips from a dispatch export. Any bad row refuses the whole file unless --skip-bad;
    importing the same file again changes nothing."""
    parsed = read_trip_file(file)
    try:
        result = import_trips(
            state(ctx).workspace(), parsed.records, skip_bad=skip_bad, problems=parsed.problems
        )
    except TripFileRejected as rejected:
        for problem in rejected.problems:
            echo(f"{file.name}: {problem}", err=True)
        raise

    def human() -> None:
        for problem in result.skipped:
            echo(f"skipped {file.name} {problem}", err=True)
        echo(
            f"{file.name}: {result.added} trips added, {result.updated} updated, "
            f"{result.unchanged} unchanged, {len(result.skipped)} bad "
            f"{'row' if len(result.skipped) == 1 else 'rows'} skipped."
        )

    emit(result, as_json, human)


@app.command("list")
def list_(
    ctx: typer.Context,
    facility: str | None = typer.Option(None, "--facility", help="Only this facility."),
    period: str | None = typer.Option(None, "--period", help="Only this month, YYYY-MM."),
    unbilled: bool = typer.Option(False, "--unbilled", help="Only trips on no live invoice."),
    limit: int | None = typer.Option(None, "--limit", help="At most this many trips."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """List trips with the invoice each is billed on."""
    month = parse_period(period) if period else None
    rows = list_trips(
        state(ctx).workspace(),
        facility=facility,
        period_start=month.start if month else None,
        period_end=month.end if month else None,
        unbilled_only=unbilled,
        limit=limit,
    )
    emit(
        rows,
        as_json,
        lambda: table(
            ["trip", "facility", "date", "client", "status", "billable", "fare", "invoice"],
            [
                (
                    t.external_trip_id,
                    t.facility,
                    t.service_date,
                    t.client,
                    t.status,
                    "yes" if t.billable else "no",
                    t.fare,
                    t.invoice_number or "",
                )
                for t in rows
            ],
            right={6},
        ),
    )
