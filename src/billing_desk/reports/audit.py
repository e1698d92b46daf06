"""The audit report: audit entries in chain order, filtered by facility, user, action and days."""

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
    markup,
    styles,
    text_cell,
    trusted,
)
from billing_desk.services.provider import Provider
from billing_desk.services.report_data import AuditReport

# Before/after values are shown up to this many characters; the CSV carries them whole.
CHANGE_PREVIEW = 160


def write_audit(
    target: Path | IO[bytes],
    data: AuditReport,
    provider: Provider,
    printed_by: str,
    *,
    printed_at: datetime | None = None,
) -> None:
    s = styles()
    width = content_width()
    widths = [0.55 * inch, 1.3 * inch, 0.8 * inch, 0.65 * inch, 1.15 * inch, 1.1 * inch, 0]
    widths[6] = width - sum(widths)
    rows: list[list[Any]] = [
        [
            "" if e.sequence is None else str(e.sequence),
            day(e.recorded_at).replace(" UTC", ""),
            text_cell(e.user + (f" ({e.role})" if e.role else ""), widths[2]),
            e.facility or "",
            text_cell(e.action, widths[4]),
            text_cell(f"{e.entity_type} {e.entity_id}", widths[5]),
            text_cell(_change(e.before, e.after), widths[6]),
        ]
        for e in data.entries
    ]
    filters = ", ".join(f"{k} {v}" for k, v in data.filters.items()) or "none"
    story: list[Flowable] = [
        trusted("Audit report", s.title),
        trusted(
            f"Filters: {markup(filters)}. {len(data.entries)} entries"
            + (" (more matched: narrow the filters)" if data.truncated else "")
            + ". Times in UTC; sequence is the entry's place in the hash chain.",
            s.small,
        ),
        data_table(
            ["Seq.", "Recorded", "User", "Facility", "Action", "Entity", "Change"],
            rows,
            widths,
        ),
    ]
    info = ReportInfo(
        "Audit report",
        f"Audit entries; filters: {filters}",
        provider.heading,
        printed_by,
        printed_at or datetime.now(UTC),
    )
    build_pdf(target, story, info)


def _change(before: str | None, after: str | None) -> str:
    parts = []
    if before:
        parts.append(f"before {before}")
    if after:
        parts.append(f"after {after}")
    text = "; ".join(parts)
    return text if len(text) <= CHANGE_PREVIEW else text[: CHANGE_PREVIEW - 1] + "…"


def audit_csv(path: Path, data: AuditReport) -> int:
    return write_csv(
        path,
        [
            "sequence",
            "entry_id",
            "recorded_at",
            "user",
            "role",
            "facility",
            "action",
            "entity_type",
            "entity_id",
            "request_id",
            "before",
            "after",
        ],
        [
            [
                e.sequence,
                e.entry_id,
                e.recorded_at,
                e.user,
                e.role,
                e.facility,
                e.action,
                e.entity_type,
                e.entity_id,
                e.request_id,
                e.before,
                e.after,
            ]
            for e in data.entries
        ],
    )
