"""The reconciliation report: a run's discrepancies (with how each was resolved) and the bank
lines matched in its period, with why."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from reportlab.lib.units import inch
from reportlab.platypus import Flowable

from billing_desk.domain.money import Money
from billing_desk.reports.csv_export import Cell, write_csv
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
from billing_desk.services.report_data import ReconciliationReportData


def _amount(minor: int | None, currency: str | None) -> Money | None:
    if minor is None or currency is None:
        return None
    return Money.from_minor(minor, currency)


def write_reconciliation(
    target: Path | IO[bytes],
    data: ReconciliationReportData,
    provider: Provider,
    printed_by: str,
    *,
    printed_at: datetime | None = None,
) -> None:
    s = styles()
    width = content_width()
    run = data.run
    story: list[Flowable] = [
        trusted(f"Reconciliation run {run.run_id}", s.title),
        key_values(
            [
                ("Period", f"{day(run.date_from)} to {day(run.date_to)}"),
                (
                    "Status",
                    run.status + (f" (sealed by {data.closed_by})" if data.closed_by else ""),
                ),
                ("Started by", data.started_by),
                ("Discrepancies", f"{len(run.discrepancies)} ({run.open_count} open)"),
                ("Bank lines matched", str(len(data.matches))),
                ("Content hash", run.content_hash or "(sealed when closed)"),
            ],
            [1.6 * inch, 5.0 * inch],
        ),
        trusted("Discrepancies", s.heading),
    ]
    widths = [0.4 * inch, 1.5 * inch, 0.65 * inch, 1.0 * inch, 1.0 * inch, 0]
    widths[5] = width - sum(widths)
    rows: list[list[Any]] = [
        [
            str(d.id),
            text_cell(d.kind, widths[1]),
            d.status,
            money(_amount(d.expected_minor, d.currency)),
            money(_amount(d.actual_minor, d.currency)),
            text_cell(d.detail + (f" — resolved: {d.note}" if d.note else ""), widths[5]),
        ]
        for d in run.discrepancies
    ] or [["", "none", "", "", "", ""]]
    story.append(
        data_table(
            ["Id", "Kind", "Status", "Expected", "Actual", "Detail"], rows, widths, right=(3, 4)
        )
    )
    story.append(trusted("Matches", s.heading))
    m_widths = [0.5 * inch, 0.8 * inch, 1.1 * inch, 0, 1.3 * inch, 0.9 * inch, 0.8 * inch]
    m_widths[3] = width - sum(m_widths)
    matches: list[list[Any]] = [
        [
            str(m.line_id),
            day(m.booked),
            money(m.amount),
            text_cell(" ".join(p for p in (m.reference, m.counterparty) if p), m_widths[3]),
            m.target,
            text_cell(m.rule, m_widths[5]),
            text_cell(m.matched_by, m_widths[6]),
        ]
        for m in data.matches
    ] or [["", "", "", "none", "", "", ""]]
    story.append(
        data_table(
            ["Line", "Booked", "Amount", "Reference", "Matched to", "Rule", "By"],
            matches,
            m_widths,
            right=(2,),
        )
    )
    info = ReportInfo(
        f"Reconciliation run {run.run_id}",
        f"Reconciliation of {run.date_from} to {run.date_to}",
        provider.heading,
        printed_by,
        printed_at or datetime.now(UTC),
    )
    build_pdf(target, story, info)


def reconciliation_csv(path: Path, data: ReconciliationReportData) -> int:
    run = data.run
    rows: list[list[Cell]] = [
        [
            "discrepancy",
            d.id,
            d.kind,
            d.status,
            _amount(d.expected_minor, d.currency),
            _amount(d.actual_minor, d.currency),
            d.currency,
            d.detail,
            d.note,
        ]
        for d in run.discrepancies
    ]
    rows += [
        [
            "match",
            m.line_id,
            m.rule,
            m.target,
            m.amount,
            None,
            m.amount.currency,
            " ".join(p for p in (m.reference, m.counterparty) if p),
            m.matched_by,
        ]
        for m in data.matches
    ]
    return write_csv(
        path,
        ["record", "id", "kind", "status", "expected", "actual", "currency", "detail", "note"],
        rows,
    )
