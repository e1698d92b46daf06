"""The facility statement: who bills whom, the period's activity between its opening and
closing balances, aging, the content hash with how to check it, and a remittance slip.
Batch printing writes one PDF per facility into a folder, or one combined PDF."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any

from reportlab.lib import colors
from reportlab.lib.units import inch
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.platypus import Flowable, KeepTogether, PageBreak, Spacer, Table, TableStyle

from billing_desk.domain.money import Money
from billing_desk.reports.csv_export import Cell, write_csv
from billing_desk.reports.template import (
    BODY_SIZE,
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
    wrap_plain,
)
from billing_desk.services.provider import Provider
from billing_desk.services.report_data import (
    AGING_BUCKETS,
    BALANCE_FORWARD,
    OpenItem,
    PrintedStatement,
    StatementData,
    StatementLine,
)

ID_LABEL = "Statement ID"
# What `statement check` reads back: "Statement ID CODE FROM AS-OF DIGEST" (DIGEST: the first
# hex digits of the content hash); statements printed before it said "Statement check: ..."
# with the whole hash, and are still read.
ID_LINE = re.compile(
    r"Statement\s*(?:ID:?|check:)\s*([A-Z0-9_-]{2,16})\s+(\d{4}-\d{2}-\d{2})\s+"
    r"(\d{4}-\d{2}-\d{2})\s+([0-9a-f]{16,64})"
)
_KEYWORD = re.compile(
    r"billing-desk-statement:([A-Z0-9_-]{2,16}):(\d{4}-\d{2}-\d{2}):(\d{4}-\d{2}-\d{2}):"
    r"([0-9a-f]{64})"
)
# Addressed to the payer: no command of ours, only what they can do with the id.
HOW_TO_CHECK = (
    "Quote the statement ID to our billing office to confirm this statement: any change to its "
    "figures since printing changes the ID."
)
MISSING_REMITTANCE = (
    "Remittance details missing: this statement was printed before our payment details (bank "
    "account or mailing address for checks) were set up. Please contact us for them before "
    "you pay."
)
PAST_DUE = colors.HexColor("#9b1c1c")
PAST_DUE_SHADE = colors.HexColor("#fbeaea")


def token_cell(text: str | None, width: float, font_size: float = 8) -> str | object:
    """A reference on one line: never broken inside (a payer keys it in whole), cut with an
    ellipsis when the column is too narrow; the slip shows what must be quoted."""
    value = text or ""
    if not is_plain(value):
        return text_cell(value, width, font_size)
    room = width - 2 * CELL_PADDING
    if stringWidth(value, FONT, font_size) <= room:
        return value
    return _cut(value, room, font_size)


def _cut(value: str, room: float, font_size: float) -> str:
    cut = value
    while cut and stringWidth(cut + "...", FONT, font_size) > room:
        cut = cut[:-1]
    return cut.rstrip() + "..."


REFERENCE_MIN_SIZE = 6.5


def reference_text(text: str | None, width: float) -> str | object:
    """A reference for a table cell that `_shrunk` sets smaller to fit on one line: whole when
    it fits at REFERENCE_MIN_SIZE, else cut with an ellipsis at that size."""
    value = text or ""
    if not is_plain(value):
        return text_cell(value, width)
    room = width - 2 * CELL_PADDING
    if stringWidth(value, FONT_BOLD, REFERENCE_MIN_SIZE) <= room:
        return value
    return _cut(value, room * 8 / REFERENCE_MIN_SIZE, 8)


def words_cell(text: str | None, width: float, font_size: float = 8) -> str | object:
    """Text wrapped only at spaces: a word (a reference, an amount) too long for the column is
    cut with an ellipsis, never broken over two lines."""
    value = text or ""
    if not is_plain(value):
        return text_cell(value, width, font_size)
    room = width - 2 * CELL_PADDING
    words = [
        w if stringWidth(w, FONT, font_size) <= room else _cut(w, room, font_size)
        for w in value.split()
    ]
    return "\n".join(wrap_plain(" ".join(words), room, FONT, font_size))


def statement_title(data: StatementData) -> str:
    return f"Statement — {data.facility.name} ({data.facility.code})"


def statement_file_name(data: StatementData) -> str:
    return f"statement-{data.facility.code}-{data.as_of.isoformat()}.pdf"


def _subject(data: StatementData) -> str:
    if data.layout == BALANCE_FORWARD:
        return f"Statement of account as of {data.as_of}, {data.period_start} to {data.as_of}"
    return f"Statement of open invoices as of {data.as_of}"


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
        _subject(data),
        _sender(provider),
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
        _sender(provider),
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


def _sender(provider: Provider) -> str:
    """The header band's name: the provider's, or nothing rather than a made-up one."""
    return provider.name or "Statement of account"


def _keywords(statements: Sequence[StatementData]) -> str:
    return " ".join(
        f"billing-desk-statement:{d.facility.code}:{d.period_start}:{d.as_of}:{d.content_hash}"
        for d in statements
    )


def statement_story(data: StatementData, provider: Provider) -> list[Flowable]:
    s = styles()
    story: list[Flowable] = [Section(statement_title(data))]
    story.append(trusted("Statement of account", s.title))
    story += _parties(data, provider)
    if provider.remittance_missing:
        story.append(_notice(MISSING_REMITTANCE))
    if data.layout == BALANCE_FORWARD:
        story += _balance_forward(data)
    else:
        story += _open_invoices(data)
        story += _recent_activity(data)
    story += _aging(data)
    story.append(Spacer(1, 6))
    story.append(
        trusted(f"<b>{ID_LABEL}</b> {markup(data.statement_id)}<br/>{HOW_TO_CHECK}", s.small)
    )
    story.append(RemittanceSlip(data, provider))
    return story


def _due_text(data: StatementData) -> str:
    """When to pay, in the payer's words."""
    if not data.amount_due.is_positive():
        return "nothing due"
    if data.pay_now:
        return "now (past due)"
    return day(data.pay_by) if data.pay_by else "on receipt"


def _parties(data: StatementData, provider: Provider) -> list[Flowable]:
    s = styles()
    width = content_width()
    facility = data.facility
    sender: list[str] = []
    if provider.name:
        sender.append(f"<b>{markup(provider.name)}</b>")
    sender_room, billed_room = width * 0.31 - 8, width * 0.33 - 8
    for part in (provider.address, provider.phone):
        if part:
            sender.append(markup(part))
    if provider.email:
        sender.append(_one_line(provider.email, sender_room))
    if not sender:
        sender.append("<b>Remittance details missing</b>")
    billed = [f"<b>{markup(facility.name)}</b>", f"Account {markup(facility.code)}"]
    if facility.billing_contact_name:
        billed.append(f"Attn: {markup(facility.billing_contact_name)}")
    if facility.billing_address:
        billed.append(markup(facility.billing_address))
    if facility.billing_contact_email:
        billed.append(_one_line(facility.billing_contact_email, billed_room))
    pairs: list[tuple[str, Any]] = [("Statement date", day(data.as_of))]
    if data.layout == BALANCE_FORWARD:
        pairs.append(("Period", f"{day(data.period_start)} to {day(data.as_of)}"))
    pairs += [
        ("Account", facility.code),
        ("Payment terms", f"net {facility.payment_terms_days} days"),
        ("Amount due", money(data.amount_due)),
        ("Please pay by", _due_text(data)),
    ]
    facts = key_values(pairs, [1.1 * inch, 1.45 * inch])
    facts.setStyle(
        TableStyle(
            [
                ("FONT", (0, len(pairs) - 2), (-1, -1), FONT_BOLD, 9),
                *(
                    [("TEXTCOLOR", (1, len(pairs) - 1), (1, len(pairs) - 1), PAST_DUE)]
                    if data.pay_now
                    else []
                ),
            ]
        )
    )
    top = Table(
        [
            [trusted("<b>From</b>", s.small), trusted("<b>Bill to</b>", s.small), ""],
            [trusted("<br/>".join(sender)), trusted("<br/>".join(billed)), facts],
        ],
        colWidths=[width * 0.31, width * 0.33, width * 0.36],
    )
    top.setStyle(
        TableStyle(
            [
                ("FONT", (0, 0), (-1, -1), FONT, 8),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LEFTPADDING", (0, 0), (1, -1), 0),
                ("RIGHTPADDING", (0, 0), (1, -1), 8),
                ("BOX", (2, 1), (2, 1), 0.75, INK),
                ("BACKGROUND", (2, 1), (2, 1), SHADE),
            ]
        )
    )
    return [top, Spacer(1, 8)]


def _one_line(token: str, room: float) -> str:
    """A token (an e-mail address) for a paragraph: set smaller rather than broken."""
    size = _fit_plain(token, room * 0.95, FONT, BODY_SIZE)
    if size >= BODY_SIZE:
        return markup(token)
    return f'<font size="{size:.2f}">{markup(token)}</font>'


def _notice(text: str) -> Flowable:
    box = Table([[trusted(f"<b>{text}</b>", styles().body)]], colWidths=[content_width()])
    box.setStyle(
        TableStyle(
            [
                ("FONT", (0, 0), (-1, -1), FONT, 8),
                ("BOX", (0, 0), (-1, -1), 1.25, PAST_DUE),
                ("BACKGROUND", (0, 0), (-1, -1), PAST_DUE_SHADE),
                ("TEXTCOLOR", (0, 0), (-1, -1), PAST_DUE),
                ("TOPPADDING", (0, 0), (-1, -1), 5),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 5),
            ]
        )
    )
    return box


def _fit(text: str, width: float, size: float = 8) -> float:
    """The font size at which `text` fits a cell `width` wide on one line (at most `size`)."""
    room = width - 2 * CELL_PADDING
    wide = stringWidth(text, FONT_BOLD, size)
    return size if wide <= room else max(5.0, size * room / wide)


def _shrunk(table: Table, cells: Sequence[tuple[int, int, str]], widths: Sequence[float]) -> None:
    """Amounts never wrap: one too wide for its column is set smaller instead."""
    commands = []
    for column, row, text in cells:
        size = _fit(text, widths[column])
        if size < 8:
            commands.append(("FONTSIZE", (column, row), (column, row), size))
    if commands:
        table.setStyle(TableStyle(commands))


def _status(item: OpenItem, as_of: date) -> str:
    if item.overdue:
        return f"{item.days_past_due} day{'s' if item.days_past_due != 1 else ''} past due"
    left = (item.due_date - as_of).days
    return "due today" if left == 0 else f"due in {left} day{'s' if left != 1 else ''}"


def _open_invoices(data: StatementData) -> list[Flowable]:
    s = styles()
    width = content_width()
    story: list[Flowable] = [trusted(f"Open invoices as of {day(data.as_of)}", s.heading)]
    if not data.open_items:
        story.append(trusted("No invoice is open.", s.body))
        return story
    widths = [0, 0.86 * inch, 0.86 * inch, 1.05 * inch, 1.0 * inch, 1.05 * inch, 1.25 * inch]
    widths[0] = width - sum(widths)
    rows: list[list[Any]] = []
    amounts: list[tuple[int, int, str]] = []
    for index, item in enumerate(data.open_items, 1):
        row = [
            item.number,
            day(item.issue_date),
            day(item.due_date),
            money(item.total),
            money(item.paid + item.credited),
            money(item.open),
            _status(item, data.as_of),
        ]
        rows.append(row)
        # Invoice numbers and amounts are never cut or broken: a long one is set smaller.
        amounts += [(c, index, str(row[c])) for c in (0, 3, 4, 5, 6)]
    currency = data.closing.currency
    total_open = Money.total((i.open for i in data.open_items), currency)
    totals: list[list[Any]] = [["Total open", "", "", "", "", money(total_open), ""]]
    if data.unapplied_credit.is_positive():
        totals.append(["Less credit on account", "", "", "", "", money(-data.unapplied_credit), ""])
    totals.append(["Amount due", "", "", "", "", money(data.amount_due), ""])
    first_total = len(rows) + 1
    for offset, total in enumerate(totals):
        amounts.append((5, first_total + offset, str(total[5])))
    table = data_table(
        ["Invoice", "Invoice date", "Due date", "Amount", "Paid", "Open", "Status"],
        rows + totals,
        widths,
        right=(3, 4, 5),
        total_rows=len(totals),
    )
    # One line a cell: a number set smaller sits on the row's baseline, not above it.
    marks: list[tuple[Any, ...]] = [("VALIGN", (0, 0), (-1, -1), "BOTTOM")]
    for index, item in enumerate(data.open_items, 1):
        if item.overdue:
            marks += [
                ("BACKGROUND", (0, index), (-1, index), PAST_DUE_SHADE),
                ("TEXTCOLOR", (6, index), (6, index), PAST_DUE),
                ("FONT", (5, index), (6, index), FONT_BOLD, 8),
            ]
    table.setStyle(TableStyle(marks))
    _shrunk(table, amounts, widths)
    story.append(table)
    if data.overdue.is_positive():
        story.append(Spacer(1, 3))
        story.append(trusted(_past_due_sentence(data), s.body))
    return story


def _past_due_sentence(data: StatementData) -> str:
    past_due = f"<b>{money(data.overdue)} is past due</b> (shaded rows)"
    if data.amount_due < data.overdue:
        return (
            f"{past_due}; less your credit of {money(data.unapplied_credit)}, "
            f"<b>{money(data.amount_due)}</b> is payable now."
        )
    if data.amount_due == data.overdue:
        return f"{past_due}: please pay it now."
    return f"{past_due}: please pay it now, and the rest by its due date."


_ACTIVITY_KINDS = {
    "payment": "Payment received",
    "payment presented again": "Payment presented again",
    "credit applied": "Credit applied",
    "invoice void": "Invoice voided",
}


def _activity_name(kind: str) -> str:
    if kind in _ACTIVITY_KINDS:
        return _ACTIVITY_KINDS[kind]
    if kind.startswith("payment "):
        return "Payment " + kind.removeprefix("payment ")
    return kind.capitalize()


def _recent_activity(data: StatementData) -> list[Flowable]:
    """Payments, returns, credits and voids since the last statement (the invoices are above)."""
    s = styles()
    width = content_width()
    since = f"{day(data.period_start)} to {day(data.as_of)}"
    story: list[Flowable] = [trusted(f"Recent activity, {since}", s.heading)]
    lines = [line for line in data.lines if line.kind != "invoice"]
    if not lines:
        story.append(trusted("No payments or credits in this period.", s.body))
        return story
    widths = [0.78 * inch, 1.25 * inch, 1.75 * inch, 0, 1.05 * inch]
    widths[3] = width - sum(widths)
    rows: list[list[Any]] = []
    amounts: list[tuple[int, int, str]] = []
    for index, line in enumerate(lines, 1):
        row, amount = _activity_row(line, widths)
        rows.append(row)
        amounts.append((4, index, amount))
        if isinstance(rows[-1][2], str):
            amounts.append((2, index, rows[-1][2]))
    table = data_table(
        ["Date", "Activity", "Reference", "Details", "Amount"], rows, widths, right=(4,)
    )
    _shrunk(table, amounts, widths)
    story.append(table)
    story += _credit_moves_note(lines, "the amount due")
    return story


def _activity_row(line: StatementLine, widths: list[float]) -> tuple[list[Any], str]:
    """An activity line's date, activity, reference, details and amount cells (an amount moved
    without changing the balance, such as credit applied, in brackets), and its amount text."""
    amount = money(line.amount)
    if line.amount is None and line.note_amount is not None:
        amount = f"({money(line.note_amount)})"
    row = [
        day(line.day),
        words_cell(_activity_name(line.kind), widths[1]),
        reference_text(line.reference, widths[2]),
        words_cell(line.description, widths[3]),
        amount,
    ]
    return row, amount


def _balance_forward(data: StatementData) -> list[Flowable]:
    s = styles()
    width = content_width()
    story: list[Flowable] = [trusted("Summary", s.heading)]
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
    widths = [0.75 * inch, 0.95 * inch, 1.6 * inch, 0, 1.0 * inch, 1.05 * inch]
    widths[3] = width - sum(widths)
    rows: list[list[Any]] = [
        [day(data.period_start), "", "", "Opening balance", "", money(data.opening)]
    ]
    amounts: list[tuple[int, int, str]] = [(5, 1, money(data.opening))]
    for index, line in enumerate(data.lines, 2):
        row, amount = _activity_row(line, widths)
        rows.append([*row, money(line.balance)])
        amounts += [(4, index, amount), (5, index, money(line.balance))]
        if isinstance(rows[-1][2], str):
            amounts.append((2, index, rows[-1][2]))
    rows.append(["", "", "", "Closing balance", "", money(data.closing)])
    amounts.append((5, len(rows), money(data.closing)))
    table = data_table(
        ["Date", "Type", "Reference", "Description", "Amount", "Balance"],
        rows,
        widths,
        right=(4, 5),
        total_rows=1,
    )
    _shrunk(table, amounts, widths)
    story.append(table)
    story += _credit_moves_note(data.lines, "the balance")
    return story


def _credit_moves_note(lines: Sequence[Any], total: str) -> list[Flowable]:
    """The note under an activity table that shows credit moved onto an invoice (its amount
    in brackets, as it changes nothing the facility owes)."""
    if not any(line.amount is None for line in lines):
        return []
    return [
        trusted(
            "Amounts in brackets move credit the facility already paid onto an invoice; "
            f"they do not change {total}.",
            styles().small,
        )
    ]


def _aging(data: StatementData) -> list[Flowable]:
    s = styles()
    aging_widths = [content_width() / 7] * 7
    values = [
        *(money(b.amount) for b in data.aging),
        money(-data.unapplied_credit),
        money(data.amount_due),
    ]
    table = data_table(
        [*(_bucket_label(b) for b in AGING_BUCKETS), "Less credit", "Amount due"],
        [values],
        aging_widths,
        right=range(7),
        zebra=False,
    )
    _shrunk(table, [(c, 1, v) for c, v in enumerate(values)], aging_widths)
    story: list[Flowable] = [
        KeepTogether([trusted("Aging of open invoices (days past due)", s.heading), table])
    ]
    if data.closing.is_negative():
        story.append(
            trusted(
                f"The facility has a credit of {money(-data.closing)}; nothing is due.", s.strong
            )
        )
    return story


def _bucket_label(name: str) -> str:
    return {"current": "Current", "over 90": "Over 90"}.get(name, f"{name} days")


class RemittanceSlip(Flowable):
    """The detachable slip, drawn at the foot of the statement's last page (on a new page when
    the last one has no room): what is paid, and how to pay it (bank transfer details, where to
    mail a check), with the invoice numbers whole."""

    HEIGHT = 2.6 * inch

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
        box_x = width * 0.5
        left = [
            ("Facility", f"{visual(data.facility.name)}"),
            ("Account", data.facility.code),
            ("Statement date", day(data.as_of)),
            (ID_LABEL, data.statement_id),
            ("Amount due", money(data.amount_due)),
            ("Please pay by", _due_text(data)),
            ("Amount enclosed", "______________________"),
        ]
        # The labels' own width, so a long one ("Amount enclosed") never runs into its value.
        label_width = max(stringWidth(label, FONT_BOLD, 8) for label, _ in left) + 8
        value_room = box_x - label_width - 12
        y = top - 32
        for label, value in left:
            draw_text(canvas, 0, y, label, FONT_BOLD, 8)
            size = min(8.0, _fit_plain(value, value_room))
            draw_text(canvas, label_width, y, value, FONT, size, ordered=True)
            y -= 12
        y = self._invoices(canvas, y - 2, box_x - 12)
        canvas.setStrokeColor(INK)
        canvas.rect(box_x, 8, width - box_x, top - 22, stroke=1, fill=0)
        self._how_to_pay(canvas, box_x + 8, top - 32, width - box_x - 16)
        canvas.restoreState()

    def _invoices(self, canvas: Any, y: float, room: float) -> float:
        """The open invoice numbers this payment is for, wrapped only between numbers, on at
        most three lines (then how many more the statement lists)."""
        numbers = [item.number for item in self.data.open_items]
        if not numbers:
            return y
        canvas.setFont(FONT_BOLD, 7)
        canvas.drawString(0, y, "For invoices")
        for line in slip_invoice_lines(numbers, room):
            y -= 9
            draw_text(canvas, 0, y, line, FONT, 7)
        return y

    def _how_to_pay(self, canvas: Any, x: float, y: float, room: float) -> None:
        provider = self.provider
        code = self.data.facility.code

        def line(text: str, font: str = FONT, size: float = 8, gap: float = 11) -> None:
            nonlocal y
            draw_text(canvas, x, y, text, font, min(size, _fit_plain(text, room, font, size)))
            y -= gap

        if provider.remittance_missing:
            line("Remittance details missing", FONT_BOLD, 9, 13)
            for text in wrap_plain(
                "Our payment details were not set up when this statement was printed. Please "
                "contact us for them before you pay.",
                room,
                FONT,
                8,
            ):
                line(text)
            return
        line("How to pay", FONT_BOLD, 9, 13)
        if provider.transfer:
            line("By bank transfer", FONT_BOLD, 8)
            line(f"Bank: {provider.bank_name}")
            line(f"Account name: {provider.name}")
            line(f"Account number: {provider.account_number}")
            line(f"Routing number (ABA): {provider.routing_number}")
            line(f"Reference: {code}", gap=14)
        mail_to = provider.check_address
        if mail_to:
            line("By check, payable to " + provider.name, FONT_BOLD, 8)
            line("mailed to:" if provider.lockbox_address is None else "mailed to our lockbox:")
            for text in mail_to.splitlines():
                if text.strip():
                    line(text)
            line(f"Write {code} on the check.", size=7)


def slip_invoice_lines(numbers: Sequence[str], room: float, most: int = 3) -> list[str]:
    """`numbers` as comma-separated lines no wider than `room` at 7 points, never broken inside
    a number; past `most` lines the last one ends with how many more there are."""

    def width(text: str) -> float:
        return float(stringWidth(text, FONT, 7))

    lines: list[str] = []
    current = ""
    for index, number in enumerate(numbers):
        candidate = f"{current}, {number}" if current else number
        last = len(lines) == most - 1
        left = len(numbers) - index - 1
        reserve = width(f", and {left} more (listed above)") if last and left else 0
        if current and width(candidate) + reserve > room:
            if last:
                hidden = len(numbers) - index
                return [*lines, f"{current} and {hidden} more (listed above)"]
            lines.append(current + ",")
            current = number
        else:
            current = candidate
    return [*lines, current]


def _fit_plain(text: str, room: float, font: str = FONT, size: float = 8) -> float:
    wide = stringWidth(text, font, size)
    return size if wide <= room else max(5.0, size * room / wide)


def printed_statements(text: str) -> list[PrintedStatement]:
    """Every statement id (or older "Statement check" line) in a statement's text, once each."""
    found: dict[tuple[str, str, str, str], PrintedStatement] = {}
    for code, start, as_of, digest in ID_LINE.findall(text):
        found.setdefault(
            (code, start, as_of, digest),
            PrintedStatement(code, date.fromisoformat(start), date.fromisoformat(as_of), digest),
        )
    return list(found.values())


def read_printed_statements(path: Path) -> list[PrintedStatement]:
    """The statements a PDF names by their printed ids; where the file still carries its
    metadata, with the whole content hash the id abbreviates."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    from billing_desk.domain.errors import BadInput

    try:
        reader = PdfReader(str(path))
        text = "\n".join(page.extract_text() or "" for page in reader.pages)
        metadata = reader.metadata
        keywords = str(metadata.get("/Keywords") or "") if metadata is not None else ""
    except (OSError, PdfReadError, ValueError) as err:
        raise BadInput(f"Cannot read {path} as a PDF ({err}); give the statement's PDF.") from None
    whole = {(c, f, a): h for c, f, a, h in _KEYWORD.findall(keywords)}
    out = []
    for printed in printed_statements(text):
        key = (printed.facility, str(printed.period_start), str(printed.as_of))
        full = whole.get(key)
        if full is not None and full.startswith(printed.content_hash):
            printed = replace(printed, content_hash=full)
        out.append(printed)
    return out


def statement_csv(path: Path, data: StatementData) -> int:
    """The statement's lines as CSV, between its opening and closing balances, then each open
    invoice with its open amount."""
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
    rows += [
        [
            data.facility.code,
            item.due_date,
            "open invoice",
            item.number,
            f"issued {item.issue_date}, {item.days_past_due} days past due",
            item.open,
            None,
            currency,
        ]
        for item in data.open_items
    ]
    return write_csv(
        path,
        ["facility", "date", "type", "reference", "description", "amount", "balance", "currency"],
        rows,
    )
