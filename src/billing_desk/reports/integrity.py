"""The integrity report: the verifier's findings and where each signed checkpoint stands."""

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
from billing_desk.services.provider import Provider
from billing_desk.services.report_data import IntegrityReport


def write_integrity(
    target: Path | IO[bytes],
    data: IntegrityReport,
    provider: Provider,
    printed_by: str,
    *,
    printed_at: datetime | None = None,
) -> None:
    s = styles()
    width = content_width()
    v = data.verification
    verdict = "No findings: the history verifies." if v.ok else f"{len(v.findings)} findings."
    story: list[Flowable] = [
        trusted("Integrity report", s.title),
        trusted(f"<b>{verdict}</b>", s.body),
        key_values(
            [
                ("Audit entries checked", f"{v.entries_checked:,}"),
                ("Payments checked", f"{v.payments_checked:,}"),
                ("Invoices checked", f"{v.invoices_checked:,}"),
                ("Checkpoint notes given", str(v.checkpoints_checked)),
                ("Chain head", f"sequence {v.head_sequence}"),
                ("Head hash", v.head_hash[:32] + "…" if v.head_hash else ""),
                (
                    "First broken sequence",
                    "" if v.first_broken_sequence is None else str(v.first_broken_sequence),
                ),
                (
                    "Unsealed entries",
                    f"{v.unsealed.count}"
                    + (f", oldest {day(v.unsealed.oldest)}" if v.unsealed.oldest else ""),
                ),
            ],
            [1.8 * inch, 3.6 * inch],
        ),
        trusted("Findings", s.heading),
    ]
    widths = [1.6 * inch, 1.6 * inch, 0]
    widths[2] = width - sum(widths)
    findings: list[list[Any]] = [
        [
            text_cell(f.kind, widths[0]),
            text_cell(f.entity, widths[1]),
            text_cell(f.detail, widths[2]),
        ]
        for f in v.findings
    ] or [["none", "", ""]]
    story.append(data_table(["Kind", "Where", "Detail"], findings, widths))
    story.append(trusted("Signed checkpoints stored in the database", s.heading))
    cp_widths = [0.9 * inch, 2.0 * inch, 1.2 * inch, 1.6 * inch, 0]
    cp_widths[4] = width - sum(cp_widths)
    checkpoints: list[list[Any]] = [
        [
            str(c.sequence),
            text_cell(c.key_name, cp_widths[1]),
            c.signed_by,
            day(c.created_at).replace(" UTC", ""),
            c.status,
        ]
        for c in data.checkpoints
    ] or [["none", "", "", "", ""]]
    story.append(
        data_table(
            ["Sequence", "Key", "Signed by", "Signed at (UTC)", "Status"], checkpoints, cp_widths
        )
    )
    info = ReportInfo(
        "Integrity report",
        "Verification of the audit chain, payment and invoice hashes and checkpoints",
        provider.heading,
        printed_by,
        printed_at or datetime.now(UTC),
    )
    build_pdf(target, story, info)


def integrity_csv(path: Path, data: IntegrityReport) -> int:
    v = data.verification
    rows: list[list[Any]] = [
        [
            "summary",
            "ok" if v.ok else "findings",
            f"head sequence {v.head_sequence}",
            f"{v.entries_checked} entries, {v.payments_checked} payments, "
            f"{v.invoices_checked} invoices checked; {v.unsealed.count} unsealed",
        ]
    ]
    rows += [["finding", f.kind, f.entity, f.detail] for f in v.findings]
    rows += [
        ["checkpoint", c.status, f"sequence {c.sequence}", f"{c.key_name} signed by {c.signed_by}"]
        for c in data.checkpoints
    ]
    return write_csv(path, ["record", "kind", "where", "detail"], rows)
