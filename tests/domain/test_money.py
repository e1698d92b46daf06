"""Money: exact minor units, the ISO 4217 table, and the parser for what users type."""

from __future__ import annotations

import copy
import pickle
import re
from decimal import Decimal, localcontext

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing_desk.domain.errors import BadInput
from billing_desk.domain.money import (
    ISO_4217_EXPONENTS,
    MAX_MINOR,
    CurrencyMismatch,
    Money,
    currency_exponent,
    parse_money,
)

currencies = st.sampled_from(sorted(ISO_4217_EXPONENTS))
minors = st.integers(min_value=-MAX_MINOR, max_value=MAX_MINOR)
small_minors = st.integers(min_value=-(10**15), max_value=10**15)


def money_in(currency: str, values: st.SearchStrategy[int] = minors) -> st.SearchStrategy[Money]:
    return values.map(lambda minor: Money.from_minor(minor, currency))


# --- the currency table ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "exponent"),
    [
        ("USD", 2),
        ("EUR", 2),
        ("GBP", 2),
        ("CHF", 2),
        ("JPY", 0),
        ("KRW", 0),
        ("CLP", 0),
        ("ISK", 0),
        ("VND", 0),
        ("XAF", 0),
        ("XOF", 0),
        ("XPF", 0),
        ("BHD", 3),
        ("KWD", 3),
        ("OMR", 3),
        ("JOD", 3),
        ("IQD", 3),
        ("LYD", 3),
        ("TND", 3),
        ("CLF", 4),
        ("UYW", 4),
    ],
)
def test_exponents_follow_iso_4217(code: str, exponent: int) -> None:
    assert currency_exponent(code) == exponent


def test_every_code_is_three_upper_case_letters_with_a_sane_exponent() -> None:
    assert len(ISO_4217_EXPONENTS) > 150
    for code, exponent in ISO_4217_EXPONENTS.items():
        assert re.fullmatch(r"[A-Z]{3}", code), code
        assert exponent in (0, 2, 3, 4), code


def test_the_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        ISO_4217_EXPONENTS["ABC"] = 2  # type: ignore[index]


@pytest.mark.parametrize("code", ["ABC", "usd", "US", "USDX", "", "XAU", "XXX"])
def test_unknown_currency_codes_are_refused(code: str) -> None:
    message = f"'{code}' is not an ISO 4217 currency code; use a three-letter code such as USD."
    with pytest.raises(BadInput) as refused:
        currency_exponent(code)
    assert refused.value.message == message
    with pytest.raises(BadInput):
        Money(1, code)
    with pytest.raises(BadInput):
        parse_money("1", code)


# --- construction ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        (5, "USD", 500),
        (-5, "USD", -500),
        (0, "USD", 0),
        ("1.23", "USD", 123),
        ("-1.23", "USD", -123),
        ("1.2", "USD", 120),
        ("0", "USD", 0),
        ("-0.00", "USD", 0),
        ("18.150", "EUR", 1815),
        (Decimal("0.5"), "USD", 50),
        (Decimal("1.10"), "USD", 110),
        (Decimal("12E-1"), "USD", 120),
        (Decimal("1E+3"), "JPY", 1000),
        (Decimal("-0"), "USD", 0),
        (Decimal("1.0000000000000000000000000000000000"), "USD", 100),
        (1000, "JPY", 1000),
        ("0.005", "BHD", 5),
        ("1.2345", "CLF", 12345),
    ],
)
def test_money_is_built_from_major_units(
    amount: int | Decimal | str, currency: str, minor: int
) -> None:
    money = Money(amount, currency)
    assert money.minor == minor
    assert money.currency == currency
    assert money == Money.from_minor(minor, currency)


def test_decimal_conversion_ignores_the_decimal_context() -> None:
    with localcontext() as context:
        context.prec = 3
        money = Money(Decimal("123456.78"), "USD")
        assert money.minor == 12345678
        assert money.as_decimal() == Decimal("123456.78")


@pytest.mark.parametrize(
    ("amount", "currency", "message"),
    [
        (
            "12.345",
            "USD",
            "'12.345' has more decimal places than USD allows (2); round it to 2 places first.",
        ),
        (
            Decimal("0.5"),
            "JPY",
            "'0.5' has more decimal places than JPY allows (0); round it to 0 places first.",
        ),
        ("1,234.56", "USD", "'1,234.56' is not an amount in plain digits; write it like 1234.56."),
        ("1e3", "USD", "'1e3' is not an amount in plain digits; write it like 1234.56."),
        (" 1.00", "USD", "' 1.00' is not an amount in plain digits; write it like 1234.56."),
        ("+1", "USD", "'+1' is not an amount in plain digits; write it like 1234.56."),
        ("١٢٣", "USD", "'١٢٣' is not an amount in plain digits; write it like 1234.56."),
        ("NaN", "USD", "'NaN' is not an amount in plain digits; write it like 1234.56."),
        (Decimal("NaN"), "USD", "'NaN' is not an amount; use a number such as 1234.56."),
        (Decimal("sNaN"), "USD", "'sNaN' is not an amount; use a number such as 1234.56."),
        (Decimal("-Infinity"), "JPY", "'-Infinity' is not an amount; use a number such as 1234."),
        (
            10**16,
            "USD",
            "The amount is too large; USD amounts have at most 16 digits before the decimal point.",
        ),
        (
            Decimal("1E+999999999"),
            "USD",
            "The amount is too large; USD amounts have at most 16 digits before the decimal point.",
        ),
    ],
)
def test_money_refuses_bad_amounts(
    amount: int | Decimal | str, currency: str, message: str
) -> None:
    with pytest.raises(BadInput) as refused:
        Money(amount, currency)
    assert refused.value.message == message


@given(st.floats(allow_nan=True, allow_infinity=True), currencies)
def test_float_is_never_money(value: float, currency: str) -> None:
    with pytest.raises(TypeError, match="int, Decimal or str"):
        Money(value, currency)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="int, Decimal or str"):
        Money.from_minor(value, currency)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="multiplied by an int"):
        Money.zero(currency) * value  # type: ignore[operator]


@pytest.mark.parametrize("value", [True, False, None, b"1", [1], 1 + 0j])
def test_other_types_are_not_money(value: object) -> None:
    with pytest.raises(TypeError, match="int, Decimal or str"):
        Money(value, "USD")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="int, Decimal or str"):
        Money.from_minor(value, "USD")  # type: ignore[arg-type]


def test_money_is_immutable_and_hashable() -> None:
    money = Money("1.23", "USD")
    with pytest.raises(AttributeError, match="immutable"):
        money.minor = 5  # type: ignore[misc]
    with pytest.raises(AttributeError, match="immutable"):
        del money.currency
    with pytest.raises(AttributeError):
        money.note = "x"
    assert {money, Money.from_minor(123, "USD")} == {money}
    assert pickle.loads(pickle.dumps(money)) == money  # noqa: S301 - bytes we just made
    assert copy.copy(money) is money
    assert copy.deepcopy(money) is money


# --- arithmetic and comparison ---------------------------------------------------------------


@given(currencies.flatmap(lambda c: st.tuples(*[money_in(c, small_minors)] * 3)))
def test_addition_is_associative_and_commutative(trio: tuple[Money, Money, Money]) -> None:
    a, b, c = trio
    assert (a + b) + c == a + (b + c)
    assert a + b == b + a
    assert (a + b) - b == a
    assert a - a == Money.zero(a.currency)
    negated = -a
    assert -negated == a
    assert abs(a) == (a if not a.is_negative() else -a)
    assert a * 3 == a + a + a == 3 * a
    assert Money.total([a, b, c], a.currency) == a + b + c


@given(currencies.flatmap(lambda c: st.tuples(money_in(c), money_in(c))))
def test_ordering_follows_minor_units(pair: tuple[Money, Money]) -> None:
    a, b = pair
    assert (a < b) == (a.minor < b.minor)
    assert (a <= b) == (a.minor <= b.minor)
    assert (a > b) == (a.minor > b.minor)
    assert (a >= b) == (a.minor >= b.minor)
    assert (a == b) == (a.minor == b.minor)


def test_predicates() -> None:
    assert Money.zero("USD").is_zero()
    assert Money("-0.01", "USD").is_negative()
    assert Money("0.01", "USD").is_positive()
    assert not Money.zero("USD").is_positive()
    assert not Money.zero("USD").is_negative()


def test_mixing_currencies_is_a_bug() -> None:
    usd, eur = Money(1, "USD"), Money(1, "EUR")
    assert usd != eur
    with pytest.raises(CurrencyMismatch, match="Cannot add USD and EUR amounts"):
        _ = usd + eur
    with pytest.raises(CurrencyMismatch):
        _ = usd - eur
    with pytest.raises(CurrencyMismatch, match="Cannot compare"):
        _ = usd < eur
    with pytest.raises(CurrencyMismatch):
        Money.total([usd, eur], "USD")
    assert isinstance(CurrencyMismatch("x"), ValueError)


def test_money_does_not_mix_with_plain_numbers() -> None:
    usd = Money(1, "USD")
    assert usd != 100
    assert usd != Decimal("1.00")
    with pytest.raises(TypeError):
        _ = usd + 1  # type: ignore[operator]
    with pytest.raises(TypeError):
        _ = usd < 1  # type: ignore[operator]
    with pytest.raises(TypeError, match="multiplied by an int"):
        _ = usd * Decimal("1.5")  # type: ignore[operator]
    with pytest.raises(TypeError, match="multiplied by an int"):
        _ = usd * True
    with pytest.raises(TypeError, match="adds Money"):
        Money.total([usd, 1], "USD")  # type: ignore[list-item]


def test_total_of_nothing_is_zero() -> None:
    assert Money.total([], "JPY") == Money.zero("JPY")


# --- text ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("minor", "currency", "formatted", "plain"),
    [
        (123456, "USD", "1,234.56 USD", "1234.56"),
        (-123456, "USD", "-1,234.56 USD", "-1234.56"),
        (0, "USD", "0.00 USD", "0.00"),
        (5, "USD", "0.05 USD", "0.05"),
        (-5, "USD", "-0.05 USD", "-0.05"),
        (1234567, "JPY", "1,234,567 JPY", "1234567"),
        (5, "BHD", "0.005 BHD", "0.005"),
        (12345, "CLF", "1.2345 CLF", "1.2345"),
        (MAX_MINOR, "JPY", "999,999,999,999,999,999 JPY", "999999999999999999"),
    ],
)
def test_text_forms(minor: int, currency: str, formatted: str, plain: str) -> None:
    money = Money.from_minor(minor, currency)
    assert money.format() == formatted
    assert str(money) == formatted
    assert money.plain() == plain
    assert repr(money) == f"Money('{plain}', '{currency}')"
    assert money.as_decimal() == Decimal(plain)
    assert str(money.as_decimal()) == plain
    assert money.to_canonical() == {"minor": minor, "currency": currency}


@given(currencies.flatmap(money_in))
def test_every_form_reads_back_as_the_same_money(money: Money) -> None:
    currency = money.currency
    as_decimal = money.as_decimal()
    assert as_decimal.as_tuple().exponent == -currency_exponent(currency)
    assert Money(as_decimal, currency) == money
    assert Money(str(as_decimal), currency) == money
    assert Money(money.plain(), currency) == money
    assert eval(repr(money), {"Money": Money}) == money  # noqa: S307 - our own repr
    grouped = money.format().removesuffix(f" {currency}")
    assert parse_money(grouped, currency, allow_negative=True) == money
    assert parse_money(money.format(), currency, allow_negative=True) == money
    assert parse_money(money.plain(), currency, allow_negative=True) == money


# --- parse_money -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("1234.56", "USD", 123456),
        ("1,234.56", "USD", 123456),
        ("1,234,567.89", "USD", 123456789),
        ("1234.5", "USD", 123450),
        ("1234", "USD", 123400),
        ("1,234", "USD", 123400),
        (" 12.00 ", "USD", 1200),
        ("\t12.00\n", "USD", 1200),
        ("+5", "USD", 500),
        ("0", "USD", 0),
        ("0.00", "USD", 0),
        ("-0.00", "USD", 0),
        ("007.50", "USD", 750),
        ("12.3400", "USD", 1234),
        ("18.150", "EUR", 1815),
        ("$12.00", "USD", 1200),
        ("$ 12.00", "USD", 1200),
        ("$12", "CAD", 1200),
        ("€18.15", "EUR", 1815),
        ("£5", "GBP", 500),
        ("¥1,000", "JPY", 1000),
        ("USD 12.00", "USD", 1200),
        ("USD12.00", "USD", 1200),
        ("12.00 USD", "USD", 1200),
        ("12.00USD", "USD", 1200),
        ("usd 12", "USD", 1200),
        ("USD $12.00", "USD", 1200),
        ("1000", "JPY", 1000),
        ("1.000", "JPY", 1),
        ("0.005", "BHD", 5),
        ("1,234.567", "KWD", 1234567),
        ("1.2345", "CLF", 12345),
        ("9,999,999,999,999,999.99", "USD", MAX_MINOR),
        ("999999999999999999", "JPY", MAX_MINOR),
        ("00000000000000000000000001.00", "USD", 100),
    ],
)
def test_parse_money_accepts(text: str, currency: str, minor: int) -> None:
    assert parse_money(text, currency) == Money.from_minor(minor, currency)


@pytest.mark.parametrize(
    ("text", "minor"),
    [("-5.00", -500), ("-1,234.56", -123456), ("-$5", -500), ("$-5", -500), ("USD -5", -500)],
)
def test_parse_money_accepts_negative_amounts_only_when_allowed(text: str, minor: int) -> None:
    assert parse_money(text, "USD", allow_negative=True) == Money.from_minor(minor, "USD")
    with pytest.raises(BadInput) as refused:
        parse_money(text, "USD")
    assert refused.value.message == f"'{text}' is negative; enter a positive amount."


@pytest.mark.parametrize("text", ["0", "0.00", "-0", "$0.00"])
def test_parse_money_refuses_zero_when_asked(text: str) -> None:
    with pytest.raises(BadInput) as refused:
        parse_money(text, "USD", allow_zero=False, allow_negative=True)
    assert refused.value.message == f"'{text}' is zero; enter an amount greater than zero."


NOT_AN_AMOUNT = "'{}' is not an amount; enter a number such as 1234.56."
MISPLACED_COMMA = (
    "'{}' has a comma out of place; commas separate thousands (1,234.56) and a dot marks the "
    "decimals."
)
OTHER_DIGITS = "'{}' uses digits other than 0-9; type it as a number such as 1234.56."
EXPONENT = "'{}' is not an amount; write it out in digits such as 1000.00."

REFUSED: list[tuple[str, str, str]] = [
    ("", "USD", "The amount is empty; enter a number such as 1234.56."),
    ("   ", "USD", "The amount is empty; enter a number such as 1234.56."),
    ("abc", "USD", NOT_AN_AMOUNT.format("abc")),
    ("USD", "USD", NOT_AN_AMOUNT.format("USD")),
    ("12 ABC", "USD", NOT_AN_AMOUNT.format("12 ABC")),
    ("1.2.3", "USD", NOT_AN_AMOUNT.format("1.2.3")),
    ("..", "USD", NOT_AN_AMOUNT.format("..")),
    (".", "USD", NOT_AN_AMOUNT.format(".")),
    (".50", "USD", NOT_AN_AMOUNT.format(".50")),
    ("5.", "USD", NOT_AN_AMOUNT.format("5.")),
    ("12 00", "USD", NOT_AN_AMOUNT.format("12 00")),
    ("(5.00)", "USD", NOT_AN_AMOUNT.format("(5.00)")),
    ("--5", "USD", NOT_AN_AMOUNT.format("--5")),
    ("+-5", "USD", NOT_AN_AMOUNT.format("+-5")),
    ("++5", "USD", NOT_AN_AMOUNT.format("++5")),
    ("5-", "USD", NOT_AN_AMOUNT.format("5-")),
    ("nan", "USD", NOT_AN_AMOUNT.format("nan")),
    ("NaN", "USD", NOT_AN_AMOUNT.format("NaN")),
    ("inf", "USD", NOT_AN_AMOUNT.format("inf")),
    ("-inf", "USD", NOT_AN_AMOUNT.format("-inf")),
    ("Infinity", "USD", NOT_AN_AMOUNT.format("Infinity")),
    ("0x10", "USD", NOT_AN_AMOUNT.format("0x10")),
    ("1_000", "USD", NOT_AN_AMOUNT.format("1_000")),
    ("1 000", "USD", NOT_AN_AMOUNT.format("1 000")),
    ("1e3", "USD", EXPONENT.format("1e3")),
    ("1E3", "USD", EXPONENT.format("1E3")),
    ("1.5e-2", "USD", EXPONENT.format("1.5e-2")),
    ("1e3", "JPY", "'1e3' is not an amount; write it out in digits such as 1000."),
    ("1,2", "USD", MISPLACED_COMMA.format("1,2")),
    ("1,23.00", "USD", MISPLACED_COMMA.format("1,23.00")),
    ("12,34", "USD", MISPLACED_COMMA.format("12,34")),
    ("1,2345", "USD", MISPLACED_COMMA.format("1,2345")),
    ("1234,567", "USD", MISPLACED_COMMA.format("1234,567")),
    ("0,50", "USD", MISPLACED_COMMA.format("0,50")),
    ("1,,234", "USD", MISPLACED_COMMA.format("1,,234")),
    ("1,234,", "USD", MISPLACED_COMMA.format("1,234,")),
    (",123", "USD", NOT_AN_AMOUNT.format(",123")),
    ("١٢٣", "USD", OTHER_DIGITS.format("١٢٣")),
    ("１２３", "USD", OTHER_DIGITS.format("１２３")),
    ("12.٣", "USD", OTHER_DIGITS.format("12.٣")),
    (
        "12.345",
        "USD",
        "'12.345' has more decimal places than USD allows (2); enter an amount such as 12.34.",
    ),
    (
        "1,234.567",
        "USD",
        "'1,234.567' has more decimal places than USD allows (2); enter an amount such as "
        "1,234.56.",
    ),
    (
        "12.5",
        "JPY",
        "'12.5' has more decimal places than JPY allows (0); enter an amount such as 12.",
    ),
    (
        "0.0001",
        "BHD",
        "'0.0001' has more decimal places than BHD allows (3); enter an amount such as 0.000.",
    ),
    (
        "12.00 EUR",
        "USD",
        "'12.00 EUR' is in EUR, not USD; enter the amount in USD, such as 1234.56.",
    ),
    ("EUR 12", "USD", "'EUR 12' is in EUR, not USD; enter the amount in USD, such as 1234.56."),
    ("12 jpy", "USD", "'12 jpy' is in JPY, not USD; enter the amount in USD, such as 1234.56."),
    (
        "€12.00",
        "USD",
        "'€12.00' is marked €, which does not stand for USD; enter the amount without it, such "
        "as 1234.56.",
    ),
    (
        "$12",
        "EUR",
        "'$12' is marked $, which does not stand for EUR; enter the amount without it, such as "
        "1234.56.",
    ),
    (
        "12345678901234567",
        "USD",
        "'12345678901234567' is too large; USD amounts have at most 16 digits before the "
        "decimal point.",
    ),
    (
        "1234567890123456789",
        "JPY",
        "'1234567890123456789' is too large; JPY amounts have at most 18 digits before the "
        "decimal point.",
    ),
    (
        "9" * 100,
        "USD",
        "'9999999999999999999999999999999999999...' is too large; USD amounts have at most 16 "
        "digits before the decimal point.",
    ),
]


@pytest.mark.parametrize(("text", "currency", "message"), REFUSED)
def test_parse_money_refuses_with_one_clear_sentence(
    text: str, currency: str, message: str
) -> None:
    with pytest.raises(BadInput) as refused:
        parse_money(text, currency, allow_negative=True)
    assert refused.value.message == message
    assert refused.value.exit_code == 2


def test_parse_money_reads_text_only() -> None:
    with pytest.raises(TypeError):
        parse_money(12.5, "USD")  # type: ignore[arg-type]


@given(st.text(max_size=40), currencies, st.booleans(), st.booleans())
def test_parse_money_either_reads_an_amount_or_explains(
    text: str, currency: str, allow_negative: bool, allow_zero: bool
) -> None:
    try:
        money = parse_money(text, currency, allow_negative=allow_negative, allow_zero=allow_zero)
    except BadInput as refused:
        assert refused.message.endswith(".")
        assert "\n" not in refused.message or "\n" in text
    else:
        assert money.currency == currency
        assert abs(money.minor) <= MAX_MINOR
        assert allow_negative or not money.is_negative()
        assert allow_zero or not money.is_zero()


@given(st.text(alphabet="0123456789.,-+e $€", max_size=30), currencies)
def test_money_from_text_either_reads_plain_digits_or_refuses(text: str, currency: str) -> None:
    try:
        money = Money(text, currency)
    except BadInput:
        return
    assert Money(money.plain(), currency) == money


@pytest.mark.parametrize(
    ("text", "decimal", "group", "minor"),
    [
        ("1.234,56", ",", ".", 123456),
        ("1234,5", ",", ".", 123450),
        ("1\u202f234,56", ",", "\u202f", 123456),
        ("1 234,56", ",", " ", 123456),
        ("1,234.56", ".", ",", 123456),
        ("€ 12,00", ",", ".", 1200),
    ],
)
def test_amounts_as_the_locale_writes_them(text: str, decimal: str, group: str, minor: int) -> None:
    from billing_desk.domain.money import parse_local_money

    parsed = parse_local_money(text, "EUR", decimal_mark=decimal, group_mark=group)
    assert parsed.minor == minor


@pytest.mark.parametrize("text", ["12.5", "1.23.4,5", "12,345", "1e3", "12,5.0"])
def test_a_misplaced_mark_is_refused_never_guessed(text: str) -> None:
    from billing_desk.domain.money import parse_local_money

    with pytest.raises(BadInput, match=re.escape(f"'{text}'")):
        parse_local_money(text, "EUR", decimal_mark=",", group_mark=".")
