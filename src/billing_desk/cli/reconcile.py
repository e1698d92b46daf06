"""`billing-desk reconcile lines|match|unmatch|run|show|resolve|close`."""

from __future__ import annotations

from datetime import date

import typer

from billing_desk.cli.output import echo, emit, table
from billing_desk.cli.state import state
from billing_desk.domain.errors import BadInput
from billing_desk.domain.money import Money
from billing_desk.services import matching, reconciliation

app = typer.Typer(help="Match bank lines to payments and reconcile a period.", no_args_is_help=True)


def _day(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise BadInput(f"{option} '{text}' is not a date; write it as YYYY-MM-DD.") from None


def _money(minor: int | None, currency: str | None) -> str:
    if minor is None:
        return ""
    if currency is None:
        # A figure without a currency is a count, never money.
        return str(minor)
    return Money.from_minor(minor, currency).format()


def _matched_to(line: matching.LineInfo) -> str:
    if line.payment_id is not None:
        return f"payment {line.payment_id} ({line.rule})"
    if line.deposit_id is not None:
        return f"deposit {line.deposit_id} ({line.rule})"
    if line.matched_elsewhere:
        return "matched to another facility's payment or slip"
    return "unmatched"


def _print_lines(lines: list[matching.LineInfo]) -> None:
    table(
        ["line", "date", "amount", "reference", "counterparty", "match"],
        [
            (
                ln.id,
                ln.booked.isoformat(),
                _money(ln.amount_minor, ln.currency),
                ln.reference or "",
                (ln.counterparty or "")[:30],
                _matched_to(ln),
            )
            for ln in lines
        ],
        right={2},
    )


@app.command("lines")
def lines(
    ctx: typer.Context,
    statement: int | None = typer.Option(None, "--statement", help="Only this statement."),
    unmatched: bool = typer.Option(False, "--unmatched", help="Only lines not matched."),
    date_from: str | None = typer.Option(None, "--from", help="First day, YYYY-MM-DD."),
    date_to: str | None = typer.Option(None, "--to", help="Last day, YYYY-MM-DD."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Bank lines with their id, date, amount, reference, counterparty and match."""
    found = matching.list_lines(
        state(ctx).workspace(),
        statement_id=statement,
        unmatched=unmatched,
        date_from=_day(date_from, "--from") if date_from else None,
        date_to=_day(date_to, "--to") if date_to else None,
    )

    def human() -> None:
        _print_lines(found)
        typer.echo(f"{len(found)} bank lines.")

    emit(found, as_json, human)


@app.command("candidates")
def candidates(
    ctx: typer.Context,
    line: int = typer.Argument(..., help="The bank line."),
    window_days: int = typer.Option(
        matching.DEFAULT_WINDOW_DAYS, "--window-days", help="Days between payment and bank."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """What a bank line could be matched to, best first: exact reference, then exact amount,
    then nearest date, then payer similarity; each with the rule and the fields that agree."""
    found = matching.candidates(state(ctx).workspace(), line, window_days=window_days)

    def human() -> None:
        table(
            ["rank", "rule", "target", "date", "amount", "payer", "agrees on", "fits"],
            [
                (
                    c.rank,
                    c.rule,
                    f"payment {c.payment_id}" if c.payment_id else f"deposit {c.deposit_id}",
                    c.day.isoformat(),
                    _money(c.amount_minor, c.currency),
                    (c.payer or "")[:24],
                    ", ".join(c.agreeing),
                    "yes" if c.fits else f"no: {c.refusal}",
                )
                for c in found
            ],
            right={4},
        )
        typer.echo(f"{len(found)} candidates for bank line {line}.")

    emit(found, as_json, human)


@app.command("match")
def match(
    ctx: typer.Context,
    auto: bool = typer.Option(False, "--auto", help="Match every line a rule matches alone."),
    line: int | None = typer.Option(None, "--line", help="Match this bank line by hand..."),
    payment: list[int] | None = typer.Option(
        None, "--payment", help="...to this payment (repeat it for several together),"
    ),
    deposit: list[int] | None = typer.Option(
        None, "--deposit", help="...or to this deposit (repeat it for several together)."
    ),
    note: str | None = typer.Option(None, "--note", help="Why (a manual match)."),
    window_days: int = typer.Option(
        matching.DEFAULT_WINDOW_DAYS, "--window-days", help="Days between payment and bank."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Match bank lines to payments and deposits: --auto by the rules (reference and amount,
    deposit total, amount within the window, returns), or one --line by hand, to one payment or
    deposit or to several that are its money together."""
    workspace = state(ctx).workspace()
    if auto == (line is not None):
        raise BadInput("Give --auto, or --line with --payment or --deposit.")
    if line is not None:
        payments, deposits = list(payment or ()), list(deposit or ())
        if len(payments) + len(deposits) > 1:
            info = matching.match_together(
                workspace, line, payment_ids=payments, deposit_ids=deposits, note=note
            )
        else:
            info = matching.match_line(
                workspace,
                line,
                payment_id=payments[0] if payments else None,
                deposit_id=deposits[0] if deposits else None,
                note=note,
            )
        emit(info, as_json, lambda: echo(f"Matched bank line {info.line_id} by hand."))
        return
    summary = matching.auto_match(workspace, window_days=window_days)

    def human() -> None:
        table(
            ["line", "rule", "payment", "deposit"],
            [(m.line_id, m.rule, m.payment_id or "", m.deposit_id or "") for m in summary.matched],
        )
        echo(
            f"{len(summary.matched)} matched; {summary.unmatched_lines} lines left for a person "
            f"({summary.ambiguous_lines} with more than one candidate)."
        )
        if summary.left_line_ids:
            left = set(summary.left_line_ids)
            _print_lines(
                [ln for ln in matching.list_lines(workspace, unmatched=True) if ln.id in left]
            )

    emit(summary, as_json, human)


@app.command("unmatch")
def unmatch(
    ctx: typer.Context,
    line: int = typer.Argument(..., help="The bank line."),
    reason: str = typer.Option(..., "--reason", help="Why the match was wrong."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Undo a match (kept in the history, with who and why)."""
    info = matching.unmatch_line(state(ctx).workspace(), line, reason)
    emit(info, as_json, lambda: echo(f"Bank line {info.line_id} is unmatched."))


def _print_run(report: reconciliation.RunReport) -> None:
    table(
        ["id", "kind", "status", "expected", "actual", "detail"],
        [
            (
                d.id,
                d.kind,
                d.status,
                _money(d.expected_minor, d.currency),
                _money(d.actual_minor, d.currency),
                d.detail[:70],
            )
            for d in report.discrepancies
        ],
        right={3, 4},
    )
    echo(
        f"Run {report.run_id} ({report.date_from}..{report.date_to}, {report.status}): "
        f"{len(report.discrepancies)} discrepancies, {report.open_count} open."
    )


@app.command("run")
def run(
    ctx: typer.Context,
    date_from: str = typer.Option(..., "--from", help="First day, YYYY-MM-DD."),
    date_to: str = typer.Option(..., "--to", help="Last day, YYYY-MM-DD."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Compare deposited payments with bank credits for the period and check the books; exit 1
    when discrepancies are open."""
    report = reconciliation.run_reconciliation(
        state(ctx).workspace(), _day(date_from, "--from"), _day(date_to, "--to")
    )
    emit(report, as_json, lambda: _print_run(report))
    if report.open_count:
        raise typer.Exit(1)


@app.command("show")
def show(
    ctx: typer.Context,
    run_id: int = typer.Argument(...),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """A run and its discrepancies."""
    report = reconciliation.show_run(state(ctx).workspace(), run_id)
    emit(report, as_json, lambda: _print_run(report))


@app.command("resolve")
def resolve(
    ctx: typer.Context,
    discrepancy: int = typer.Argument(...),
    note: str = typer.Option(..., "--note", help="What was done about it."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Resolve a discrepancy with a note (manager)."""
    info = reconciliation.resolve_discrepancy(state(ctx).workspace(), discrepancy, note)
    emit(info, as_json, lambda: echo(f"Discrepancy {info.id} resolved."))


@app.command("close")
def close(
    ctx: typer.Context,
    run_id: int = typer.Argument(...),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Close and seal a run whose discrepancies are all resolved (manager)."""
    report = reconciliation.close_run(state(ctx).workspace(), run_id)
    emit(
        report,
        as_json,
        lambda: echo(f"Run {report.run_id} closed; sealed as {report.content_hash}."),
    )
