"""A long statement PDF against plain ReportLab output of the same table, and batch statements.

1. A 1,000-line statement (`--lines`), rendered by `reports.statement.write_statement` (page
   template, header band, "page x of y", summary, aging, hash line, remittance slip) against
   plain ReportLab printing the same activity table and nothing else: the same rows, columns,
   fonts, paddings, shading and repeated header on the same page and frame, each text cell too
   wide for its column wrapped in a `Paragraph` of the escaped text, as a ReportLab user wraps
   it. The ratio is ours / baseline time, wall and CPU of this process, rounds interleaved,
   medians reported. Target: within 1.5x.
2. Batch throughput: a demo database of 100 facilities (the demo's maximum) as of a fixed day;
   every statement read in one transaction (`statements_data`), then 500 statements printed
   (the 100 five times over) one PDF per facility into a folder and as one combined PDF.
   Statements per second, reading and printing separately.

Run: `python bench/statement_pdf.py [--lines 1000] [--rounds 5] [--batch 500] [--quick]`.
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

from _common import Row, format_table, load_average, machine_description, say
from billing_desk.domain.money import Money
from billing_desk.reports.statement import write_combined, write_folder, write_statement
from billing_desk.reports.template import FONT, FONT_BOLD, MARGIN, PAGE_SIZE, register_fonts
from billing_desk.services.demo import load_demo_data
from billing_desk.services.facilities import FacilityInfo
from billing_desk.services.provider import Provider
from billing_desk.services.report_data import (
    AGING_BUCKETS,
    BALANCE_FORWARD,
    AgingBucket,
    StatementData,
    StatementLine,
    statements_data,
)
from billing_desk.services.unit_of_work import open_workspace

PROVIDER = Provider("Prairie Wheels Transport", "12 Depot Lane\nSpringfield IL 62701")
WHEN = datetime(2026, 5, 20, 9, 0, tzinfo=UTC)
AS_OF = date(2026, 5, 20)


def synthetic_statement(lines: int) -> StatementData:
    usd = "USD"
    balance = 0
    rows = []
    for n in range(lines):
        if n % 3 == 2:
            amount, kind, ref = -(2500 + n), "payment", f"check {10000 + n}"
            text = f"Payment {n} by check from Facility accounts payable"
        else:
            amount, kind, ref = 4000 + 7 * n, "invoice", f"OAK-{n:06d}"
            text = f"Invoice for May 2026: {n % 60 + 1} trips, 01 May - 31 May 2026"
        balance += amount
        rows.append(
            StatementLine(
                date(2026, 1 + n % 4, 1 + n % 28),
                kind,
                ref,
                text,
                Money.from_minor(amount, usd),
                Money.from_minor(balance, usd),
            )
        )
    zero = Money.zero(usd)
    return StatementData(
        FacilityInfo("OAKVIEW", "Oakview Care Home", usd, 30, "Gary Whitfield", None, None),
        date(2026, 1, 1),
        AS_OF,
        zero,
        tuple(rows),
        Money.from_minor(balance, usd),
        zero,
        zero,
        zero,
        tuple(AgingBucket(name, zero, 0) for name in AGING_BUCKETS),
        zero,
        "0" * 64,
        # The activity table is what is compared: the layout that prints every line.
        layout=BALANCE_FORWARD,
    )


def plain_reportlab(data: StatementData) -> bytes:
    """The same activity table with nothing around it, written with plain ReportLab.

    The same rows (opening balance, every line, closing balance), columns and widths, embedded
    fonts, paddings, header shading, zebra rows and bold total row, the header repeated on each
    page, on the same page size and frame. A text cell that does not fit its column on one line
    is wrapped the way a ReportLab user wraps it, as a `Paragraph` of the escaped text in the
    same style; one that fits is a plain string. Nothing else is drawn: no page header or
    footer, no summary, aging or remittance slip.
    """
    from xml.sax.saxutils import escape

    from reportlab.lib import colors
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import inch
    from reportlab.pdfbase.pdfmetrics import stringWidth
    from reportlab.platypus import (
        BaseDocTemplate,
        Frame,
        PageTemplate,
        Paragraph,
        Table,
        TableStyle,
    )

    register_fonts()
    ink = colors.HexColor("#1d2733")
    cell = ParagraphStyle("cell", fontName=FONT, fontSize=8, leading=9.6, textColor=ink)
    width = PAGE_SIZE[0] - 2 * MARGIN
    widths = [0.75 * inch, 1.05 * inch, 1.05 * inch, 0, 1.05 * inch, 1.05 * inch]
    widths[3] = width - sum(widths)

    def text(value: str, column: int) -> str | Paragraph:
        if stringWidth(value, FONT, 8) <= widths[column] - 6:
            return value
        return Paragraph(escape(value), cell)

    rows: list[list[str | Paragraph]] = [
        ["Date", "Type", "Reference", "Description", "Amount", "Balance"],
        [data.period_start.isoformat(), "", "", "Opening balance", "", data.opening.format()],
    ]
    rows += [
        [
            line.day.isoformat(),
            text(line.kind.capitalize(), 1),
            text(line.reference, 2),
            text(line.description, 3),
            line.amount.format() if line.amount else "",
            line.balance.format(),
        ]
        for line in data.lines
    ]
    rows.append(["", "", "", "Closing balance", "", data.closing.format()])
    table = Table(rows, colWidths=widths, repeatRows=1)
    table.setStyle(
        TableStyle(
            [
                ("FONT", (0, 0), (-1, -1), FONT, 8),
                ("FONT", (0, 0), (-1, 0), FONT_BOLD, 8),
                ("TEXTCOLOR", (0, 0), (-1, -1), ink),
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8edf2")),
                ("LINEBELOW", (0, 0), (-1, 0), 0.75, ink),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("TOPPADDING", (0, 0), (-1, -1), 2),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
                ("LEFTPADDING", (0, 0), (-1, -1), 3),
                ("RIGHTPADDING", (0, 0), (-1, -1), 3),
                ("ALIGN", (4, 0), (5, -1), "RIGHT"),
                ("ROWBACKGROUNDS", (0, 1), (-1, -2), [None, colors.HexColor("#f5f7f9")]),
                ("FONT", (0, -1), (-1, -1), FONT_BOLD, 8),
                ("LINEABOVE", (0, -1), (-1, -1), 0.75, ink),
            ]
        )
    )
    out = io.BytesIO()
    doc = BaseDocTemplate(out, pagesize=PAGE_SIZE, initialFontName=FONT)
    frame_height = PAGE_SIZE[1] - 2 * MARGIN - 0.15 * inch
    frame = Frame(MARGIN, MARGIN, width, frame_height, 0, 0, 0, 0)
    doc.addPageTemplates([PageTemplate(frames=[frame])])
    doc.build([table])
    return out.getvalue()


def ours(data: StatementData) -> bytes:
    out = io.BytesIO()
    write_statement(out, data, PROVIDER, "bench", printed_at=WHEN)
    return out.getvalue()


def long_statement(lines: int, rounds: int) -> list[Row]:
    data = synthetic_statement(lines)
    ours(data)  # warm: fonts parsed, modules imported
    plain_reportlab(data)
    mine: list[tuple[float, float]] = []
    base: list[tuple[float, float]] = []
    for _ in range(rounds):
        for run, times in ((ours, mine), (plain_reportlab, base)):
            wall, cpu = time.perf_counter(), time.process_time()
            run(data)
            times.append((time.perf_counter() - wall, time.process_time() - cpu))
    for name, times in (("ours ", mine), ("plain", base)):
        say(f"  {name} rounds, wall/CPU (s): {', '.join(f'{w:.3f}/{c:.3f}' for w, c in times)}")
    return [
        Row(
            f"{lines}-line statement PDF, {kind} (ms, lower is better)",
            statistics.median(t[index] for t in mine) * 1000,
            statistics.median(t[index] for t in base) * 1000,
            "ms",
        )
        for index, kind in enumerate(("wall", "CPU of this process"))
    ]


def batch(count: int, months: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.sqlite3"
        workspace = open_workspace(str(path), "admin")
        start = time.perf_counter()
        load_demo_data(workspace, facilities=100, months=months, as_of=AS_OF)
        say(f"  demo data: 100 facilities, {months} months in {time.perf_counter() - start:.1f} s")
        workspace.close()
        workspace = open_workspace(str(path), "manager")
        start = time.perf_counter()
        read = statements_data(workspace, None, as_of=AS_OF, period_start=date(2026, 1, 1))
        reading = time.perf_counter() - start
        lines = sum(len(d.lines) for d in read)
        say(
            f"  read {len(read)} statements ({lines} activity lines) in {reading:.2f} s: "
            f"{len(read) / reading:.1f} statements/s"
        )
        datas = [
            replace(d, facility=replace(d.facility, code=f"{d.facility.code[:12]}{i}"))
            for i in range(count // len(read) + 1)
            for d in read
        ][:count]
        start = time.perf_counter()
        write_folder(Path(folder) / "out", datas, PROVIDER, "bench", printed_at=WHEN)
        each = time.perf_counter() - start
        start = time.perf_counter()
        write_combined(Path(folder) / "all.pdf", datas, PROVIDER, "bench", printed_at=WHEN)
        combined = time.perf_counter() - start
        size = (Path(folder) / "all.pdf").stat().st_size
        say(f"  {count} statements, one PDF each: {each:.1f} s = {count / each:.1f} statements/s")
        say(
            f"  {count} statements, one combined PDF ({size / 1e6:.1f} MB): {combined:.1f} s = "
            f"{count / combined:.1f} statements/s"
        )
        workspace.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--months", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="3 rounds, batch of 100")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.batch, args.months = 3, 100, 3
    say(f"bench/statement_pdf.py on {machine_description()}; {load_average()}")
    say("Long statement:")
    say(format_table(long_statement(args.lines, args.rounds)))
    say(f"(target: ratio within 1.5x; {load_average()})")
    say("Batch statements:")
    batch(args.batch, args.months)
    say(f"({load_average()})")


if __name__ == "__main__":
    main()
