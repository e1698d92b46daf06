"""`billing-desk audit seal|verify|log` (and, mounted here, key, checkpoint and export)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer

from billing_desk.cli import audit_keys
from billing_desk.cli.audit_export import export_command
from billing_desk.cli.output import echo, emit, table
from billing_desk.cli.state import state
from billing_desk.domain.errors import BadInput
from billing_desk.domain.periods import parse_date
from billing_desk.services.audit import audit_log, audit_requests, seal
from billing_desk.services.checkpoints import claims_of_notes, load_trusted_keys
from billing_desk.services.verification import verify

app = typer.Typer(help="The tamper-evident history.", no_args_is_help=True)
app.add_typer(audit_keys.app, name="key")
app.command("checkpoint")(audit_keys.checkpoint_command)
app.command("export")(export_command)

EXIT_FINDINGS = 1


@app.command("seal")
def seal_command(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Seal every committed audit entry into the hash chain now."""
    result = seal(state(ctx).workspace())
    emit(
        result,
        as_json,
        lambda: echo(
            f"Sealed {result.sealed} entries; the chain head is sequence {result.head_sequence}."
        ),
    )


@app.command("verify")
def verify_command(
    ctx: typer.Context,
    checkpoint: list[Path] = typer.Option(
        [], "--checkpoint", help="A signed checkpoint note to hold the chain to (repeatable)."
    ),
    trust_key: list[Path] = typer.Option(
        [], "--trust-key", help="A file of trusted verifier keys (repeatable)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Recompute the chain, the payment and invoice hashes and the checkpoints; exit 1 with
    findings."""
    workspace = state(ctx).workspace()
    trusted = load_trusted_keys(trust_key)
    if checkpoint and not trusted:
        raise BadInput(
            "Checkpoints can only be checked against keys you trust; give --trust-key FILE or "
            "list keys in your trusted-keys file (see docs/checkpoints.md)."
        )
    claims = claims_of_notes(workspace, checkpoint, trusted)
    report = verify(workspace, claims)
    document = {
        "ok": report.ok,
        "entries_checked": report.entries_checked,
        "first_broken_sequence": report.first_broken_sequence,
        "findings": report.findings,
        "unsealed": {"count": report.unsealed.count, "oldest": report.unsealed.oldest},
        "head_sequence": report.head_sequence,
        "head_hash": report.head_hash,
        "payments_checked": report.payments_checked,
        "invoices_checked": report.invoices_checked,
        "checkpoints_checked": report.checkpoints_checked,
    }

    def human() -> None:
        echo(
            f"Checked {report.entries_checked} chain entries, {report.payments_checked} payments, "
            f"{report.invoices_checked} invoices and {report.checkpoints_checked} checkpoints; "
            f"head at sequence {report.head_sequence}."
        )
        if report.unsealed.count:
            since = report.unsealed.oldest
            age = f", oldest {workspace.clock() - since} old" if since else ""
            echo(f"{report.unsealed.count} entries are not sealed yet{age}.")
        for finding in report.findings:
            echo(f"FINDING {finding.kind}: {finding.entity}: {finding.detail}")
        echo("Intact." if report.ok else f"{len(report.findings)} findings.")

    emit(document, as_json, human)
    if not report.ok:
        raise typer.Exit(EXIT_FINDINGS)


@app.command("log")
def log_command(
    ctx: typer.Context,
    facility: str | None = typer.Option(None, "--facility", help="Only this facility."),
    since: str | None = typer.Option(None, "--since", help="Only from this day, YYYY-MM-DD."),
    action: str | None = typer.Option(None, "--action", help="Only this action."),
    user: str | None = typer.Option(None, "--by", help="Only this user's entries."),
    request: str | None = typer.Option(
        None, "--request", help="Only this request's entries (one user action)."
    ),
    summary: bool = typer.Option(
        False, "--summary", help="One line per user action (request) instead of one per row."
    ),
    limit: int = typer.Option(1000, "--limit", min=1, help="At most this many rows (the newest)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """The audit log, oldest of the selection first."""
    start = None
    if since:
        day = parse_date(since, "--since date")
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    entries = audit_log(
        state(ctx).workspace(),
        facility=facility,
        since=start,
        action=action,
        user=user,
        request=request,
        limit=limit,
    )
    if summary:
        actions = audit_requests(entries)
        emit(
            actions,
            as_json,
            lambda: table(
                ["when", "user", "action", "facility", "rows", "changed", "request"],
                [
                    (
                        f"{a.started_at:%Y-%m-%d %H:%M:%S}",
                        a.user,
                        a.action,
                        ", ".join(a.facilities),
                        a.rows,
                        ", ".join(a.entities),
                        a.request_id,
                    )
                    for a in actions
                ],
                right={4},
            ),
        )
        return
    emit(
        entries,
        as_json,
        lambda: table(
            ["seq", "when", "user", "facility", "action", "entity"],
            [
                (
                    e.sequence or "-",
                    f"{e.recorded_at:%Y-%m-%d %H:%M:%S}",
                    e.user,
                    e.facility or "",
                    e.action,
                    f"{e.entity_type} {e.entity_id}",
                )
                for e in entries
            ],
        ),
    )
