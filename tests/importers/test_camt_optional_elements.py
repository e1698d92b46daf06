"""camt.053 elements the ISO 20022 message definition makes optional, or that real banks leave
out though it requires them, written from the BankToCustomerStatementV02..V14 message
definitions (ISO 20022 message definition report, camt.053.001.xx):

- Entry/BookingDate (BookgDt) is [0..1] in every version: without it the value date stands in,
  then the closing balance's date, the period's end (FrToDt/ToDtTm), the statement's creation
  date (CreDtTm); the statement's notes say so and for how many entries.
- Balance/CreditDebitIndicator is [1..1], but some banks send none: the balance is read as a
  credit with a note, and the balance check still runs and fails plainly when that was wrong.
- Entry/CreditDebitIndicator stays required: without it no one can say whether money came in.
"""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing_desk.domain.money import Money
from billing_desk.domain.statements import Statement, StatementRefused
from billing_desk.importers.statements import camt


def document(entries: str, *, balances: str = "", version: str = "08", header: str = "") -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.{version}">
<BkToCstmrStmt><GrpHdr><MsgId>M1</MsgId></GrpHdr>
<Stmt><Id>S1</Id>{header}<Acct><Id><IBAN>DE89370400440532013000</IBAN></Id><Ccy>EUR</Ccy></Acct>
{balances}
{entries}
</Stmt></BkToCstmrStmt></Document>""".encode()


def entry(amount: str, sign: str = "CRDT", *, dates: str = "") -> str:
    return (
        f'<Ntry><Amt Ccy="EUR">{amount}</Amt><CdtDbtInd>{sign}</CdtDbtInd>'
        f"<Sts><Cd>BOOK</Cd></Sts>{dates}<AcctSvcrRef>R-{amount}</AcctSvcrRef></Ntry>"
    )


def balance(code: str, amount: str, day: str, sign: str | None = "CRDT") -> str:
    indicator = f"<CdtDbtInd>{sign}</CdtDbtInd>" if sign else ""
    return (
        f"<Bal><Tp><CdOrPrtry><Cd>{code}</Cd></CdOrPrtry></Tp>"
        f'<Amt Ccy="EUR">{amount}</Amt>{indicator}<Dt><Dt>{day}</Dt></Dt></Bal>'
    )


def only(data: bytes) -> Statement:
    (statement,) = camt.parse(data)
    return statement


def balance_check(statement: Statement) -> bool:
    (check,) = [c for c in statement.checks() if c.name == "balance"]
    return check.ok


@pytest.mark.parametrize("version", ["02", "04", "08", "13", "14"])
def test_an_entry_without_booking_date_is_dated_by_its_value_date(version: str) -> None:
    statement = only(
        document(
            entry("10.00", dates="<ValDt><Dt>2026-06-03</Dt></ValDt>")
            + entry("4.00", "DBIT", dates="<ValDt><DtTm>2026-06-04T09:30:00+02:00</DtTm></ValDt>")
            + entry("1.00", dates="<BookgDt><Dt>2026-06-05</Dt></BookgDt>"),
            version=version,
        )
    )
    assert [(line.booked, line.amount.minor) for line in statement.lines] == [
        (date(2026, 6, 3), 1000),
        (date(2026, 6, 4), -400),
        (date(2026, 6, 5), 100),
    ]
    assert statement.notes == (
        "Stmt 1: 2 entries have no booking date (BookgDt), so they are dated by its value "
        "date (ValDt)",
    )


def test_without_any_entry_date_the_statements_own_dates_stand_in() -> None:
    closing = balance("OPBD", "0.00", "2026-06-01") + balance("CLBD", "10.00", "2026-06-30")
    statement = only(document(entry("10.00"), balances=closing))
    assert statement.lines[0].booked == date(2026, 6, 30)
    assert "dated by the closing balance's date" in statement.notes[0]
    assert balance_check(statement)

    period = (
        "<FrToDt><FrDtTm>2026-06-01T00:00:00</FrDtTm><ToDtTm>2026-06-15T23:59:59</ToDtTm></FrToDt>"
    )
    statement = only(document(entry("10.00"), header=period))
    assert statement.lines[0].booked == date(2026, 6, 15)
    assert "the statement's period end (FrToDt)" in statement.notes[0]

    created = "<CreDtTm>2026-06-20T08:00:00</CreDtTm>"
    statement = only(document(entry("10.00"), header=created))
    assert statement.lines[0].booked == date(2026, 6, 20)
    assert "creation date (CreDtTm)" in statement.notes[0]


def test_an_entry_with_no_date_at_all_is_refused_saying_so() -> None:
    with pytest.raises(StatementRefused) as refused:
        camt.parse(document(entry("10.00")))
    assert "no booking date (BookgDt) nor a value date" in str(refused.value)


def test_a_balance_without_credit_debit_indicator_is_a_credit_and_still_checked() -> None:
    good = balance("OPBD", "100.00", "2026-06-01", None) + balance(
        "CLBD", "110.00", "2026-06-30", None
    )
    dated = "<BookgDt><Dt>2026-06-02</Dt></BookgDt>"
    statement = only(document(entry("10.00", dates=dated), balances=good))
    assert (statement.opening, statement.closing) == (
        Money("100.00", "EUR"),
        Money("110.00", "EUR"),
    )
    assert balance_check(statement)
    assert len([n for n in statement.notes if "has no CdtDbtInd; it is read as a credit" in n]) == 2

    # An overdrawn account sent without its DBIT: read as a credit, the check fails in words.
    overdrawn = balance("OPBD", "100.00", "2026-06-01", "DBIT") + balance(
        "CLBD", "90.00", "2026-06-30", None
    )
    statement = only(document(entry("10.00", dates=dated), balances=overdrawn))
    assert not balance_check(statement)


def test_an_entry_without_credit_debit_indicator_is_still_refused() -> None:
    data = document(entry("10.00", dates="<BookgDt><Dt>2026-06-02</Dt></BookgDt>")).replace(
        b"<CdtDbtInd>CRDT</CdtDbtInd>", b""
    )
    with pytest.raises(StatementRefused) as refused:
        camt.parse(data)
    assert "no CdtDbtInd" in str(refused.value)


_DATE_CHOICES = st.sampled_from(
    [
        "",
        "<BookgDt><Dt>2026-06-02</Dt></BookgDt>",
        "<BookgDt><DtTm>2026-06-02T23:59:59Z</DtTm></BookgDt>",
        "<ValDt><Dt>2026-06-03</Dt></ValDt>",
        "<BookgDt><Dt>2026-06-02</Dt></BookgDt><ValDt><Dt>2026-06-03</Dt></ValDt>",
    ]
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 10**7), st.booleans(), _DATE_CHOICES), max_size=8),
    st.booleans(),
    st.sampled_from(["02", "08", "14"]),
)
def test_any_mix_of_optional_dates_reads_or_is_refused_in_words(
    entries: list[tuple[int, bool, str]], closing: bool, version: str
) -> None:
    body = "".join(
        entry(f"{minor // 100}.{minor % 100:02d}", "CRDT" if credit else "DBIT", dates=dates)
        for minor, credit, dates in entries
    )
    net = sum(minor if credit else -minor for minor, credit, _ in entries)
    balances = ""
    if closing:
        end = 10**8 + net
        balances = balance("OPBD", "1000000.00", "2026-06-01") + balance(
            "CLBD", f"{end // 100}.{end % 100:02d}", "2026-06-30"
        )
    try:
        statement = only(document(body, balances=balances, version=version))
    except StatementRefused as refused:
        assert not closing and any(dates == "" for *_, dates in entries)
        assert "no booking date" in str(refused)
        return
    assert len(statement.lines) == len(entries)
    assert sum(line.amount.minor for line in statement.lines) == net
    if closing:
        assert balance_check(statement)
    undated = sum(1 for *_, dates in entries if "BookgDt" not in dates)
    assert bool(undated) == any("no booking date" in note for note in statement.notes)
