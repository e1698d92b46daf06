"""Facility statements: figures in the PDF's text, totals against the database, fonts,
metadata, page numbering, hostile and non-ASCII names (Korean included), long statements, and the
hash check."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from unicodedata import normalize

import pytest
from pypdf import PdfReader
from sqlalchemy import text

from billing_desk.domain.money import Money
from billing_desk.domain.payments import LIVE_STATUSES
from billing_desk.reports.statement import (
    printed_statements,
    write_combined,
    write_statement,
)
from billing_desk.services.audit import audit_log
from billing_desk.services.credits import credit_balance
from billing_desk.services.facilities import NewFacility, add_facility, list_facilities
from billing_desk.services.invoices import list_invoices
from billing_desk.services.payments import list_payments
from billing_desk.services.provider import Provider
from billing_desk.services.report_data import (
    BALANCE_FORWARD,
    StatementLine,
    check_statements,
    statement_data,
)
from billing_desk.services.unit_of_work import Workspace
from tests.reports.conftest import (
    AS_OF,
    assert_fonts_embedded,
    font_names,
    page_texts,
    pdf_text,
    render_first_page,
)

# Reads the time: run again under a moved wall clock by `make test` (tests/conftest.py).
pytestmark = pytest.mark.clock

PROVIDER = Provider("Prairie Wheels Transport", "12 Depot Lane\nSpringfield IL", "ap@pw.example")
PRINTED_AT = datetime(2026, 5, 20, 9, 30, tzinfo=UTC)
HOSTILE = '<font color="x">Evil & Co</font> <para>'


def _database_balance(workspace: Workspace, code: str) -> Money:
    """What the facility owes by the database's own reading: non-void invoice totals less
    live payments."""
    invoices = [i.total for i in list_invoices(workspace, facility=code) if i.status != "void"]
    live = {s.value for s in LIVE_STATUSES}
    paid = [p.amount for p in list_payments(workspace, facility=code) if p.status in live]
    return Money.total(invoices, "USD") - Money.total(paid, "USD")


def test_statement_figures_reconcile_with_the_database(demo: Workspace, tmp_path: Path) -> None:
    for facility in list_facilities(demo):
        data = statement_data(
            demo,
            facility.code,
            as_of=AS_OF,
            period_start=date(2025, 1, 1),
            layout=BALANCE_FORWARD,
        )
        assert data.opening.is_zero()
        assert data.closing == _database_balance(demo, facility.code)
        assert data.unapplied_credit == credit_balance(demo, facility.code).credit
        assert data.aging_total - data.unapplied_credit == data.closing
        assert data.opening + data.invoiced - data.received + data.reversed == data.closing
        if data.lines:
            assert data.lines[-1].balance == data.closing

        pdf = tmp_path / f"{facility.code}.pdf"
        write_statement(pdf, data, PROVIDER, "manager", printed_at=PRINTED_AT)
        content = pdf_text(pdf)
        assert data.closing.format() in content
        assert data.amount_due.format() in content
        for line in data.lines:
            if line.amount is not None:
                assert line.amount.format() in content
        for bucket in data.aging:
            assert bucket.amount.format() in content
        assert facility.code in content
        assert "Remittance slip" in content
        assert [p.content_hash for p in printed_statements(content)] == [data.content_hash[:16]]

        # The open-item layout: the same figures, every open invoice by number.
        items = statement_data(demo, facility.code, as_of=AS_OF, period_start=date(2025, 1, 1))
        assert items.content_hash == data.content_hash
        assert Money.total((i.open for i in items.open_items), "USD") == data.aging_total
        write_statement(pdf, items, PROVIDER, "manager", printed_at=PRINTED_AT)
        content = pdf_text(pdf)
        for item in items.open_items:
            assert item.number in content and item.open.format() in content
        assert items.amount_due.format() in content


def test_a_statement_pdf_is_well_formed(demo: Workspace, tmp_path: Path) -> None:
    code = "NAKANO" if any(f.code == "NAKANO" for f in list_facilities(demo)) else "STMARY"
    data = statement_data(demo, code, as_of=AS_OF, period_start=date(2025, 1, 1))
    pdf = tmp_path / "statement.pdf"
    write_statement(pdf, data, PROVIDER, "manager", printed_at=PRINTED_AT)
    assert_fonts_embedded(pdf)
    reader = PdfReader(str(pdf))
    meta = reader.metadata
    assert meta is not None
    assert meta.title == f"Statement — {data.facility.name} ({code})"
    assert meta.author is not None and "Prairie Wheels Transport" in meta.author
    assert meta.subject is not None and str(AS_OF) in meta.subject
    pages = page_texts(pdf)
    for number, page in enumerate(pages, 1):
        assert f"Page {number} of {len(pages)}" in page
    assert data.facility.name in pdf_text(pdf)  # accents and CJK come back out as text
    render_first_page(pdf)


def test_two_thousand_lines_paginate_with_the_header_on_every_page(
    demo: Workspace, tmp_path: Path
) -> None:
    base = statement_data(demo, "STMARY", as_of=AS_OF)
    lines = []
    balance = base.opening
    for n in range(2000):
        amount = Money.from_minor(1000 + n, "USD")
        balance = balance + amount
        lines.append(
            StatementLine(
                date(2026, 5, 1 + n % 19),
                "invoice",
                f"STMARY-{n:06d}",
                f"Synthetic line {n} with a description long enough to look real",
                amount,
                balance,
            )
        )
    data = replace(base, lines=tuple(lines), closing=balance, layout=BALANCE_FORWARD)
    pdf = tmp_path / "long.pdf"
    write_statement(pdf, data, PROVIDER, "manager", printed_at=PRINTED_AT)
    pages = page_texts(pdf)
    assert len(pages) >= 30
    activity_pages = [p for p in pages if "STMARY-0" in p]
    assert len(activity_pages) >= 30
    for page in activity_pages:
        assert "Date" in page and "Reference" in page and "Balance" in page
    for number, page in enumerate(pages, 1):
        assert f"Page {number} of {len(pages)}" in page
    everything = "\n".join(pages)
    assert "STMARY-000000" in everything and "STMARY-001999" in everything
    assert balance.format() in pages[-1] or balance.format() in pages[-2]


def test_hostile_and_foreign_names_print_literally(demo: Workspace, tmp_path: Path) -> None:
    admin_names = {
        "EVIL": HOSTILE,
        "ACCENT": "Clínica Ñandú — Zürich Straße",
        "CJK": "北京协和医院 とうきょう",
        "RTL": "בית חולים הדסה",
    }
    admin = Workspace(demo.location, "admin")
    try:
        for code, name in admin_names.items():
            add_facility(admin, NewFacility(code, name, billing_contact_name=HOSTILE))
    finally:
        admin.close()
    for code, name in admin_names.items():
        data = statement_data(demo, code, as_of=AS_OF)
        pdf = tmp_path / f"{code}.pdf"
        write_statement(pdf, data, PROVIDER, "manager", printed_at=PRINTED_AT)
        content = pdf_text(pdf)
        if code == "EVIL":
            assert '<font color="x">Evil & Co</font>' in content
            assert "<para>" in content
        elif code == "RTL":
            assert "?" not in content.split("Bill to")[1][:80]
            assert "הדסה"[::-1] in content or "הדסה" in content
        else:
            assert name in content
        assert_fonts_embedded(pdf)
        render_first_page(pdf)


def test_a_korean_name_is_embedded_and_reads_back_as_itself(
    demo: Workspace, tmp_path: Path
) -> None:
    name = "서울 요양병원 한빛관"
    admin = Workspace(demo.location, "admin")
    try:
        add_facility(admin, NewFacility("SEOUL", name, billing_contact_name="김민준"))
    finally:
        admin.close()
    data = statement_data(demo, "SEOUL", as_of=AS_OF)
    pdf = tmp_path / "seoul.pdf"
    write_statement(pdf, data, PROVIDER, "manager", printed_at=PRINTED_AT)
    content = pdf_text(pdf)
    assert content.count(name) >= 3  # header band, "Bill to", remittance slip
    assert "김민준" in content
    assert "?" not in content.split("Bill to")[1][:80]
    assert any("NanumSquare" in font for font, _ in font_names(pdf))
    assert_fonts_embedded(pdf)
    render_first_page(pdf)

    # Typed as separate jamo (NFD, as some systems store it), it prints as the same syllables.
    decomposed = replace(data, facility=replace(data.facility, name=normalize("NFD", name)))
    write_statement(pdf, decomposed, PROVIDER, "manager", printed_at=PRINTED_AT)
    assert pdf_text(pdf).count(name) >= 3


def test_statement_check_detects_a_payment_changed_after_printing(
    demo: Workspace, tmp_path: Path
) -> None:
    paid = [p for p in list_payments(demo) if p.status != "voided"]
    code = paid[0].facility
    data = statement_data(demo, code, as_of=AS_OF, period_start=date(2025, 1, 1))
    pdf = tmp_path / "printed.pdf"
    write_statement(pdf, data, PROVIDER, "manager", printed_at=PRINTED_AT)
    printed = printed_statements(pdf_text(pdf))
    assert [c.matches for c in check_statements(demo, printed)] == [True]

    with demo.engine.begin() as conn:  # someone with database access changes a payment
        conn.execute(
            text("UPDATE payment SET amount_minor = amount_minor + 100 WHERE id = :id"),
            {"id": paid[0].payment_id},
        )
    checks = check_statements(demo, printed)
    assert [c.matches for c in checks] == [False]
    assert checks[0].current_hash != data.content_hash
    actions = [e.action for e in audit_log(demo, action="statement.check")]
    assert actions.count("statement.check") == 2


def test_a_combined_batch_numbers_pages_per_statement(demo: Workspace, tmp_path: Path) -> None:
    datas = [statement_data(demo, f.code, as_of=AS_OF) for f in list_facilities(demo)]
    seen: list[tuple[int, int, str]] = []
    pdf = tmp_path / "all.pdf"
    write_combined(
        pdf,
        datas,
        PROVIDER,
        "manager",
        printed_at=PRINTED_AT,
        progress=lambda done, total, what: seen.append((done, total, what)),
    )
    assert [s[0] for s in seen] == list(range(1, len(datas) + 1))
    content = pdf_text(pdf)
    assert {p.facility for p in printed_statements(content)} == {d.facility.code for d in datas}
    assert all(c.matches for c in check_statements(demo, printed_statements(content)))
    assert "Page 1 of" in page_texts(pdf)[-1] or "Page 2 of" in page_texts(pdf)[-1]
    assert_fonts_embedded(pdf)


@pytest.mark.parametrize("as_of", [date(2026, 3, 31), AS_OF])
def test_a_past_statement_reads_the_same_later(demo: Workspace, as_of: date) -> None:
    first = statement_data(demo, "STMARY", as_of=as_of)
    again = statement_data(demo, "STMARY", as_of=as_of)
    assert first.content_hash == again.content_hash
    assert first.aging_total - first.unapplied_credit == first.closing
