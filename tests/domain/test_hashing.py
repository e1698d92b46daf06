"""Canonical bytes and SHA-256 of records, pinned by golden vectors (see docs/hashing-vectors.md).

The expected bytes and digests below were computed once and written in by hand: if one of these
tests fails, the encoding changed, and every stored hash with it. Do not "fix" the literals.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from enum import Enum, IntEnum, StrEnum

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing_desk.domain.hashing import canonical_bytes, record_digest, sha256_hex
from billing_desk.domain.money import Money


class Kind(Enum):
    CHECK = "check"


class Priority(IntEnum):
    HIGH = 1


class Field(StrEnum):
    AMOUNT = "amount"


GOLDEN: list[tuple[str, Mapping[str, object], bytes, str]] = [
    (
        "empty",
        {},
        b"{}",
        "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
    ),
    (
        "payment",
        {
            "kind": "payment",
            "facility": "STMARY",
            "amount": Money("1234.56", "USD"),
            "received_on": date(2026, 5, 14),
            "reference": None,
            "cleared": False,
            "sequence": 42,
        },
        b'{"amount":{"currency":"USD","minor":123456},"cleared":false,"facility":"STMARY",'
        b'"kind":"payment","received_on":"2026-05-14","reference":null,"sequence":42}',
        "a301c2c8d3296115875ccdc86f6c0f486b099ce1d25b455f6442e783f462b7ab",
    ),
    (
        "names",
        {
            "facility_name": "Clínica São José",
            "client": "Zoë Ünal",
            "note": "Paid in full 👍",
            "amount": Money("18.15", "EUR"),
        },
        b'{"amount":{"currency":"EUR","minor":1815},"client":"Zo\xc3\xab \xc3\x9cnal",'
        b'"facility_name":"Cl\xc3\xadnica S\xc3\xa3o Jos\xc3\xa9",'
        b'"note":"Paid in full \xf0\x9f\x91\x8d"}',
        "bd63f2d394c5b7a6f2284e86b8e2c7e7518d4da32ae688f6e16bbf19f62d85c7",
    ),
    (
        "times",
        {
            "recorded_at": datetime(2026, 5, 14, 9, 30, tzinfo=timezone(timedelta(hours=-4))),
            "voided_at": datetime(
                2026, 1, 1, 0, 0, 0, 123, tzinfo=timezone(timedelta(hours=5, minutes=30))
            ),
            "due_on": date(2026, 6, 13),
        },
        b'{"due_on":"2026-06-13","recorded_at":"2026-05-14T13:30:00.000000Z",'
        b'"voided_at":"2025-12-31T18:30:00.000123Z"}',
        "60a8306cd53cc741f6c2a5b01a5c8d9851b40b8867e823bdfaf87676f269e092",
    ),
    (
        "nested",
        {
            "invoice": {
                "number": "INV-2026-0001",
                "lines": [
                    {"trip": "T1", "amount": Money.from_minor(4000, "USD")},
                    {"trip": "T2", "amount": Money.from_minor(-1234, "USD")},
                ],
                "total": Money.from_minor(2766, "USD"),
            },
            "adjustment_minor": -250,
            "flags": [True, False, None],
            "empty_object": {},
            "empty_list": [],
        },
        b'{"adjustment_minor":-250,"empty_list":[],"empty_object":{},"flags":[true,false,null],'
        b'"invoice":{"lines":[{"amount":{"currency":"USD","minor":4000},"trip":"T1"},'
        b'{"amount":{"currency":"USD","minor":-1234},"trip":"T2"}],"number":"INV-2026-0001",'
        b'"total":{"currency":"USD","minor":2766}}}',
        "7ae405f653a9a8bdadd6c70dc862e0a31c524d6286d8f8339428b56693f01c76",
    ),
    (
        "escapes",
        {
            "memo": 'He said "paid" \\ ok\nline 2\tcol\r\u0001\u001f\u007f\u2028end',
            "é": 1,
            "Z": 2,
            "a": 3,
            "key with space": "x",
        },
        b'{"Z":2,"a":3,"key with space":"x",'
        b'"memo":"He said \\"paid\\" \\\\ ok\\nline 2\\tcol\\r\\u0001\\u001f\x7f\xe2\x80\xa8end",'
        b'"\xc3\xa9":1}',
        "9176e17715a0925b8a25a87fa93e0d9cdc75710b25d0c8cc4c0eca718ac2b10b",
    ),
    (
        "ordering",
        {
            "kind": Kind.CHECK,
            "priority": Priority.HIGH,
            "yen": Money(1000, "JPY"),
            "dinar": Money("0.005", "BHD"),
            "largest": 9223372036854775807,
            "zero": 0,
            "～": "fullwidth tilde U+FF5E",
            "😀": "astral U+1F600",
        },
        b'{"dinar":{"currency":"BHD","minor":5},"kind":"check","largest":9223372036854775807,'
        b'"priority":1,"yen":{"currency":"JPY","minor":1000},"zero":0,'
        b'"\xef\xbd\x9e":"fullwidth tilde U+FF5E","\xf0\x9f\x98\x80":"astral U+1F600"}',
        "c349952b1f23998faf7e1c030ab0834529ebea55b3e42096898c9f979baf1ecb",
    ),
]


@pytest.mark.parametrize(
    ("record", "expected_bytes", "expected_digest"),
    [pytest.param(record, data, digest, id=name) for name, record, data, digest in GOLDEN],
)
def test_golden_vectors(
    record: Mapping[str, object], expected_bytes: bytes, expected_digest: str
) -> None:
    assert canonical_bytes(record) == expected_bytes
    assert sha256_hex(expected_bytes) == expected_digest
    assert record_digest(record) == expected_digest


def test_sha256_hex_is_plain_sha256() -> None:
    abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert sha256_hex(b"abc") == abc
    assert sha256_hex(b"") == hashlib.sha256(b"").hexdigest()


def test_key_order_of_the_input_does_not_matter() -> None:
    for _, record, expected, _ in GOLDEN:
        backwards = dict(reversed(list(record.items())))
        assert canonical_bytes(backwards) == expected
        assert canonical_bytes(OrderedDict(sorted(record.items()))) == expected


@given(st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8), max_size=12))
def test_any_key_order_gives_the_same_bytes(record: dict[str, object]) -> None:
    shuffled = dict(sorted(record.items(), key=lambda item: hash(item[0])))
    assert canonical_bytes(shuffled) == canonical_bytes(record)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.text(), json_values, max_size=6))
def test_canonical_bytes_are_json_that_reencodes_to_the_same_bytes(
    record: dict[str, object],
) -> None:
    data = canonical_bytes(record)
    assert not data.endswith(b"\n")
    decoded = json.loads(data.decode("utf-8"))
    assert decoded == record
    assert canonical_bytes(decoded) == data


def test_tuples_are_arrays_like_lists() -> None:
    assert canonical_bytes({"a": (1, "x")}) == canonical_bytes({"a": [1, "x"]}) == b'{"a":[1,"x"]}'


def test_the_same_instant_in_any_zone_is_the_same_text() -> None:
    utc = datetime(2026, 5, 14, 13, 30, tzinfo=UTC)
    tokyo = utc.astimezone(timezone(timedelta(hours=9)))
    assert canonical_bytes({"at": utc}) == canonical_bytes({"at": tokyo})
    assert canonical_bytes({"at": utc}) == b'{"at":"2026-05-14T13:30:00.000000Z"}'


def test_strings_are_hashed_as_given_without_normalisation() -> None:
    composed = "José"
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    assert record_digest({"name": composed}) != record_digest({"name": decomposed})
    assert record_digest({"name": "x"}) != record_digest({"name": "x "})


def test_enum_keys_and_str_subclasses_are_their_plain_text() -> None:
    assert canonical_bytes({Field.AMOUNT: 1}) == b'{"amount":1}'
    assert canonical_bytes({"field": Field.AMOUNT}) == b'{"field":"amount"}'


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"amount": 1.5}, "amount: float is not allowed in canonical records"),
        (
            {"payment": {"amount": 12.5}},
            "payment.amount: float is not allowed in canonical records",
        ),
        (
            {"payment": {"amount": Decimal("12.50")}},
            "payment.amount: Decimal is not allowed in canonical records",
        ),
        (
            {"lines": [{"amount": 1}, {"amount": Decimal("1")}]},
            r"lines\[1\].amount: Decimal is not allowed in canonical records",
        ),
        (
            {"payment": {"at": datetime(2026, 5, 14, 9, 30)}},
            "payment.at: a naive datetime is not allowed in canonical records",
        ),
        ({"tags": {"a", "b"}}, "tags: set is not allowed in canonical records"),
        ({"tags": frozenset()}, "tags: frozenset is not allowed in canonical records"),
        ({"blob": b"\x00"}, "blob: bytes is not allowed in canonical records"),
        ({"blob": bytearray()}, "blob: bytearray is not allowed in canonical records"),
        ({"n": float("nan")}, "n: float is not allowed in canonical records"),
        ({"r": range(3)}, "r: range is not allowed in canonical records"),
        ({"x": object()}, "x: object is not allowed in canonical records"),
        ({"payment": {1: "one"}}, "payment: key 1 is a int; canonical records have str keys"),
        ({"payment": {None: "x"}}, "payment: key None is a NoneType"),
        ({("a", "b"): 1}, r"record: key \('a', 'b'\) is a tuple"),
    ],
)
def test_values_outside_the_canonical_types_are_refused_with_their_path(
    record: Mapping[str, object], message: str
) -> None:
    with pytest.raises(TypeError, match=f"^{message}"):
        canonical_bytes(record)


def test_enum_values_must_be_text_or_integers() -> None:
    class Rate(Enum):
        HALF = 0.5

    with pytest.raises(TypeError, match=r"^rate: Rate with a float value is not allowed"):
        canonical_bytes({"rate": Rate.HALF})


def test_a_record_is_a_mapping() -> None:
    with pytest.raises(TypeError, match=r"^record: list is not allowed"):
        canonical_bytes([1, 2])  # type: ignore[arg-type]


def test_text_that_utf8_cannot_encode_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^note: text contains a lone surrogate"):
        canonical_bytes({"note": "\ud800"})


class _RepeatedKey(Mapping[str, object]):
    """A mapping that (wrongly) yields one key twice, as a broken custom Mapping might."""

    def __getitem__(self, key: str) -> object:
        return 1

    def __iter__(self) -> Iterator[str]:
        return iter(["amount", "amount"])

    def __len__(self) -> int:
        return 2


def test_a_key_seen_twice_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^payment: key 'amount' appears twice"):
        canonical_bytes({"payment": _RepeatedKey()})
