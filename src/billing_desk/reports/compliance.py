"""The compliance report: the score and every check behind it, with its evidence and, for a
check that failed, what to do."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from reportlab.lib.units import inch
from reportlab.platypus import Flowable

from billing_desk.reports.csv_export import write_csv
from billing_desk.reports.template import (
    ReportInfo,
    build_pdf,
    content_width,
    data_table,
    day,
    key_values,
    styles,
    text_cell,
    trusted,
)
from billing_desk.services.compliance import ComplianceReport
from billing_desk.services.provider import Provider


def write_compliance(
    target: Path | IO[bytes],
    data: ComplianceReport,
    provider: Provider,
    printed_by: str,
    *,
    printed_at: datetime | None = None,
) -> None:
    s = styles()
    width = content_width()
    passed = sum(1 for c in data.checks if c.passed)
    story: list[Flowable] = [
        trusted("Compliance report", s.title),
        key_values(
            [
                ("Score", f"{data.score} of 100"),
                ("Checks passed", f"{passed} of {len(data.checks)}"),
                ("Checked at", day(data.checked_at)),
            ],
            [1.8 * inch, 3.6 * inch],
        ),
        trusted("Checks", s.heading),
    ]
    widths = [1.9 * inch, 0.6 * inch, 0.6 * inch, 0]
    widths[3] = width - sum(widths)
    rows: list[list[Any]] = [
        [
            text_cell(c.title, widths[0]),
            "passed" if c.passed else "FAILED",
            str(c.weight),
            text_cell(c.evidence + (f" To do: {c.action}" if c.action else ""), widths[3]),
        ]
        for c in data.checks
    ]
    story.append(data_table(["Check", "Result", "Weight", "Evidence"], rows, widths))
    info = ReportInfo(
        "Compliance report",
        "The compliance score and the checks behind it",
        provider.heading,
        printed_by,
        printed_at or datetime.now(UTC),
    )
    build_pdf(target, story, info)


def compliance_csv(path: Path, data: ComplianceReport) -> int:
    rows: list[list[Any]] = [["score", "", data.score, "", ""]]
    rows += [
        [c.name, "passed" if c.passed else "failed", c.weight, c.evidence, c.action]
        for c in data.checks
    ]
    return write_csv(path, ["check", "result", "weight", "evidence", "to do"], rows)
