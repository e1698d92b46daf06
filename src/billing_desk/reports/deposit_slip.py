"""The deposit slip: the checks and cash taken to the bank together, itemised, with totals."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from reportlab.lib.units import inch
from reportlab.platypus import Flowable, Spacer

from billing_desk.reports.csv_export import write_csv
from billing_desk.reports.template import (
    ReportInfo,
    build_pdf,
    content_width,
    data_table,
    day,
    key_values,
    money,
    styles,
    text_cell,
    trusted,
)
from billing_desk.services.provider import Provider
from billing_desk.services.report_data import DepositSlipData


def write_deposit_slip(
    target: Path | IO[bytes],
    data: DepositSlipData,
    provider: Provider,
    printed_by: str,
    *,
    printed_at: datetime | None = None,
) -> None:
    s = styles()
    width = content_width()
    story: list[Flowable] = [
        trusted(f"Deposit slip {data.deposit_id}", s.title),
        key_values(
            [
                ("Deposit date", day(data.deposit_date)),
                ("Bank account", data.bank_account),
                ("Items", str(len(data.items))),
                ("Checks", money(data.checks_total)),
                ("Cash", money(data.cash_total)),
                ("Total deposit", money(data.total)),
                ("Prepared by", data.created_by),
            ],
            [1.4 * inch, 2.2 * inch],
        ),
        Spacer(1, 10),
    ]
    widths = [0.7 * inch, 0.8 * inch, 1.6 * inch, 0.7 * inch, 0.9 * inch, 0, 1.1 * inch]
    widths[5] = width - sum(widths)
    rows: list[list[Any]] = [
        [
            str(i.payment_id),
            i.facility_code,
            text_cell(i.facility_name, widths[2]),
            i.method,
            i.check_number or "",
            text_cell(i.payer, widths[5]),
            money(i.amount),
        ]
        for i in data.items
    ]
    rows.append(["", "", "", "", "", "Total", money(data.total)])
    story.append(
        data_table(
            ["Payment", "Facility", "Name", "Method", "Check no.", "Payer", "Amount"],
            rows,
            widths,
            right=(6,),
            total_rows=1,
        )
    )
    info = ReportInfo(
        f"Deposit slip {data.deposit_id} — {data.deposit_date}",
        f"Deposit of {len(data.items)} items to {data.bank_account} on {data.deposit_date}",
        provider.heading,
        printed_by,
        printed_at or datetime.now(UTC),
    )
    build_pdf(target, story, info)


def deposit_slip_csv(path: Path, data: DepositSlipData) -> int:
    return write_csv(
        path,
        [
            "deposit_id",
            "deposit_date",
            "payment_id",
            "facility",
            "facility_name",
            "method",
            "check_number",
            "payer",
            "amount",
            "currency",
        ],
        [
            [
                data.deposit_id,
                data.deposit_date,
                i.payment_id,
                i.facility_code,
                i.facility_name,
                i.method,
                i.check_number,
                i.payer,
                i.amount,
                i.amount.currency,
            ]
            for i in data.items
        ],
    )
