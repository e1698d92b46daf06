"""`billing-desk invoice run|list|show|void`."""

from __future__ import annotations

import typer

from billing_desk.cli.output import echo, emit, table
from billing_desk.cli.state import state
from billing_desk.domain.periods import parse_date
from billing_desk.services.invoices import (
    list_invoices,
    run_invoice,
    show_invoice,
    void_invoice,
)

app = typer.Typer(help="Bill trips into invoices; list, show and void them.", no_args_is_help=True)

JSON = typer.Option(False, "--json", help="Print one JSON document.")


@app.command("run")
def run(
    ctx: typer.Context,
    facility: str = typer.Option(..., "--facility", help="Facility code."),
    period: str = typer.Option(..., "--period", help="Month to bill, YYYY-MM."),
    trips: str | None = typer.Option(
        None, "--trips", help="Bill only these trip ids (comma-separated) of the period."
    ),
    issue_date: str | None = typer.Option(
        None, "--issue-date", help="YYYY-MM-DD; today if omitted."
    ),
    as_json: bool = JSON,
) -> None:
    """Bill the facility's completed, billable, not-yet-invoiced trips of the period."""
    result = run_invoice(
        state(ctx).workspace(),
        facility,
        period,
        trip_ids=trips.split(",") if trips is not None else None,
        issue_date=parse_date(issue_date, "issue date") if issue_date else None,
    )
    emit(
        result,
        as_json,
        lambda: echo(
            f"Issued invoice {result.invoice_number} to {result.facility} for {result.period}: "
            f"{result.trip_count} trips, {result.total}, due {result.due_date}."
        ),
    )


@app.command("list")
def list_(
    ctx: typer.Context,
    facility: str | None = typer.Option(None, "--facility", help="Only this facility."),
    status: str | None = typer.Option(
        None, "--status", help="draft, issued, partially-paid, paid or void."
    ),
    open_only: bool = typer.Option(False, "--open", help="Only invoices with something open."),
    overdue_only: bool = typer.Option(
        False, "--overdue", help="Only invoices open past their due date."
    ),
    limit: int | None = typer.Option(
        None, "--limit", min=1, help="Only the newest N (by issue date)."
    ),
    as_json: bool = JSON,
) -> None:
    """List invoices with what is paid, credited and still open on each."""
    rows = list_invoices(
        state(ctx).workspace(),
        facility=facility,
        status=status,
        open_only=open_only,
        overdue_only=overdue_only,
        limit=limit,
    )
    emit(
        rows,
        as_json,
        lambda: table(
            [
                "number",
                "facility",
                "period",
                "issued",
                "due",
                "status",
                "total",
                "paid",
                "credited",
                "open",
                "days late",
            ],
            [
                (
                    i.number,
                    i.facility,
                    f"{i.period_start:%Y-%m}",
                    i.issue_date,
                    i.due_date,
                    i.status,
                    i.total,
                    i.paid,
                    i.credited,
                    i.open,
                    i.days_past_due or "",
                )
                for i in rows
            ],
            right={6, 7, 8, 9, 10},
        ),
    )


@app.command("show")
def show(
    ctx: typer.Context,
    number: str = typer.Argument(..., help="Invoice number, e.g. STMARY-000012."),
    as_json: bool = JSON,
) -> None:
    """Show one invoice with its lines and status history."""
    detail = show_invoice(state(ctx).workspace(), number)

    def human() -> None:
        s = detail.summary
        echo(f"Invoice {s.number}  {s.facility}  {s.status}")
        echo(f"Period {s.period_start} to {s.period_end}; issued {s.issue_date}, due {s.due_date}")
        if detail.void_reason:
            echo(f"Void: {detail.void_reason}")
        table(
            ["#", "trip", "date", "description", "amount"],
            [
                (ln.line_no, ln.trip_id, ln.service_date, ln.description, ln.amount)
                for ln in detail.lines
            ],
            right={4},
        )
        echo(f"Total: {s.total} for {s.trip_count} trips")
        echo(f"Paid: {s.paid}; credited: {s.credited}; open: {s.open}")
        if s.overdue:
            echo(f"Past due: {s.days_past_due} days")
        for m in detail.money:
            echo(f"{m.applied_at:%Y-%m-%d %H:%M} {m.applied_by}: {m.amount} from {m.describe()}")
        for h in detail.history:
            echo(
                f"{h.changed_at:%Y-%m-%d %H:%M} {h.changed_by}: {h.from_status or 'new'} -> "
                f"{h.to_status}" + (f" ({h.reason})" if h.reason else "")
            )

    emit(detail, as_json, human)


@app.command("void")
def void(
    ctx: typer.Context,
    number: str = typer.Argument(..., help="Invoice number."),
    reason: str = typer.Option(..., "--reason", help="Why it is voided (kept in its history)."),
    as_json: bool = JSON,
) -> None:
    """Void an invoice (manager only); its trips can then be billed again."""
    summary = void_invoice(state(ctx).workspace(), number, reason)
    emit(
        summary,
        as_json,
        lambda: echo(
            f"Voided invoice {summary.number}; its {summary.trip_count} trips can be billed again."
        ),
    )
