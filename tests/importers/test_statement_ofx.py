"""The OFX/QFX importer: every corpus file imports as EXPECTED.md says (or is refused with its
pinned reason), matches its golden output and agrees with ofxparse where ofxparse reads it; bad
and hostile files are refused with one sentence that says where, and nothing else escapes.

Regenerate the golden files after a deliberate change with
`python tests/importers/test_statement_ofx.py --write-golden`, then review the diff.
"""

from __future__ import annotations

import io
import json
import sys
import warnings
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing_desk.domain.money import Money
from billing_desk.domain.statements import Statement, StatementRefused
from billing_desk.importers.statements import base, ofx
from tests.corpus import CORPUS_ROOT

REPO = Path(__file__).resolve().parents[2]
CORPUS = CORPUS_ROOT / "ofx"
GOLDEN = Path(__file__).resolve().parent / "golden" / "ofx"
CORPUS_FILES = (
    "ofx102_empty_tags_nonstandard_fields.ofx",
    "ofx102_french_bank_plus_sign.ofx",
    "ofx102_nubank_brl_creditcard.ofx",
    "ofx102_sgml_cad_longlines_tz.ofx",
    "ofx102_sgml_tab_indented_checking.ofx",
    "ofx200_decimal_comma_amounts.ofx",
    "ofx200_xml_suncorp_cdata_crlf.ofx",
    "ofx203_anz_creditcard_unclosed_tags.ofx",
    "ofx211_multi_tranlist_bank_plus_cc.ofx",
    "ofx211_two_accounts_no_transactions.ofx",
    "ofx_malformed_amount_and_date.ofx",
    "qfx102_amex_creditcard_vendor_tags.ofx",
    "qfx102_latin1_accent_correctfitid.ofx",
    "qfx102_zero_amount_minus0.ofx",
)

needs_corpus = pytest.mark.usefixtures("corpus_root")


def corpus(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


def golden_of(data: bytes) -> dict[str, Any]:
    """What parse() makes of a file, as plain JSON values (the golden file's content)."""
    try:
        statements = ofx.parse(data)
    except StatementRefused as refusal:
        return {"refused": str(refusal)}
    return {"statements": [statement_as_json(statement) for statement in statements]}


def statement_as_json(statement: Statement) -> dict[str, Any]:
    def minor(money: Money | None) -> int | None:
        return None if money is None else money.minor

    def day(value: date | None) -> str | None:
        return None if value is None else value.isoformat()

    return {
        "format": statement.format,
        "account": statement.account,
        "currency": statement.currency,
        "statement_id": statement.statement_id,
        "period": [day(statement.period_start), day(statement.period_end)],
        "opening_minor": minor(statement.opening),
        "closing_minor": minor(statement.closing),
        "lines": [
            {
                "booked": day(line.booked),
                "value_date": day(line.value_date),
                "amount_minor": line.amount.minor,
                "bank_id": line.bank_id,
                "reference": line.reference,
                "counterparty": line.counterparty,
                "description": line.description,
                "kind": line.kind,
                "location": line.location,
            }
            for line in statement.lines
        ],
        "checks": [
            {"name": check.name, "ok": check.ok, "detail": check.detail}
            for check in statement.checks()
        ],
        "notes": list(statement.notes),
    }


def write_golden() -> None:
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for name in CORPUS_FILES:
        content = json.dumps(golden_of(corpus(name)), indent=2, ensure_ascii=False)
        (GOLDEN / f"{name}.json").write_text(content + "\n", encoding="utf-8")


# The corpus, against its golden output and against EXPECTED.md


@needs_corpus
@pytest.mark.parametrize("name", CORPUS_FILES)
def test_corpus_file_matches_its_golden_output(name: str) -> None:
    golden = json.loads((GOLDEN / f"{name}.json").read_text(encoding="utf-8"))
    assert golden_of(corpus(name)) == golden


def test_every_corpus_file_has_a_golden_file() -> None:
    assert sorted(p.name.removesuffix(".json") for p in GOLDEN.glob("*.json")) == sorted(
        CORPUS_FILES
    )
    if CORPUS.is_dir():
        assert sorted(p.name for p in CORPUS.iterdir()) == sorted(CORPUS_FILES)


@dataclass(frozen=True)
class Figures:
    """One statement as EXPECTED.md gives it: amounts in minor units."""

    account: str
    currency: str
    lines: int
    credits: int
    debits: int
    closing: int | None


EXPECTED = {
    "ofx102_sgml_cad_longlines_tz.ofx": [Figures("12300 000012345678", "CAD", 3, 0, -34527, 38234)],
    "ofx102_sgml_tab_indented_checking.ofx": [Figures("1452687~7", "USD", 3, 1, -5951, 10099)],
    "ofx200_xml_suncorp_cdata_crlf.ofx": [Figures("123456789", "AUD", 1, 0, -1685, 123412)],
    "ofx203_anz_creditcard_unclosed_tags.ofx": [
        Figures("1234123412341234", "AUD", 1, 0, -550, -12345)
    ],
    "ofx211_two_accounts_no_transactions.ofx": [
        Figures("9100", "USD", 0, 0, 0, 11100),
        Figures("9200", "USD", 0, 0, 0, 22200),
    ],
    # The ledger balance is empty, and so is CURDEF: the entry's CURRENCY/CURSYM says AUD.
    "ofx102_empty_tags_nonstandard_fields.ofx": [Figures("12345678", "AUD", 1, 1234, 0, None)],
    "ofx102_nubank_brl_creditcard.ofx": [
        Figures("11111111-UUID-UUID-UUID-111111111111", "BRL", 6, 0, -128091, -128091)
    ],
    "ofx200_decimal_comma_amounts.ofx": [Figures("999988", "USD", 2, 0, -50000, 20029)],
    "qfx102_amex_creditcard_vendor_tags.ofx": [
        Figures("379700001111222", "USD", 12, 0, -35282, -235638)
    ],
    "ofx211_multi_tranlist_bank_plus_cc.ofx": [
        Figures("123456", "USD", 4, 0, -36000, 215656),
        Figures("123412341234", "USD", 0, 0, 0, -56200),
    ],
    "ofx102_french_bank_plus_sign.ofx": [Figures("01234567890", "EUR", 1, 10000, 0, 50000)],
    "qfx102_latin1_accent_correctfitid.ofx": [Figures("1452687~7", "USD", 1, 0, -5873, 10099)],
    # The "-0" entry is skipped (as ledger-autosync does): it moves no money; a note names it.
    "qfx102_zero_amount_minus0.ofx": [Figures("1452687~7", "USD", 1, 12345, 0, 10099)],
}
REFUSED = {
    "ofx_malformed_amount_and_date.ofx": (
        "This OFX file cannot be imported at line 36 (DTPOSTED of STMTTRN 1): '201120000000' "
        "is not a date (OFX writes YYYYMMDD, then the time)."
    ),
}


def test_expected_md_covers_the_corpus() -> None:
    assert sorted([*EXPECTED, *REFUSED]) == sorted(CORPUS_FILES)


@needs_corpus
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_file_has_the_figures_of_expected_md(name: str) -> None:
    statements = ofx.parse(corpus(name))
    got = [
        Figures(
            s.account,
            s.currency,
            len(s.lines),
            s.credits.minor,
            s.debits.minor,
            None if s.closing is None else s.closing.minor,
        )
        for s in statements
    ]
    assert got == EXPECTED[name]
    for statement in statements:
        assert statement.format == "ofx"
        # OFX carries no opening balance, so there is nothing to check the lines against.
        assert statement.opening is None
        assert statement.checks() == ()


@needs_corpus
@pytest.mark.parametrize("name", sorted(REFUSED))
def test_corpus_file_is_refused_with_its_reason(name: str) -> None:
    with pytest.raises(StatementRefused) as refused:
        ofx.parse(corpus(name))
    assert str(refused.value) == REFUSED[name]


@needs_corpus
def test_the_malformed_amount_is_named_once_the_date_is_right() -> None:
    data = corpus("ofx_malformed_amount_and_date.ofx").replace(b"201120000000", b"20110412")
    with pytest.raises(StatementRefused) as refused:
        ofx.parse(data)
    assert str(refused.value) == (
        "This OFX file cannot be imported at line 37 (TRNAMT of STMTTRN 1): "
        "the amount '$120' is not a number."
    )


# What EXPECTED.md's sources assert about single fields


@needs_corpus
def test_cad_long_lines_account_payee_type_and_period() -> None:
    (statement,) = ofx.parse(corpus("ofx102_sgml_cad_longlines_tz.ofx"))
    first = statement.lines[0]
    assert (first.counterparty, first.kind, first.amount) == (
        "MCDONALD'S #112",
        "POS",
        Money("-6.60", "CAD"),
    )
    assert first.booked == date(2009, 4, 1)
    assert first.raw["BANKACCTFROM/BANKID"] == "160000100"
    assert first.raw["BANKACCTFROM/BRANCHID"] == "00"
    assert (statement.period_start, statement.period_end) == (date(2009, 4, 1), date(2009, 5, 23))
    # Each line says where it is even when three sit on lines of their own.
    assert [ln.location for ln in statement.lines] == [
        "line 15, STMTTRN 1",
        "line 16, STMTTRN 2",
        "line 17, STMTTRN 3",
    ]
    # CHECKNUM 0 is "no check", not a reference to match on; raw keeps it.
    assert statement.lines[1].reference is None
    assert statement.lines[1].raw["CHECKNUM"] == "0"


@needs_corpus
def test_suncorp_cdata_payee_is_stripped_and_memo_kept() -> None:
    (statement,) = ofx.parse(corpus("ofx200_xml_suncorp_cdata_crlf.ofx"))
    (line,) = statement.lines
    assert line.counterparty == "EFTPOS WDL HANDYWAY ALDI STORE"
    assert line.description == "EFTPOS WDL HANDYWAY ALDI STORE   GEELONG WEST VICAU"


@needs_corpus
def test_two_accounts_share_the_routing_number() -> None:
    statements = ofx.parse(corpus("ofx211_two_accounts_no_transactions.ofx"))
    assert [s.statement_id for s in statements] == ["1001", "1002"]
    assert all(s.lines == () for s in statements)
    assert all(s.period_start is None and s.period_end is None for s in statements)


@needs_corpus
def test_empty_fitid_becomes_no_bank_id_with_a_note() -> None:
    (statement,) = ofx.parse(corpus("ofx102_empty_tags_nonstandard_fields.ofx"))
    (line,) = statement.lines
    assert (line.booked, line.amount, line.bank_id) == (
        date(2018, 5, 7),
        Money("12.34", "AUD"),
        None,
    )
    assert line.kind == "CREDIT" and line.raw["TRNTYPE"] == "Credit"
    assert line.raw["BANKACCTFROM/BANKID"] == "NPBS"
    assert line.raw["FITID"] == ""
    assert any("no FITID" in note for note in statement.notes)
    assert any("names no currency (CURDEF)" in note for note in statement.notes)
    assert any("no closing balance" in note for note in statement.notes)


@needs_corpus
def test_nubank_never_closes_its_banktranlist_and_still_imports_every_entry() -> None:
    (statement,) = ofx.parse(corpus("ofx102_nubank_brl_creditcard.ofx"))
    assert [line.amount.minor for line in statement.lines] == [
        -1300,
        -16290,
        -3346,
        -902,
        -10353,
        -95900,
    ]
    assert (statement.period_start, statement.period_end) == (date(2024, 2, 24), date(2024, 3, 26))


@needs_corpus
def test_amex_postings_and_balance() -> None:
    (statement,) = ofx.parse(corpus("qfx102_amex_creditcard_vendor_tags.ofx"))
    assert statement.lines[0].booked == date(2013, 12, 1)
    assert statement.lines[-1].booked == date(2013, 12, 16)
    assert statement.lines[3].amount == Money("-42.40", "USD")  # written "-42.4"
    assert statement.lines[0].reference == "320133350353869664"  # REFNUM
    # A statement written on one line: the entry number tells the lines apart.
    assert statement.lines[11].location == "line 11, STMTTRN 12"


@needs_corpus
def test_several_banktranlists_make_one_statement_in_file_order() -> None:
    bank, card = ofx.parse(corpus("ofx211_multi_tranlist_bank_plus_cc.ofx"))
    assert [ln.counterparty for ln in bank.lines] == [
        "Agrolait",
        "China Export",
        "Axelor Scuba",
        "China Scuba",
    ]
    assert bank.lines[0].booked == date(2013, 8, 24)
    assert card.lines == ()
    assert card.account == "123412341234"


@needs_corpus
def test_french_bank_line() -> None:
    (statement,) = ofx.parse(corpus("ofx102_french_bank_plus_sign.ofx"))
    assert statement.statement_id == "01234567890"
    (line,) = statement.lines
    assert (line.bank_id, line.booked, line.counterparty, line.description, line.kind) == (
        "0001",
        date(2018, 2, 21),
        "MICHAEL SCOTT PAPER COMPANY",
        "COMMUNICATION",
        "CREDIT",
    )
    assert line.amount == Money("100.00", "EUR")


@needs_corpus
def test_latin1_byte_in_a_cp1252_file_is_read_as_cp1252() -> None:
    (statement,) = ofx.parse(corpus("qfx102_latin1_accent_correctfitid.ofx"))
    (line,) = statement.lines
    assert line.counterparty == "Virement Interac à: Jean"
    assert line.raw["CORRECTACTION"] == "REPLACE"
    assert any("corrects an earlier one" in note for note in statement.notes)


@needs_corpus
def test_minus_zero_entry_is_skipped_and_named() -> None:
    (statement,) = ofx.parse(corpus("qfx102_zero_amount_minus0.ofx"))
    assert [line.bank_id for line in statement.lines] == ["FITID20161027123.45ABCDE"]
    assert (
        "Skipped the zero-amount entry at line 53, STMTTRN 2 (FITID FITID20161027-0.0ABCDE, "
        "'XXXEXTRASTUFFXXX'): it moves no money." in statement.notes
    )


@needs_corpus
def test_decimal_comma_amounts() -> None:
    (statement,) = ofx.parse(corpus("ofx200_decimal_comma_amounts.ofx"))
    assert [line.amount for line in statement.lines] == [
        Money("-200.00", "USD"),
        Money("-300.00", "USD"),
    ]
    assert statement.lines[0].reference == "1000"  # CHECKNUM


# ofxparse as an independent reader of the same files


@needs_corpus
@pytest.mark.parametrize(
    "name",
    # ofxparse (strict) refuses these two: the empty FITID and NAME, and the malformed entry.
    sorted(set(CORPUS_FILES) - {"ofx102_empty_tags_nonstandard_fields.ofx", *REFUSED}),
)
def test_agrees_with_ofxparse(name: str) -> None:
    # A declared test dependency: missing, the run fails here instead of skipping.
    import ofxparse

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bs4 warns about html.parser reading XML
        theirs = ofxparse.OfxParser.parse(io.BytesIO(corpus(name)))
    ours = ofx.parse(corpus(name))
    assert [s.account for s in ours] == [a.account_id for a in theirs.accounts]
    for statement, account in zip(ours, theirs.accounts, strict=True):
        their_lines = [t for t in account.statement.transactions if t.amount != 0]
        assert [ln.amount.as_decimal() for ln in statement.lines] == [t.amount for t in their_lines]
        assert [ln.bank_id for ln in statement.lines] == [t.id for t in their_lines]
        assert [ln.counterparty or "" for ln in statement.lines] == [t.payee for t in their_lines]
        assert statement.closing is not None
        assert statement.closing.as_decimal() == account.statement.balance


# identify


@needs_corpus
@pytest.mark.parametrize("name", CORPUS_FILES)
def test_identifies_every_corpus_file(name: str) -> None:
    assert ofx.identify(corpus(name))


def test_does_not_identify_other_formats() -> None:
    assert not ofx.identify(b'<?xml version="1.0"?><Document><BkToCstmrStmt/></Document>')
    assert not ofx.identify(b":20:STARTUMSE\r\n:25:10020030/1234567\r\n")
    assert not ofx.identify(b"01,SENDR1,RECVR1,210101,0800,1,,,2/\n")
    assert not ofx.identify(b"date,amount,payee\n2024-01-01,1.00,x\n")


def test_identify_looks_at_the_first_bytes_only() -> None:
    assert not ofx.identify(b" " * base.SNIFF_BYTES + b"<OFX>")
    assert ofx.identify(b"\r\n\r\n<ofx>")


# Refusals: one sentence, with the place


def sgml(entries: str, *, curdef: str = "USD", header: str = "", extra: str = "") -> bytes:
    """A small OFX 1.02 bank statement around `entries` (STMTTRN elements)."""
    text = (
        f"OFXHEADER:100\nDATA:OFXSGML\nVERSION:102\nENCODING:USASCII\nCHARSET:1252\n{header}\n"
        "<OFX>\n<BANKMSGSRSV1><STMTTRNRS><TRNUID>7\n<STMTRS>\n"
        f"<CURDEF>{curdef}\n"
        "<BANKACCTFROM><BANKID>111<ACCTID>42<ACCTTYPE>CHECKING</BANKACCTFROM>\n"
        "<BANKTRANLIST><DTSTART>20240101<DTEND>20240131\n"
        f"{entries}"
        "</BANKTRANLIST>\n"
        "<LEDGERBAL><BALAMT>10.00<DTASOF>20240131</LEDGERBAL>\n"
        f"{extra}</STMTRS></STMTTRNRS></BANKMSGSRSV1>\n</OFX>\n"
    )
    return text.encode("cp1252")


def entry(amount: str = "-1.00", posted: str = "20240105", **fields: str) -> str:
    more = "".join(f"<{key}>{value}\n" for key, value in fields.items())
    return (
        f"<STMTTRN>\n<TRNTYPE>DEBIT\n<DTPOSTED>{posted}\n<TRNAMT>{amount}\n<FITID>F1\n"
        f"{more}</STMTTRN>\n"
    )


def refusal(data: bytes) -> str:
    with pytest.raises(StatementRefused) as refused:
        ofx.parse(data)
    return str(refused.value)


def test_the_small_statement_imports() -> None:
    (statement,) = ofx.parse(sgml(entry(NAME="A &amp; B", MEMO="x")))
    (line,) = statement.lines
    assert (statement.account, statement.statement_id, line.counterparty) == ("42", "7", "A & B")
    assert line.location == "line 13, STMTTRN 1"
    assert line.raw["CURDEF"] == "USD"


@pytest.mark.parametrize(
    ("amount", "problem"),
    [
        ("NaN", "the amount 'NaN' is not a number"),
        ("Infinity", "the amount 'Infinity' is not a number"),
        ("1E+3", "the amount '1E+3' is not a number"),
        ("1,000.00", "the amount '1,000.00' is not a number"),
        ("1.005", "the amount '1.005' has more decimals than USD allows (2)"),
        ("9" * 60, f"the amount '{'9' * 39}…' is not a number"),
    ],
)
def test_amounts_that_are_not_plain_numbers_are_refused(amount: str, problem: str) -> None:
    assert refusal(sgml(entry(amount))) == (
        f"This OFX file cannot be imported at line 16 (TRNAMT of STMTTRN 1): {problem}."
    )


def test_amounts_with_decimal_comma_sign_and_spare_zeros_are_exact() -> None:
    entries = entry("+0,10") + entry("0.2000") + entry("-.30") + entry("5")
    (statement,) = ofx.parse(sgml(entries))
    assert [line.amount.minor for line in statement.lines] == [10, 20, -30, 500]


def test_null_amount_is_skipped_like_a_zero() -> None:
    (statement,) = ofx.parse(sgml(entry("null") + entry("-2.00")))
    assert [line.amount.minor for line in statement.lines] == [-200]


def test_dates_keep_the_banks_day_whatever_the_zone() -> None:
    (statement,) = ofx.parse(sgml(entry(posted="20240105233000.000[-8:PST]", DTAVAIL="20240107")))
    (line,) = statement.lines
    assert (line.booked, line.value_date) == (date(2024, 1, 5), date(2024, 1, 7))


@pytest.mark.parametrize("posted", ["20241305", "2024-01-05", "20240230", "yesterday"])
def test_bad_dates_are_refused(posted: str) -> None:
    assert refusal(sgml(entry(posted=posted))) == (
        f"This OFX file cannot be imported at line 15 (DTPOSTED of STMTTRN 1): '{posted}' is "
        "not a date (OFX writes YYYYMMDD, then the time)."
    )


def test_an_entry_without_amount_or_date_is_refused() -> None:
    no_amount = "<STMTTRN><TRNTYPE>DEBIT<DTPOSTED>20240105<FITID>F1</STMTTRN>\n"
    assert refusal(sgml(no_amount)) == (
        "This OFX file cannot be imported at line 13, STMTTRN 1: the entry has no amount (TRNAMT)."
    )
    no_date = "<STMTTRN><TRNTYPE>DEBIT<TRNAMT>1.00<FITID>F1</STMTTRN>\n"
    assert refusal(sgml(no_date)) == (
        "This OFX file cannot be imported at line 13, STMTTRN 1: the entry has no posting date "
        "(DTPOSTED)."
    )


def test_a_second_amount_in_one_entry_is_refused() -> None:
    assert refusal(sgml(entry(TRNAMT="-2.00"))) == (
        "This OFX file cannot be imported at line 18 (TRNAMT of STMTTRN 1): the entry has a "
        "second TRNAMT (the first is at line 16)."
    )


def test_a_line_in_another_currency_is_refused() -> None:
    foreign = entry().replace(
        "</STMTTRN>", "<CURRENCY><CURRATE>1.1<CURSYM>EUR</CURRENCY></STMTTRN>"
    )
    assert refusal(sgml(foreign)) == (
        "This OFX file cannot be imported at line 13, STMTTRN 1: the entry is in EUR "
        "(CURRENCY/CURSYM), not in the statement's USD."
    )


def test_an_unknown_or_missing_currency_is_refused() -> None:
    assert refusal(sgml(entry(), curdef="XYZ")) == (
        "This OFX file cannot be imported at line 10 (CURDEF): it gives 'XYZ', which is not an "
        "active ISO 4217 currency."
    )
    assert refusal(sgml(entry(), curdef="")) == (
        "This OFX file cannot be imported at line 9: this STMTRS names no currency (CURDEF)."
    )


def test_broken_structure_is_refused_with_the_place() -> None:
    unclosed_entry = entry().replace("</STMTTRN>\n", "")
    assert refusal(sgml(entry() + unclosed_entry)) == (
        "This OFX file cannot be imported at line 24: </BANKTRANLIST> comes while <STMTTRN> "
        "(line 19) is still open."
    )
    assert refusal(sgml(entry(), extra="</BOGUS>")) == (
        "This OFX file cannot be imported at line 21: </BOGUS> closes nothing that is open."
    )
    assert refusal(sgml(entry(), extra=entry())) == (
        "This OFX file cannot be imported at line 21: this STMTTRN is not part of a statement."
    )
    assert refusal(sgml(entry()) + b"<OFX></OFX>") == (
        "This OFX file cannot be imported at line 23: there is more after the closing </OFX> tag."
    )
    assert refusal(b"<BANKMSGSRSV1></BANKMSGSRSV1>") == (
        "This OFX file cannot be imported at line 1: the file must start with <OFX>, not with "
        "<BANKMSGSRSV1>."
    )
    assert refusal(sgml(entry(), extra="stray words\n")) == (
        "This OFX file cannot be imported at line 21: the text 'stray words' is not the value "
        "of any element."
    )


def test_a_file_without_statements_is_refused_with_the_banks_status() -> None:
    data = (
        b"<OFX><BANKMSGSRSV1><STMTTRNRS><TRNUID>1<STATUS><CODE>2000<SEVERITY>ERROR"
        b"<MESSAGE>General error</STATUS></STMTTRNRS></BANKMSGSRSV1></OFX>"
    )
    assert refusal(data) == (
        "This OFX file cannot be imported: it holds no bank or credit-card statement (STMTRS "
        "or CCSTMTRS); the bank answered with status 2000: 'General error'."
    )


def test_an_investment_statement_is_refused() -> None:
    data = b"<OFX><INVSTMTMSGSRSV1><INVSTMTTRNRS><INVSTMTRS></INVSTMTRS></INVSTMTTRNRS></OFX>"
    assert refusal(data) == (
        "This OFX file cannot be imported at line 1: it holds an investment statement "
        "(INVSTMTRS), which is not a bank statement."
    )


@needs_corpus
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_cut_short_corpus_file_is_refused(name: str) -> None:
    data = corpus(name)
    end = data.rindex(b"</OFX>")
    for cut in range(0, end, max(1, end // 60)):
        with pytest.raises(StatementRefused):
            ofx.parse(data[:cut])


# Encodings


def xml(name: str, declared: str = "UTF-8") -> str:
    return (
        f'<?xml version="1.0" encoding="{declared}"?>\n'
        '<?OFX OFXHEADER="200" VERSION="211" SECURITY="NONE"?>\n'
        "<OFX><BANKMSGSRSV1><STMTTRNRS><TRNUID>1</TRNUID><STMTRS><CURDEF>EUR</CURDEF>"
        "<BANKACCTFROM><BANKID>1</BANKID><ACCTID>2</ACCTID></BANKACCTFROM><BANKTRANLIST>"
        "<STMTTRN><TRNTYPE>CREDIT</TRNTYPE><DTPOSTED>20240105</DTPOSTED><TRNAMT>5.00</TRNAMT>"
        f"<FITID>9</FITID><NAME>{name}</NAME></STMTTRN></BANKTRANLIST></STMTRS></STMTTRNRS>"
        "</BANKMSGSRSV1></OFX>\n"
    )


def test_xml_in_utf8_reads_accents() -> None:
    (statement,) = ofx.parse(xml("Société Générale ąč").encode("utf-8"))
    assert statement.lines[0].counterparty == "Société Générale ąč"
    assert statement.notes == (
        "The file gives no closing balance (LEDGERBAL), so nothing is checked.",
    )


def test_xml_declared_ascii_with_other_bytes_is_read_as_cp1252_with_a_note() -> None:
    (statement,) = ofx.parse(xml("Crédit", "us-ascii").encode("cp1252"))
    assert statement.lines[0].counterparty == "Crédit"
    assert statement.notes[0] == (
        "The file says it is ASCII but holds other bytes; they were read as Windows-1252."
    )


def test_xml_in_latin1_as_declared() -> None:
    (statement,) = ofx.parse(xml("Crédit", "ISO-8859-1").encode("latin-1"))
    assert statement.lines[0].counterparty == "Crédit"


def test_undeclared_encoding_that_is_not_utf8_is_read_as_cp1252_with_a_note() -> None:
    data = xml("Crédit").replace('encoding="UTF-8"', "").encode("cp1252")
    (statement,) = ofx.parse(data)
    assert statement.lines[0].counterparty == "Crédit"
    assert "it was read as Windows-1252" in statement.notes[0]


def test_wrong_encodings_are_refused_with_the_line() -> None:
    assert refusal(xml("Cr\u00e9dit").encode("latin-1")) == (
        "This OFX file cannot be imported at line 3: the byte 0xE9 is not UTF-8 text, the "
        "encoding its XML declaration names."
    )
    # 0x81 is no character in Windows-1252.
    data = sgml(entry(NAME="xQy")).replace(b"xQy", b"x\x81y")
    assert refusal(data) == (
        "This OFX file cannot be imported at line 18: the byte 0x81 is not Windows-1252 text, "
        "the encoding its header names."
    )
    assert refusal(sgml(entry()).replace(b"ENCODING:USASCII", b"ENCODING:EBCDIC")) == (
        "This OFX file cannot be imported: its header names ENCODING 'EBCDIC', which is not "
        "USASCII or UTF-8."
    )
    assert refusal(xml("x", "utf-16").encode("utf-8")) == (
        "This OFX file cannot be imported: its XML declaration names encoding 'utf-16', which "
        "billing-desk cannot read."
    )
    assert refusal(xml("x").encode("utf-16")) == (
        "This OFX file cannot be imported at line 1: it holds NUL bytes, so it is a binary "
        "file or UTF-16 text, not OFX."
    )


def test_sgml_header_naming_utf8() -> None:
    data = sgml(entry(NAME="QQ")).replace(b"ENCODING:USASCII", b"ENCODING:UTF-8")
    (statement,) = ofx.parse(data.replace(b"QQ", "Zürich".encode()))
    assert statement.lines[0].counterparty == "Zürich"


# Hostile files: refused quickly (linear time), nothing expanded, bounded memory


def test_entities_are_never_expanded() -> None:
    laughs = (
        '<!DOCTYPE ofx [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
        '<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
    )
    text = xml("&b;&xxe;&#65;&#x42;&amp;").replace("?>\n<OFX>", "?>\n" + laughs + "<OFX>")
    try:
        statements = ofx.parse(text.encode("utf-8"))
    except StatementRefused:
        return
    assert statements[0].lines[0].counterparty == "&b;&xxe;AB&"


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"<OFX>" + b"<?" * 200_000, "at line 1: a declaration is never closed (no '>')"),
        (b"<OFX><A>" + b"<![CDATA[" * 100_000, "at line 1: a CDATA section is never closed"),
        (b"<OFX><A>" + b"<!--" * 200_000, "at line 1: a comment is never closed (no '-->')"),
        (b"<OFX>" + b"<A>" * 200_000 + b"</A></OFX>", "its elements are nested more than 32"),
        (b"<OFX>" + b"</A>" * 200_000, "at line 1: </A> closes nothing that is open"),
        (b"<OFX><A>" + b"<" * 500_000, "the file ends while <OFX> (line 1) is still open"),
        ((b"<A" + b" " * 10_000) * 100, "it has no <OFX> element"),
        (b"", "it has no <OFX> element"),
        (bytes(range(1, 256)), "the byte 0x81 is not Windows-1252 text"),
    ],
)
def test_pathological_input_is_refused(data: bytes, problem: str) -> None:
    assert problem in refusal(data)


def test_too_many_elements_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ofx, "MAX_ELEMENTS", 40)
    assert refusal(sgml(entry() * 10)) == (
        "This OFX file cannot be imported at line 46: it holds more than 40 elements, too many "
        "for a statement."
    )


def test_too_large_is_refused_before_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("billing_desk.importers.statements.base.MAX_STATEMENT_BYTES", 100)
    assert refusal(sgml(entry())) == (
        "This OFX file cannot be imported: it is 0 MB, larger than the 0 MB a statement may be."
    )


def test_a_long_statement_reads_in_one_pass() -> None:
    # ofxparse's SGML pass is quadratic: this file would take it about 40 seconds.
    many = "".join(entry(f"-{n % 100}.01", FITID=f"X{n}") for n in range(20_000))
    (statement,) = ofx.parse(sgml(many.replace("<FITID>F1\n", "")))
    assert len(statement.lines) == 20_000
    assert statement.lines[-1].location.endswith("STMTTRN 20000")


# Fuzzing: mutated corpus files and random bytes raise nothing but StatementRefused

SEEDS = [corpus(name) for name in CORPUS_FILES] if CORPUS.is_dir() else [sgml(entry())]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["flip", "cut", "delete", "insert", "repeat"]))
        if action == "flip" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif action == "cut":
            del data[at:]
        elif action == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        elif action == "insert":
            data[at:at] = draw(
                st.one_of(
                    st.binary(max_size=16),
                    st.sampled_from([b"<", b">", b"</STMTTRN>", b"<STMTTRN>", b"&", b"]]>"]),
                )
            )
        elif action == "repeat":
            data[at:at] = data[at : at + draw(st.integers(1, 200))] * draw(st.integers(2, 5))
    return bytes(data)


def imports_or_refuses(data: bytes) -> None:
    try:
        statements = ofx.parse(data)
    except StatementRefused:
        return
    for statement in statements:
        assert statement.account
        for line in statement.lines:
            assert line.amount.currency == statement.currency
            assert not line.amount.is_zero()
            assert line.location.startswith("line ")


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(mutated())
def test_mutated_corpus_files_import_or_are_refused(data: bytes) -> None:
    imports_or_refuses(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2048))
def test_random_bytes_are_refused(data: bytes) -> None:
    imports_or_refuses(b"OFXHEADER:100\n\n<OFX>" + data)
    imports_or_refuses(data)


if __name__ == "__main__":
    if sys.argv[1:] == ["--write-golden"]:
        write_golden()
    else:
        sys.exit("usage: python tests/importers/test_statement_ofx.py --write-golden")
