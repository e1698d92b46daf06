"""`billing-desk monitor run`: every anomaly rule over a period, raising alerts."""

from __future__ import annotations

from datetime import date

import typer

from billing_desk.cli.output import echo, emit, table
from billing_desk.cli.state import state
from billing_desk.domain.errors import BadInput
from billing_desk.services import monitoring

app = typer.Typer(help="Run the anomaly rules.", no_args_is_help=True)


def _day(text: str | None, option: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise BadInput(f"{option} '{text}' is not a date; write it as YYYY-MM-DD.") from None


@app.command("run")
def run(
    ctx: typer.Context,
    date_from: str | None = typer.Option(None, "--from", help="First day received (YYYY-MM-DD)."),
    date_to: str | None = typer.Option(None, "--to", help="Last day received (YYYY-MM-DD)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Run every rule over the payments received in the period (all without one) and print
    the alerts raised; findings already alerted are not raised again."""
    result = monitoring.run_monitor(
        state(ctx).workspace(), _day(date_from, "--from"), _day(date_to, "--to")
    )
    record = {
        "alerts": [alert.to_record() for alert in result.raised],
        "raised": len(result.raised),
        "findings": result.findings,
        "already_raised": result.already_raised,
        "payments_checked": result.payments_checked,
    }

    def human() -> None:
        print_alerts(result.raised)
        echo(
            f"{len(result.raised)} alerts raised from {result.findings} findings over "
            f"{result.payments_checked} payments ({result.already_raised} already raised)."
        )

    emit(record, as_json, human)


def print_alerts(alerts: tuple[monitoring.AlertInfo, ...] | list[monitoring.AlertInfo]) -> None:
    table(
        ["id", "rule", "severity", "facility", "status", "explanation"],
        [(a.id, a.rule, a.severity, a.facility, a.status, a.explanation) for a in alerts],
    )
