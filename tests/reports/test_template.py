"""The page template's text handling: which font prints which character, and plain cells
wrapped without a Paragraph."""

from __future__ import annotations

import pytest
from reportlab.platypus import Paragraph

from billing_desk.reports.template import (
    CELL_PADDING,
    FONT,
    FONT_CJK,
    FONT_HANGUL,
    _runs,
    markup,
    styles,
    text_cell,
    text_width,
    wrap_plain,
)


@pytest.mark.parametrize(
    ("text", "runs"),
    [
        ("Zürich", [(FONT, "Zürich")]),
        ("北京 医院", [(FONT_CJK, "北京"), (FONT, " "), (FONT_CJK, "医院")]),
        ("서울 병원", [(FONT_HANGUL, "서울"), (FONT, " "), (FONT_HANGUL, "병원")]),
        # Droid Sans Fallback has compatibility jamo too; Korean stays in one design.
        ("ㅎ한", [(FONT_HANGUL, "ㅎ한")]),
        ("Oak \U0001d11e", [(FONT, "Oak ?")]),  # a musical symbol no font has
    ],
)
def test_each_character_goes_to_a_font_that_has_it(text: str, runs: list[tuple[str, str]]) -> None:
    assert _runs(text) == runs


def test_markup_escapes_and_names_the_fallback_fonts() -> None:
    assert markup('<b>A & "B"</b>\nC') == '&lt;b&gt;A &amp; "B"&lt;/b&gt;<br/>C'
    assert markup("요양 & Co") == f'<font name="{FONT_HANGUL}">요양</font> &amp; Co'


@pytest.mark.parametrize(
    "text",
    [
        "Invoice for May 2026: 12 trips, 01 May - 31 May 2026, Oakview Care Home",
        "Short",
        "x" * 200,
        "two\nlines, the second one long enough to wrap within this narrow column",
        "",
    ],
)
def test_a_plain_cell_wraps_into_lines_that_fit(text: str) -> None:
    width = 120.0
    cell = text_cell(text, width)
    assert isinstance(cell, str)
    lines = cell.split("\n")
    assert all(text_width(line) <= width - 2 * CELL_PADDING for line in lines)
    assert "".join(cell.split()) == "".join(text.split())  # every character, in order
    if "\n" in text:
        assert lines[0] == "two"


@pytest.mark.parametrize("width", [60.0, 120.0, 163.2])
def test_lines_break_where_a_paragraph_breaks_them(width: float) -> None:
    text = "Payment 44 by check from Facility accounts payable, reference OAK-000044 of May"
    paragraph = Paragraph(text, styles().cell)
    paragraph.wrap(width, 1000)
    expected = [" ".join(words) for _, words in paragraph.blPara.lines]
    assert wrap_plain(text, width) == expected


@pytest.mark.parametrize("text", ["요양병원", "北京协和医院", "בית חולים"])
def test_other_scripts_are_escaped_paragraphs(text: str) -> None:
    assert isinstance(text_cell(text, 120), Paragraph)
