"""The page every report is printed on: embedded fonts, styles, the header band and the
"page x of y" footer, safe text for ReportLab markup, money cells and tables.

Only embedded TrueType fonts are used (shipped in the package, `billing_desk/resources/fonts`,
with their licences, and set as the canvas's base font, so no PDF names an unembedded
Helvetica). DejaVu Sans prints Latin
with accents, Greek, Cyrillic, Hebrew and Arabic; Droid Sans Fallback prints Chinese and
Japanese; NanumSquare prints Korean Hangul. Right-to-left runs are put in visual order (and
Arabic joined) before printing. A character no font has prints as "?" rather than as an
invisible box.

User text never reaches ReportLab markup unescaped: `markup()` escapes it, and plain cells are
drawn as strings, which ReportLab never parses.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache, lru_cache
from pathlib import Path
from typing import IO, Any
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.enums import TA_RIGHT
from reportlab.lib.pagesizes import LETTER, landscape
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import inch
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    BaseDocTemplate,
    Flowable,
    Frame,
    PageTemplate,
    Paragraph,
    Table,
    TableStyle,
)

from billing_desk.domain.money import Money
from billing_desk.resources import fonts_folder

FONT = "BillingDeskSans"
FONT_BOLD = "BillingDeskSans-Bold"
FONT_CJK = "BillingDeskCJK"
FONT_HANGUL = "BillingDeskHangul"
FONT_FILES = {
    FONT: "DejaVuSans.ttf",
    FONT_BOLD: "DejaVuSans-Bold.ttf",
    FONT_CJK: "DroidSansFallbackFull.ttf",
    FONT_HANGUL: "NanumSquareR.ttf",
}
# Jamo, compatibility jamo, jamo extended A and B, syllables: printed in the Hangul font even
# where Droid Sans Fallback has a glyph (it has the jamo and three syllables), so a Korean name
# is never drawn in two designs.
HANGUL = ((0x1100, 0x11FF), (0x3130, 0x318F), (0xA960, 0xA97F), (0xAC00, 0xD7FF))
PAGE_SIZE = LETTER
MARGIN = 0.6 * inch
BODY_SIZE = 8.5
SMALL_SIZE = 7
CELL_PADDING = 3  # left and right, in a data table
AUTHOR = "billing-desk"
INK = colors.HexColor("#1d2733")
RULE = colors.HexColor("#9aa5b1")
SHADE = colors.HexColor("#e8edf2")
BAND = colors.HexColor("#f5f7f9")


@cache
def register_fonts() -> None:
    """Register the embedded fonts once per process."""
    folder = fonts_folder()
    for name, file in FONT_FILES.items():
        path = folder / file
        if not path.is_file():
            raise FileNotFoundError(
                f"The report font {path} is missing from the installed package; reinstall "
                "billing-desk."
            )
        pdfmetrics.registerFont(TTFont(name, str(path)))
    pdfmetrics.registerFontFamily(
        FONT, normal=FONT, bold=FONT_BOLD, italic=FONT, boldItalic=FONT_BOLD
    )


@cache
def _coverage(font: str) -> frozenset[int]:
    register_fonts()
    face = pdfmetrics.getFont(font).face
    return frozenset(face.charToGlyph)


# -- text ---------------------------------------------------------------------------------


def _is_rtl(char: str) -> bool:
    return unicodedata.bidirectional(char) in ("R", "AL")


def _is_hangul(code: int) -> bool:
    return any(low <= code <= high for low, high in HANGUL)


def visual(text: str) -> str:
    """Text in the order it is drawn: composed (NFC, so Korean typed as separate jamo prints as
    syllables), right-to-left runs reversed (bidi), Arabic joined."""
    if text.isascii():
        return text
    text = unicodedata.normalize("NFC", text)
    if not any(_is_rtl(c) for c in text):
        return text
    import arabic_reshaper
    from bidi import get_display

    return str(get_display(arabic_reshaper.reshape(text)))


def _runs(text: str) -> list[tuple[str, str]]:
    """(font, text) runs: the base font where it has the glyph, else Hangul in the Hangul font,
    else the CJK font, else the Hangul font, else '?'."""
    base, cjk, hangul = _coverage(FONT), _coverage(FONT_CJK), _coverage(FONT_HANGUL)
    runs: list[tuple[str, str]] = []
    for char in text:
        code = ord(char)
        if code in base or char in "\n\t":
            font = FONT
        elif code in hangul and _is_hangul(code):
            font = FONT_HANGUL
        elif code in cjk:
            font = FONT_CJK
        elif code in hangul:
            font = FONT_HANGUL
        else:
            font, char = FONT, "?"
        if runs and runs[-1][0] == font:
            runs[-1] = (font, runs[-1][1] + char)
        else:
            runs.append((font, char))
    return runs


def is_plain(text: str) -> bool:
    """True when `text` prints as a plain string in the base font (no fallback, no bidi)."""
    if text.isascii():
        return True
    base = _coverage(FONT)
    return all(ord(c) in base and not _is_rtl(c) for c in text)


def markup(text: str | None) -> str:
    """User text made safe for a Paragraph: escaped, in visual order, with CJK runs in the
    fallback font and line breaks kept."""
    if not text:
        return ""
    if text.isascii():
        return escape(text).replace("\n", "<br/>")
    shown = visual(text)
    parts = []
    for font, run in _runs(shown):
        escaped = escape(run).replace("\n", "<br/>")
        parts.append(escaped if font == FONT else f'<font name="{font}">{escaped}</font>')
    return "".join(parts)


def printable(text: str | None) -> str:
    """Text for a plain (non-markup) cell: visual order, unknown characters as '?'."""
    if not text:
        return ""
    if text.isascii():
        return text
    base = _coverage(FONT)
    return "".join(c if ord(c) in base else "?" for c in visual(text))


# -- styles -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Styles:
    body: ParagraphStyle
    small: ParagraphStyle
    cell: ParagraphStyle
    cell_right: ParagraphStyle
    title: ParagraphStyle
    heading: ParagraphStyle
    strong: ParagraphStyle


@cache
def styles() -> Styles:
    register_fonts()
    body = ParagraphStyle("body", fontName=FONT, fontSize=BODY_SIZE, leading=11, textColor=INK)
    return Styles(
        body=body,
        small=ParagraphStyle("small", parent=body, fontSize=SMALL_SIZE, leading=9),
        cell=ParagraphStyle("cell", parent=body, fontSize=8, leading=9.6),
        cell_right=ParagraphStyle(
            "cell_right", parent=body, fontSize=8, leading=9.6, alignment=TA_RIGHT
        ),
        title=ParagraphStyle(
            "title", parent=body, fontName=FONT_BOLD, fontSize=16, leading=20, spaceAfter=4
        ),
        heading=ParagraphStyle(
            "heading",
            parent=body,
            fontName=FONT_BOLD,
            fontSize=10.5,
            leading=14,
            spaceBefore=8,
            spaceAfter=4,
        ),
        strong=ParagraphStyle("strong", parent=body, fontName=FONT_BOLD),
    )


def para(text: str | None, style: ParagraphStyle | None = None) -> Paragraph:
    """A paragraph of user text, escaped."""
    return Paragraph(markup(text), style or styles().body)


def trusted(fragment: str, style: ParagraphStyle | None = None) -> Paragraph:
    """A paragraph of our own markup, with user parts already passed through `markup()`."""
    return Paragraph(fragment, style or styles().body)


def money(amount: Money | None) -> str:
    """An amount with its currency, for a right-aligned cell: "1,234.56 USD"."""
    return "" if amount is None else amount.format()


def day(value: date | datetime | None) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S UTC")
    return value.isoformat()


@lru_cache(maxsize=1 << 16)
def text_width(text: str, font: str = FONT, size: float = 8) -> float:
    """`pdfmetrics.stringWidth`, remembered: the same words recur on every line of a long
    report, and measuring them is most of the cost of wrapping."""
    return float(pdfmetrics.stringWidth(text, font, size))


def wrap_plain(text: str, width: float, font: str = FONT, size: float = 8) -> list[str]:
    """`text` in lines no wider than `width`, broken at spaces as a Paragraph breaks it (a word
    wider than a line is broken between characters); its own line breaks are kept."""
    space = text_width(" ", font, size)
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line: list[str] = []
        used = 0.0
        for word in paragraph.split():
            wide = text_width(word, font, size)
            if wide > width:
                pieces = _break_word(word, width, font, size)
                word = pieces.pop()
                wide = text_width(word, font, size)
                if line:
                    lines.append(" ".join(line))
                lines += pieces
                line, used = [], 0.0
            if line and used + space + wide > width:
                lines.append(" ".join(line))
                line, used = [], 0.0
            used = used + space + wide if line else wide
            line.append(word)
        lines.append(" ".join(line))
    return lines


def _break_word(word: str, width: float, font: str, size: float) -> list[str]:
    pieces, piece, used = [], "", 0.0
    for char in word:
        wide = text_width(char, font, size)
        if piece and used + wide > width:
            pieces.append(piece)
            piece, used = "", 0.0
        piece += char
        used += wide
    pieces.append(piece)
    return pieces


def text_cell(text: str | None, width: float, font_size: float = 8) -> str | Paragraph:
    """A cell of user text in a `data_table` column `width` wide. Text the base font prints as
    it is comes back as a plain string, wrapped into lines that fit (fast, and never parsed as
    markup); anything else (fallback fonts, right-to-left) as a wrapping, escaped paragraph."""
    value = text or ""
    if is_plain(value):
        return "\n".join(wrap_plain(value, width - 2 * CELL_PADDING, FONT, font_size))
    return Paragraph(markup(value), styles().cell)


# -- tables --------------------------------------------------------------------------------


def data_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[Any]],
    widths: Sequence[float],
    *,
    right: Iterable[int] = (),
    total_rows: int = 0,
    zebra: bool = True,
) -> Table:
    """A table with a repeated header row, right-aligned amount columns and bold totals."""
    table = Table([list(headers), *rows], colWidths=list(widths), repeatRows=1)
    commands: list[tuple[Any, ...]] = [
        ("FONT", (0, 0), (-1, -1), FONT, 8),
        ("FONT", (0, 0), (-1, 0), FONT_BOLD, 8),
        ("TEXTCOLOR", (0, 0), (-1, -1), INK),
        ("BACKGROUND", (0, 0), (-1, 0), SHADE),
        ("LINEBELOW", (0, 0), (-1, 0), 0.75, INK),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("TOPPADDING", (0, 0), (-1, -1), 2),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
        ("LEFTPADDING", (0, 0), (-1, -1), CELL_PADDING),
        ("RIGHTPADDING", (0, 0), (-1, -1), CELL_PADDING),
    ]
    for column in right:
        commands.append(("ALIGN", (column, 0), (column, -1), "RIGHT"))
    if zebra and len(rows) > 3:
        commands.append(("ROWBACKGROUNDS", (0, 1), (-1, -1 - total_rows), [None, BAND]))
    if total_rows:
        commands += [
            ("FONT", (0, -total_rows), (-1, -1), FONT_BOLD, 8),
            ("LINEABOVE", (0, -total_rows), (-1, -total_rows), 0.75, INK),
        ]
    table.setStyle(TableStyle(commands))
    return table


def key_values(pairs: Sequence[tuple[str, Any]], widths: Sequence[float]) -> Table:
    """Label/value pairs, labels in bold, values right-aligned (amounts)."""
    table = Table([[k, v] for k, v in pairs], colWidths=list(widths), hAlign="LEFT")
    table.setStyle(
        TableStyle(
            [
                ("FONT", (0, 0), (-1, -1), FONT, 8.5),
                ("FONT", (0, 0), (0, -1), FONT_BOLD, 8.5),
                ("ALIGN", (1, 0), (1, -1), "RIGHT"),
                ("TOPPADDING", (0, 0), (-1, -1), 1.5),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
                ("TEXTCOLOR", (0, 0), (-1, -1), INK),
            ]
        )
    )
    return table


# -- the page ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportInfo:
    """What every page and the PDF's metadata say about a report."""

    title: str  # metadata title and header, e.g. "Statement — St Mary's (STMARY)"
    subject: str
    provider: str
    printed_by: str
    printed_at: datetime
    keywords: str = ""
    landscape: bool = False
    # A document the customer receives (a statement): the footer does not name who printed it.
    for_customer: bool = False

    @property
    def pagesize(self) -> tuple[float, float]:
        return landscape(PAGE_SIZE) if self.landscape else PAGE_SIZE  # type: ignore[no-any-return]


class Section(Flowable):
    """Starts a new numbering section ("page x of y" counts within it) with its own header."""

    def __init__(self, header: str) -> None:
        super().__init__()
        self.header = header
        self.width = self.height = 0

    def wrap(self, availWidth: float, availHeight: float) -> tuple[float, float]:
        return 0, 0

    def draw(self) -> None:
        canvas = self.canv
        canvas._bd_section += 1
        canvas._bd_header = self.header


def _numbered_canvas(info: ReportInfo) -> type[Canvas]:
    class NumberedCanvas(Canvas):
        """Keeps each page until the end, then writes "page x of y" per section."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("initialFontName", FONT)
            super().__init__(*args, **kwargs)
            self._bd_pages: list[tuple[dict[str, Any], int]] = []
            self._bd_section = 0
            self._bd_header = info.title

        def showPage(self) -> None:
            self._bd_pages.append((dict(self.__dict__), self._bd_section))
            self._startPage()

        def save(self) -> None:
            counts: dict[int, int] = {}
            for _, section in self._bd_pages:
                counts[section] = counts.get(section, 0) + 1
            seen: dict[int, int] = {}
            for state, section in self._bd_pages:
                self.__dict__.update(state)
                seen[section] = seen.get(section, 0) + 1
                _draw_footer(self, info, seen[section], counts[section])
                Canvas.showPage(self)
            Canvas.save(self)

    return NumberedCanvas


def _draw_header(canvas: Canvas, info: ReportInfo) -> None:
    width, height = info.pagesize
    top = height - MARGIN + 0.22 * inch
    canvas.saveState()
    canvas.setFillColor(INK)
    draw_text(canvas, MARGIN, top, info.provider, FONT_BOLD, 9)
    header = getattr(canvas, "_bd_header", info.title)
    draw_text(canvas, width - MARGIN, top, header, FONT, 9, right=True)
    canvas.setStrokeColor(RULE)
    canvas.setLineWidth(0.5)
    canvas.line(MARGIN, top - 5, width - MARGIN, top - 5)
    canvas.restoreState()


def _draw_footer(canvas: Canvas, info: ReportInfo, page: int, pages: int) -> None:
    width, _ = info.pagesize
    y = MARGIN - 0.3 * inch
    canvas.saveState()
    canvas.setStrokeColor(RULE)
    canvas.setLineWidth(0.5)
    canvas.line(MARGIN, y + 10, width - MARGIN, y + 10)
    canvas.setFillColor(INK)
    printed = f"Printed {info.printed_at:%Y-%m-%d %H:%M} UTC"
    if not info.for_customer:
        printed += f" by {info.printed_by}"
    draw_text(canvas, MARGIN, y, printed, FONT, 7)
    canvas.setFont(FONT, 7)
    canvas.drawRightString(width - MARGIN, y, f"Page {page} of {pages}")
    canvas.restoreState()


def draw_text(
    canvas: Canvas,
    x: float,
    y: float,
    text: str,
    font: str,
    size: float,
    *,
    right: bool = False,
    ordered: bool = False,
) -> None:
    """Draw user text on the canvas (never parsed as markup), CJK runs in the fallback font;
    `ordered`: the text is already in visual order (reordering it twice would undo it)."""
    shown = text if ordered else visual(text)
    runs = [(FONT_BOLD if f == FONT and font == FONT_BOLD else f, t) for f, t in _runs(shown)]
    start = x - sum(text_width(t, f, size) for f, t in runs) if right else x
    # One text object, so a reader extracts the text as one line however many fonts it takes.
    line = canvas.beginText(start, y)
    for run_font, run in runs:
        line.setFont(run_font, size)
        line.textOut(run)
    canvas.drawText(line)


def build_pdf(target: Path | IO[bytes], story: list[Flowable], info: ReportInfo) -> None:
    """Lay `story` out on the report page and write the PDF with its metadata."""
    register_fonts()
    width, height = info.pagesize
    doc = BaseDocTemplate(
        str(target) if isinstance(target, Path) else target,
        pagesize=info.pagesize,
        leftMargin=MARGIN,
        rightMargin=MARGIN,
        topMargin=MARGIN + 0.15 * inch,
        bottomMargin=MARGIN,
        title=info.title,
        author=f"{info.provider} ({AUTHOR})",
        subject=info.subject,
        creator=AUTHOR,
        keywords=info.keywords,
        initialFontName=FONT,
        initialFontSize=BODY_SIZE,
        displayDocTitle=1,
    )
    frame = Frame(
        MARGIN,
        MARGIN,
        width - 2 * MARGIN,
        height - 2 * MARGIN - 0.15 * inch,
        leftPadding=0,
        rightPadding=0,
        topPadding=0,
        bottomPadding=0,
        id="body",
    )
    doc.addPageTemplates(
        [PageTemplate(id="report", frames=[frame], onPageEnd=lambda c, _d: _draw_header(c, info))]
    )
    doc.build(story, canvasmaker=_numbered_canvas(info))


def content_width(*, wide: bool = False) -> float:
    """The width tables may take: of a portrait page, or of a landscape one when `wide`."""
    size = landscape(PAGE_SIZE) if wide else PAGE_SIZE
    return float(size[0] - 2 * MARGIN)


ProgressCallback = Callable[[int, int, str], None]
