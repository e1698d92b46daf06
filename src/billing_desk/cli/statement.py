"""`billing-desk import statement FILE`: preview a bank statement's lines, then --commit."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import typer

from billing_desk.cli.output import echo, print_json, table
from billing_desk.cli.state import state
from billing_desk.domain.errors import BadInput
from billing_desk.domain.statements import Statement, StatementRefused
from billing_desk.importers.statements import csv_statement, registry
from billing_desk.services.csv_mappings import find_mapping
from billing_desk.services.statements import ImportResult, StatementPreview, import_statements

app = typer.Typer(help="Bring files in: bank statements.", no_args_is_help=True)


@app.command("statement")
def statement(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="The bank's file: OFX/QFX, camt.053, MT940, BAI2, CSV."),
    format_name: str = typer.Option(
        "auto", "--format", help="auto, csv, ofx, camt053, mt940 or bai2."
    ),
    mapping: str | None = typer.Option(
        None, "--mapping", help="Saved CSV column mapping to read the file with (`mapping list`)."
    ),
    account: str | None = typer.Option(
        None, "--account", help="The bank account, when the file does not name it."
    ),
    currency: str | None = typer.Option(
        None, "--currency", help="The account's currency, for a CSV file that does not say."
    ),
    commit: bool = typer.Option(
        False, "--commit", help="Save the new lines; without it, only show what would happen."
    ),
    keep_conflicting: str | None = typer.Option(
        None,
        "--keep-conflicting",
        metavar="REASON",
        help="With --commit: save the conflicting lines too, as new lines, because the bank "
        "confirmed they are real (the reason goes in the audit log). Works on a file imported "
        "before.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Show every line of a statement as new, already imported or conflicting; with --commit,
    save the file and its new lines. Importing the same file again changes nothing."""
    data = registry.read_statement_file(file)
    if mapping is not None and format_name == "auto":
        format_name = "csv"  # a saved mapping is for CSV files
    chosen = registry.detect(data) if format_name == "auto" else format_name
    workspace = state(ctx).workspace()
    used: str | None = None
    if chosen == "csv" and mapping is None and (saved := find_mapping(workspace, data)):
        # The bank's next export is read with the mapping saved for its first, unasked.
        statements, guessed, used = csv_statement.parse_with(data, saved), None, saved.name
    elif chosen == "csv":
        statements, guessed = _csv(workspace, data, file, mapping, commit, currency)
    else:
        if mapping is not None:
            raise BadInput("--mapping is for CSV files; this one is " + chosen + ".")
        statements, guessed = registry.parse(data, chosen), None
    statements = [_with_account(s, account) for s in statements]
    if keep_conflicting is not None and not commit:
        raise BadInput("--keep-conflicting saves lines: give --commit with it.")
    result = import_statements(
        workspace,
        file.name,
        data,
        chosen,
        statements,
        commit=commit,
        keep_conflicting=keep_conflicting,
    )
    summary = _summary(result)
    if used is not None:
        summary["mapping"] = used
    if guessed is not None:
        summary["guessed_mapping"] = guessed
    if as_json:
        print_json(summary)
    else:
        _human(result, summary)


def _csv(
    workspace: Any,
    data: bytes,
    file: Path,
    mapping: str | None,
    commit: bool,
    currency: str | None,
) -> tuple[list[Statement], dict[str, object] | None]:
    from billing_desk.importers.statements import csv_statement
    from billing_desk.services.csv_mappings import get_mapping

    if mapping is not None:
        return csv_statement.parse_with(data, get_mapping(workspace, mapping)), None
    try:
        guessed = csv_statement.guess_mapping(data, name=file.stem, currency=currency)
    except StatementRefused as refused:
        if "--currency" in refused.problem:
            raise
        raise BadInput(
            f"The CSV file's mapping cannot be guessed ({refused.problem}); save one with "
            f"`billing-desk mapping save NAME --file {file} --set FIELD=VALUE ...` (or "
            "--json-file), then import with --mapping NAME."
        ) from None
    if commit:
        raise BadInput(
            "A CSV file is saved only through a mapping you have checked: look at the guessed "
            f"one (without --commit), save it with `billing-desk mapping save NAME --file {file}"
            "` (with --currency, --set FIELD=VALUE for corrections), then import with "
            "--mapping NAME --commit."
        )
    return csv_statement.parse_with(data, guessed), guessed.to_record()


def _with_account(statement: Statement, account: str | None) -> Statement:
    if account is None or not account.strip():
        if not statement.account:
            raise BadInput(
                "The file does not say which bank account it is; give --account ACCOUNT."
            )
        return statement
    wanted = account.strip()
    if statement.account and statement.account != wanted:
        raise BadInput(
            f"The file is for account {statement.account}, not {wanted}; leave out --account "
            "or give the file's own."
        )
    return replace(statement, account=wanted)


def _summary(result: ImportResult) -> dict[str, Any]:
    totals = result.totals()
    single = next(iter(totals.values())) if len(totals) == 1 else None
    return {
        "file": result.file,
        "format": result.format,
        "sha256": result.sha256,
        "committed": result.committed,
        "file_already_imported": result.file_already_imported,
        "lines": result.lines,
        "new": result.count("new"),
        "already_imported": result.count("already imported"),
        "conflicting": result.count("conflicting"),
        "kept_conflicting": result.kept_conflicting,
        "currency": next(iter(totals)) if len(totals) == 1 else None,
        "credits_minor": single[0] if single else None,
        "debits_minor": single[1] if single else None,
        "per_currency": {
            c: {"credits_minor": t[0], "debits_minor": t[1]} for c, t in totals.items()
        },
        "checks": [
            {
                "statement": s.statement_id or s.account,
                "account": s.account,
                "name": c.name,
                "ok": c.ok,
                "detail": c.detail,
            }
            for s in result.statements
            for c in s.checks
        ],
        "statements": [
            {
                "account": s.account,
                "currency": s.currency,
                "statement_id": s.statement_id,
                "period_start": s.period_start,
                "period_end": s.period_end,
                "notes": list(s.notes),
                "lines": [
                    {
                        "line_id": ln.line_id,
                        "location": ln.location,
                        "booked": ln.booked,
                        "amount_minor": ln.amount.minor,
                        "status": ln.status,
                        "why": ln.why,
                        "bank_id": ln.bank_id,
                        "reference": ln.reference,
                        "counterparty": ln.counterparty,
                        "description": ln.description,
                    }
                    for ln in s.lines
                ],
            }
            for s in result.statements
        ],
    }


def statement_header(s: StatementPreview) -> str:
    """One labelled line per statement: which account, currency, statement and period."""
    parts = [f"Account {s.account}", f"currency {s.currency}"]
    if s.statement_id:
        parts.append(f"statement {s.statement_id}")
    if s.period_start or s.period_end:
        parts.append(f"period {s.period_start or '?'} to {s.period_end or '?'}")
    return ", ".join(parts)


def _human(result: ImportResult, summary: dict[str, Any]) -> None:
    if summary.get("mapping"):
        echo(f"Read with the saved CSV mapping '{summary['mapping']}'.")
    for s in result.statements:
        echo(statement_header(s))
        table(
            ["line", "where", "booked", "amount", "status", "reference / counterparty"],
            [
                (
                    "" if ln.line_id is None else str(ln.line_id),
                    ln.location,
                    ln.booked,
                    ln.amount.format(),
                    ln.status + (f" ({ln.why})" if ln.why else ""),
                    " ".join(x for x in (ln.reference, ln.counterparty) if x)[:60],
                )
                for ln in s.lines
            ],
            right={0, 3},
        )
        for check in s.checks:
            echo(f"  check {check.name}: {'ok' if check.ok else 'FAILED'} ({check.detail})")
        for note in s.notes:
            echo(f"  note: {note}")
    verb = "saved" if result.committed else "would be saved (add --commit)"
    if result.file_already_imported:
        verb = "already imported: nothing changed"
    if result.kept_conflicting:
        verb = f"saved, with {result.kept_conflicting} conflicting kept as new lines"
    echo(
        f"{result.file} ({result.format}): {summary['lines']} lines, {summary['new']} new, "
        f"{summary['already_imported']} already imported, {summary['conflicting']} "
        f"conflicting; {verb}."
    )
    if summary["conflicting"] and not result.kept_conflicting:
        echo(
            "A conflicting line is not saved: check it with the bank; when it is a real line, "
            "import again with --commit --keep-conflicting REASON."
        )
