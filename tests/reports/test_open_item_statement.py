"""The open-item statement a facility's accounts-payable clerk acts on, read back from the PDF:
every open invoice by number with its open amount, past-due rows marked, when to pay, how to pay
(the provider's remittance settings, kept in the database), nothing internal, and no invoice
number or amount broken over two lines (checked by the text's positions on the page)."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader
from reportlab.pdfbase.pdfmetrics import stringWidth

from billing_desk.cli.app import run
from billing_desk.domain.errors import BadInput, PermissionDenied
from billing_desk.domain.money import Money
from billing_desk.reports.statement import (
    read_printed_statements,
    slip_invoice_lines,
    write_statement,
)
from billing_desk.reports.template import FONT, register_fonts
from billing_desk.services.audit import audit_log
from billing_desk.services.health import OK, WARNING, check_health
from billing_desk.services.invoices import list_invoices, void_invoice
from billing_desk.services.provider import (
    Provider,
    ProviderChange,
    change_provider,
    provider_details,
)
from billing_desk.services.report_data import (
    BALANCE_FORWARD,
    OpenItem,
    StatementLine,
    check_statements,
    statement_data,
)
from billing_desk.services.unit_of_work import Workspace
from tests.reports.conftest import AS_OF, pdf_text
from tests.reports.test_statement import PRINTED_AT

pytestmark = pytest.mark.clock

SETTINGS = ProviderChange(
    name="Prairie Wheels Transport",
    address="1200 Depot Lane; Springfield, IL 62701",
    email="ar@prairiewheels.example",
    phone="(217) 555-0142",
    bank_name="First Prairie Bank",
    account_number="4410 0233 91",
    routing_number="021000021",
    lockbox_address="PO Box 84412; Chicago, IL 60684-4412",
)
VOID_REASON = "keyed against the wrong facility by Dana"
# What the office writes or is called that a customer must never read.
INTERNAL = (
    VOID_REASON,
    "wrong facility",
    "entered in error",
    "Anomaly:",
    "manager",
    "clerk",
    "admin",
    "billing-desk",
    "Billing office",
)


def lines_of(pdf: Path) -> list[str]:
    """The PDF's text as printed lines: fragments drawn on the same baseline of a page, joined
    left to right (pypdf's visitor gives each fragment's text matrix and transformation)."""
    found: list[str] = []
    for page in PdfReader(str(pdf)).pages:
        rows: dict[float, list[tuple[float, str]]] = defaultdict(list)

        def visit(text: str, cm: Any, tm: Any, _font: Any, _size: Any) -> None:
            if not text.strip():
                return
            x = tm[4] * cm[0] + tm[5] * cm[2] + cm[4]
            y = tm[4] * cm[1] + tm[5] * cm[3] + cm[5]
            rows[round(y, 0)].append((x, text.replace("\n", " ")))  # noqa: B023

        page.extract_text(visitor_text=visit)
        for y in sorted(rows, reverse=True):
            found.append(" ".join(t for _, t in sorted(rows[y])))
    return found


def assert_whole_on_one_line(lines: list[str], token: str) -> None:
    """`token` is printed whole on some line, and no line ends in a piece of it."""
    assert any(token in line for line in lines), f"{token} is not printed whole on one line"
    for line in lines:
        if token in line:
            continue
        head, tail = line.lstrip(), line.rstrip()
        # A line ending in its beginning (past an invoice number's dash or an amount's decimal
        # point), or starting with its end (4 characters or more): the token was wrapped.
        separator = re.search(r"[-.]", token)
        for cut in range(separator.start() + 2 if separator else 3, len(token)):
            assert not tail.endswith(token[:cut]), f"{token} is broken after {token[:cut]!r}"
        for cut in range(1, len(token) - 3):
            assert not head.startswith(token[cut:]), f"{token} is broken before {token[cut:]!r}"


@pytest.fixture
def provider(demo: Workspace) -> Provider:
    return change_provider(demo, SETTINGS)


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_every_open_invoice_by_number_past_due_marked_and_how_to_pay(
    demo: Workspace, provider: Provider, tmp_path: Path
) -> None:
    victim = next(i for i in list_invoices(demo, facility="OAKVIEW") if i.open.is_positive())
    void_invoice(demo, victim.number, VOID_REASON)
    # As of today, so the void (made now) is on it.
    data = statement_data(demo, "OAKVIEW")
    open_now = [i for i in list_invoices(demo, facility="OAKVIEW") if i.open.is_positive()]
    assert {i.number for i in data.open_items} == {i.number for i in open_now}
    assert any(i.overdue for i in data.open_items)  # the demo's OAKVIEW pays late
    pdf = tmp_path / "oakview.pdf"
    write_statement(pdf, data, provider, "manager", printed_at=PRINTED_AT)
    lines = lines_of(pdf)
    text = " ".join(lines)

    for item in data.open_items:
        assert_whole_on_one_line(lines, item.number)
        row = next(line for line in lines if line.startswith(item.number))
        assert item.open.format() in row and item.total.format() in row
        assert str(item.due_date) in row
        # Past-due rows say so on the row itself; the others say when they fall due.
        assert ("days past due" in row or "day past due" in row) == item.overdue, row
        assert item.open.format() in row
    assert data.pay_now
    assert any("Please pay by" in line and "now (past due)" in line for line in lines)
    assert data.amount_due.format() in text

    for detail in ("First Prairie Bank", "4410023391", "021000021", "PO Box 84412"):
        assert detail in text, detail
    assert "Prairie Wheels Transport" in text and "Remittance details missing" not in text
    flat = " ".join(pdf_text(pdf).split())
    for internal in INTERNAL:
        assert internal not in flat, internal
    assert f"Statement ID {data.statement_id}" in flat


def test_tokens_shrink_or_are_cut_but_never_break(
    demo: Workspace, provider: Provider, tmp_path: Path
) -> None:
    base = statement_data(demo, "STMARY", as_of=AS_OF)
    usd = "USD"
    long_number = "STMARYNORTHWING-000123"
    items = (
        OpenItem(
            long_number,
            date(2026, 1, 1),
            date(2026, 1, 31),
            Money("123456789.01", usd),
            Money("0", usd),
            Money("0", usd),
            Money("123456789.01", usd),
            109,
        ),
        *base.open_items,
    )
    reference = "ACH 2605-STMARY-000695-REMITTANCE-FOR-INVOICES-APRIL-AND-MAY"
    line = StatementLine(
        AS_OF - timedelta(days=2),
        "payment",
        reference,
        "Payment 7 by transfer from St. Mary's Hospital accounts payable department "
        "ref PI_3NXQ2L2EZVKYLKJ91A0B1C2D3E4F5G6H7I8J9K0",
        Money("-10.00", usd),
        base.closing,
    )
    data = replace(base, open_items=items, lines=(*base.lines, line))
    pdf = tmp_path / "tokens.pdf"
    write_statement(pdf, data, provider, "manager", printed_at=PRINTED_AT)
    lines = lines_of(pdf)
    table = lines[: next(i for i, row in enumerate(lines) if "Remittance slip" in row)]
    for item in items:
        assert_whole_on_one_line(table, item.number)
        assert_whole_on_one_line(table, item.open.format())
    # A reference too long for its column is cut with an ellipsis on one line, never wrapped.
    assert reference not in " ".join(lines)
    assert any("ACH 2605-STMARY-" in row and "..." in row for row in lines)
    assert not any(row.startswith("REMITTANCE") or row.startswith("000695") for row in lines)
    # The slip names every invoice paid, whole.
    slip = lines[next(i for i, row in enumerate(lines) if "Remittance slip" in row) :]
    for item in items:
        assert_whole_on_one_line(slip, item.number)


def test_nothing_configured_says_remittance_details_are_missing(
    demo: Workspace, tmp_path: Path
) -> None:
    assert provider_details(demo).remittance_missing
    health = {i.name: i for i in check_health(demo, keyring_check=lambda: True).items}
    assert health["remittance"].status == WARNING
    assert "Remittance details are missing" in health["remittance"].sentence
    data = statement_data(demo, "STMARY", as_of=AS_OF)
    pdf = tmp_path / "missing.pdf"
    write_statement(pdf, data, provider_details(demo), "manager", printed_at=PRINTED_AT)
    flat = " ".join(pdf_text(pdf).split())
    assert "Remittance details missing" in flat
    assert "contact us" in flat
    assert "Billing office" not in flat and "Send payment to" not in flat

    change_provider(demo, SETTINGS)
    health = {i.name: i for i in check_health(demo, keyring_check=lambda: True).items}
    assert health["remittance"].status == OK
    # A name and an address alone: checks can be mailed there, so it is enough.
    change_provider(
        demo,
        ProviderChange(bank_name="", account_number="", routing_number="", lockbox_address=""),
    )
    details = provider_details(demo)
    assert not details.transfer and details.check_address and not details.remittance_missing
    write_statement(pdf, data, details, "manager", printed_at=PRINTED_AT)
    flat = " ".join(pdf_text(pdf).split())
    assert "By bank transfer" not in flat and "1200 Depot Lane" in flat
    assert "Remittance details missing" not in flat


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_only_a_manager_or_an_admin_changes_the_settings_and_every_change_is_audited(
    demo: Workspace, database: Any
) -> None:
    for person in ("clerk", "auditor"):
        with pytest.raises(PermissionDenied, match="may not change the provider's details"):
            change_provider(database.workspace(person), ProviderChange(name="Mine"))
    admin = database.workspace("admin")
    change_provider(admin, ProviderChange(name="Prairie Wheels", address="1 Depot Ln"))
    changed = change_provider(demo, SETTINGS)
    assert changed.updated_by == "manager" and changed.routing_number == "021000021"
    assert provider_details(database.workspace("clerk")) == changed

    entries = [e for e in audit_log(demo, action="provider.change")]
    assert [(e.user, e.entity_type) for e in entries] == [
        ("admin", "provider_setting"),
        ("manager", "provider_setting"),
    ]
    assert entries[0].before is None and '"Prairie Wheels"' in str(entries[0].after)
    assert '"First Prairie Bank"' in str(entries[1].after)
    assert '"Prairie Wheels"' in str(entries[1].before)

    refusals = {
        ProviderChange(routing_number="021000022"): "check digit is wrong",
        ProviderChange(routing_number="2100002"): "has 9 digits",
        ProviderChange(bank_name="", account_number=""): "give --bank-name and --account",
        ProviderChange(name=""): "--name",
        ProviderChange(email="ar at example"): "--email",
    }
    for change, reason in refusals.items():
        with pytest.raises(BadInput, match=reason):
            change_provider(demo, change)
    assert provider_details(demo) == changed  # refused changes write nothing


def test_pay_by_is_the_earliest_due_date_not_yet_passed(demo: Workspace) -> None:
    data = statement_data(demo, "STMARY", as_of=AS_OF)
    usd = "USD"

    def item(due: date, days: int) -> OpenItem:
        amount = Money("10.00", usd)
        zero = Money("0", usd)
        return OpenItem("STMARY-9", due - timedelta(days=30), due, amount, zero, zero, amount, days)

    later, sooner = AS_OF + timedelta(days=20), AS_OF + timedelta(days=5)
    current = replace(
        data,
        open_items=(item(later, 0), item(sooner, 0)),
        closing=Money("20.00", usd),
    )
    assert current.pay_by == sooner and not current.pay_now
    overdue = replace(current, open_items=(item(AS_OF - timedelta(days=3), 3), item(later, 0)))
    assert overdue.pay_by is None and overdue.pay_now
    settled = replace(current, closing=Money("-5.00", usd))
    assert settled.pay_by is None and not settled.pay_now


def test_the_statement_id_checks_the_printed_statement(
    demo: Workspace, provider: Provider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = statement_data(demo, "OAKVIEW", as_of=AS_OF)
    pdf = tmp_path / "printed.pdf"
    write_statement(pdf, data, provider, "manager", printed_at=PRINTED_AT)
    printed = read_printed_statements(pdf)
    # The page shows 16 hex digits; the file's metadata carries the whole hash they abbreviate.
    assert [p.content_hash for p in printed] == [data.content_hash]
    assert [c.matches for c in check_statements(demo, printed)] == [True]
    short = [replace(p, content_hash=p.content_hash[:16]) for p in printed]
    assert [c.matches for c in check_statements(demo, short)] == [True]
    wrong = [replace(p, content_hash="0" * 16) for p in printed]
    assert [c.matches for c in check_statements(demo, wrong)] == [False]

    monkeypatch.setenv(
        "BILLING_DESK_DB",
        str(demo.location.url) if not demo.location.is_sqlite else str(demo.location.sqlite_path),
    )
    assert run(["--user", "auditor", "statement", "check", str(pdf)]) == 0


def test_activity_runs_from_the_last_statement_and_the_balance_forward_layout_stays(
    demo: Workspace, provider: Provider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = statement_data(demo, "STMARY", as_of=AS_OF - timedelta(days=10))
    assert first.period_start == AS_OF - timedelta(days=39)  # nothing printed yet: 30 days
    monkeypatch.setenv(
        "BILLING_DESK_DB",
        str(demo.location.url) if not demo.location.is_sqlite else str(demo.location.sqlite_path),
    )
    earlier = tmp_path / "earlier.pdf"
    as_of = str(AS_OF - timedelta(days=10))
    command = ["--user", "manager", "report", "statement", "--facility", "STMARY"]
    assert run([*command, "--as-of", as_of, "--out", str(earlier)]) == 0
    again = statement_data(demo, "STMARY", as_of=AS_OF)
    assert again.period_start == AS_OF - timedelta(days=9)

    forward = tmp_path / "forward.pdf"
    layout = ["--layout", "balance-forward", "--out", str(forward)]
    assert run([*command, "--as-of", str(AS_OF), *layout]) == 0
    text = " ".join(pdf_text(forward).split())
    assert "Opening balance" in text and "Closing balance" in text
    data = statement_data(demo, "STMARY", as_of=AS_OF, layout=BALANCE_FORWARD)
    assert data.period_start == AS_OF.replace(day=1)
    assert run([*command, "--layout", "sideways", "--out", str(forward)]) == 2


def test_the_slip_lists_invoice_numbers_whole_on_three_lines_at_most() -> None:
    register_fonts()
    numbers = [f"NAKANO-{n:06d}" for n in range(70)]
    lines = slip_invoice_lines(numbers, 250)
    assert len(lines) == 3 and lines[-1].endswith("and 62 more (listed above)")
    assert all(stringWidth(line, FONT, 7) <= 250 for line in lines)
    shown = [n for line in lines for n in re.findall(r"NAKANO-\d{6}", line)]
    assert shown == numbers[: len(shown)] and len(shown) + 62 == len(numbers)
    assert slip_invoice_lines(numbers[:2], 250) == ["NAKANO-000000, NAKANO-000001"]


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_provider_commands_and_the_warning_when_printing_without_them(
    demo: Workspace,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("BILLING_DESK_DB", str(demo.location.sqlite_path))

    def cli(user: str, *args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = run(["--user", user, *args])
        out, err = capsys.readouterr()
        return code, out, err

    code, out, _ = cli("clerk", "provider", "show")
    assert code == 0 and "Nothing is set" in out
    pdf = tmp_path / "s.pdf"
    code, _, err = cli("manager", "report", "statement", "--facility", "STMARY", "--out", str(pdf))
    assert code == 0 and "remittance details are missing" in err
    bank = ["--bank-name", "First Prairie Bank", "--account", "4410023391", "--routing"]
    code, _, err = cli("clerk", "provider", "set", "--name", "Mine", *bank, "021000021")
    assert code == 3 and "may not change the provider's details" in err
    code, _, err = cli("manager", "provider", "set", "--name", "PW", *bank, "021000022")
    assert code == 2 and "--routing" in err
    code, out, _ = cli("manager", "provider", "set", "--name", "PW", *bank, "021000021", "--json")
    assert code == 0 and '"routing_number": "021000021"' in out
    code, out, _ = cli("auditor", "provider", "show")
    assert "First Prairie Bank" in out and "by manager" in out
    code, _, err = cli("manager", "report", "statement", "--facility", "STMARY", "--out", str(pdf))
    assert code == 0 and "missing" not in err
