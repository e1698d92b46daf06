"""`billing-desk health` and `billing-desk compliance`: how the installation is doing."""

from __future__ import annotations

from datetime import UTC, datetime

import typer

from billing_desk.cli.output import echo, emit, table
from billing_desk.cli.state import state
from billing_desk.domain.errors import BadInput
from billing_desk.services.compliance import compliance_report
from billing_desk.services.health import check_health
from billing_desk.services.unit_of_work import open_workspace

EXIT_FINDINGS = 1


def health(
    ctx: typer.Context,
    since: str | None = typer.Option(
        None, "--since", help="Count failed operations since (YYYY-MM-DD[THH:MM]; default 24h)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Database reachability and latency, schema, unsealed audit entries, last checkpoint,
    stale keys, failed operations, open discrepancies and alerts, keyring: each ok, warning or
    failing. Exit 1 when anything is failing."""
    chosen = state(ctx)
    # Not migrated, and not opened through the shared state: an unreachable or outdated
    # database is what this command reports, not a reason to stop.
    workspace = open_workspace(chosen.db, chosen.user, migrate=False)
    try:
        report = check_health(workspace, failures_since=_moment(since))
    finally:
        workspace.close()

    def human() -> None:
        table(["item", "status", ""], [(i.name, i.status, i.sentence) for i in report.items])
        echo(f"Overall: {report.status}.")

    emit(report.to_record(), as_json, human)
    if report.failing:
        raise typer.Exit(EXIT_FINDINGS)


def compliance(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """The compliance score, 0-100, with each check's weight, evidence and what to do."""
    report = compliance_report(state(ctx).workspace())

    def human() -> None:
        for check in report.checks:
            mark = "pass" if check.passed else "FAIL"
            echo(f"[{mark}] {check.title} ({check.weight}): {check.evidence}")
            if check.action:
                echo(f"       to do: {check.action}")
        echo(f"Score: {report.score} of 100.")

    emit(report.to_record(), as_json, human)


def _moment(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadInput(f"--since '{text}' is not a date; write it as YYYY-MM-DD.") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
