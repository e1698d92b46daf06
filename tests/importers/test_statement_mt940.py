"""The MT940 importer: every corpus file imports as EXPECTED.md says (or is refused with a pinned
sentence), its output equals the reviewed golden file, and no input makes it fail any other way.

Regenerate the golden files after a reviewed change with
`.venv/bin/python -m tests.importers.test_statement_mt940`.
"""

from __future__ import annotations

import contextlib
import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing_desk.domain.statements import Statement, StatementRefused
from billing_desk.importers.statements import base, mt940
from tests.corpus import CORPUS_ROOT

CORPUS = CORPUS_ROOT / "mt940"
GOLDEN = Path(__file__).resolve().parent / "golden" / "mt940"
FILES = sorted(path.name for path in CORPUS.glob("*")) if CORPUS.is_dir() else []


def read(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


def golden_of(data: bytes) -> dict[str, Any]:
    """What the golden file holds for a file: the statements as plain JSON, or the refusal."""
    try:
        statements = mt940.parse(data)
    except StatementRefused as refusal:
        return {"refused": str(refusal)}
    return {"statements": [_statement_json(statement) for statement in statements]}


def _statement_json(statement: Statement) -> dict[str, Any]:
    def day(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "account": statement.account,
        "currency": statement.currency,
        "statement_id": statement.statement_id,
        "period": [day(statement.period_start), day(statement.period_end)],
        "opening_minor": statement.opening.minor if statement.opening else None,
        "closing_minor": statement.closing.minor if statement.closing else None,
        "lines": [
            {
                "booked": line.booked.isoformat(),
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


def write_goldens() -> None:
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        text = json.dumps(golden_of(read(name)), indent=1, ensure_ascii=False) + "\n"
        (GOLDEN / f"{name}.json").write_text(text, encoding="utf-8")


@pytest.mark.parametrize("name", FILES)
def test_output_equals_the_reviewed_golden_file(name: str) -> None:
    golden = json.loads((GOLDEN / f"{name}.json").read_text(encoding="utf-8"))
    assert golden_of(read(name)) == golden


@pytest.mark.parametrize("name", FILES)
def test_every_corpus_file_is_recognised(name: str) -> None:
    assert mt940.identify(read(name))


def test_files_of_other_formats_are_not_taken_for_mt940() -> None:
    others = [
        path
        for folder in ("ofx", "camt053", "bai2", "csv")
        for path in sorted((CORPUS_ROOT / folder).glob("*"))
    ]
    assert others
    assert not [path.name for path in others if mt940.identify(path.read_bytes())]
    assert not mt940.identify(b"")
    assert not mt940.identify(bytes(range(256)) * 8)


# --- EXPECTED.md, file by file --------------------------------------------------------------

# file -> (statements, lines, credit count, credit sum, debit count, debit sum) in minor units.
EXPECTED_TOTALS = {
    "mt940_abnamro_multi_intermediate.sta": (2, 10, 0, 0, 10, -34593),
    "mt940_ing_nl_legacy.sta": (1, 7, 2, 468, 5, -5027),
    "mt940_rabobank_legacy_multi.sta": (4, 5, 0, 0, 5, -158909),
    "mt940_triodos.sta": (1, 2, 0, 0, 2, -71570),
    "mt940_knab.sta": (2, 3, 2, 100000, 1, -726000),
    "mt940_postfinance_chf.sta": (2, 4, 3, 23930, 1, -7990),
    "mt940_mbank_pl.sta": (1, 3, 3, 3, 0, 0),
    "mt940_sberbank_hu_nonswift.sta": (1, 3, 0, 0, 3, -943700),
    "mt940_asn_swift_envelope_daily.940.txt": (31, 8, 3, 282890, 5, -277196),
    # Balance-consistent figures: RC (reversal of a credit) counts as a debit.
    "mt940_german_sepa_26_statements.sta": (26, 97, 41, 518847494, 56, -1445761084),
    "mt940_raiffeisen_hu_nonutf8.sta": (1, 7, 1, 206663700, 6, -307885050),
    "mt940_ing_nl_sepa_structured.940": (1, 8, 4, 3658, 4, -13446),
    "mt940_rabobank_sepa_structured.swi": (4, 2, 1, 40000, 1, -3461),
}

# file -> [(opening, closing, reconciles)] per statement, in minor units (None: not asserted).
EXPECTED_BALANCES: dict[str, list[tuple[int | None, int | None, bool | None]]] = {
    "mt940_abnamro_multi_intermediate.sta": [(323628, 87684, False), (287684, 184975, False)],
    "mt940_ing_nl_legacy.sta": [(0, 347, False)],
    "mt940_rabobank_legacy_multi.sta": [
        (47317, 39582, False),
        (100089, 100089, True),
        (129582, 125087, False),
        (419612, 410182, True),
    ],
    "mt940_triodos.sta": [(497509, 437079, False)],
    "mt940_knab.sta": [(0, 50000, True), (305898, 79898, False)],
    "mt940_postfinance_chf.sta": [(0, 22920, True), (22920, 15960, False)],
    "mt940_mbank_pl.sta": [(40, 43, True)],
    "mt940_sberbank_hu_nonswift.sta": [(62731130, 61787430, True)],
    "mt940_raiffeisen_hu_nonutf8.sta": [(2517063710, 2528168760, False)],
    "mt940_ing_nl_sepa_structured.940": [(66223, 56435, True)],
    "mt940_rabobank_sepa_structured.swi": [
        (443352, None, True),
        (None, None, True),
        (None, None, True),
        (None, 479891, True),
    ],
}


def minor_totals(statements: list[Statement]) -> tuple[int, int, int, int, int, int]:
    lines = [line for statement in statements for line in statement.lines]
    credits = [line.amount.minor for line in lines if line.amount.is_positive()]
    debits = [line.amount.minor for line in lines if line.amount.is_negative()]
    return (len(statements), len(lines), len(credits), sum(credits), len(debits), sum(debits))


def balance_ok(statement: Statement) -> bool:
    return all(check.ok for check in statement.checks() if check.name == "balance")


@pytest.mark.parametrize("name", sorted(EXPECTED_TOTALS))
def test_counts_and_totals_are_those_of_expected_md(name: str) -> None:
    assert minor_totals(mt940.parse(read(name))) == EXPECTED_TOTALS[name]


@pytest.mark.parametrize("name", sorted(EXPECTED_BALANCES))
def test_balances_per_statement_are_those_of_expected_md(name: str) -> None:
    statements = mt940.parse(read(name))
    assert len(statements) == len(EXPECTED_BALANCES[name])
    for statement, (opening, closing, reconciles) in zip(
        statements, EXPECTED_BALANCES[name], strict=True
    ):
        assert statement.opening is not None and statement.closing is not None
        if opening is not None:
            assert statement.opening.minor == opening
        if closing is not None:
            assert statement.closing.minor == closing
        if reconciles is not None:
            assert balance_ok(statement) is reconciles


def test_asn_daily_statements_reconcile_and_keep_their_order() -> None:
    statements = mt940.parse(read("mt940_asn_swift_envelope_daily.940.txt"))
    assert all(balance_ok(statement) for statement in statements)
    first, last = statements[0], statements[-1]
    assert first.opening is not None and first.opening.minor == 44429
    assert last.statement_id == "0000000000 #31/1"
    assert last.opening is not None and last.opening.minor == 40481
    assert last.closing is not None and last.closing.minor == 50123
    lines = [line for statement in statements for line in statement.lines]
    assert [line.amount.minor for line in lines] == [
        -6500, 100000, -80155, -165, 82872, -100000, 100018, -90376,
    ]  # fmt: skip
    assert lines[0].booked.isoformat() == "2020-01-01"
    assert lines[0].reference == "NL47INGB9999999999"
    assert lines[0].counterparty == "hr gjlm paulissen"
    assert lines[0].description == "Betaling sieraden"


def test_german_sepa_balances_only_with_rc_as_a_debit() -> None:
    """EXPECTED.md's sign rule: RC (reversal of a credit) takes money out, RD puts it back. With
    RC as a credit (the library's default, and its .yml) none of the RC statements balance."""
    statements = mt940.parse(read("mt940_german_sepa_26_statements.sta"))
    assert all(balance_ok(statement) for statement in statements)
    reversals = [
        line for statement in statements for line in statement.lines if line.raw["mark"] == "RC"
    ]
    assert [line.amount.minor for line in reversals] == [-20488, -20488]
    assert all(line.kind == "NRTI" for line in reversals)
    # The .yml figures differ by exactly these two reversals counted on the other side.
    assert minor_totals(statements)[2:4] == (43 - 2, 518888470 - 2 * 20488)


def test_german_structured_details_fill_counterparty_and_description() -> None:
    statements = mt940.parse(read("mt940_german_sepa_26_statements.sta"))
    line = statements[2].lines[0]
    assert line.counterparty == "Richter Renate 70 Zeichen Beginn Fuellzeichen xxxxxxxx"
    assert line.description == "Keine Buchung zu: TO13 TF52001 MINT"
    assert line.reference == "EndToEndIdTFNR5200100001"  # NONREF on the :61:, so EREF+
    assert line.bank_id == "0724710290658244"
    assert line.raw["86.applicant_iban"] == "DE42100100100043921105"
    assert line.raw[":86:"].startswith("166?00GUTSCHRIFT?100399?20EREF+")


def test_a_statement_in_a_withdrawn_currency_refuses_the_file_naming_it() -> None:
    with pytest.raises(StatementRefused) as refused:
        mt940.parse(read("mt940_german_dem_gvcodes.sta"))
    assert str(refused.value) == (
        "This mt940 file cannot be imported at line 4 (statement '131110'): it gives 'DEM', "
        "which is not an active ISO 4217 currency."
    )


def test_the_dem_file_reads_as_expected_md_says_once_the_currency_is_valid() -> None:
    """Everything else in the file is readable: EXPECTED.md's per-statement figures hold."""
    data = read("mt940_german_dem_gvcodes.sta").replace(b"DEM", b"EUR")
    statements = mt940.parse(data)
    assert minor_totals(statements) == (3, 16, 7, 7243674, 9, -6010944)
    assert [len(statement.lines) for statement in statements] == [11, 2, 3]
    assert [(s.opening.minor, s.closing.minor) for s in statements if s.opening and s.closing] == [
        (8434974, 8443704),
        (218795, 438795),
        (4000000, 5004000),
    ]
    assert all(balance_ok(statement) for statement in statements)
    polish = statements[2]
    assert polish.currency == "PLN"
    assert polish.notes[-1] == (
        "The closing balance is dated 2002-03-25, before the opening balance (2003-10-02)."
    )
    assert polish.lines[0].counterparty == "HUTA SZKLA TOPIC UL PRZEMYSLOWA 67 32-669 WROCLAW"
    assert polish.lines[2].description == "Odsetki od lokaty nr 101000022086"


def test_ing_totals_after_the_closing_balance_are_checks_not_a_line() -> None:
    (statement,) = mt940.parse(read("mt940_ing_nl_legacy.sta"))
    assert len(statement.lines) == 7
    assert "D000004" not in (statement.lines[-1].description or "")
    assert {check.name: check.ok for check in statement.declared_checks} == {
        "debit entries (ING totals)": False,
        "credit entries (ING totals)": True,
        "debit total (ING totals)": False,
        "credit total (ING totals)": False,
    }


def test_ing_sepa_wrapped_fields_and_sum_check() -> None:
    (statement,) = mt940.parse(read("mt940_ing_nl_sepa_structured.940"))
    assert statement.statement_id == "P140220000000001 #00000"  # :28C: wrapped onto two lines
    assert all(check.ok for check in statement.checks())
    assert len(statement.declared_checks) == 4
    first, _, returned, debit = statement.lines[:4]
    assert first.bank_id == "00000000001005"  # bank reference wrapped onto the next line
    assert first.raw["supplementary_details"] == "/TRCD/00100/"
    assert first.reference == "EV12341REP1231456T1234"  # the :61: says EREF
    assert first.counterparty == "ING BANK NV INZAKE WEB"
    assert returned.kind == "NRTI" and returned.raw["86.RTRN"] == "MS03"
    # A line that is only '-' inside the :86: is text, not the end of the message.
    assert debit.raw["86.MARF"] == "MND-EV01"
    assert debit.raw["supplementary_details"] == "/TRCD/01016/"
    assert statement.lines[6].reference == "9001123412341234"


def test_split_statement_parts_are_statements_with_a_continuation_check() -> None:
    first, second = mt940.parse(read("mt940_postfinance_chf.sta"))
    assert (first.opening, first.closing) == (
        base.money_of("mt940", "0", "CHF", None),
        base.money_of("mt940", "229.20", "CHF", None),
    )
    continuation = [check for check in second.checks() if check.name == "continuation"]
    assert [check.ok for check in continuation] == [True]
    assert first.lines[0].kind == "FMSC"
    abn = mt940.parse(read("mt940_abnamro_multi_intermediate.sta"))
    assert [check.ok for check in abn[1].checks() if check.name == "continuation"] == [False]


def test_amounts_without_decimals_and_with_one_are_exact() -> None:
    knab = mt940.parse(read("mt940_knab.sta"))
    assert [line.amount.minor for s in knab for line in s.lines] == [50000, -726000, 50000]
    assert knab[1].lines[1].reference == "29-07-2014 10:05"
    abn = mt940.parse(read("mt940_abnamro_multi_intermediate.sta"))
    assert [line.amount.minor for line in abn[0].lines][3] == -1180  # '11,8'
    assert [line.amount.minor for line in abn[0].lines][6] == -10700  # '107,'


def test_non_utf8_text_is_read_as_cp852_and_says_so() -> None:
    (statement,) = mt940.parse(read("mt940_raiffeisen_hu_nonutf8.sta"))
    assert statement.notes == (
        "The file is not UTF-8; its text was read as cp852, the best fit of cp1252, cp852, "
        "latin_1.",
    )
    assert "napi összevont utánvét" in (statement.lines[0].description or "")
    assert statement.lines[0].raw["supplementary_details"] == "Csoportos átutalás jóváírása"


def test_rabobank_legacy_counterparty_comes_from_the_statement_line() -> None:
    statements = mt940.parse(read("mt940_rabobank_legacy_multi.sta"))
    line = statements[0].lines[0]
    assert line.counterparty == "W.P. Jansen"
    assert line.description is not None and line.description.startswith("Terugboeking NIET")
    assert line.raw[":86:"].count("\n") == 3  # four consecutive :86: fields, all kept


def test_triodos_structured_details() -> None:
    (statement,) = mt940.parse(read("mt940_triodos.sta"))
    assert [line.description for line in statement.lines] == [
        "ALGEMENE TUSSENREKENING KOSTEN VAN 01-10-2010 TOT EN MET 31-12-2010",
        "HUUR KANTOOR - FEB 2010",
    ]


# --- Hostile and broken files --------------------------------------------------------------

MINIMAL = (
    b":20:REF\r\n:25:NL00BANK0123456789\r\n:28C:1/1\r\n:60F:C240101EUR100,00\r\n"
    b":61:2401020102D25,50NTRFNONREF//B1\r\n:86:/EREF/E1//NAME/Someone/REMI/USTD//Invoice 7/\r\n"
    b":62F:C240102EUR74,50\r\n-\r\n"
)


def refusal(data: bytes) -> str:
    with pytest.raises(StatementRefused) as refused:
        mt940.parse(data)
    return str(refused.value)


def test_a_minimal_statement_reads() -> None:
    (statement,) = mt940.parse(MINIMAL)
    (line,) = statement.lines
    assert (line.amount.minor, line.bank_id, line.reference, line.counterparty) == (
        -2550,
        "B1",
        "E1",
        "Someone",
    )
    assert line.description == "Invoice 7"
    assert line.location == "line 5"
    assert balance_ok(statement)


def test_refusals_say_where_and_what() -> None:
    assert refusal(b"hello\n") == (
        "This mt940 file cannot be imported: it holds no statement (no line starts with :20:)."
    )
    assert refusal(MINIMAL.replace(b":62F:C240102EUR74,50\r\n-\r\n", b"")) == (
        "This mt940 file cannot be imported at line 1: statement 'REF' has no closing balance "
        "(:62F:); the file may be cut short."
    )
    assert refusal(MINIMAL.replace(b"D25,50NTRF", b"X25,50NTRF")) == (
        "This mt940 file cannot be imported at line 5 (statement 'REF'): the statement line "
        "(:61:) '2401020102X25,50NTRFNONREF//B1' does not have the MT940 layout."
    )
    assert refusal(MINIMAL.replace(b"EUR100,00", b"EUR100,00ZZ")) == (
        "This mt940 file cannot be imported at line 4 (statement 'REF'): the balance "
        "'C240101EUR100,00ZZ' does not have the MT940 layout."
    )
    assert refusal(MINIMAL.replace(b"C240101", b"C241301")) == (
        "This mt940 file cannot be imported at line 4 (statement 'REF'): the balance "
        "'C241301EUR100,00' cannot be read."
    )
    assert refusal(MINIMAL.replace(b"D25,50", b"D25,505")) == (
        "This mt940 file cannot be imported at line 5 (statement 'REF'): the amount 'D25,505' "
        "has more decimals than EUR allows (2)."
    )
    assert refusal(MINIMAL.replace(b":86:", b":86:\x00")) == (
        "This mt940 file cannot be imported at line 6: it holds the control character 0x00, "
        "so this is not a text statement."
    )
    assert refusal(b":25:X\n" + MINIMAL) == (
        "This mt940 file cannot be imported at line 1: the field :25: stands outside any "
        "statement (no :20: before it)."
    )


def test_an_endless_field_is_refused() -> None:
    data = MINIMAL.replace(b":86:", b":86:" + b"x" * 70_000)
    assert "the field :86: runs to more than 65536 characters" in refusal(data)


def test_a_file_over_the_size_cap_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "MAX_STATEMENT_BYTES", 100)
    assert "larger than" in refusal(MINIMAL)


def test_every_truncation_of_a_corpus_file_reads_or_is_refused() -> None:
    data = read("mt940_ing_nl_sepa_structured.940")
    for end in range(0, len(data), 7):
        with contextlib.suppress(StatementRefused):
            mt940.parse(data[:end])


def _mutate(data: bytes, seed: int, edits: int) -> bytes:
    chooser = random.Random(seed)
    buffer = bytearray(data)
    for _ in range(edits):
        kind = chooser.randrange(5)
        at = chooser.randrange(len(buffer) + 1)
        if kind == 0 and buffer:
            buffer[min(at, len(buffer) - 1)] = chooser.randrange(256)
        elif kind == 1:
            buffer[at:at] = bytes(chooser.randrange(256) for _ in range(chooser.randrange(1, 8)))
        elif kind == 2:
            del buffer[at : at + chooser.randrange(1, 40)]
        elif kind == 3:
            piece = bytes(buffer[at : at + chooser.randrange(1, 80)])
            buffer[at:at] = piece
        else:
            buffer[at:at] = chooser.choice(
                [b"\n-\n", b"\n:61:", b"\n:86:?20", b"\n:20:", b"\n:62M:", b"{4:", b"RC", b"/"]
            )
    return bytes(buffer)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    st.one_of(
        st.builds(
            lambda name, seed, edits: _mutate(read(name), seed, edits),
            st.sampled_from(FILES or ["none"]),
            st.integers(0, 2**32),
            st.integers(1, 12),
        ),
        st.builds(
            lambda name, end: read(name)[:end],
            st.sampled_from(FILES or ["none"]),
            st.integers(0, 30_000),
        ),
        st.binary(max_size=2_000),
        st.builds(lambda tail: MINIMAL + tail, st.binary(max_size=200)),
    )
)
def test_no_input_fails_except_by_refusal(data: bytes) -> None:
    mt940.identify(data)
    try:
        statements = mt940.parse(data)
    except StatementRefused:
        return
    for statement in statements:
        statement.checks()
        assert statement.format == "mt940"


if __name__ == "__main__":
    write_goldens()
