"""The camt.053 / camt.054 importer: every corpus file imports as EXPECTED.md says (or is refused
with its pinned reason), matches its golden output, and hostile XML is refused quickly and
cleanly.

Regenerate the golden files after a deliberate change with
`python tests/importers/test_statement_camt.py --write-golden`, then review the diff.
"""

from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing_desk.domain.money import Money
from billing_desk.domain.statements import Statement, StatementRefused
from billing_desk.importers.statements import base, camt
from tests.corpus import CORPUS_ROOT

REPO = Path(__file__).resolve().parents[2]
CORPUS = CORPUS_ROOT / "camt053"
GOLDEN = Path(__file__).resolve().parent / "golden" / "camt053"
CORPUS_FILES = sorted(path.name for path in GOLDEN.glob("*.json"))

needs_corpus = pytest.mark.usefixtures("corpus_root")


def corpus(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


def golden_of(data: bytes) -> dict[str, Any]:
    """What parse() makes of a file, as plain JSON values (the golden file's content)."""
    try:
        statements = camt.parse(data)
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
    for path in sorted(CORPUS.glob("*.xml")):
        text = json.dumps(golden_of(path.read_bytes()), indent=2, ensure_ascii=False)
        (GOLDEN / f"{path.name}.json").write_text(text + "\n", encoding="utf-8")


def parse_ok(data: bytes) -> list[Statement]:
    return camt.parse(data)


def refusal(data: bytes) -> str:
    with pytest.raises(StatementRefused) as caught:
        camt.parse(data)
    return str(caught.value)


# -- the corpus ----------------------------------------------------------------------------------


@needs_corpus
def test_every_corpus_file_has_a_golden_file_and_is_identified() -> None:
    names = sorted(path.name for path in CORPUS.glob("*.xml"))
    assert len(names) == 15
    assert [f"{name}.json" for name in names] == CORPUS_FILES
    assert all(camt.identify(corpus(name)) for name in names)


@needs_corpus
@pytest.mark.parametrize("golden_name", CORPUS_FILES)
def test_corpus_file_matches_its_golden_output(golden_name: str) -> None:
    data = corpus(golden_name.removesuffix(".json"))
    expected = json.loads((GOLDEN / golden_name).read_text(encoding="utf-8"))
    assert golden_of(data) == expected


@dataclass(frozen=True)
class Expected:
    """One statement's figures from EXPECTED.md, amounts in minor units."""

    lines: int
    credits: int
    debits: int
    opening: int | None
    closing: int | None
    reconciles: bool | None  # None: no balance check (a balance missing or left out)


EXPECTED = {
    "camt053v02_nl_batch_and_reversal.xml": [
        Expected(4, 140531, -141830, 1556827, 1512112, reconciles=False)
    ],
    "camt053v04_ch_collective_credit_txdtls.xml": [
        Expected(2, 348300, 0, 7596015, 7944315, reconciles=True)
    ],
    "camt053v04_ch_no_entries.xml": [Expected(0, 0, 0, 152076, 152076, reconciles=True)],
    "camt054v04_ch_sps_debit_credit_notification.xml": [
        Expected(1, 500, 0, None, None, reconciles=None)
    ],
    "camt053v02_two_statements.xml": [
        Expected(1, 885, 0, 1815, 2700, reconciles=True),
        Expected(1, 0, -700, 2700, 2000, reconciles=True),
    ],
    "camt053v02_five_decimal_amounts.xml": [Expected(1, 885, 0, 1815, 2705, reconciles=False)],
    # Every balance type is listed; OPBD 1.01 and CLBD 4.04 are the pair (not PRCD, CLAV ...).
    "camt053v02_all_balance_types.xml": [Expected(1, 885, 0, 101, 404, reconciles=False)],
    # The closing balance is in SEK: left out, so no balance check.
    "camt053v03_multi_ccy_scor_ref.xml": [Expected(1, 885, 0, 1815, None, reconciles=None)],
    "camt053v04_scor_ref.xml": [Expected(1, 885, 0, 1815, None, reconciles=None)],
    "camt053v08_scor_ref.xml": [Expected(1, 885, 0, 1815, None, reconciles=None)],
    "camt054v08_notification.xml": [Expected(1, 0, -20_000_000, None, None, reconciles=None)],
    "camt053v04_raiffeisen_ch_16_entries.xml": [
        Expected(16, 36800, -404785, 943331, 575346, reconciles=True)
    ],
    "camt053v08_ch_single_entry_nbofntries.xml": [
        Expected(1, 128430, 0, 83201, 211631, reconciles=True)
    ],
    "camt053v02_lt_dnb_lithuanian_text.xml": [
        Expected(4, 0, -18101, 30653, 12552, reconciles=True)
    ],
}


@needs_corpus
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_figures_equal_expected_md(name: str) -> None:
    statements = parse_ok(corpus(name))
    found = []
    for statement in statements:
        balance = [check.ok for check in statement.checks() if check.name == "balance"]
        found.append(
            Expected(
                len(statement.lines),
                statement.credits.minor,
                statement.debits.minor,
                None if statement.opening is None else statement.opening.minor,
                None if statement.closing is None else statement.closing.minor,
                reconciles=balance[0] if balance else None,
            )
        )
        assert statement.format == "camt053"
    assert found == EXPECTED[name]


@needs_corpus
def test_nl_batch_reversal_is_split_into_its_two_debits() -> None:
    (statement,) = parse_ok(corpus("camt053v02_nl_batch_and_reversal.xml"))
    assert statement.account == "NL77ABNA0574908765"
    assert [line.amount.plain() for line in statement.lines] == [
        "-754.25",
        "-564.05",
        "-100.00",
        "1405.31",
    ]
    assert [line.location.split(" (")[0] for line in statement.lines[1:3]] == [
        "Stmt 1 / Ntry 2 / TxDtls 1",
        "Stmt 1 / Ntry 2 / TxDtls 2",
    ]
    assert statement.lines[1].reference == "TESTBANK/NL/20141229/01206408"
    assert statement.lines[1].raw["RvslInd"] == "true"
    assert "NtryDtls/TxDtls/Refs/EndToEndId" in statement.lines[2].raw
    assert any("reversal" in note for note in statement.notes)
    assert [(c.name, c.ok) for c in statement.declared_checks] == [
        ("batch count", True),
        ("batch details", True),
    ]


@needs_corpus
def test_ch_collective_credit_is_split_with_its_isr_references() -> None:
    (statement,) = parse_ok(corpus("camt053v04_ch_collective_credit_txdtls.xml"))
    assert statement.account == "CH1111000000123456789"
    assert statement.currency == "CHF"
    assert [(line.amount.plain(), line.reference) for line in statement.lines] == [
        ("2187.00", "302388292000011111111111111"),
        ("1296.00", "302388292000022222222222222"),
    ]
    assert {line.booked for line in statement.lines} == {date(2017, 3, 22)}
    assert statement.lines[0].counterparty == "Banque Cantonale Vaudoise"


@needs_corpus
def test_raiffeisen_first_line() -> None:
    (statement,) = parse_ok(corpus("camt053v04_raiffeisen_ch_16_entries.xml"))
    assert (statement.period_start, statement.period_end) == (date(2017, 4, 1), date(2017, 4, 11))
    first = statement.lines[0]
    assert first.amount == Money("-905.30", "CHF")
    assert (first.booked, first.value_date) == (date(2017, 4, 1), date(2017, 4, 3))
    assert first.bank_id == "210564431020000000024556150000"
    assert first.description == "Sistema di addebitamento diretto xxxxxxxxxxxxxxxxxxxxxx AG"
    # Embedded newlines in AddtlNtryInf become one line of text; raw keeps them.
    assert statement.lines[1].description == (
        "Acquisto MIGROS M ARBEDO-CAST 31.03.2017/13:30 / N. carta Maestro xxxxxxxx"
    )
    assert "\n" in statement.lines[1].raw["AddtlNtryInf"]


@needs_corpus
def test_lithuanian_statement_first_line() -> None:
    (statement,) = parse_ok(corpus("camt053v02_lt_dnb_lithuanian_text.xml"))
    assert statement.account == "LT000000000000000000"
    assert (statement.period_start, statement.period_end) == (date(2015, 12, 1), date(2015, 12, 31))
    first = statement.lines[0]
    assert first.amount == Money("-0.29", "EUR")
    assert (first.booked, first.value_date) == (date(2015, 12, 31), date(2016, 1, 1))
    assert first.counterparty == "AB DNB Bankas"
    assert first.description == "Sąskaitos aptarnavimo mokestis"
    assert first.bank_id == "FC1261858984"
    assert first.reference is None  # EndToEndId NOTPROVIDED
    # The two identical 0.29 fees stay two lines.
    assert [line.amount.minor for line in statement.lines[:2]] == [-29, -29]


@needs_corpus
@pytest.mark.parametrize(
    "name",
    ["camt053v03_multi_ccy_scor_ref.xml", "camt053v04_scor_ref.xml", "camt053v08_scor_ref.xml"],
)
def test_scor_reference_and_foreign_currency_balances(name: str) -> None:
    (statement,) = parse_ok(corpus(name))
    assert statement.currency == "EUR"
    assert statement.lines[0].reference == "4654654654654654"
    assert statement.lines[0].counterparty == "NAME NAME"
    assert any("closing balance (CLBD) is in SEK" in note for note in statement.notes)


@needs_corpus
def test_camt054_v08_inconsistent_batch_is_kept_whole_with_failing_checks() -> None:
    (statement,) = parse_ok(corpus("camt054v08_notification.xml"))
    assert [line.amount for line in statement.lines] == [Money("-200000", "SEK")]
    assert statement.lines[0].location.startswith("Ntfctn 1 / Ntry 1 (line ")
    assert [(c.name, c.ok) for c in statement.declared_checks] == [
        ("batch count", False),
        ("batch details", False),
    ]


@needs_corpus
def test_txs_summary_checks_of_the_v08_swiss_statement() -> None:
    (statement,) = parse_ok(corpus("camt053v08_ch_single_entry_nbofntries.xml"))
    assert [(c.name, c.ok) for c in statement.declared_checks] == [
        ("entry count", True),
        ("entry total", True),
        ("credit count", True),
        ("credit total", True),
        ("debit count", True),
        ("debit total", True),
        ("net total", True),
    ]


@needs_corpus
def test_postfinance_currency_xxx_is_refused_naming_the_statement() -> None:
    assert refusal(corpus("camt053v02_postfinance_dupl_ccy_xxx.xml")) == (
        "This camt053 file cannot be imported at Stmt 1 (KOBE170214357689, line 12): "
        "it gives 'XXX', which is not an active ISO 4217 currency."
    )


@needs_corpus
def test_duplicate_copy_is_a_note_not_a_refusal() -> None:
    data = corpus("camt053v02_postfinance_dupl_ccy_xxx.xml").replace(b'Ccy="XXX"', b'Ccy="CHF"')
    (statement,) = parse_ok(data)
    assert len(statement.lines) == 5
    assert statement.credits == Money("13010.00", "CHF")
    assert statement.lines[0].description == "Account Transfer"
    assert statement.lines[0].bank_id == "20160423000805545979476000000012"
    assert (statement.period_start, statement.period_end) == (date(2015, 12, 31), date(2017, 1, 31))
    assert any("CpyDplctInd DUPL" in note for note in statement.notes)
    assert [check.ok for check in statement.checks()] == [False]  # anonymised amounts


# -- synthetic files -----------------------------------------------------------------------------


def camt053(entries: str, *, balances: str = "", version: str = "02", acct_ccy: str = "") -> bytes:
    ccy = f"<Ccy>{acct_ccy}</Ccy>" if acct_ccy else ""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.{version}">
<BkToCstmrStmt><GrpHdr><MsgId>M1</MsgId></GrpHdr>
<Stmt><Id>S1</Id><Acct><Id><IBAN>DE89370400440532013000</IBAN></Id>{ccy}</Acct>
{balances}
{entries}
</Stmt></BkToCstmrStmt></Document>""".encode()


def entry(
    amount: str = "10.00",
    sign: str = "CRDT",
    *,
    ccy: str = "EUR",
    booked: str = "<Dt>2024-05-02</Dt>",
    status: str = "BOOK",
    details: str = "",
) -> str:
    return (
        f'<Ntry><Amt Ccy="{ccy}">{amount}</Amt><CdtDbtInd>{sign}</CdtDbtInd>'
        f"<Sts>{status}</Sts><BookgDt>{booked}</BookgDt><AcctSvcrRef>R-{amount}</AcctSvcrRef>"
        f"<NtryDtls>{details}</NtryDtls></Ntry>"
    )


def detail(amount: str, sign: str = "", ccy: str = "EUR", name: str = "Payer") -> str:
    indicator = f"<CdtDbtInd>{sign}</CdtDbtInd>" if sign else ""
    return (
        f'<TxDtls><Amt Ccy="{ccy}">{amount}</Amt>{indicator}'
        f"<RltdPties><Dbtr><Nm>{name}</Nm></Dbtr></RltdPties></TxDtls>"
    )


def test_a_batch_that_does_not_add_up_stays_one_line_with_a_failing_check() -> None:
    (statement,) = parse_ok(camt053(entry("10.00", details=detail("4.00") + detail("5.00"))))
    assert [line.amount for line in statement.lines] == [Money("10.00", "EUR")]
    assert statement.lines[0].counterparty == "Payer"  # shared by every TxDtls
    (check,) = statement.declared_checks
    assert (check.name, check.ok) == ("batch details", False)
    assert "they add up to 9.00" in check.detail


def test_a_batch_with_mixed_directions_splits_by_each_detail_sign() -> None:
    details = detail("12.00", name="A") + detail("2.00", "DBIT", name="B")
    (statement,) = parse_ok(camt053(entry("10.00", details=details)))
    assert [line.amount.plain() for line in statement.lines] == ["12.00", "-2.00"]
    assert [line.counterparty for line in statement.lines] == ["A", None]


def test_pending_entries_are_left_out_with_a_note() -> None:
    data = camt053(entry("1.00") + entry("2.00", status="PDNG"), version="08")
    (statement,) = parse_ok(data)
    assert [line.amount.minor for line in statement.lines] == [100]
    assert statement.notes == ("Stmt 1 / Ntry 2 is pending (PDNG), not booked: it is left out",)


def test_v08_nested_status_and_datetime_booking() -> None:
    data = camt053(
        entry("1.00", booked="<DtTm>2024-05-02T23:30:00-05:00</DtTm>").replace(
            "<Sts>BOOK</Sts>", "<Sts><Cd>BOOK</Cd></Sts>"
        ),
        version="08",
    )
    (statement,) = parse_ok(data)
    assert statement.lines[0].booked == date(2024, 5, 2)  # the bank's own calendar day


def test_prcd_is_the_opening_when_there_is_no_opbd_and_debit_balances_are_negative() -> None:
    balances = (
        '<Bal><Tp><CdOrPrtry><Cd>PRCD</Cd></CdOrPrtry></Tp><Amt Ccy="EUR">5.00</Amt>'
        "<CdtDbtInd>DBIT</CdtDbtInd><Dt><Dt>2024-05-01</Dt></Dt></Bal>"
        '<Bal><Tp><CdOrPrtry><Cd>CLBD</Cd></CdOrPrtry></Tp><Amt Ccy="EUR">5.00</Amt>'
        "<CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>2024-05-02</Dt></Dt></Bal>"
    )
    (statement,) = parse_ok(camt053(entry("10.00"), balances=balances))
    assert (statement.opening, statement.closing) == (Money("-5", "EUR"), Money("5", "EUR"))
    assert (statement.period_start, statement.period_end) == (date(2024, 5, 1), date(2024, 5, 2))
    assert [check.ok for check in statement.checks()] == [True]


def test_v02_transaction_summary_is_checked_and_a_failing_sum_is_a_finding() -> None:
    summary = (
        "<TxsSummry><TtlNtries><NbOfNtries>3</NbOfNtries><Sum>7.00</Sum>"
        "<TtlNetNtryAmt>3.00</TtlNetNtryAmt><CdtDbtInd>CRDT</CdtDbtInd></TtlNtries>"
        "<TtlCdtNtries><NbOfNtries>1</NbOfNtries><Sum>5.01</Sum></TtlCdtNtries>"
        "<TtlDbtNtries><NbOfNtries>2</NbOfNtries><Sum>2.00</Sum></TtlDbtNtries></TxsSummry>"
    )
    entries = entry("5.00") + entry("0.00", "DBIT") + entry("2.00", "DBIT")
    (statement,) = parse_ok(camt053(entries, balances=summary))
    assert [(check.name, check.ok) for check in statement.declared_checks] == [
        ("entry count", True),
        ("entry total", True),
        ("credit count", True),  # the zero DBIT entry counts as a debit
        ("credit total", False),
        ("debit count", True),
        ("debit total", True),
        ("net total", True),
    ]
    assert statement.declared_checks[3].detail == (
        "Stmt 1: TxsSummry TtlCdtNtries declares 5.01, the entries add up to 5.00"
    )


def test_jpy_amounts_without_decimals() -> None:
    (statement,) = parse_ok(camt053(entry("2700", "DBIT", ccy="JPY")))
    assert statement.lines[0].amount == Money.from_minor(-2700, "JPY")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            camt053(entry("-5.00")),
            "at Stmt 1 / Ntry 1 (line 6): the amount '-5.00' is not a plain unsigned number "
            "(camt gives the sign in CdtDbtInd).",
        ),
        (
            camt053(entry("5.001")),
            "at Stmt 1 / Ntry 1 (line 6): the amount '5.001' has more decimals than EUR "
            "allows (2).",
        ),
        (
            camt053(entry("5.00", "CRED")),
            "at Stmt 1 / Ntry 1 (line 6): its CdtDbtInd is 'CRED', neither CRDT nor DBIT.",
        ),
        (
            camt053(entry(booked="<Dt>2024-02-30</Dt>")),
            "at Stmt 1 / Ntry 1 (line 6): the booking date '2024-02-30' is not a date.",
        ),
        (
            camt053(entry(booked="")),
            "at Stmt 1 / Ntry 1 (line 6): the entry has no booking date (BookgDt) nor a value "
            "date, and the statement no date to take instead.",
        ),
        (
            camt053(entry() + entry(ccy="USD"), acct_ccy="EUR"),
            "at Stmt 1 / Ntry 2 (line 6): the entry is in USD while the statement is in EUR.",
        ),
        (
            camt053("", acct_ccy="ABC"),
            "at Stmt 1 (S1, line 4): it gives 'ABC', which is not an active ISO 4217 currency.",
        ),
        (
            camt053(""),
            "at Stmt 1 (S1, line 4): it gives no currency, which is not an active ISO 4217 "
            "currency.",
        ),
        (
            camt053(entry()).replace(b"<IBAN>DE89370400440532013000</IBAN>", b""),
            "at Stmt 1 (S1, line 4): it names no account (Acct/Id).",
        ),
        (
            b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.052.001.02">'
            b"<BkToCstmrAcctRpt/></Document>",
            "at BkToCstmrAcctRpt (line 1): it is a camt.052 account report, not a camt.053 "
            "statement or camt.054 notification.",
        ),
        (
            b"<Document><pain.001/></Document>",
            "at Document (line 1): its root element is <Document>, not a camt.053 statement "
            "or camt.054 notification.",
        ),
        (
            b"<Document><BkToCstmrStmt><GrpHdr/></BkToCstmrStmt></Document>",
            "at BkToCstmrStmt (line 1): the message holds no Stmt.",
        ),
    ],
)
def test_unreadable_values_are_refused_with_their_place(data: bytes, message: str) -> None:
    assert refusal(data) == f"This camt053 file cannot be imported {message}"


# -- hostile files -------------------------------------------------------------------------------

BILLION_LAUGHS = (
    b'<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(
        b'<!ENTITY lol%d "%s">'
        % (level, (b"&lol%d;" % (level - 1) if level > 1 else b"&lol;") * 10)
        for level in range(1, 10)
    )
    + b"]>\n<Document><BkToCstmrStmt><Stmt><Id>&lol9;</Id></Stmt></BkToCstmrStmt></Document>"
)
EXTERNAL_ENTITY = (
    b'<?xml version="1.0"?>\n<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">'
    b'<!ENTITY y SYSTEM "http://127.0.0.1:9/x">]>\n'
    b"<Document><BkToCstmrStmt><Stmt><Id>&x;&y;</Id></Stmt></BkToCstmrStmt></Document>"
)
DTD_REFUSAL = (
    "This camt053 file cannot be imported: it declares a DTD or entities, which a camt file "
    "never needs."
)


@pytest.mark.parametrize(
    "data",
    [
        BILLION_LAUGHS,
        EXTERNAL_ENTITY,
        EXTERNAL_ENTITY.decode().encode("utf-16"),
        b'<!DOCTYPE Document SYSTEM "http://127.0.0.1:9/camt.dtd"><Document/>',
    ],
    ids=["billion-laughs", "external-entities", "utf-16", "external-dtd"],
)
def test_dtds_and_entities_are_refused_before_parsing(data: bytes) -> None:
    assert refusal(data) == DTD_REFUSAL


def test_a_dtd_hidden_from_the_byte_scan_is_refused_after_parsing() -> None:
    # UTF-32 slips past the byte markers; the parser still resolves nothing, and the document's
    # DTD is seen and refused.
    text = EXTERNAL_ENTITY.decode().replace(
        '<?xml version="1.0"?>', '<?xml version="1.0" encoding="UTF-32"?>'
    )
    assert refusal(text.encode("utf-32")) == DTD_REFUSAL


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "at line 1: it is not well-formed XML (Document is empty)."),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "at line 1: it is not well-formed XML"),
        (
            b"<Document><BkToCstmrStmt><Stmt><Id>&x;</Id></Stmt></BkToCstmrStmt></Document>",
            "at line 1: it is not well-formed XML (Entity 'x' not defined).",
        ),
        (b"<a>" * 5000 + b"</a>" * 5000, "at line 1: it is not well-formed XML (Excessive depth"),
        (
            "<?xml version='1.0' encoding='UTF-8'?>\n<Document>\n<Nm>Saint-François</Nm>"
            "</Document>".encode("latin-1"),
            "at line 3: it is not well-formed XML (Invalid bytes in character encoding).",
        ),
    ],
    ids=["empty", "binary", "undefined-entity", "deep", "wrong-encoding"],
)
def test_broken_xml_is_refused_with_its_line(data: bytes, message: str) -> None:
    assert refusal(data).startswith(f"This camt053 file cannot be imported {message}")


@needs_corpus
def test_a_truncated_file_is_refused_with_its_line() -> None:
    data = corpus("camt053v04_scor_ref.xml")[:3000]
    assert refusal(data) == (
        "This camt053 file cannot be imported at line 90: it is not well-formed XML "
        "(Premature end of data in tag CdOrPrtry line 88)."
    )


def test_a_file_over_the_size_limit_is_refused_unread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "MAX_STATEMENT_BYTES", 1024 * 1024)
    assert refusal(b" " * (1024 * 1024 + 1)) == (
        "This camt053 file cannot be imported: it is 1 MB, larger than the 1 MB a statement may be."
    )


def test_identify_looks_only_at_the_head_and_knows_other_formats() -> None:
    assert camt.identify(camt053(entry()))
    assert camt.identify(b'<ns:BkToCstmrDbtCdtNtfctn xmlns:ns="x">')
    assert camt.identify(camt053(entry()).decode().encode("utf-16"))
    assert not camt.identify(b"OFXHEADER:100\nDATA:OFXSGML\n<OFX>")
    assert not camt.identify(b":20:STARTUMS\n:25:12345678/0001\n")
    assert not camt.identify(b"<Document xmlns='urn:iso:std:iso:20022:tech:xsd:camt.052.001.02'>")
    assert not camt.identify(b" " * base.SNIFF_BYTES + b"<BkToCstmrStmt>")


# -- fuzzing -------------------------------------------------------------------------------------

SEEDS = (
    sorted(path.read_bytes() for path in CORPUS.glob("*.xml"))
    if CORPUS.is_dir()
    else [camt053(entry(details=detail("10.00")))]
)


def parse_or_refuse(data: bytes) -> None:
    with contextlib.suppress(StatementRefused):
        camt.parse(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.sampled_from(SEEDS),
    cut=st.integers(min_value=0, max_value=20_000),
    at=st.integers(min_value=0, max_value=20_000),
    insert=st.binary(max_size=40)
    | st.sampled_from(
        [b"-", b".", b"999999999999999999999", b"DBIT", b"<Ntry>", b"</Amt>", b"&amp;", b"\xff"]
    ),
    drop=st.integers(min_value=0, max_value=200),
)
def test_mutated_corpus_files_parse_or_are_refused(
    seed: bytes, cut: int, at: int, insert: bytes, drop: int
) -> None:
    mutated = seed[: at % (len(seed) + 1)] + insert + seed[at % (len(seed) + 1) + drop :]
    parse_or_refuse(mutated)
    parse_or_refuse(seed[: cut % (len(seed) + 1)])


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=2000))
def test_random_bytes_parse_or_are_refused(data: bytes) -> None:
    parse_or_refuse(data)


@settings(max_examples=200, deadline=None)
@given(
    amount=st.text(alphabet="0123456789.-+ e", max_size=25),
    sign=st.sampled_from(["CRDT", "DBIT", "", "X"]),
    ccy=st.sampled_from(["EUR", "JPY", "BHD", "XXX", "eur", ""]),
    booked=st.text(alphabet="0123456789-T:+Z", max_size=30),
)
def test_odd_field_values_parse_or_are_refused(
    amount: str, sign: str, ccy: str, booked: str
) -> None:
    parse_or_refuse(camt053(entry(amount, sign, ccy=ccy, booked=f"<Dt>{booked}</Dt>")))


if __name__ == "__main__":
    if sys.argv[1:] == ["--write-golden"]:
        write_golden()
    else:
        sys.exit("usage: test_statement_camt.py --write-golden")
