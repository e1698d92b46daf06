"""The facility statement: who bills whom, the period's activity between its opening and
closing balances, aging, the content hash with how to check it, and a remittance slip.
Batch printing writes one PDF per facility into a folder, or one combined PDF."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any

from reportlab.lib.units import inch
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.platypus import Flowable, KeepTogether, PageBreak, Spacer, Table, TableStyle

from billing_desk.reports.csv_export import Cell, write_csv
from billing_desk.reports.template import (
    CELL_PADDING,
    FONT,
    FONT_BOLD,
    INK,
    RULE,
    SHADE,
    ProgressCallback,
    ReportInfo,
    Section,
    build_pdf,
    content_width,
    data_table,
    day,
    draw_text,
    is_plain,
    key_values,
    markup,
    money,
    styles,
    text_cell,
    trusted,
    visual,
)
from billing_desk.services.report_data import (
    AGING_BUCKETS,
    PrintedStatement,
    Provider,
    StatementData,
)

CHECK_LABEL = "Statement check:"
# What `statement check` reads back: "Statement check: CODE FROM AS-OF SHA256".
CHECK_LINE = re.compile(
    r"Statement\s*check:\s*([A-Z0-9_-]{2,16})\s+(\d{4}-\d{2}-\d{2})\s+(\d{4}-\d{2}-\d{2})\s+"
    r"([0-9a-f]{64})"
)
# Addressed to the payer: no command of ours, only what they can do with the line above.
HOW_TO_CHECK = (
    "To confirm this statement, quote the line above to our billing office: any change to the "
    "figures since printing changes it."
)


def token_cell(text: str | None, width: float, font_size: float = 8) -> str | object:
    """A reference on one line: never broken inside (a payer keys it in whole), cut with an
    ellipsis when the column is too narrow; the slip shows what must be quoted."""
    value = text or ""
    if not is_plain(value):
        return text_cell(value, width, font_size)
    room = width - 2 * CELL_PADDING
    if stringWidth(value, FONT, font_size) <= room:
        return value
    cut = value
    while cut and stringWidth(cut + "...", FONT, font_size) > room:
        cut = cut[:-1]
    return cut.rstrip() + "..."


def statement_title(data: StatementData) -> str:
    return f"Statement — {data.facility.name} ({data.facility.code})"


def statement_file_name(data: StatementData) -> str:
    return f"statement-{data.facility.code}-{data.as_of.isoformat()}.pdf"


def write_statement(
    target: Path | IO[bytes],
    data: StatementData,
    provider: Provider,
    printed_by: str,
    *,
    printed_at: datetime | None = None,
) -> None:
    """One statement as one PDF."""
    when = printed_at or datetime.now(UTC)
    info = ReportInfo(
        statement_title(data),
        f"Statement of account as of {data.as_of}, {data.period_start} to {data.as_of}",
        provider.name,
        printed_by,
        when,
        keywords=_keywords([data]),
        for_customer=True,
    )
    build_pdf(target, statement_story(data, provider), info)


def write_combined(
    target: Path | IO[bytes],
    statements: Sequence[StatementData],
    provider: Provider,
    printed_by: str,
    *,
    printed_at: datetime | None = None,
    progress: ProgressCallback | None = None,
) -> None:
    """Every statement in one PDF, each starting on a new page with its own page numbering."""
    when = printed_at or datetime.now(UTC)
    story: list[Flowable] = []
    for index, data in enumerate(statements, 1):
        if story:
            story.append(PageBreak())
        story += statement_story(data, provider)
        if progress is not None:
            progress(index, len(statements), data.facility.code)
    as_of = statements[0].as_of if statements else when.date()
    info = ReportInfo(
        f"Statements as of {as_of} ({len(statements)} facilities)",
        f"Statements of account as of {as_of}",
        provider.name,
        printed_by,
        when,
        keywords=_keywords(statements),
        for_customer=True,
    )
    build_pdf(target, story, info)


def write_folder(
    folder: Path,
    statements: Sequence[StatementData],
    provider: Provider,
    printed_by: str,
    *,
    printed_at: datetime | None = None,
    progress: ProgressCallback | None = None,
) -> list[Path]:
    """One PDF per facility in `folder` (created if missing); returns the files."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for index, data in enumerate(statements, 1):
        path = folder / statement_file_name(data)
        write_statement(path, data, provider, printed_by, printed_at=printed_at)
        written.append(path)
        if progress is not None:
            progress(index, len(statements), data.facility.code)
    return written


def _keywords(statements: Sequence[StatementData]) -> str:
    return " ".join(
        f"billing-desk-statement:{d.facility.code}:{d.period_start}:{d.as_of}:{d.content_hash}"
        for d in statements
    )


def statement_story(data: StatementData, provider: Provider) -> list[Flowable]:
    s = styles()
    width = content_width()
    facility = data.facility
    story: list[Flowable] = [Section(statement_title(data))]
    story.append(trusted("Statement of account", s.title))

    sender = [f"<b>{markup(provider.name)}</b>"]
    for part in (provider.address, provider.email, provider.phone):
        if part:
            sender.append(markup(part))
    billed = [f"<b>{markup(facility.name)}</b>", f"Facility {markup(facility.code)}"]
    if facility.billing_contact_name:
        billed.append(f"Attn: {markup(facility.billing_contact_name)}")
    if facility.billing_address:
        billed.append(markup(facility.billing_address))
    if facility.billing_contact_email:
        billed.append(markup(facility.billing_contact_email))
    facts = key_values(
        [
            ("Statement date", day(data.as_of)),
            ("Period", f"{day(data.period_start)} to {day(data.as_of)}"),
            ("Payment terms", f"net {facility.payment_terms_days} days"),
            ("Currency", data.closing.currency),
            ("Amount due", money(data.amount_due)),
        ],
        [1.15 * inch, 1.45 * inch],
    )
    top = Table(
        [
            [trusted("<b>From</b>", s.small), trusted("<b>Bill to</b>", s.small), ""],
            [trusted("<br/>".join(sender)), trusted("<br/>".join(billed)), facts],
        ],
        colWidths=[width * 0.3, width * 0.33, width * 0.37],
    )
    top.setStyle(
        TableStyle(
            [
                ("FONT", (0, 0), (-1, -1), FONT, 8),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LEFTPADDING", (0, 0), (-1, -1), 0),
                ("BOX", (2, 1), (2, 1), 0.75, INK),
                ("BACKGROUND", (2, 1), (2, 1), SHADE),
            ]
        )
    )
    story += [top, Spacer(1, 10)]

    story.append(trusted("Summary", s.heading))
    story.append(
        key_values(
            [
                (f"Opening balance on {day(data.period_start)}", money(data.opening)),
                ("Invoices issued", money(data.invoiced)),
                ("Payments received", money(-data.received)),
                ("Voids, returns and refunds", money(data.reversed)),
                (f"Closing balance on {day(data.as_of)}", money(data.closing)),
            ],
            [3.2 * inch, 1.6 * inch],
        )
    )

    story.append(trusted("Activity", s.heading))
    widths = [0.75 * inch, 1.05 * inch, 1.05 * inch, 0, 1.05 * inch, 1.05 * inch]
    widths[3] = width - sum(widths)
    rows: list[list[Any]] = [
        [day(data.period_start), "", "", "Opening balance", "", money(data.opening)]
    ]
    for line in data.lines:
        amount = money(line.amount)
        if line.amount is None and line.note_amount is not None:
            amount = f"({money(line.note_amount)})"
        rows.append(
            [
                day(line.day),
                text_cell(line.kind.capitalize(), widths[1]),
                token_cell(line.reference, widths[2]),
                text_cell(line.description, widths[3]),
                amount,
                money(line.balance),
            ]
        )
    rows.append(["", "", "", "Closing balance", "", money(data.closing)])
    story.append(
        data_table(
            ["Date", "Type", "Reference", "Description", "Amount", "Balance"],
            rows,
            widths,
            right=(4, 5),
            total_rows=1,
        )
    )
    if any(line.amount is None for line in data.lines):
        story.append(
            trusted(
                "Amounts in brackets move credit the facility already paid onto an invoice; "
                "they do not change the balance.",
                s.small,
            )
        )

    aging_widths = [width / 7] * 7
    aging = [
        trusted("Aging of open invoices", s.heading),
        data_table(
            [*(_bucket_label(b) for b in AGING_BUCKETS), "Less credit", "Amount due"],
            [
                [
                    *(money(b.amount) for b in data.aging),
                    money(-data.unapplied_credit),
                    money(data.aging_total - data.unapplied_credit),
                ]
            ],
            aging_widths,
            right=range(7),
            zebra=False,
        ),
    ]
    story.append(KeepTogether(aging))
    if data.closing.is_negative():
        story.append(
            trusted(
                f"The facility has a credit of {money(-data.closing)}; nothing is due.", s.strong
            )
        )
    story.append(Spacer(1, 8))
    story.append(
        trusted(
            f"<b>{CHECK_LABEL}</b> {markup(facility.code)} {day(data.period_start)} "
            f"{day(data.as_of)} {data.content_hash}",
            s.small,
        )
    )
    story.append(trusted(HOW_TO_CHECK, s.small))
    story.append(RemittanceSlip(data, provider))
    return story


def _bucket_label(name: str) -> str:
    return {"current": "Current", "over 90": "Over 90"}.get(name, f"{name} days")


class RemittanceSlip(Flowable):
    """The detachable slip, drawn at the foot of the statement's last page (on a new page when
    the last one has no room)."""

    HEIGHT = 2.05 * inch

    def __init__(self, data: StatementData, provider: Provider) -> None:
        super().__init__()
        self.data = data
        self.provider = provider

    def wrap(self, availWidth: float, availHeight: float) -> tuple[float, float]:
        self.width = availWidth
        # Take the rest of the page, so the slip sits at its foot; too little room moves it on.
        self.height = availHeight if availHeight >= self.HEIGHT else self.HEIGHT
        return self.width, self.height

    def draw(self) -> None:
        canvas = self.canv
        data = self.data
        width = self.width
        top = self.HEIGHT - 6
        canvas.saveState()
        canvas.setStrokeColor(RULE)
        canvas.setDash(4, 3)
        canvas.line(0, top, width, top)
        canvas.setDash()
        canvas.setFillColor(INK)
        canvas.setFont(FONT, 6.5)
        canvas.drawCentredString(
            width / 2, top + 3, "Detach here and return this part with your payment"
        )
        canvas.setFont(FONT_BOLD, 10)
        canvas.drawString(0, top - 16, "Remittance slip")
        left = [
            ("Facility", f"{visual(data.facility.name)} ({data.facility.code})"),
            ("Statement date", day(data.as_of)),
            ("Amount due", money(data.amount_due)),
            ("Amount enclosed", "______________________"),
        ]
        y = top - 32
        for label, value in left:
            draw_text(canvas, 0, y, label, FONT_BOLD, 8)
            draw_text(canvas, 1.1 * inch, y, value, FONT, 8, ordered=True)
            y -= 13
        canvas.setFont(FONT, 7)
        canvas.drawString(
            0, y - 2, f"Write {data.facility.code} on your check or transfer reference."
        )
        box_x = width * 0.55
        canvas.setStrokeColor(INK)
        canvas.rect(box_x, 8, width - box_x, top - 22, stroke=1, fill=0)
        canvas.setFont(FONT_BOLD, 8)
        canvas.drawString(box_x + 8, top - 30, "Send payment to")
        lines = [self.provider.name, *(self.provider.address or "").splitlines()]
        if self.provider.email:
            lines.append(self.provider.email)
        yy = top - 44
        for line in lines:
            if not line.strip():
                continue
            draw_text(canvas, box_x + 8, yy, line, FONT, 8)
            yy -= 11
        canvas.restoreState()


def printed_statements(text: str) -> list[PrintedStatement]:
    """Every "Statement check" line in a statement's extracted text, once each."""
    found: dict[tuple[str, str, str, str], PrintedStatement] = {}
    for code, start, as_of, digest in CHECK_LINE.findall(text):
        found.setdefault(
            (code, start, as_of, digest),
            PrintedStatement(code, date.fromisoformat(start), date.fromisoformat(as_of), digest),
        )
    return list(found.values())


def read_printed_statements(path: Path) -> list[PrintedStatement]:
    """The statements a PDF names in its printed check lines."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    from billing_desk.domain.errors import BadInput

    try:
        reader = PdfReader(str(path))
        text = "\n".join(page.extract_text() or "" for page in reader.pages)
    except (OSError, PdfReadError, ValueError) as err:
        raise BadInput(f"Cannot read {path} as a PDF ({err}); give the statement's PDF.") from None
    return printed_statements(text)


def statement_csv(path: Path, data: StatementData) -> int:
    """The statement's lines as CSV, between its opening and closing balances."""
    currency = data.closing.currency
    rows: list[list[Cell]] = [
        [
            data.facility.code,
            data.period_start,
            "opening balance",
            None,
            None,
            None,
            data.opening,
            currency,
        ]
    ]
    rows += [
        [
            data.facility.code,
            line.day,
            line.kind,
            line.reference,
            line.description,
            line.amount if line.amount is not None else line.note_amount,
            line.balance,
            currency,
        ]
        for line in data.lines
    ]
    rows.append(
        [
            data.facility.code,
            data.as_of,
            "closing balance",
            None,
            data.content_hash,
            None,
            data.closing,
            currency,
        ]
    )
    return write_csv(
        path,
        ["facility", "date", "type", "reference", "description", "amount", "balance", "currency"],
        rows,
    )
