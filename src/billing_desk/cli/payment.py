"""`billing-desk payment record|transition|show|list`."""

from __future__ import annotations

import typer

from billing_desk.cli.output import echo, emit, table
from billing_desk.cli.state import state
from billing_desk.domain.errors import BadInput
from billing_desk.domain.periods import parse_date
from billing_desk.services.payments import (
    PaymentDraft,
    change_status,
    list_payments,
    record_payment,
    show_payment,
)

app = typer.Typer(help="Payments received from facilities.", no_args_is_help=True)

JSON = typer.Option(False, "--json", help="Print one JSON document.")
KEY = typer.Option(
    ...,
    "--idempotency-key",
    help="Unique to this request; reuse it only to retry the same request.",
)


def _allocations(items: list[str]) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in items:
        number, sep, amount = item.partition("=")
        if not sep or not number.strip() or not amount.strip():
            raise BadInput(
                f"'{item}' is not an allocation; write it as INVOICE=AMOUNT, e.g. "
                "STMARY-000012=150.00."
            )
        pairs.append((number.strip(), amount.strip()))
    return tuple(pairs)


@app.command("record")
def record(
    ctx: typer.Context,
    facility: str = typer.Option(..., "--facility", help="Facility code."),
    method: str = typer.Option(..., "--method", help="check, transfer, card or cash."),
    amount: str = typer.Option(..., "--amount", help="Amount received, e.g. 1,234.56."),
    received: str = typer.Option(..., "--received", help="Day it arrived, YYYY-MM-DD."),
    idempotency_key: str = KEY,
    currency: str | None = typer.Option(None, "--currency", help="Must be the facility's."),
    check_number: str | None = typer.Option(None, "--check-number"),
    routing: str | None = typer.Option(None, "--routing", help="Check routing number."),
    account: str | None = typer.Option(
        None, "--account", help="Check account number (only its last 4 digits are kept)."
    ),
    reference: str | None = typer.Option(None, "--reference", help="Bank transfer reference."),
    card_brand: str | None = typer.Option(None, "--card-brand"),
    card_last4: str | None = typer.Option(None, "--card-last4"),
    processor_ref: str | None = typer.Option(None, "--processor-ref"),
    payer: str | None = typer.Option(None, "--payer"),
    memo: str | None = typer.Option(None, "--memo"),
    allocate: list[str] = typer.Option(
        [], "--allocate", help="INVOICE=AMOUNT; repeat for several invoices."
    ),
    auto: bool = typer.Option(False, "--auto", help="Allocate to open invoices, oldest first."),
    override_reason: str | None = typer.Option(
        None,
        "--override-reason",
        help="Record a duplicate-looking payment for a manager to approve, saying why.",
    ),
    as_json: bool = JSON,
) -> None:
    """Record a payment once: a retry with the same key returns the first result."""
    draft = PaymentDraft(
        facility=facility,
        method=method,
        amount=amount,
        received=parse_date(received, "received date"),
        currency=currency,
        check_number=check_number,
        routing_number=routing,
        account_number=account,
        reference=reference,
        card_brand=card_brand,
        card_last4=card_last4,
        processor_ref=processor_ref,
        payer=payer,
        memo=memo,
        allocations=_allocations(allocate),
        auto_allocate=auto,
        override_reason=override_reason,
    )
    receipt = record_payment(state(ctx).workspace(), draft, idempotency_key)

    def human() -> None:
        again = " (replayed: already recorded with this key)" if receipt.replayed else ""
        echo(f"Payment {receipt.payment_id}: {receipt.amount} {receipt.status}{again}.")
        for item in receipt.allocations:
            echo(f"  {item.invoice_number}: {item.amount}")
        if receipt.credit.is_positive():
            echo(f"  credit: {receipt.credit}")

    emit(receipt, as_json, human)


@app.command("transition")
def transition(
    ctx: typer.Context,
    payment_id: int = typer.Argument(..., help="Payment id."),
    to: str = typer.Option(..., "--to", help="Wanted status, e.g. cleared, returned, voided."),
    reason: str = typer.Option(..., "--reason", help="Why (kept in its history)."),
    idempotency_key: str = KEY,
    as_json: bool = JSON,
) -> None:
    """Move a payment along its lifecycle (voids and refunds: a manager who did not record it)."""
    result = change_status(state(ctx).workspace(), payment_id, to, reason, idempotency_key)
    emit(
        result,
        as_json,
        lambda: echo(
            f"Payment {result.payment_id}: {result.from_status} -> {result.status}"
            + (f"; released {len(result.released)} allocations" if result.released else "")
            + (" (replayed)" if result.replayed else "")
            + "."
        ),
    )


@app.command("show")
def show(
    ctx: typer.Context,
    payment_id: int = typer.Argument(..., help="Payment id."),
    as_json: bool = JSON,
) -> None:
    """One payment with its allocations and status history."""
    detail = show_payment(state(ctx).workspace(), payment_id)

    def human() -> None:
        echo(f"Payment {detail.payment_id}  {detail.facility}  {detail.method}  {detail.status}")
        echo(f"{detail.amount} received {detail.received_date}: {detail.instrument}")
        if detail.payer:
            echo(f"Payer: {detail.payer}")
        if detail.memo:
            echo(f"Memo: {detail.memo}")
        for item in detail.allocations:
            echo(f"  {item.invoice_number}: {item.amount}")
        echo(f"Credit: {detail.credit}")
        for h in detail.history:
            echo(
                f"{h.changed_at:%Y-%m-%d %H:%M} {h.changed_by}: {h.from_status or 'new'} -> "
                f"{h.to_status} ({h.reason})"
            )

    emit(detail, as_json, human)


@app.command("list")
def list_(
    ctx: typer.Context,
    facility: str | None = typer.Option(None, "--facility", help="Only this facility."),
    status: str | None = typer.Option(None, "--status", help="Only this status."),
    limit: int | None = typer.Option(
        None,
        "--limit",
        min=1,
        help="At most this many: the newest (the oldest with --oldest-first).",
    ),
    oldest_first: bool = typer.Option(
        False, "--oldest-first", help="In the order they were recorded instead of newest first."
    ),
    as_json: bool = JSON,
) -> None:
    """List payments, the newest received first."""
    rows = list_payments(
        state(ctx).workspace(),
        facility=facility,
        status=status,
        limit=limit,
        newest_first=not oldest_first,
    )
    emit(
        rows,
        as_json,
        lambda: table(
            ["id", "facility", "received", "method", "status", "amount", "credit", "instrument"],
            [
                (
                    p.payment_id,
                    p.facility,
                    p.received_date,
                    p.method,
                    p.status,
                    p.amount,
                    p.credit,
                    p.instrument,
                )
                for p in rows
            ],
            right={5, 6},
        ),
    )
