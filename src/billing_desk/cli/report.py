"""`billing-desk report ...` (PDF reports and CSV exports) and `billing-desk statement check`.

Every print is audited after the file is written; if the audit entry cannot be written, the
file is removed again, so nothing is printed unrecorded.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from billing_desk.cli.output import echo, emit, print_json
from billing_desk.cli.state import state
from billing_desk.domain.errors import BadInput
from billing_desk.domain.periods import parse_date
from billing_desk.reports.aging import aging_csv, write_aging
from billing_desk.reports.audit import audit_csv, write_audit
from billing_desk.reports.compliance import compliance_csv, write_compliance
from billing_desk.reports.deposit_slip import deposit_slip_csv, write_deposit_slip
from billing_desk.reports.integrity import integrity_csv, write_integrity
from billing_desk.reports.reconciliation import reconciliation_csv, write_reconciliation
from billing_desk.reports.statement import (
    read_printed_statements,
    statement_csv,
    statement_file_name,
    write_combined,
    write_folder,
    write_statement,
)
from billing_desk.services.checkpoints import claims_of_notes, load_trusted_keys
from billing_desk.services.compliance import compliance_report
from billing_desk.services.provider import Provider, provider_details
from billing_desk.services.report_data import (
    OPEN_ITEM,
    Printed,
    aging_report_data,
    audit_report_data,
    check_statements,
    deposit_slip_data,
    integrity_report_data,
    reconciliation_report_data,
    record_prints,
    statement_data,
    statements_data,
)
from billing_desk.services.unit_of_work import Workspace
from billing_desk.services.verification import CheckpointClaim

EXIT_DIFFERS = 1

app = typer.Typer(help="Printed reports (PDF) and their CSV exports.", no_args_is_help=True)
statement_app = typer.Typer(help="Printed statements.", no_args_is_help=True)


def register(root: typer.Typer) -> None:
    """Mount `report` and `statement` on the root command."""
    root.add_typer(app, name="report")
    root.add_typer(statement_app, name="statement")


def _date(text: str | None, what: str) -> Any:
    return None if text is None else parse_date(text, what)


def _codes(text: str | None) -> list[str] | None:
    if text is None:
        return None
    codes = [c.strip().upper() for c in text.split(",") if c.strip()]
    if not codes:
        raise BadInput("--facilities names no facility; write the codes as STMARY,OAKVIEW.")
    return codes


LAYOUT_HELP = (
    "open-item (every open invoice, then recent activity) or balance-forward (the period's "
    "activity between opening and closing balances)."
)
FROM_HELP = (
    "First day of the activity shown (default: the day after the last statement printed, or "
    "30 days back; balance-forward: the 1st of the month)."
)


def _provider(workspace: Workspace) -> Provider:
    """The provider's details for a statement; says on stderr when they cannot tell a payer
    where to pay (the statement itself says so too)."""
    provider = provider_details(workspace)
    if provider.remittance_missing:
        echo(
            "Warning: remittance details are missing, so the statement says so instead of where "
            "to pay; a manager sets them with `billing-desk provider set`.",
            err=True,
        )
    return provider


def _outputs(out: Path | None, csv: Path | None) -> None:
    if out is None and csv is None:
        raise BadInput("Say where to write the report: --out FILE.pdf or --csv FILE.csv.")
    if out is not None and out.suffix.lower() != ".pdf":
        raise BadInput(f"--out {out} should name a .pdf file; use --csv FILE.csv for CSV.")


@contextmanager
def _audited(workspace: Workspace, paths: Sequence[Path]) -> Iterator[None]:
    """Remove the written files again when recording the print fails."""
    try:
        yield
    except BaseException:
        for path in paths:
            path.unlink(missing_ok=True)
        raise


def _write_and_record(
    workspace: Workspace,
    writers: Sequence[tuple[Path, Callable[[Path], object]]],
    printed: Sequence[Printed],
) -> None:
    paths = [p for p, _ in writers]
    with _audited(workspace, paths):
        for path, write in writers:
            path.parent.mkdir(parents=True, exist_ok=True)
            write(path)
        record_prints(workspace, "report.print", printed)


def _done(as_json: bool, record: dict[str, Any], sentence: str) -> None:
    emit(record, as_json, lambda: echo(sentence))


def _files(out: Path | None, csv: Path | None) -> str:
    return " and ".join(str(p) for p in (out, csv) if p is not None)


@app.command("statement")
def statement(
    ctx: typer.Context,
    facility: str = typer.Option(..., "--facility", help="Facility code."),
    as_of: str | None = typer.Option(None, "--as-of", help="Statement date (default today)."),
    period_from: str | None = typer.Option(None, "--from", help=FROM_HELP),
    layout: str = typer.Option(OPEN_ITEM, "--layout", help=LAYOUT_HELP),
    out: Path | None = typer.Option(None, "--out", help="The PDF to write."),
    csv: Path | None = typer.Option(None, "--csv", help="A CSV of the same statement."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """One facility's statement: every open invoice with what is paid and open and how late,
    the recent payments and credits, aging, amount due and when, the statement ID and a
    remittance slip with how to pay (--layout balance-forward: the period's activity between
    an opening and a closing balance)."""
    _outputs(out, csv)
    workspace = state(ctx).workspace()
    data = statement_data(
        workspace,
        facility,
        as_of=_date(as_of, "statement date"),
        period_start=_date(period_from, "period start"),
        layout=layout,
    )
    provider = _provider(workspace)
    writers = _writers(
        out,
        csv,
        lambda p: write_statement(p, data, provider, workspace.user_name),
        lambda p: statement_csv(p, data),
    )
    detail = {
        "period_start": data.period_start.isoformat(),
        "as_of": data.as_of.isoformat(),
        "content_hash": data.content_hash,
        "closing_minor": data.closing.minor,
        "layout": data.layout,
        "format": "+".join(p.suffix.lstrip(".") for p, _ in writers),
    }
    _write_and_record(
        workspace,
        writers,
        [Printed("statement", f"{data.facility.code}:{data.as_of}", data.facility.code, detail)],
    )
    record = {
        "facility": data.facility.code,
        "as_of": data.as_of.isoformat(),
        "period_start": data.period_start.isoformat(),
        "opening_minor": data.opening.minor,
        "closing_minor": data.closing.minor,
        "currency": data.closing.currency,
        "lines": len(data.lines),
        "layout": data.layout,
        "open_invoices": len(data.open_items),
        "amount_due_minor": data.amount_due.minor,
        "pay_by": data.pay_by.isoformat() if data.pay_by else ("now" if data.pay_now else None),
        "statement_id": data.statement_id,
        "content_hash": data.content_hash,
        "files": [str(p) for p, _ in writers],
    }
    _done(
        as_json,
        record,
        f"Statement of {data.facility.code} as of {data.as_of}: amount due {data.amount_due}, "
        f"{len(data.open_items)} open invoices; wrote {_files(out, csv)}.",
    )


@app.command("statements")
def statements(
    ctx: typer.Context,
    facilities: str | None = typer.Option(
        None, "--facilities", help="Facility codes, comma-separated."
    ),
    all_facilities: bool = typer.Option(
        False, "--all", help="Every facility with a balance or activity in the period."
    ),
    as_of: str | None = typer.Option(None, "--as-of", help="Statement date (default today)."),
    period_from: str | None = typer.Option(None, "--from", help=FROM_HELP),
    layout: str = typer.Option(OPEN_ITEM, "--layout", help=LAYOUT_HELP),
    out: Path = typer.Option(
        ..., "--out", help="A folder (one PDF per facility) or a FILE.pdf (one combined PDF)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Statements for many facilities, with progress on the terminal."""
    if (facilities is None) == (not all_facilities):
        raise BadInput("Name the facilities with --facilities A,B or print them all with --all.")
    workspace = state(ctx).workspace()
    show = not as_json and sys.stderr.isatty()
    with _progress(show, "Reading") as reading:
        datas = statements_data(
            workspace,
            _codes(facilities),
            as_of=_date(as_of, "statement date"),
            period_start=_date(period_from, "period start"),
            progress=reading,
            layout=layout,
        )
    if not datas:
        raise BadInput("No facility has a balance or activity in that period; nothing to print.")
    provider = _provider(workspace)
    combined = out.suffix.lower() == ".pdf"
    printed = [
        Printed(
            "statement",
            f"{d.facility.code}:{d.as_of}",
            d.facility.code,
            {
                "period_start": d.period_start.isoformat(),
                "as_of": d.as_of.isoformat(),
                "content_hash": d.content_hash,
                "closing_minor": d.closing.minor,
                "batch": True,
            },
        )
        for d in datas
    ]
    paths = [out] if combined else [out / statement_file_name(d) for d in datas]
    with _audited(workspace, paths), _progress(show, "Printing") as printing:
        if combined:
            write_combined(out, datas, provider, workspace.user_name, progress=printing)
        else:
            write_folder(out, datas, provider, workspace.user_name, progress=printing)
        record_prints(workspace, "report.print", printed)
    record = {
        "statements": len(datas),
        "combined": combined,
        "files": [str(p) for p in paths],
        "facilities": [
            {
                "facility": d.facility.code,
                "closing_minor": d.closing.minor,
                "currency": d.closing.currency,
                "content_hash": d.content_hash,
            }
            for d in datas
        ],
    }
    where = f"one PDF {out}" if combined else f"{len(paths)} PDFs in {out}"
    _done(as_json, record, f"Printed {len(datas)} statements into {where}.")


@contextmanager
def _progress(show: bool, label: str) -> Iterator[Callable[[int, int, str], None]]:
    """A progress callback that draws a bar on stderr when `show`, else does nothing."""
    if not show:
        yield lambda _done, _total, _what: None
        return
    state_: dict[str, Any] = {}

    def update(done: int, total: int, what: str) -> None:
        bar = state_.get("bar")
        if bar is None:
            bar = typer.progressbar(length=total, label=label, file=sys.stderr)
            bar.__enter__()
            state_["bar"] = bar
        bar.label = f"{label} {what}"
        bar.update(done - bar.pos)

    try:
        yield update
    finally:
        bar = state_.get("bar")
        if bar is not None:
            bar.__exit__(None, None, None)


Writer = Callable[[Path], object]


def _writers(
    out: Path | None, csv: Path | None, pdf: Writer, table: Writer
) -> list[tuple[Path, Writer]]:
    """The files asked for, each with what writes it."""
    return [(path, write) for path, write in ((out, pdf), (csv, table)) if path is not None]


@app.command("deposit-slip")
def deposit_slip(
    ctx: typer.Context,
    deposit_id: int = typer.Argument(..., help="The deposit's id."),
    out: Path | None = typer.Option(None, "--out", help="The PDF to write."),
    csv: Path | None = typer.Option(None, "--csv", help="A CSV of the same slip."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """The slip of a deposit of checks and cash."""
    _outputs(out, csv)
    workspace = state(ctx).workspace()
    data = deposit_slip_data(workspace, deposit_id)
    provider = provider_details(workspace)
    writers = _writers(
        out,
        csv,
        lambda p: write_deposit_slip(p, data, provider, workspace.user_name),
        lambda p: deposit_slip_csv(p, data),
    )
    _write_and_record(
        workspace,
        writers,
        [Printed("deposit_slip", str(deposit_id), None, {"total_minor": data.total.minor})],
    )
    record = {
        "deposit_id": data.deposit_id,
        "items": len(data.items),
        "total_minor": data.total.minor,
        "currency": data.total.currency,
        "files": [str(p) for p, _ in writers],
    }
    _done(as_json, record, f"Deposit slip {deposit_id}: {data.total}; wrote {_files(out, csv)}.")


@app.command("aging")
def aging(
    ctx: typer.Context,
    as_of: str | None = typer.Option(None, "--as-of", help="Date of the aging (default today)."),
    facilities: str | None = typer.Option(None, "--facilities", help="Only these codes."),
    out: Path | None = typer.Option(None, "--out", help="The PDF to write."),
    csv: Path | None = typer.Option(None, "--csv", help="The CSV to write."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Open invoice amounts of every facility by days past due (current, 1-30, 31-60, 61-90,
    over 90)."""
    _outputs(out, csv)
    workspace = state(ctx).workspace()
    data = aging_report_data(
        workspace, as_of=_date(as_of, "aging date"), facility_codes=_codes(facilities)
    )
    provider = provider_details(workspace)
    writers = _writers(
        out,
        csv,
        lambda p: write_aging(p, data, provider, workspace.user_name),
        lambda p: aging_csv(p, data),
    )
    totals = {c: t[3].minor for c, t in data.totals.items()}
    _write_and_record(
        workspace,
        writers,
        [Printed("aging_report", str(data.as_of), None, {"balances_minor": totals})],
    )
    record = {
        "as_of": data.as_of.isoformat(),
        "facilities": len(data.rows),
        "balance_minor_by_currency": totals,
        "files": [str(p) for p, _ in writers],
    }
    _done(
        as_json,
        record,
        f"Aging as of {data.as_of}: {len(data.rows)} facilities; wrote {_files(out, csv)}.",
    )


@app.command("audit")
def audit(
    ctx: typer.Context,
    facility: str | None = typer.Option(None, "--facility", help="Only this facility."),
    user: str | None = typer.Option(None, "--by", help="Only entries by this user."),
    action: str | None = typer.Option(None, "--action", help="Only this action."),
    date_from: str | None = typer.Option(None, "--from", help="First day (UTC)."),
    date_to: str | None = typer.Option(None, "--to", help="Last day (UTC)."),
    limit: int = typer.Option(50_000, "--limit", help="At most this many entries."),
    out: Path | None = typer.Option(None, "--out", help="The PDF to write."),
    csv: Path | None = typer.Option(None, "--csv", help="The CSV to write."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Audit entries filtered by facility, user, action and days."""
    _outputs(out, csv)
    workspace = state(ctx).workspace()
    data = audit_report_data(
        workspace,
        facility=facility,
        user=user,
        action=action,
        date_from=_date(date_from, "first day"),
        date_to=_date(date_to, "last day"),
        limit=limit,
    )
    provider = provider_details(workspace)
    writers = _writers(
        out,
        csv,
        lambda p: write_audit(p, data, provider, workspace.user_name),
        lambda p: audit_csv(p, data),
    )
    _write_and_record(
        workspace,
        writers,
        [
            Printed(
                "audit_report",
                "filtered",
                facility,
                {"filters": dict(data.filters), "entries": len(data.entries)},
            )
        ],
    )
    record = {
        "entries": len(data.entries),
        "truncated": data.truncated,
        "files": [str(p) for p, _ in writers],
    }
    _done(as_json, record, f"Audit report: {len(data.entries)} entries; wrote {_files(out, csv)}.")


@app.command("integrity")
def integrity(
    ctx: typer.Context,
    checkpoint: list[Path] = typer.Option(
        [], "--checkpoint", help="A signed checkpoint note to hold the chain to (repeatable)."
    ),
    trust_key: list[Path] = typer.Option(
        [], "--trust-key", help="A file of trusted verifier keys (repeatable)."
    ),
    out: Path | None = typer.Option(None, "--out", help="The PDF to write."),
    csv: Path | None = typer.Option(None, "--csv", help="The CSV to write."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Verify the history and print the findings and the checkpoints' standing; exit 1 with
    findings (the report is written either way)."""
    _outputs(out, csv)
    workspace = state(ctx).workspace()
    claims = _claims(workspace, checkpoint, trust_key)
    data = integrity_report_data(workspace, claims)
    provider = provider_details(workspace)
    writers = _writers(
        out,
        csv,
        lambda p: write_integrity(p, data, provider, workspace.user_name),
        lambda p: integrity_csv(p, data),
    )
    v = data.verification
    _write_and_record(
        workspace,
        writers,
        [
            Printed(
                "integrity_report",
                str(v.head_sequence),
                None,
                {"ok": v.ok, "findings": len(v.findings)},
            )
        ],
    )
    record = {"ok": v.ok, "findings": len(v.findings), "files": [str(p) for p, _ in writers]}
    verdict = "no findings" if v.ok else f"{len(v.findings)} findings"
    _done(as_json, record, f"Integrity report: {verdict}; wrote {_files(out, csv)}.")
    if not v.ok:
        raise typer.Exit(EXIT_DIFFERS)


def _claims(
    workspace: Workspace, notes: Sequence[Path], trust_key: Sequence[Path]
) -> list[CheckpointClaim]:
    if not notes:
        return []
    trusted = load_trusted_keys(list(trust_key))
    if not trusted:
        raise BadInput(
            "Checkpoints can only be checked against keys you trust; give --trust-key FILE."
        )
    return claims_of_notes(workspace, notes, trusted)


@app.command("reconciliation")
def reconciliation(
    ctx: typer.Context,
    run_id: int = typer.Argument(..., help="The reconciliation run's id."),
    out: Path | None = typer.Option(None, "--out", help="The PDF to write."),
    csv: Path | None = typer.Option(None, "--csv", help="The CSV to write."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """A reconciliation run's discrepancies and matches."""
    _outputs(out, csv)
    workspace = state(ctx).workspace()
    data = reconciliation_report_data(workspace, run_id)
    provider = provider_details(workspace)
    writers = _writers(
        out,
        csv,
        lambda p: write_reconciliation(p, data, provider, workspace.user_name),
        lambda p: reconciliation_csv(p, data),
    )
    _write_and_record(
        workspace,
        writers,
        [
            Printed(
                "reconciliation_report",
                str(run_id),
                None,
                {"discrepancies": len(data.run.discrepancies)},
            )
        ],
    )
    record = {
        "run_id": run_id,
        "discrepancies": len(data.run.discrepancies),
        "matches": len(data.matches),
        "files": [str(p) for p, _ in writers],
    }
    _done(as_json, record, f"Reconciliation run {run_id}: wrote {_files(out, csv)}.")


@statement_app.command("check")
def check(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="A statement PDF printed by billing-desk."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Recompute each statement the PDF names from the database and compare its content hash:
    exit 0 when every one matches, 1 when any differs."""
    printed = read_printed_statements(file)
    workspace = state(ctx).workspace()
    checks = check_statements(workspace, printed)
    ok = all(c.matches for c in checks)
    if as_json:
        print_json(
            {
                "matches": ok,
                "statements": [
                    {
                        "facility": c.printed.facility,
                        "period_start": c.printed.period_start.isoformat(),
                        "as_of": c.printed.as_of.isoformat(),
                        "printed_hash": c.printed.content_hash,
                        "current_hash": c.current_hash,
                        "matches": c.matches,
                    }
                    for c in checks
                ],
            }
        )
    else:
        for c in checks:
            p = c.printed
            if c.matches:
                echo(
                    f"{p.facility} as of {p.as_of}: matches the billing records "
                    f"({p.content_hash[:16]}…)."
                )
            else:
                closing = f" (closing balance now {c.current.closing})" if c.current else ""
                echo(
                    f"{p.facility} as of {p.as_of}: DIFFERS from the billing records{closing}; "
                    "the printed statement no longer matches what the database holds."
                )
    if not ok:
        raise typer.Exit(EXIT_DIFFERS)


@app.command("compliance")
def compliance(
    ctx: typer.Context,
    out: Path | None = typer.Option(None, "--out", help="The PDF to write."),
    csv: Path | None = typer.Option(None, "--csv", help="The CSV to write."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """The compliance score and every check behind it, with evidence and what to do."""
    _outputs(out, csv)
    workspace = state(ctx).workspace()
    data = compliance_report(workspace)
    provider = provider_details(workspace)
    writers = _writers(
        out,
        csv,
        lambda p: write_compliance(p, data, provider, workspace.user_name),
        lambda p: compliance_csv(p, data),
    )
    _write_and_record(
        workspace,
        writers,
        [Printed("compliance_report", str(data.score), None, {"score": data.score})],
    )
    record = {"score": data.score, "files": [str(p) for p, _ in writers]}
    _done(as_json, record, f"Compliance report: score {data.score}; wrote {_files(out, csv)}.")
