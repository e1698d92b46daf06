"""The aging report: what each facility owes by days past due, with totals per currency."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from reportlab.lib.units import inch
from reportlab.platypus import Flowable

from billing_desk.reports.csv_export import Cell, write_csv
from billing_desk.reports.template import (
    ReportInfo,
    build_pdf,
    content_width,
    data_table,
    money,
    styles,
    text_cell,
    trusted,
)
from billing_desk.services.provider import Provider
from billing_desk.services.report_data import AGING_BUCKETS, AgingReport

HEADERS = ["Current", "1-30", "31-60", "61-90", "Over 90", "Total open", "Credit", "Balance"]


def write_aging(
    target: Path | IO[bytes],
    data: AgingReport,
    provider: Provider,
    printed_by: str,
    *,
    printed_at: datetime | None = None,
) -> None:
    s = styles()
    width = content_width(wide=True)
    amount_width = 0.98 * inch
    widths = [0.75 * inch, width - 0.75 * inch - 8 * amount_width, *([amount_width] * 8)]
    rows: list[list[Any]] = [
        [
            row.facility.code,
            text_cell(row.facility.name, widths[1]),
            *(money(b) for b in row.buckets),
            money(row.total),
            money(-row.unapplied_credit),
            money(row.balance),
        ]
        for row in data.rows
    ]
    for currency, (buckets, total, credit, balance) in data.totals.items():
        rows.append(
            [
                "Total",
                currency,
                *(money(b) for b in buckets),
                money(total),
                money(-credit),
                money(balance),
            ]
        )
    story: list[Flowable] = [
        trusted(f"Aging of receivables as of {data.as_of}", s.title),
        trusted(
            f"{len(data.rows)} facilities with an open balance. Open invoice amounts by days past "
            "their due date; credit is money received and not yet applied.",
            s.small,
        ),
        data_table(
            ["Code", "Facility", *HEADERS],
            rows,
            widths,
            right=range(2, 10),
            total_rows=len(data.totals),
        ),
    ]
    info = ReportInfo(
        f"Aging report as of {data.as_of}",
        f"Accounts receivable aging as of {data.as_of}",
        provider.heading,
        printed_by,
        printed_at or datetime.now(UTC),
        landscape=True,
    )
    build_pdf(target, story, info)


def aging_csv(path: Path, data: AgingReport) -> int:
    rows: list[list[Cell]] = [
        [
            data.as_of,
            row.facility.code,
            row.facility.name,
            row.total.currency,
            *row.buckets,
            row.total,
            row.unapplied_credit,
            row.balance,
        ]
        for row in data.rows
    ]
    headers = [
        "as_of",
        "facility",
        "facility_name",
        "currency",
        *(b.replace(" ", "_") for b in AGING_BUCKETS),
        "total_open",
        "unapplied_credit",
        "balance",
    ]
    return write_csv(path, headers, rows)
