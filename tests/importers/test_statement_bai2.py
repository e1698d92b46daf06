"""The BAI2 importer: every corpus file imports to its golden output and to the figures in
EXPECTED.md; the trailers' totals and counts are findings, never refusals; broken and hostile
files are refused with one sentence naming the record; nothing else escapes.

Regenerate the golden files after a deliberate change with
`.venv/bin/python tests/importers/test_statement_bai2.py`, then review the diff.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing_desk.domain.money import Money
from billing_desk.domain.statements import Statement, StatementRefused
from billing_desk.importers.statements import bai2
from tests.corpus import CORPUS_ROOT

CORPUS = CORPUS_ROOT / "bai2"
GOLDEN = Path(__file__).resolve().parent / "golden" / "bai2"
CORPUS_FILES = sorted(CORPUS.glob("*.bai2")) if CORPUS.is_dir() else []
needs_corpus = pytest.mark.usefixtures("corpus_root")


def golden_of(data: bytes) -> dict[str, Any]:
    """What the importer makes of a file, as plain JSON."""
    try:
        statements = bai2.parse(data)
    except StatementRefused as refused:
        return {"refused": str(refused)}
    return {"statements": [_statement_json(statement) for statement in statements]}


def _statement_json(statement: Statement) -> dict[str, Any]:
    def minor(money: Money | None) -> int | None:
        return None if money is None else money.minor

    def day(value: date | None) -> str | None:
        return None if value is None else value.isoformat()

    return {
        "account": statement.account,
        "currency": statement.currency,
        "statement_id": statement.statement_id,
        "period": [day(statement.period_start), day(statement.period_end)],
        "opening_minor": minor(statement.opening),
        "closing_minor": minor(statement.closing),
        "notes": list(statement.notes),
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
    }


def write_goldens() -> None:
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for path in CORPUS_FILES:
        text = json.dumps(golden_of(path.read_bytes()), indent=2, ensure_ascii=False)
        (GOLDEN / f"{path.name}.json").write_text(text + "\n", encoding="utf-8")


def parsed(name: str) -> list[Statement]:
    return bai2.parse((CORPUS / name).read_bytes())


def failing(statements: list[Statement]) -> set[str]:
    return {check.name for statement in statements for check in statement.checks() if not check.ok}


def sums(statements: list[Statement]) -> tuple[int, int, int, int]:
    """(credit count, credit minor units, debit count, debit minor units) over all lines."""
    lines = [line for statement in statements for line in statement.lines]
    credits = [line.amount.minor for line in lines if line.amount.minor > 0]
    debits = [line.amount.minor for line in lines if line.amount.minor < 0]
    return len(credits), sum(credits), len(debits), sum(debits)


def detail(statements: list[Statement], name: str) -> str:
    """The detail of the first check called `name` (group and file checks repeat)."""
    return next(c.detail for s in statements for c in s.checks() if c.name == name)


# -- the corpus ----------------------------------------------------------------------------------


@needs_corpus
@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda path: path.name)
def test_each_corpus_file_matches_its_golden_output(path: Path) -> None:
    golden = json.loads((GOLDEN / f"{path.name}.json").read_text(encoding="utf-8"))
    assert golden_of(path.read_bytes()) == golden
    assert bai2.identify(path.read_bytes())


@needs_corpus
def test_citi_gbp_one_credit_carried_by_seven_continuations() -> None:
    statements = parsed("bai2_citi_gbp_88_continuations.bai2")
    assert [(s.account, s.currency) for s in statements] == [("77777777", "GBP")]
    assert sums(statements) == (1, 1, 0, 0)
    (line,) = statements[0].lines
    assert (line.kind, line.bank_id, line.reference) == ("191", "1234567890", "RP12312312312312")
    assert line.value_date == date(2015, 7, 15)
    assert line.description is not None
    assert line.description.startswith("FR:FP SIP INCOMING ENDT:20150715 TRID:")
    assert line.description.endswith("BO:11111111 BO1:DOE JO")
    assert detail(statements, "account control total (49)").endswith(
        "declares 20001, the amounts sum to 20001"
    )
    assert (
        detail(statements, "file record count (99)")
        == "the file trailer (99) declares 14, the file holds 14"
    )
    # Opening 100.00 and closing 100.00 around a 0.01 credit: the file's own figures.
    assert failing(statements) == {"balance"}


@needs_corpus
def test_natwest_text_split_at_column_80_joins_without_a_blank() -> None:
    statements = parsed("bai2_natwest_hhmmss_time_88_text.bai2")
    assert sums(statements) == (1, 89, 4, -2765)
    assert statements[0].account == "88888888 600004"
    assert statements[0].currency == "GBP"
    last = statements[0].lines[-1]
    assert last.description is not None
    assert last.description.endswith("INTERNATIONAL-5373 CLIENT SECCY AC TFR")
    assert detail(statements, "file control total (99)").endswith(
        "declares 143764, the amounts sum to 143764"
    )
    assert detail(statements, "file record count (99)").endswith("declares 18, the file holds 18")
    assert failing(statements) == set()


@needs_corpus
def test_svb_two_groups_two_credits() -> None:
    statements = parsed("bai2_svb_two_groups_summary_88.bai2")
    assert [(s.account, s.period_start) for s in statements] == [
        ("1234567890", date(2022, 2, 1)),
        ("1234567890", date(2022, 2, 2)),
    ]
    assert sums(statements) == (2, 490196 + 905800, 0, 0)
    assert [c.detail for c in statements[0].checks() if c.name == "account control total (49)"] == [
        "the account trailer (49) declares 138884258, the amounts sum to 138884258"
    ]
    assert [c.detail for c in statements[1].checks() if c.name == "account control total (49)"] == [
        "the account trailer (49) declares 143145938, the amounts sum to 143145938"
    ]
    assert detail(statements, "file control total (99)").endswith(
        "declares 282030196, the amounts sum to 282030196"
    )
    assert detail(statements, "file group count (99)").endswith("declares 2, the file holds 2")
    assert detail(statements, "file record count (99)").endswith("declares 20, the file holds 20")
    assert failing(statements) == set()


@needs_corpus
def test_blank_account_trailer_totals_still_import() -> None:
    statements = parsed("bai2_blank_account_trailer_amount.bai2")
    assert [(s.account, s.currency, len(s.lines)) for s in statements] == [
        ("12345", "USD", 0),
        ("54321", "USD", 0),
    ]
    assert all("US dollars (USD)" in s.notes[0] for s in statements)
    assert detail(statements, "account control total (49)").startswith(
        "the account trailer (49) leaves the control total blank"
    )
    assert detail(statements, "group control total (98)").endswith(
        "declares 0, the amounts sum to 0"
    )
    assert detail(statements, "file record count (99)").endswith("declares 8, the file holds 8")
    assert failing(statements) == set()


@needs_corpus
def test_cad_returned_cheques() -> None:
    statements = parsed("bai2_cad_two_accounts_returned_cheques.bai2")
    assert [(s.account, s.currency, len(s.lines)) for s in statements] == [
        ("10200123456", "CAD", 11),
        ("10200123456", "CAD", 6),
    ]
    assert sums(statements) == (5, 320000, 12, -320000)
    first = statements[0].lines[0]
    assert (first.kind, first.amount, first.description) == (
        "409",
        Money("-25.00", "CAD"),
        "RETURNED CHEQUE",
    )
    assert first.value_date == date(2006, 3, 16)
    assert [
        c.detail for s in statements for c in s.checks() if c.name.startswith("account control")
    ] == [
        "the account trailer (49) declares 834000, the amounts sum to 834000",
        "the account trailer (49) declares 446000, the amounts sum to 446000",
    ]
    assert detail(statements, "group control total (98)").endswith(
        "declares 1280000, the amounts sum to 1280000"
    )
    assert detail(statements, "file record count (99)").endswith("declares 27, the file holds 27")
    assert failing(statements) == set()


@needs_corpus
def test_spec_example_groups_and_funds_types() -> None:
    statements = parsed("bai2_spec_example_3_groups_funds_types.bai2")
    assert len(statements) == 5
    assert len({(s.period_start, s.account) for s in statements}) == 5
    assert sums(statements) == (4, 30950000, 0, 0)
    # '88,-1500000,,/' finishes the 040 summary started by '...,040/': the 49 total only adds
    # up when the continuation is joined at that field.
    assert statements[1].opening == Money("-5000.00", "USD")
    letter_of_credit = statements[2].lines[0]
    assert (letter_of_credit.bank_id, letter_of_credit.reference) == ("SP4738", "YRC065321")
    assert letter_of_credit.description == "PROCEEDS OF LETTER OF CREDIT FROM THE ARAMCO OIL CO"
    assert letter_of_credit.value_date == date(2004, 6, 22)
    assert detail(statements, "file control total (99)").endswith(
        "declares 345450000, the amounts sum to 345450000"
    )
    assert detail(statements, "file group count (99)").endswith("declares 4, the file holds 4")
    assert detail(statements, "file record count (99)").endswith("declares 31, the file holds 31")
    assert failing(statements) == set()


@needs_corpus
def test_several_records_on_one_line() -> None:
    statements = parsed("bai2_multiple_records_per_line.bai2")
    assert len(statements) == 15
    assert sum(len(s.lines) for s in statements) == 26
    assert sums(statements) == (13, 39713, 13, -59418)
    # Two details on physical line 3, the record broken over lines 18-19 counted once.
    assert [line.location for line in statements[0].lines[:3]] == [
        "record 4 (line 3)",
        "record 5 (line 3)",
        "record 6 (line 4)",
    ]
    assert statements[7].lines[0].location == "record 29 (line 18)"
    assert detail(statements, "file control total (99)").endswith(
        "declares 2508440, the amounts sum to 2508440"
    )
    assert detail(statements, "file record count (99)").endswith("declares 74, the file holds 74")
    assert failing(statements) == set()


@needs_corpus
def test_goldman_inconsistent_trailers_are_findings_not_refusals() -> None:
    statements = parsed("bai2_goldman_newline_delimited_no_slash.bai2")
    assert len(statements) == 5
    assert sum(len(s.lines) for s in statements) == 17
    assert sums(statements) == (9, 600731, 8, -31349055)
    reject = statements[1].lines[1]
    assert reject.kind == "261"
    assert reject.description is not None
    assert reject.description.startswith('ACH Credit Reject,From: TEST INC, Remittance Info: "ACH-')
    assert reject.description.endswith("DABA: 026015079")
    assert (
        detail(statements, "file record count (99)")
        == "the file trailer (99) declares 18, the file holds 116"
    )
    assert (
        detail(statements, "group record count (98)")
        == "the group trailer (98) declares 16, the file holds 114"
    )
    assert detail(statements, "group control total (98)").startswith(
        "the group trailer (98) declares 13060195162"
    )
    assert {"file record count (99)", "group record count (98)"} <= failing(statements)


# -- made-up files for what the corpus does not show --------------------------------------------

JPY_FILE = """01,BANK,CUST,240102,0800,F1,,,2/
02,CUST,BANK,1,240101,2400,JPY,2/
03,555,,010,100000,,,015,101500,,/
16,195,2500,0,BR1,CR1,WIRE IN/
16,475,1000,,BR2,,CHECK 12/
49,205000,4/
98,205000,1,6/
99,205000,1,8/
"""


def refusal(text: str | bytes) -> str:
    with pytest.raises(StatementRefused) as refused:
        bai2.parse(text.encode() if isinstance(text, str) else text)
    return str(refused.value)


def test_amounts_are_minor_units_of_the_currency_yen_has_none() -> None:
    (statement,) = bai2.parse(JPY_FILE.encode())
    assert statement.currency == "JPY"
    assert statement.opening == Money(100000, "JPY")
    assert statement.closing == Money(101500, "JPY")
    assert [line.amount for line in statement.lines] == [Money(2500, "JPY"), Money(-1000, "JPY")]
    first, second = statement.lines
    assert (first.bank_id, first.reference, first.description, first.kind) == (
        "BR1",
        "CR1",
        "WIRE IN",
        "195",
    )
    assert first.raw["amount"] == "2500"
    assert first.raw["record"] == "16,195,2500,0,BR1,CR1,WIRE IN/"
    assert (second.booked, second.reference, second.location) == (
        date(2024, 1, 1),
        None,
        "record 5 (line 5)",
    )
    assert statement.statement_id == "F1"
    assert statement.notes == ()
    assert all(check.ok for check in statement.checks())


def test_the_account_currency_wins_over_the_group_currency() -> None:
    (statement,) = bai2.parse(JPY_FILE.replace("03,555,,", "03,555,USD,").encode())
    assert statement.currency == "USD"
    assert statement.lines[0].amount == Money("25.00", "USD")


def test_crlf_and_a_byte_order_mark_read_the_same() -> None:
    crlf = b"\xef\xbb\xbf" + JPY_FILE.replace("\n", "\r\n").encode()
    assert bai2.identify(crlf)
    assert bai2.parse(crlf) == bai2.parse(JPY_FILE.encode())


def test_a_failing_trailer_is_a_finding_not_a_refusal() -> None:
    (statement,) = bai2.parse(JPY_FILE.replace("49,205000,4/", "49,205001,5/").encode())
    checks = {check.name: check for check in statement.checks()}
    assert not checks["account control total (49)"].ok
    assert checks["account control total (49)"].detail == (
        "the account trailer (49) declares 205001, the amounts sum to 205000"
    )
    assert not checks["account record count (49)"].ok
    assert checks["group control total (98)"].ok
    assert checks["balance"].ok


def test_a_type_code_missing_from_the_library_list_takes_its_sign_from_the_range() -> None:
    (statement,) = bai2.parse(JPY_FILE.replace("16,195,", "16,103,").encode())
    assert statement.lines[0].amount == Money(2500, "JPY")
    assert statement.lines[0].kind == "103"


def test_a_blank_availability_amount_reads_as_zero() -> None:
    text = JPY_FILE.replace("16,195,2500,0,", "16,195,2500,S,,2500,0,")
    (statement,) = bai2.parse(text.encode())
    assert statement.lines[0].bank_id == "BR1"
    assert statement.lines[0].raw["funds_type"] == "S"


def test_detail_text_continued_by_88_records() -> None:
    text = JPY_FILE.replace("CHECK 12/\n", "CHECK 12, ROOM 5\n88,PAID BY J. DOE\n").replace(
        ",4/\n98", ",5/\n98"
    )
    text = text.replace("98,205000,1,6/", "98,205000,1,7/").replace(
        "99,205000,1,8/", "99,205000,1,9/"
    )
    (statement,) = bai2.parse(text.encode())
    assert statement.lines[1].description == "CHECK 12, ROOM 5 PAID BY J. DOE"
    assert all(check.ok for check in statement.checks())


def test_no_currency_anywhere_means_us_dollars_and_says_so() -> None:
    (statement,) = bai2.parse(JPY_FILE.replace(",JPY,", ",,").encode())
    assert statement.currency == "USD"
    assert statement.notes == (
        "Neither the account identifier (03) nor the group header (02) names a currency; "
        "BAI2 then means US dollars (USD).",
    )


def test_latin1_text_is_read_with_a_note() -> None:
    (statement,) = bai2.parse(JPY_FILE.encode().replace(b"WIRE IN", b"WIRE M\xdcLLER"))
    assert statement.lines[0].description == "WIRE MÜLLER"
    assert statement.notes == ("The file is not UTF-8; its text was read as Latin-1.",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            JPY_FILE.replace(",JPY,", ",XYZ,"),
            "This bai2 file cannot be imported at record 3 (line 3): it gives 'XYZ', which is "
            "not an active ISO 4217 currency.",
        ),
        (
            JPY_FILE.replace("16,195,", "16,890,"),
            "This bai2 file cannot be imported at record 4 (line 4): the transaction detail has "
            "type code 890, which is neither a credit (100-399) nor a debit (400-699).",
        ),
        (
            JPY_FILE.replace("16,195,2500,", "16,195,-2500,"),
            "This bai2 file cannot be imported at record 4 (line 4): the transaction detail "
            "gives '-2500' where an unsigned whole number of minor units belongs.",
        ),
        (
            JPY_FILE.replace("16,195,2500,", "16,195,,"),
            "This bai2 file cannot be imported at record 4 (line 4): the transaction detail "
            "gives no amount where an unsigned whole number of minor units belongs.",
        ),
        (
            JPY_FILE.split("49,")[0],
            "This bai2 file cannot be imported at record 5 (line 5): the file ends with a "
            "transaction detail (16) and no file trailer (99), so it is incomplete.",
        ),
        (
            JPY_FILE.replace("03,555,,010,100000,,,015,101500,,/\n", ""),
            "This bai2 file cannot be imported at record 3 (line 3): a transaction detail (16) "
            "cannot follow a group header (02).",
        ),
        (
            JPY_FILE + "01,BANK,CUST,240102,0800,F2,,,2/\n",
            "This bai2 file cannot be imported at record 9 (line 9): a file header (01) follows "
            "the file trailer (99).",
        ),
        (
            "88,HELLO\n" + JPY_FILE,
            "This bai2 file cannot be imported at record 1 (line 1): it begins with a "
            "continuation (88).",
        ),
        (
            JPY_FILE.replace(",,,2/", ",,,3/"),
            "This bai2 file cannot be imported at record 1 (line 1): it is not BAI version 2 "
            "(Only BAI version 2 supported).",
        ),
        (
            JPY_FILE.replace("240101", "24011"),
            "This bai2 file cannot be imported at record 2 (line 2): the group header (02) gives "
            "'24011' where a YYMMDD as-of date belongs.",
        ),
        (
            JPY_FILE.replace("16,195,2500,0,", "16,195,2500,Q,"),
            "This bai2 file cannot be imported at record 4 (line 4): the transaction detail (16) "
            "holds a field that cannot be read ('Q' is not a valid FundsType).",
        ),
        (
            JPY_FILE.replace("49,205000,4/", "49,2O5000,4/"),
            "This bai2 file cannot be imported at record 6 (line 6): the account trailer (49) "
            "control total '2O5000' is not a number.",
        ),
        (
            "HELLO,WORLD\n" + JPY_FILE,
            "This bai2 file cannot be imported at line 1: it does not begin with a 01 file header.",
        ),
        (
            "  \n\n",
            "This bai2 file cannot be imported: it is empty.",
        ),
        (
            JPY_FILE.encode().replace(b"WIRE", b"WI\x00E"),
            "This bai2 file cannot be imported at line 4: it holds the control character 0x00, "
            "so it is not BAI2 text.",
        ),
    ],
    ids=[
        "unknown currency",
        "type code out of range",
        "signed detail amount",
        "blank detail amount",
        "truncated after a detail",
        "detail without account",
        "record after the file trailer",
        "continuation first",
        "not a record",
        "version 3",
        "bad as-of date",
        "unknown funds type",
        "letter in a control total",
        "empty",
        "binary",
    ],
)
def test_broken_files_are_refused_naming_the_record(text: str | bytes, message: str) -> None:
    assert refusal(text) == message


def test_an_enormous_record_is_refused_before_the_library_sees_it() -> None:
    summaries = ",".join(["010,1,,"] * 3000)
    text = JPY_FILE.replace("03,555,,010,100000,,,015,101500,,/", f"03,555,,{summaries}/")
    assert "far more than any BAI2 record" in refusal(text)


def test_identify_knows_a_bai2_header_and_nothing_else() -> None:
    assert bai2.identify(JPY_FILE.encode())
    assert bai2.identify(b"01,NWBKGB2L,9876543,100215,14:59:35,2215,,,2/\n")
    assert not bai2.identify(b":20:STATEMENT\n:25:123\n")
    assert not bai2.identify(b"OFXHEADER:100\nDATA:OFXSGML\n")
    assert not bai2.identify(b"01,02,03,04\n05,06,07,08\n")
    assert not bai2.identify(JPY_FILE.replace(",,,2/", ",,,3/").encode())
    assert not bai2.identify(b"")


# -- hostile input -------------------------------------------------------------------------------


@contextmanager
def hang_guard(seconds: int = 30) -> Iterator[None]:
    """Turns a parse that never ends into a failure instead of a stuck test run."""

    if not hasattr(signal, "SIGALRM"):  # Windows: no alarm, the run itself shows a hang
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise AssertionError(f"the parse did not finish within {seconds} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


SEEDS = [path.read_bytes() for path in CORPUS_FILES] + [JPY_FILE.encode()]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["cut", "drop", "insert", "flip", "repeat"]))
        if action == "cut":
            del data[at:]
        elif action == "drop":
            del data[at : at + draw(st.integers(1, 40))]
        elif action == "insert":
            data[at:at] = draw(
                st.one_of(
                    st.binary(max_size=20),
                    st.sampled_from(
                        [
                            b"/",
                            b",",
                            b"\n",
                            b"88,",
                            b"16,",
                            b"03,",
                            b"49,",
                            b"/ 16,",
                            b"D,",
                            b"V,",
                            b"S,",
                        ]
                    ),
                )
            )
        elif action == "flip" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif action == "repeat":
            data[at:at] = bytes(data[at : at + draw(st.integers(1, 200))]) * draw(
                st.integers(1, 50)
            )
    return bytes(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(mutated(), st.binary(max_size=600)))
def test_nothing_but_a_refusal_escapes(data: bytes) -> None:
    with hang_guard():
        try:
            statements = bai2.parse(data)
        except StatementRefused as refused:
            assert str(refused).startswith("This bai2 file cannot be imported")
            return
    for statement in statements:
        assert statement.format == "bai2"
        for line in statement.lines:
            assert line.amount.currency == statement.currency
            assert line.location.startswith("record ")
        statement.checks()


if __name__ == "__main__":
    write_goldens()
