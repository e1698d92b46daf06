"""`billing-desk alerts list|ack|dismiss`: what the anomaly rules raised, and closing it."""

from __future__ import annotations

import typer

from billing_desk.cli.monitor import print_alerts
from billing_desk.cli.output import echo, emit
from billing_desk.cli.state import state
from billing_desk.services import monitoring

app = typer.Typer(help="Alerts raised by the anomaly rules.", no_args_is_help=True)


@app.command("list")
def list_alerts(
    ctx: typer.Context,
    open_only: bool = typer.Option(False, "--open", help="Only alerts nobody has closed."),
    facility: str | None = typer.Option(None, "--facility", help="Only this facility's."),
    limit: int | None = typer.Option(None, "--limit", help="At most this many, newest first."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Alerts, newest first."""
    alerts = monitoring.list_alerts(
        state(ctx).workspace(), open_only=open_only, facility=facility, limit=limit
    )
    emit([a.to_record() for a in alerts], as_json, lambda: print_alerts(alerts))


def _close(ctx: typer.Context, alert_id: int, note: str, as_json: bool, dismiss: bool) -> None:
    alert = monitoring.close_alert(state(ctx).workspace(), alert_id, note, dismiss=dismiss)
    emit(
        alert.to_record(),
        as_json,
        lambda: echo(f"Alert {alert.id} ({alert.rule}) {alert.status} by {alert.closed_by}."),
    )


@app.command("ack")
def ack(
    ctx: typer.Context,
    alert_id: int = typer.Argument(..., help="The alert."),
    note: str = typer.Option(..., "--note", help="What is being done about it."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Acknowledge an alert: it is real and being dealt with (manager)."""
    _close(ctx, alert_id, note, as_json, dismiss=False)


@app.command("dismiss")
def dismiss(
    ctx: typer.Context,
    alert_id: int = typer.Argument(..., help="The alert."),
    note: str = typer.Option(..., "--note", help="Why it is not a problem."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Dismiss an alert: it was not a problem (manager)."""
    _close(ctx, alert_id, note, as_json, dismiss=True)
