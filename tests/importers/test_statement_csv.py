"""The CSV importer and its column mappings: every corpus file is read through a guessed mapping
to its golden output and to the figures in EXPECTED.md, or the guess is refused with a pinned
sentence and an explicit mapping reads the file; mappings survive their JSON record and refuse
contradictions; broken and hostile files are refused with one sentence naming the line, and
nothing else escapes.

Regenerate the golden files after a deliberate change with
`.venv/bin/python tests/importers/test_statement_csv.py`, then review the diff.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing_desk.domain.csv_mappings import MAPPING_VERSION, CsvMapping, parse_date
from billing_desk.domain.errors import BadInput
from billing_desk.domain.money import Money
from billing_desk.domain.statements import Statement, StatementRefused
from billing_desk.importers.statements import csv_statement
from tests.corpus import CORPUS_ROOT

CORPUS = CORPUS_ROOT / "csv"
OTHER_FORMATS = sorted(p for p in CORPUS.parent.glob("*/*") if p.parent.name != "csv")
GOLDEN = Path(__file__).resolve().parent / "golden" / "csv"
CORPUS_FILES = sorted(CORPUS.glob("*.csv")) if CORPUS.is_dir() else []
needs_corpus = pytest.mark.usefixtures("corpus_root")


def corpus(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


# -- mappings a user gives where the guess is refused -------------------------------------------

EXPLICIT: dict[str, CsvMapping] = {
    "csv_es_ing_ddmmyyyy_utf8_accents.csv": CsvMapping(
        name="ing-es", date="date", date_format="dd/mm/yyyy", amount="amount", currency="EUR",
        description=("desc", "notes"), balance="balance", thousands=",",
    ),
    "csv_us_chase_style_trailing_comma.csv": CsvMapping(
        name="chase", date="Posting Date", date_format="mm/dd/yyyy", amount="Amount",
        currency="USD", reference="Check or Slip #", description=("Description",), kind="Type",
        balance="Balance", thousands=",",
    ),
    "csv_us_schwab_checking_dollar_withdrawal_deposit.csv": CsvMapping(
        name="schwab", date="Date", date_format="mm/dd/yyyy", debit="Withdrawal",
        credit="Deposit", currency="USD", reference="CheckNumber", description=("Description",),
        kind="Type", balance="RunningBalance", thousands=",",
        keep_column="Status", keep_values=("posted",),  # Schwab lists pending rows too
    ),
    "csv_paypal_activity_spaces_thousands.csv": CsvMapping(
        name="paypal", date="Date", date_format="mm/dd/yyyy", amount="Net",
        currency_column="Currency", counterparty="Name", kind="Type", bank_id="Transaction ID",
        description=("Item Title",), thousands=",",
    ),
}  # fmt: skip

GUESS_REFUSED = {
    "csv_es_ing_ddmmyyyy_utf8_accents.csv": "This CSV file cannot be imported: it names no "
    "currency (no currency column, no code in the amount header), so the mapping cannot be "
    "guessed; give the account's currency with --currency.",
    "csv_us_chase_style_trailing_comma.csv": "This CSV file cannot be imported: it names no "
    "currency (no currency column, no code in the amount header), so the mapping cannot be "
    "guessed; give the account's currency with --currency.",
    "csv_us_schwab_checking_dollar_withdrawal_deposit.csv": "This CSV file cannot be imported: "
    "it names no currency (no currency column, no code in the amount header), so the mapping "
    "cannot be guessed; give the account's currency with --currency.",
    "csv_paypal_activity_spaces_thousands.csv": "This CSV file cannot be imported: the dates in "
    "column 'Date' (such as '6/4/2016') fit both dd/mm/yyyy and mm/dd/yyyy, and no row tells "
    "which; give the date format in the mapping.",
}


def read(name: str) -> list[Statement]:
    """The file as the user gets it: with the guessed mapping, or the explicit one."""
    data = corpus(name)
    mapping = EXPLICIT.get(name) or csv_statement.guess_mapping(data, name=name)
    return csv_statement.parse_with(data, mapping)


# -- golden files --------------------------------------------------------------------------------


def golden_of(name: str) -> dict[str, Any]:
    """What the importer makes of a corpus file, as plain JSON: the guessed mapping or the
    refusal of the guess, and the statements read."""
    data = corpus(name)
    out: dict[str, Any] = {}
    try:
        out["guessed_mapping"] = csv_statement.guess_mapping(data, name=name).to_record()
    except StatementRefused as refused:
        out["refused"] = str(refused)
        out["explicit_mapping"] = EXPLICIT[name].to_record()
    out["statements"] = [_statement_json(statement) for statement in read(name)]
    return out


def _statement_json(statement: Statement) -> dict[str, Any]:
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
                "raw": dict(line.raw),
            }
            for line in statement.lines
        ],
        "checks": [
            {"name": check.name, "ok": check.ok, "detail": check.detail}
            for check in statement.checks()
        ],
    }


def write_golden() -> None:
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for path in CORPUS_FILES:
        text = json.dumps(golden_of(path.name), indent=1, ensure_ascii=False) + "\n"
        (GOLDEN / f"{path.name}.json").write_text(text, encoding="utf-8")


@needs_corpus
@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: p.name)
def test_each_corpus_file_matches_its_golden_output(path: Path) -> None:
    golden = json.loads((GOLDEN / f"{path.name}.json").read_text(encoding="utf-8"))
    assert golden_of(path.name) == golden


# -- the figures of EXPECTED.md, file by file -----------------------------------------------------

# n, (credit count, credit sum), (debit count, debit sum), opening, closing (None: not given).
FIGURES: dict[str, tuple[int, tuple[int, str], tuple[int, str], str | None, str | None]] = {
    "csv_de_gls_semicolon_latin1_vwz14.csv": (1, (0, "0"), (1, "-98.76"), "1333.32", "1234.56"),
    "csv_ch_ubs_fr_apostrophe_thousands.csv": (
        3, (1, "240.00"), (2, "-210.00"), "11383.94", "11413.94"),
    "csv_de_outbank_semicolon_mdy_sepa_fields.csv": (
        4, (1, "100.00"), (3, "-135.89"), None, None),
    "csv_es_ing_ddmmyyyy_utf8_accents.csv": (10, (5, "1901.00"), (5, "-1550.79"), None, None),
    "csv_us_schwab_checking_dollar_withdrawal_deposit.csv": (
        4, (1, "20.00"), (3, "-235.27"), "1093.74", "878.47"),
    "csv_at_easybank_giro_noheader_latin1_crlf.csv": (
        10, (3, "23.31"), (7, "-1586.17"), None, None),
    "csv_at_raiffeisen_noheader_quoted_text.csv": (7, (2, "124.18"), (5, "-282.07"), None, None),
    "csv_at_livebank_ragged_columns_latin1.csv": (3, (2, "5150.00"), (1, "-100.00"), None, None),
    "csv_at_ingdiba_soll_haben_latin1.csv": (6, (4, "542.53"), (2, "-1534.56"), None, None),
    # EXPECTED.md says n 2 and debits 1 / -5.50: the first two rows only. The file holds nine
    # rows, each balance following from the next (Saldo 150,00 is the newest, as the preamble
    # says), so all nine are read; credits agree with EXPECTED.md, debits are all eight.
    "csv_de_ing_preamble_saldo_latin1.csv": (9, (1, "50.00"), (8, "-228.60"), "328.60", "150.00"),
    "csv_nl_ing_afbij_duplicate_rows.csv": (5, (2, "21.25"), (3, "-1.87"), None, None),
    "csv_nl_knab_title_row_creditdebet.csv": (28, (13, "20834.77"), (15, "-20827.76"), None, None),
    "csv_nl_asn_noheader_balance_before.csv": (
        11, (3, "3286.92"), (8, "-3333.12"), "130.44", "84.24"),
    "csv_us_chase_style_trailing_comma.csv": (
        6, (2, "2700.73"), (4, "-4190.89"), "4900.02", "3409.86"),
    "csv_paypal_activity_spaces_thousands.csv": (2, (1, "1120.00"), (1, "-20.00"), None, None),
}  # fmt: skip


@needs_corpus
def test_every_corpus_file_has_figures() -> None:
    assert sorted(FIGURES) == [path.name for path in CORPUS_FILES]


@needs_corpus
@pytest.mark.parametrize("name", sorted(FIGURES))
def test_counts_and_totals_match_expected(name: str) -> None:
    n, (credit_count, credit_sum), (debit_count, debit_sum), opening, closing = FIGURES[name]
    (statement,) = read(name)
    assert statement.format == "csv"
    assert len(statement.lines) == n
    assert sum(line.amount.is_positive() for line in statement.lines) == credit_count
    assert sum(line.amount.is_negative() for line in statement.lines) == debit_count
    assert statement.credits == Money(credit_sum, statement.currency)
    assert statement.debits == Money(debit_sum, statement.currency)
    assert statement.opening == (None if opening is None else Money(opening, statement.currency))
    assert statement.closing == (None if closing is None else Money(closing, statement.currency))
    assert [line.location for line in statement.lines] == sorted(
        (line.location for line in statement.lines), key=lambda loc: int(loc.split()[1])
    )


@needs_corpus
@pytest.mark.parametrize("name", sorted(GUESS_REFUSED))
def test_a_refused_guess_says_why_and_an_explicit_mapping_reads_the_file(name: str) -> None:
    with pytest.raises(StatementRefused) as refused:
        csv_statement.guess_mapping(corpus(name), name=name)
    assert str(refused.value) == GUESS_REFUSED[name]
    assert csv_statement.parse_with(corpus(name), EXPLICIT[name])


@needs_corpus
@pytest.mark.parametrize(
    ("name", "currency"),
    [
        ("csv_es_ing_ddmmyyyy_utf8_accents.csv", "EUR"),
        ("csv_us_chase_style_trailing_comma.csv", "USD"),
        ("csv_us_schwab_checking_dollar_withdrawal_deposit.csv", "USD"),
    ],
)
def test_given_the_currency_the_guess_is_the_mapping_a_user_would_write(
    name: str, currency: str
) -> None:
    guessed = csv_statement.guess_mapping(corpus(name), name=name, currency=currency)
    assert replace(guessed, name=EXPLICIT[name].name, encoding="utf-8") == EXPLICIT[name]


@needs_corpus
def test_given_the_date_format_paypal_is_guessed() -> None:
    data = corpus("csv_paypal_activity_spaces_thousands.csv")
    guessed = csv_statement.guess_mapping(data, date_format="mm/dd/yyyy")
    assert (guessed.amount, guessed.currency_column, guessed.bank_id) == (
        "Net",
        "Currency",
        "Transaction ID",
    )
    assert [line.amount for line in csv_statement.parse_with(data, guessed)[0].lines] == [
        Money("-20.00", "USD"),
        Money("1120.00", "USD"),
    ]


@needs_corpus
def test_every_corpus_file_is_identified_and_no_other_format_is() -> None:
    assert all(csv_statement.identify(path.read_bytes()) for path in CORPUS_FILES)
    claimed = [p.name for p in OTHER_FORMATS if csv_statement.identify(p.read_bytes())]
    assert claimed == []


# -- what particular files teach -----------------------------------------------------------------


@needs_corpus
def test_ing_nl_keeps_both_identical_fee_rows_and_skips_the_zero_row() -> None:
    (statement,) = read("csv_nl_ing_afbij_duplicate_rows.csv")
    assert [line.amount.plain() for line in statement.lines] == [
        "-1.25", "1.25", "20.00", "-0.31", "-0.31",
    ]  # fmt: skip
    assert statement.lines[-1].raw == statement.lines[-2].raw
    assert [line.location for line in statement.lines[-2:]] == ["line 6", "line 7"]
    assert statement.notes == ("1 row(s) with amount 0 skipped (line 4): notices, not movements.",)
    assert statement.account == "NL99INGB9999999999" and statement.currency == "EUR"


@needs_corpus
def test_livebank_text_that_spills_past_the_header_joins_the_description() -> None:
    (statement,) = read("csv_at_livebank_ragged_columns_latin1.csv")
    first = statement.lines[0]
    assert first.description == "A name A text REF: XXXXXXXXXXXXXXXXXXXXXXXXXXXX"
    assert first.raw["column 12"] == "REF: XXXXXXXXXXXXXXXXXXXXXXXXXXXX"
    assert first.kind == "Datenträger-Umsatz"
    assert [(ln.booked, ln.amount.plain()) for ln in statement.lines] == [
        (date(2013, 7, 3), "150.00"),
        (date(2013, 6, 10), "-100.00"),
        (date(2013, 6, 5), "5000.00"),
    ]


@needs_corpus
def test_ing_de_preamble_gives_the_account_and_the_duplicate_currency_column_is_numbered() -> None:
    data = corpus("csv_de_ing_preamble_saldo_latin1.csv")
    mapping = csv_statement.guess_mapping(data)
    assert (mapping.skip_lines, mapping.account, mapping.encoding) == (
        13,
        "DE12345678901234567890",
        "cp1252",
    )
    assert mapping.currency_column == 9  # the Währung after Betrag, by position: named twice
    (statement,) = csv_statement.parse_with(data, mapping)
    assert statement.lines[0].raw["Währung (2)"] == "EUR"
    assert statement.lines[1].raw["Saldo"] == "155,5"
    assert statement.lines[0].location == "line 15"
    assert all(check.ok for check in statement.checks())


@needs_corpus
def test_ubs_apostrophe_thousands_and_value_dates() -> None:
    (statement,) = read("csv_ch_ubs_fr_apostrophe_thousands.csv")
    assert [line.booked for line in statement.lines] == [
        date(2019, 3, 31), date(2019, 2, 28), date(2019, 4, 27),
    ]  # fmt: skip
    assert statement.closing == Money("11413.94", "CHF")
    assert statement.lines[1].raw["N° de transaction"] == statement.lines[1].bank_id


@needs_corpus
def test_a_running_balance_that_does_not_chain_is_a_finding_not_a_refusal() -> None:
    (statement,) = read("csv_es_ing_ddmmyyyy_utf8_accents.csv")
    (check,) = statement.checks()
    assert not check.ok
    assert check.detail.startswith("the balance at line 3 (2447.31) does not follow")
    assert statement.lines[-1].raw["balance"] == "-126.19"


@needs_corpus
def test_headerless_layouts_are_read_by_position() -> None:
    easybank = csv_statement.guess_mapping(corpus("csv_at_easybank_giro_noheader_latin1_crlf.csv"))
    assert (easybank.has_header, easybank.amount, easybank.thousands) == (False, 5, ".")
    (statement,) = read("csv_at_easybank_giro_noheader_latin1_crlf.csv")
    first = statement.lines[0]
    assert (first.amount, first.description) == (
        Money("-0.42", "EUR"),
        "Einbehaltene KESt BG/000000001",
    )
    assert first.raw["column 1"] == "AT123456789012345678"
    (asn,) = read("csv_nl_asn_noheader_balance_before.csv")
    assert asn.lines[1].description is not None and not asn.lines[1].description.startswith("'")


# -- mappings ------------------------------------------------------------------------------------


def test_a_mapping_survives_its_json_record() -> None:
    mapping = CsvMapping(
        name="knab", date="Boekdatum", date_format="dd-mm-yyyy", amount=5, direction="CreditDebet",
        debit_marks=("D",), credit_marks=("C",), currency_column="Valutacode",
        description=("Omschrijving", 11), delimiter=";", skip_lines=1, decimal_comma=True,
        thousands=".", ignore_rows_starting=("Saldo",), footer_rows=2, balance=9,
        balance_before=True, encoding="cp1252",
    )  # fmt: skip
    record = json.loads(json.dumps(mapping.to_record()))
    assert record["version"] == MAPPING_VERSION
    assert record["description"] == ["Omschrijving", 11]
    assert CsvMapping.from_record(record) == mapping


@needs_corpus
@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: p.name)
def test_every_guessed_mapping_survives_its_json_record(path: Path) -> None:
    mapping = EXPLICIT.get(path.name) or csv_statement.guess_mapping(path.read_bytes())
    assert CsvMapping.from_record(json.loads(json.dumps(mapping.to_record()))) == mapping


BASE: dict[str, Any] = {"name": "x", "date": 1, "date_format": "dd.mm.yyyy", "currency": "EUR"}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({}, "The mapping needs an amount column, or both a debit and a credit column."),
        (
            {"amount": 2, "debit": 3, "credit": 4},
            "The mapping gives both an amount column and debit/credit columns; keep one way.",
        ),
        (
            {"debit": 3},
            "The mapping needs an amount column, or both a debit and a credit column.",
        ),
        (
            {"amount": 2, "currency": None},
            "The mapping needs either a fixed currency or a currency column, not both and not "
            "neither.",
        ),
        (
            {"amount": 2, "currency_column": 5},
            "The mapping needs either a fixed currency or a currency column, not both and not "
            "neither.",
        ),
        (
            {"amount": 2, "currency": "EURO"},
            "'EURO' is not an ISO 4217 currency code; use a three-letter code such as USD.",
        ),
        (
            {"amount": 2, "date_format": "%d.%m.%Y"},
            "The date format '%d.%m.%Y' is not one billing-desk reads; use one of dd.mm.yyyy, "
            "dd.mm.yy, dd-mm-yyyy, dd/mm/yyyy, dd/mm/yy, mm/dd/yyyy, mm/dd/yy, yyyy-mm-dd, "
            "yyyy/mm/dd, yyyymmdd, mon d, yyyy, d mon yyyy, dd-mon-yyyy, dd-mon-yy.",
        ),
        (
            {"amount": 0},
            "The amount column number 0 is out of range; columns are numbered from 1 to 1000.",
        ),
        (
            {"amount": "Betrag", "has_header": False},
            "The amount column is named 'Betrag', but the file has no header row; give its "
            "number instead.",
        ),
        (
            {"amount": 2, "direction": 3},
            "A direction column needs the marks it uses for debits and for credits, such as Af "
            "and Bij.",
        ),
        (
            {"amount": 2, "direction": 3, "debit_marks": ("D",), "credit_marks": ("d",)},
            "A mark cannot stand for both a debit and a credit.",
        ),
        (
            {"amount": 2, "delimiter": ";;"},
            "The delimiter must be one character that is neither a letter, a digit nor a line "
            "break.",
        ),
        (
            {"amount": 2, "delimiter": '"'},
            "The delimiter and the quote character must differ.",
        ),
        (
            {"amount": 2, "decimal_comma": True, "thousands": ","},
            "The thousands separator cannot also be the decimal mark.",
        ),
        (
            {"amount": 2, "thousands": "_"},
            "The thousands separator must be none, a dot, a comma, an apostrophe or a space.",
        ),
        (
            {"amount": 2, "encoding": "rot13"},
            "'rot13' is not a text encoding; use one such as utf-8, cp1252 or latin-1.",
        ),
        (
            {"amount": 2, "skip_lines": -1},
            "The skip lines must be between 0 and 1000.",
        ),
        (
            {"amount": 2, "account": "X", "account_column": 4},
            "The mapping gives both a fixed account and an account column; keep one.",
        ),
        ({"amount": True}, "The amount column must be a header name or a column number, not bool."),
    ],
)
def test_a_contradictory_mapping_is_refused_in_one_sentence(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(BadInput) as refused:
        CsvMapping(**{**BASE, **changes})
    assert str(refused.value) == message


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (
            {**BASE, "amount": 2, "version": 2},
            "The stored CSV mapping has version 2; this billing-desk reads version 1, so save the "
            "mapping again.",
        ),
        (
            {**BASE, "amount": 2, "version": 1, "colour": "red"},
            "The stored CSV mapping has unknown fields: colour.",
        ),
        (
            {"version": 1, "name": "x", "date": 1},
            "The stored CSV mapping has no date format.",
        ),
        ([1, 2], "A stored CSV mapping must be a JSON object."),
        (
            {**BASE, "amount": 2, "version": 1, "date_format": ["dd.mm.yyyy"]},
            "The date format '('dd.mm.yyyy',)' is not one billing-desk reads; use one of "
            "dd.mm.yyyy, dd.mm.yy, dd-mm-yyyy, dd/mm/yyyy, dd/mm/yy, mm/dd/yyyy, mm/dd/yy, "
            "yyyy-mm-dd, yyyy/mm/dd, yyyymmdd, mon d, yyyy, d mon yyyy, dd-mon-yyyy, dd-mon-yy.",
        ),
    ],
)
def test_a_bad_stored_record_is_refused_in_one_sentence(record: Any, message: str) -> None:
    with pytest.raises(BadInput) as refused:
        CsvMapping.from_record(record)
    assert str(refused.value) == message


def test_dates_in_each_format() -> None:
    assert parse_date("3/6/2016", "mm/dd/yyyy") == date(2016, 3, 6)
    assert parse_date("2/20/19", "mm/dd/yy") == date(2019, 2, 20)
    assert parse_date("31.12.99", "dd.mm.yy") == date(1999, 12, 31)
    assert parse_date("20200213", "yyyymmdd") == date(2020, 2, 13)
    assert parse_date("31.02.2020", "dd.mm.yyyy") is None
    assert parse_date("2020-02-13", "dd.mm.yyyy") is None


# -- refusals ------------------------------------------------------------------------------------

SIMPLE = CsvMapping(
    name="simple", date="Datum", date_format="dd.mm.yyyy", amount="Betrag", currency="EUR",
    description=("Text",), delimiter=";", decimal_comma=True, thousands=".",
)  # fmt: skip


def refusal(data: bytes, mapping: CsvMapping = SIMPLE) -> str:
    with pytest.raises(StatementRefused) as refused:
        csv_statement.parse_with(data, mapping)
    return str(refused.value)


def table(*rows: str) -> bytes:
    return ("Datum;Text;Betrag\n" + "\n".join(rows) + "\n").encode()


def test_a_simple_table_reads() -> None:
    (statement,) = csv_statement.parse_with(
        table("01.02.2024;Miete;-1.200,00", "02.02.2024;Gehalt;+2.500,5", "03.02.2024;x;3,00-"),
        SIMPLE,
    )
    assert [line.amount.plain() for line in statement.lines] == ["-1200.00", "2500.50", "-3.00"]
    assert statement.account == "" and statement.lines[0].location == "line 2"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            table("31.02.2024;x;1,00"),
            "This CSV file cannot be imported at line 2: the date '31.02.2024' is not a real date "
            "written dd.mm.yyyy.",
        ),
        (
            table("01.02.2024;x;1.2,00"),
            "This CSV file cannot be imported at line 2: the amount '1.2,00' is not a number "
            "written with a decimal comma and '.' between thousands.",
        ),
        (
            table("01.02.2024;x;1,001"),
            "This CSV file cannot be imported at line 2: the amount '1,001' has more decimals "
            "than EUR allows (2).",
        ),
        (
            table("01.02.2024;x"),
            "This CSV file cannot be imported at line 2: the row has 2 fields, and the mapping "
            "reads the amount from column 3.",
        ),
        (
            b"Datum;Text;Summe\n01.02.2024;x;1,00\n",
            "This CSV file cannot be imported at line 1: the header has no column 'Betrag', which "
            "the mapping reads the amount from; the bank may have changed its export, so check "
            "the mapping.",
        ),
        (
            table("01.02.2024;\xe4;1,00").replace(b"\xc3\xa4", b"\xe4"),
            "This CSV file cannot be imported at line 2: the byte 0xE4 is not utf-8 text; the "
            "file is in another encoding or is not text.",
        ),
        (
            table("01.02.2024;x\x00y;1,00"),
            "This CSV file cannot be imported at line 2: it holds the control character 0x00, so "
            "it is a binary file, not CSV text.",
        ),
        (
            table("01.02.2024;x;0,00"),
            "This CSV file cannot be imported: it holds no movements (no row with an amount other "
            "than zero).",
        ),
        (
            b"",
            "This CSV file cannot be imported at line 1: the header row the mapping expects is "
            "missing.",
        ),
    ],
)
def test_a_bad_file_is_refused_naming_the_line(data: bytes, message: str) -> None:
    assert refusal(data) == message


def test_direction_marks_and_debit_credit_columns() -> None:
    marks = replace(SIMPLE, direction="AB", debit_marks=("Af",), credit_marks=("Bij",))
    data = b"Datum;Text;Betrag;AB\n01.02.2024;x;1,00;Af\n01.02.2024;y;2,00;bij\n"
    (statement,) = csv_statement.parse_with(data, marks)
    assert [line.amount.plain() for line in statement.lines] == ["-1.00", "2.00"]
    assert refusal(b"Datum;Text;Betrag;AB\n01.02.2024;x;1,00;?\n", marks) == (
        "This CSV file cannot be imported at line 2: the direction '?' is neither a debit mark "
        "(Af) nor a credit mark (Bij)."
    )
    pair = replace(SIMPLE, amount=None, debit="Soll", credit="Haben")
    data = b"Datum;Text;Soll;Haben\n01.02.2024;x;1,00;\n01.02.2024;y;;2,00\n"
    assert [ln.amount.plain() for ln in csv_statement.parse_with(data, pair)[0].lines] == [
        "-1.00",
        "2.00",
    ]


def test_footer_and_ignored_rows_and_one_statement_per_account() -> None:
    mapping = replace(
        SIMPLE, account_column="Konto", ignore_rows_starting=("saldo",), footer_rows=1
    )
    data = (
        b"Konto;Datum;Text;Betrag\nA;01.02.2024;x;1,00\nB;01.02.2024;y;2,00\n"
        b"Saldo;;;3,00\nA;02.02.2024;z;4,00\nSumme;;;7,00\n"
    )
    first, second = csv_statement.parse_with(data, mapping)
    assert (first.account, len(first.lines), second.account, len(second.lines)) == ("A", 2, "B", 1)
    assert first.notes == ("1 row(s) ignored as the mapping asks (line 4).",)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            b"a;b\nc;d\n",
            "This CSV file cannot be imported: no delimiter (; , tab or |) splits its lines into "
            "the same three or more columns, so it is not a table billing-desk can read.",
        ),
        (
            b"x;y;z\n1;2;3\n4;5;6\n",
            "This CSV file cannot be imported: it has no header row naming a date and an amount "
            "column in its first 40 lines and is not a header-less layout billing-desk knows "
            "(easybank, Raiffeisen ELBA, ASN), so the mapping cannot be guessed; save a mapping "
            "that gives the column numbers.",
        ),
        (
            b"Datum;Betrag;Waehrung\nmorgen;1,00;EUR\n",
            "This CSV file cannot be imported: the dates in column 'Datum' (such as 'morgen') "
            "are in no format billing-desk knows (dd.mm.yyyy, dd.mm.yy, dd-mm-yyyy, dd/mm/yyyy, "
            "dd/mm/yy, mm/dd/yyyy, mm/dd/yy, yyyy-mm-dd, yyyy/mm/dd, yyyymmdd, mon d, yyyy, "
            "d mon yyyy, dd-mon-yyyy, dd-mon-yy) or not all in one.",
        ),
        (
            b"Datum;Betrag;Waehrung\n01.02.2024;1,00;EUR\n2024-02-03;1,00;EUR\n",
            "This CSV file cannot be imported: the dates in column 'Datum' (such as '01.02.2024') "
            "are in no format billing-desk knows (dd.mm.yyyy, dd.mm.yy, dd-mm-yyyy, dd/mm/yyyy, "
            "dd/mm/yy, mm/dd/yyyy, mm/dd/yy, yyyy-mm-dd, yyyy/mm/dd, yyyymmdd, mon d, yyyy, "
            "d mon yyyy, dd-mon-yyyy, dd-mon-yy) or not all in one.",
        ),
        (
            b"Datum;Betrag;Waehrung\n01.02.2024;1,00;EUR\n02.02.2024;1.00;EUR\n",
            "This CSV file cannot be imported: its amounts use both a decimal comma and a decimal "
            "point, so the mapping cannot be guessed; give the decimal mark in the mapping.",
        ),
    ],
)
def test_a_guess_that_cannot_be_made_is_refused_in_one_sentence(data: bytes, message: str) -> None:
    with pytest.raises(StatementRefused) as refused:
        csv_statement.guess_mapping(data)
    assert str(refused.value) == message


def test_identify_refuses_what_is_not_a_table() -> None:
    assert not csv_statement.identify(b"")
    assert not csv_statement.identify(b"\x00\x01\x02garbage" * 100)
    assert not csv_statement.identify(b"<?xml version='1.0'?><Document/>")
    assert not csv_statement.identify(b"01,BANK,CUST,230101,0800,1,,,2/\n16,100,5000,,,/\n")
    assert csv_statement.identify(table("01.02.2024;x;1,00", "02.02.2024;y;2,00"))


# -- fuzzing: nothing but StatementRefused, nothing hangs ---------------------------------------


@contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """Fails the example instead of hanging the run (not a timing assertion: a hang is a bug)."""

    def expired(signum: int, frame: object) -> None:
        raise AssertionError(f"the importer ran for more than {seconds} seconds")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def survive(data: bytes, mapping: CsvMapping | None = None) -> None:
    with time_limit(20):
        csv_statement.identify(data)
        try:
            if mapping is None:
                mapping = csv_statement.guess_mapping(data)
            csv_statement.parse_with(data, mapping)
        except StatementRefused:
            pass


corpus_files = st.sampled_from(CORPUS_FILES) if CORPUS_FILES else st.nothing()


@needs_corpus
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    path=corpus_files,
    cut=st.integers(min_value=0, max_value=6000),
    flips=st.lists(
        st.tuples(st.integers(min_value=0, max_value=6000), st.integers(0, 255)), max_size=8
    ),
    inserted=st.binary(max_size=40),
)
def test_mutated_corpus_files_are_read_or_refused(
    path: Path, cut: int, flips: list[tuple[int, int]], inserted: bytes
) -> None:
    data = bytearray(path.read_bytes())
    for offset, value in flips:
        if data:
            data[offset % len(data)] = value
    position = cut % (len(data) + 1)
    mutated = bytes(data[:position]) + inserted + bytes(data[position:])
    survive(mutated)
    survive(mutated[: cut % (len(mutated) + 1)])
    if path.name in EXPLICIT:
        survive(mutated, EXPLICIT[path.name])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000))
def test_random_bytes_are_refused_or_read(data: bytes) -> None:
    survive(data)
    survive(data, SIMPLE)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.lists(st.text(alphabet="0123456789.,;-+'\" abcDatumBetrg\n", max_size=12), max_size=6),
        max_size=8,
    )
)
def test_random_tables_are_refused_or_read(rows: list[list[str]]) -> None:
    text = "Datum;Text;Betrag\n" + "\n".join(";".join(row) for row in rows)
    survive(text.encode())
    survive(text.encode(), SIMPLE)


if __name__ == "__main__":
    write_golden()
