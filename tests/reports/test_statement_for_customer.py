"""A statement goes to the customer: none of the office's own text reaches it (void reasons,
user names, commands of ours)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from reportlab.lib.units import inch
from reportlab.pdfbase.pdfmetrics import stringWidth

from billing_desk.reports.statement import token_cell, write_statement
from billing_desk.reports.template import CELL_PADDING, FONT
from billing_desk.services.invoices import list_invoices, void_invoice
from billing_desk.services.provider import Provider
from billing_desk.services.report_data import statement_data
from billing_desk.services.unit_of_work import Workspace
from tests.reports.conftest import pdf_text
from tests.reports.test_statement import PRINTED_AT

pytestmark = pytest.mark.clock

PROVIDER = Provider("Prairie Wheels Transport", "12 Depot Lane\nSpringfield IL", "ap@pw.example")
REASON = "entered against wrong facility by Jo"


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_nothing_internal_reaches_the_customer(demo: Workspace, tmp_path: Path) -> None:
    victim = next(i for i in list_invoices(demo, facility="STMARY") if i.open.is_positive())
    void_invoice(demo, victim.number, REASON)
    # As of today: the void (made now) is on the statement.
    data = statement_data(demo, "STMARY", period_start=date(2025, 1, 1))
    pdf = tmp_path / "statement.pdf"
    write_statement(pdf, data, PROVIDER, "manager", printed_at=PRINTED_AT)
    text = pdf_text(pdf)
    assert victim.number in text and "Invoice voided" in text
    flat = " ".join(text.split())
    # The demo voids STMARY's payment 17 "entered in error: check 22310 is from CLINSJ ...".
    assert "Payment voided" in text or "voided" in flat
    for internal in (
        REASON,
        "wrong facility",
        "entered in error",
        "recorded again",
        "by manager",
        "manager",
        "billing-desk",
    ):
        assert internal not in flat, internal
    assert "Printed 2026-05-20" in flat


def test_a_reference_is_never_broken_inside_only_cut_with_an_ellipsis() -> None:
    narrow = 0.9 * inch
    whole = token_cell("ACH 2601-STMARY-000695", 3 * inch)
    assert whole == "ACH 2601-STMARY-000695"
    cut = token_cell("ACH 2601-STMARY-000695", narrow)
    assert isinstance(cut, str) and "\n" not in cut and cut.endswith("...")
    assert "ACH 2601-STMARY-000695".startswith(cut.removesuffix("..."))
    assert stringWidth(cut, FONT, 8) <= narrow - 2 * CELL_PADDING
