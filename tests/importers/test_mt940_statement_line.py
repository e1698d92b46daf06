"""The MT940 statement line (:61:) read by the field's grammar, written from the SWIFT MT940
message reference guide (Standards MT, Category 9, field 61 "Statement Line"):

    6!n[4!n]2a[1!a]15d1!a3!c16x[//16x][34x]

value date, entry date, debit/credit mark (C, D, RC, RD), funds code, amount, transaction type
identification code (S + message type, N + code, F + code), reference for the account owner,
reference of the account servicing institution after '//', supplementary details on the next
line. Several banks leave the transaction type out ('D20,00NONREF'); such a line must still
read whole, and the owner's reference must never become the line's bank id.
"""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing_desk.domain.statements import StatementLine
from billing_desk.importers.statements import mt940


def statement_with(*lines: str) -> bytes:
    body = "".join(f":61:{line}\r\n" for line in lines)
    return (
        ":20:STMT\r\n:25:NL00BANK0123456789\r\n:28C:1/1\r\n:60F:C260601EUR1000,00\r\n"
        f"{body}:62F:C260630EUR1000,00\r\n-\r\n"
    ).encode()


def only_line(line: str) -> StatementLine:
    (statement,) = mt940.parse(statement_with(line))
    (read,) = statement.lines
    return read


@pytest.mark.parametrize(
    ("line", "kind", "reference", "bank_id"),
    [
        # With the type code the standard asks for.
        ("2606020602D20,00NTRFNONREF//B-1", "NTRF", None, "B-1"),
        ("2606020602D20,00NTRFINV 4711//B-1", "NTRF", "INV 4711", "B-1"),
        ("260602C20,00S103INV 4711", "S103", "INV 4711", None),
        ("260602C20,00N541REF", "N541", "REF", None),
        ("260602C20,00FMSCINV 4711", "FMSC", "INV 4711", None),
        # Without it: the whole owner's reference is the reference.
        ("2606020602D20,00NONREF", None, None, None),
        ("260602D20,00NONREF//0601231234567", None, None, "0601231234567"),
        ("260602C20,00INV 4711//B-2", None, "INV 4711", "B-2"),
        ("260602C20,00NOTPROVIDED", None, None, None),
        ("260602C20,00REF1234", None, "REF1234", None),
    ],
)
def test_the_type_code_is_read_only_where_the_standard_puts_one(
    line: str, kind: str | None, reference: str | None, bank_id: str | None
) -> None:
    read = only_line(line)
    assert (read.kind, read.reference, read.bank_id) == (kind, reference, bank_id)
    assert read.amount.minor in (2000, -2000)


def test_the_owners_reference_is_never_the_bank_id() -> None:
    """Two payments quoting the same invoice: the reference repeats, so it identifies nothing."""
    (statement,) = mt940.parse(
        statement_with("260602C20,00NTRFINV-4711", "260603C30,00NTRFINV-4711")
    )
    assert [line.bank_id for line in statement.lines] == [None, None]
    assert [line.reference for line in statement.lines] == ["INV-4711", "INV-4711"]


def test_a_whole_file_of_type_less_lines_keeps_every_line_apart() -> None:
    (statement,) = mt940.parse(
        statement_with("260602D20,00NONREF", "260602D20,00NONREF", "260603C5,00NONREF")
    )
    assert [(line.booked, line.amount.minor, line.bank_id) for line in statement.lines] == [
        (date(2026, 6, 2), -2000, None),
        (date(2026, 6, 2), -2000, None),
        (date(2026, 6, 3), 500, None),
    ]


# --- The grammar, generated ------------------------------------------------------------------

_X = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-?().,'+ "
_NOT_A_TYPE_START = (
    "ABCDEGHIJKLMOPQRTUVWXYZ"  # a letter, but not S, N or F: digits would join the amount
)


@st.composite
def statement_lines(draw: st.DrawFn) -> tuple[str, dict[str, object]]:
    day = draw(st.dates(date(2000, 1, 1), date(2049, 12, 31)))
    entry = draw(st.booleans())
    mark = draw(st.sampled_from(["C", "D"]))
    units = draw(st.integers(0, 10**9))
    cents = draw(st.integers(0, 99))
    typed = draw(st.booleans())
    if typed:
        kind = draw(
            st.one_of(
                st.from_regex(r"S[0-9]{3}", fullmatch=True),
                st.from_regex(r"[NF][A-Z0-9]{3}", fullmatch=True),
            )
        )
        reference = draw(st.text(_X, min_size=1, max_size=16).map(str.strip).filter(bool))
    else:
        kind = None
        reference = (
            draw(st.sampled_from(_NOT_A_TYPE_START)) + draw(st.text(_X, max_size=15)).rstrip()
        )
    if "//" in reference or reference.upper().startswith(("NONREF", "NOTPROVIDED", "NOREF")):
        reference = "R" + reference.replace("/", "")[:15]
    bank = draw(
        st.none() | st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-", min_size=1, max_size=16)
    )
    text = f"{day:%y%m%d}{f'{day:%m%d}' if entry else ''}{mark}{units},{cents:02d}"
    text += f"{kind or ''}{reference}{f'//{bank}' if bank else ''}"
    sign = 1 if mark == "C" else -1
    wanted = {
        "booked": day,
        "minor": sign * (units * 100 + cents),
        "kind": kind,
        "reference": reference.strip(),
        "bank_id": bank,
    }
    return text, wanted


@settings(max_examples=400, deadline=None)
@given(statement_lines())
def test_every_line_the_grammar_allows_reads_field_by_field(
    case: tuple[str, dict[str, object]],
) -> None:
    text, wanted = case
    read = only_line(text)
    assert {
        "booked": read.booked,
        "minor": read.amount.minor,
        "kind": read.kind,
        "reference": read.reference,
        "bank_id": read.bank_id,
    } == wanted


# --- Structured :86: over several lines --------------------------------------------------------


@pytest.mark.parametrize(
    "details",
    [
        # The party's account cut across lines (SWIFT lines are 65 characters; banks cut anywhere).
        ":86:/BENM/NL12ABNA012345\r\n6789/ABNANL2A/Acme Care Home/Rotterdam/REMI/USTD//Invoice 17/",
        # A line ending at a subfield's slash, the next starting with one.
        ":86:/BENM/0123456789/\r\n/ABNANL2A/Acme Care Home/Rotterdam\r\n/REMI/USTD//Invoice 17/",
        # A domestic account written with a prefix letter.
        ":86:/BENM/P000029225//Acme Care Home/Rotterdam/REMI/USTD//Invoice 17/",
    ],
)
def test_a_party_spread_over_lines_gives_its_name_and_the_purpose(details: str) -> None:
    data = statement_with("260602C20,00NTRFNONREF//B-9").replace(
        b"\r\n:62F:", b"\r\n" + details.encode() + b"\r\n:62F:"
    )
    (statement,) = mt940.parse(data)
    (line,) = statement.lines
    assert (line.counterparty, line.description) == ("Acme Care Home", "Invoice 17")
