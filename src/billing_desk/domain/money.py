"""Money, the single gate for amounts: integer minor units with an ISO 4217 currency code.

Binary floats never become money: `Money` is built from `int`, `Decimal` or `str` only, and
`parse_money` turns what a user typed into `Money` or refuses it with one clear sentence.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Final, NoReturn, Self

from billing_desk.domain.errors import BadInput

# Minor-unit digits of every currency on ISO 4217 List One as published 2026-01-01 (SIX, the
# maintenance agency). Codes whose minor unit is "N.A." (XAU, XAG, XPD, XPT, XDR, XSU, XUA,
# XBA-XBD, XTS, XXX) are left out: nobody is billed in them. Withdrawn codes (ANG, BGN, CUC,
# HRK, SLL, ZWL ...) are gone from the list and so from here.
ISO_4217_EXPONENTS: Final[Mapping[str, int]] = MappingProxyType({
    "AED": 2, "AFN": 2, "ALL": 2, "AMD": 2, "AOA": 2, "ARS": 2, "AUD": 2, "AWG": 2, "AZN": 2,
    "BAM": 2, "BBD": 2, "BDT": 2, "BHD": 3, "BIF": 0, "BMD": 2, "BND": 2, "BOB": 2, "BOV": 2,
    "BRL": 2, "BSD": 2, "BTN": 2, "BWP": 2, "BYN": 2, "BZD": 2,
    "CAD": 2, "CDF": 2, "CHE": 2, "CHF": 2, "CHW": 2, "CLF": 4, "CLP": 0, "CNY": 2, "COP": 2,
    "COU": 2, "CRC": 2, "CUP": 2, "CVE": 2, "CZK": 2,
    "DJF": 0, "DKK": 2, "DOP": 2, "DZD": 2,
    "EGP": 2, "ERN": 2, "ETB": 2, "EUR": 2,
    "FJD": 2, "FKP": 2,
    "GBP": 2, "GEL": 2, "GHS": 2, "GIP": 2, "GMD": 2, "GNF": 0, "GTQ": 2, "GYD": 2,
    "HKD": 2, "HNL": 2, "HTG": 2, "HUF": 2,
    "IDR": 2, "ILS": 2, "INR": 2, "IQD": 3, "IRR": 2, "ISK": 0,
    "JMD": 2, "JOD": 3, "JPY": 0,
    "KES": 2, "KGS": 2, "KHR": 2, "KMF": 0, "KPW": 2, "KRW": 0, "KWD": 3, "KYD": 2, "KZT": 2,
    "LAK": 2, "LBP": 2, "LKR": 2, "LRD": 2, "LSL": 2, "LYD": 3,
    "MAD": 2, "MDL": 2, "MGA": 2, "MKD": 2, "MMK": 2, "MNT": 2, "MOP": 2, "MRU": 2, "MUR": 2,
    "MVR": 2, "MWK": 2, "MXN": 2, "MXV": 2, "MYR": 2, "MZN": 2,
    "NAD": 2, "NGN": 2, "NIO": 2, "NOK": 2, "NPR": 2, "NZD": 2,
    "OMR": 3,
    "PAB": 2, "PEN": 2, "PGK": 2, "PHP": 2, "PKR": 2, "PLN": 2, "PYG": 0,
    "QAR": 2,
    "RON": 2, "RSD": 2, "RUB": 2, "RWF": 0,
    "SAR": 2, "SBD": 2, "SCR": 2, "SDG": 2, "SEK": 2, "SGD": 2, "SHP": 2, "SLE": 2, "SOS": 2,
    "SRD": 2, "SSP": 2, "STN": 2, "SVC": 2, "SYP": 2, "SZL": 2,
    "THB": 2, "TJS": 2, "TMT": 2, "TND": 3, "TOP": 2, "TRY": 2, "TTD": 2, "TWD": 2, "TZS": 2,
    "UAH": 2, "UGX": 0, "USD": 2, "USN": 2, "UYI": 0, "UYU": 2, "UYW": 4, "UZS": 2,
    "VED": 2, "VES": 2, "VND": 0, "VUV": 0,
    "WST": 2,
    "XAD": 2, "XAF": 0, "XCD": 2, "XCG": 2, "XOF": 0, "XPF": 0,
    "YER": 2,
    "ZAR": 2, "ZMW": 2, "ZWG": 2,
})  # fmt: skip

# Amounts read from people (Money(amount) and parse_money) have at most 18 digits in minor
# units, so they always fit the database's signed 64-bit columns: 16 digits before the point for
# USD, 18 for JPY. Money.from_minor and arithmetic are not limited.
MAX_MINOR: Final = 10**18 - 1

# Currency symbols a user may type before an amount, and the currencies each may stand for.
_SYMBOLS: Final[dict[str, frozenset[str]]] = {
    "$": frozenset(
        {
            *("USD", "CAD", "AUD", "NZD", "HKD", "SGD", "TWD", "MXN", "ARS", "CLP", "COP"),
            *("CUP", "DOP", "UYU", "BSD", "BBD", "BZD", "BMD", "BND", "KYD", "FJD", "GYD"),
            *("JMD", "LRD", "NAD", "SBD", "SRD", "TTD", "XCD"),
        }
    ),
    "€": frozenset({"EUR"}),
    "£": frozenset({"GBP", "GIP", "FKP", "SHP", "EGP", "SSP"}),
    "¥": frozenset({"JPY", "CNY"}),
}

_PLAIN_AMOUNT: Final = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_CODE_BEFORE: Final = re.compile(r"([A-Za-z]{3})(?![A-Za-z])\s*(.+)", re.DOTALL)
_CODE_AFTER: Final = re.compile(r"(.+?)(?<![A-Za-z])\s*([A-Za-z]{3})", re.DOTALL)
_SIGN_AND_SYMBOL: Final = re.compile(r"([-+]?)([$€£¥]?)([-+]?)\s*(.*)", re.DOTALL)
_NUMBER: Final = re.compile(r"([0-9][0-9,]*)(?:\.([0-9]+))?")
_GROUPED: Final = re.compile(r"[1-9][0-9]{0,2}(?:,[0-9]{3})+")
_ECHO_LIMIT: Final = 40
_EXPONENT_FORM: Final = re.compile(r"[0-9.,]*[0-9][0-9.,]*[eE][-+]?[0-9]+")


def currency_exponent(code: str) -> int:
    """The number of minor-unit digits of an ISO 4217 currency (USD 2, JPY 0, BHD 3).

    Refuses (`BadInput`) anything that is not an active code written in upper case.
    """
    exponent = ISO_4217_EXPONENTS.get(code) if isinstance(code, str) else None
    if exponent is None:
        raise BadInput(
            f"'{code}' is not an ISO 4217 currency code; use a three-letter code such as USD."
        )
    return exponent


class CurrencyMismatch(ValueError):
    """Two amounts in different currencies were added, subtracted or compared: always a bug."""


class Money:
    """An exact amount of money: `minor` integer minor units (cents) of `currency`.

    `Money(amount, currency)` takes the amount in major units, as `int`, `Decimal` or plain
    decimal `str` ("1234.56"): `Money(5, "USD")` is 5.00 USD. It refuses `float` (and `bool`) with
    `TypeError`, and an amount more precise than the currency allows with `BadInput`, unless the
    extra digits are zeros. `Money.from_minor(123, "USD")` is 1.23 USD.

    Instances are immutable and hashable. Arithmetic and ordering need one currency; mixing
    currencies raises `CurrencyMismatch`, while `==` between currencies is simply False. There is
    no `__bool__`, so `if amount:` says nothing about the amount (a Money is truthy like any
    object, zero included): ask `is_zero()`, `is_negative()` or `is_positive()`.
    """

    __slots__ = ("_currency", "_minor")

    _minor: int
    _currency: str

    def __init__(self, amount: int | Decimal | str, currency: str) -> None:
        if isinstance(amount, bool) or not isinstance(amount, int | Decimal | str):
            _refuse_type("amount", amount)
        exponent = currency_exponent(currency)
        if isinstance(amount, str):
            if not _PLAIN_AMOUNT.fullmatch(amount):
                raise BadInput(
                    f"'{_echo(amount)}' is not an amount in plain digits; write it like "
                    f"{_example(exponent)}."
                )
            amount = Decimal(amount)  # exact: constructing a Decimal never rounds
        if isinstance(amount, int):
            minor = amount * 10**exponent
        else:
            minor = _minor_from_decimal(amount, currency, exponent)
        if abs(minor) > MAX_MINOR:
            raise BadInput(f"The amount is too large; {_limit(currency, exponent)}")
        _init(self, minor, currency)

    @classmethod
    def from_minor(cls, minor: int, currency: str) -> Self:
        """`minor` integer minor units of `currency`: `from_minor(123, "USD")` is 1.23 USD."""
        if isinstance(minor, bool) or not isinstance(minor, int):
            _refuse_type("minor", minor)
        currency_exponent(currency)
        money = cls.__new__(cls)
        _init(money, int(minor), currency)
        return money

    @classmethod
    def zero(cls, currency: str) -> Self:
        return cls.from_minor(0, currency)

    @classmethod
    def total(cls, items: Iterable[Money], currency: str) -> Self:
        """The sum of `items`, all in `currency`; zero when there are none."""
        minor = 0
        for item in items:
            if not isinstance(item, Money):
                raise TypeError(f"Money.total adds Money, not {type(item).__name__}")
            if item.currency != currency:
                _mismatch("add", item.currency, currency)
            minor += item.minor
        return cls.from_minor(minor, currency)

    @property
    def minor(self) -> int:
        """The amount in integer minor units: 123 for 1.23 USD."""
        return self._minor

    @property
    def currency(self) -> str:
        """The ISO 4217 code, upper case."""
        return self._currency

    @property
    def exponent(self) -> int:
        """Minor-unit digits of this currency."""
        return ISO_4217_EXPONENTS[self.currency]

    # Immutability: attributes are set once, in _init.
    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"Money is immutable; cannot set {name!r}")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"Money is immutable; cannot delete {name!r}")

    def __reduce__(self) -> tuple[Any, tuple[int, str]]:
        return (_from_minor, (self.minor, self.currency))

    def __copy__(self) -> Self:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> Self:
        return self

    # Predicates instead of truthiness.
    def is_zero(self) -> bool:
        return self.minor == 0

    def is_negative(self) -> bool:
        return self.minor < 0

    def is_positive(self) -> bool:
        return self.minor > 0

    # Arithmetic.
    def __add__(self, other: Money) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other, "add")
        return Money.from_minor(self.minor + other.minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other, "subtract")
        return Money.from_minor(self.minor - other.minor, self.currency)

    def __neg__(self) -> Money:
        return Money.from_minor(-self.minor, self.currency)

    def __pos__(self) -> Money:
        return self

    def __abs__(self) -> Money:
        return Money.from_minor(abs(self.minor), self.currency)

    def __mul__(self, factor: int) -> Money:
        if isinstance(factor, bool) or not isinstance(factor, int):
            raise TypeError(
                f"Money can only be multiplied by an int, not {type(factor).__name__}; "
                "rates and shares need an explicit rounding rule"
            )
        return Money.from_minor(self.minor * factor, self.currency)

    __rmul__ = __mul__

    # Equality and ordering.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        return self.minor == other.minor and self.currency == other.currency

    def __hash__(self) -> int:
        return hash((self.minor, self.currency))

    def __lt__(self, other: Money) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other, "compare")
        return self.minor < other.minor

    def __le__(self, other: Money) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other, "compare")
        return self.minor <= other.minor

    def __gt__(self, other: Money) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other, "compare")
        return self.minor > other.minor

    def __ge__(self, other: Money) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other, "compare")
        return self.minor >= other.minor

    def _same_currency(self, other: Money, verb: str) -> None:
        if self.currency != other.currency:
            _mismatch(verb, self.currency, other.currency)

    # Conversions and text.
    def as_decimal(self) -> Decimal:
        """The amount in major units with exactly `exponent` decimal places ("1234.50")."""
        digits = tuple(int(d) for d in str(abs(self.minor)))
        return Decimal((1 if self.minor < 0 else 0, digits, -self.exponent))

    def format(self) -> str:
        """For people: "1,234.56 USD", "-5.00 USD", "1,000 JPY"."""
        return f"{self._major(grouped=True)} {self.currency}"

    def plain(self) -> str:
        """The amount without grouping or code, as `Money()` reads it back: "1234.56"."""
        return self._major(grouped=False)

    def to_canonical(self) -> dict[str, int | str]:
        """The form hashed into canonical records: {"minor": 123, "currency": "USD"}."""
        return {"minor": self.minor, "currency": self.currency}

    def __str__(self) -> str:
        return self.format()

    def __repr__(self) -> str:
        return f"Money('{self.plain()}', '{self.currency}')"

    def _major(self, *, grouped: bool) -> str:
        exponent = self.exponent
        whole, part = divmod(abs(self.minor), 10**exponent)
        text = f"{whole:,}" if grouped else str(whole)
        if exponent:
            text += "." + str(part).zfill(exponent)
        return "-" + text if self.minor < 0 else text


def _init(money: Money, minor: int, currency: str) -> None:
    object.__setattr__(money, "_minor", minor)
    object.__setattr__(money, "_currency", currency)


def _from_minor(minor: int, currency: str) -> Money:
    return Money.from_minor(minor, currency)


def _refuse_type(what: str, value: object) -> NoReturn:
    raise TypeError(
        f"Money {what} must be an int, Decimal or str, not {type(value).__name__}; "
        "binary floats are never exact, so write Decimal('12.34') or '12.34'"
    )


def _mismatch(verb: str, left: str, right: str) -> NoReturn:
    raise CurrencyMismatch(f"Cannot {verb} {left} and {right} amounts; convert one first")


def _minor_from_decimal(amount: Decimal, currency: str, exponent: int) -> int:
    """Exact whatever the decimal context: works on the digits and never rounds."""
    sign, digits, exp = amount.as_tuple()
    if not isinstance(exp, int):  # 'n', 'N' or 'F': NaN, sNaN or Infinity
        raise BadInput(f"'{amount}' is not an amount; use a number such as {_example(exponent)}.")
    if not any(digits):
        return 0
    # Checked on the digits, before any scaling: Decimal('1E+999999999') must not fill memory.
    if amount.adjusted() >= 18:
        raise BadInput(f"The amount is too large; {_limit(currency, exponent)}")
    shift = exp + exponent
    kept = digits if shift >= 0 else digits[:shift]
    if shift < 0 and any(digits[shift:]):
        raise BadInput(
            f"'{_echo(str(amount))}' has more decimal places than {currency} allows ({exponent}); "
            f"round it to {exponent} places first."
        )
    minor: int = int("".join(map(str, kept)) or "0") * 10 ** max(shift, 0)
    return -minor if sign else minor


def _echo(text: str) -> str:
    """User text as quoted back in a message: whole unless it is very long."""
    return text if len(text) <= _ECHO_LIMIT else text[: _ECHO_LIMIT - 3] + "..."


def _example(exponent: int, whole: str = "1234", fraction: str = "5678") -> str:
    """A sample amount with the currency's number of decimals: 1234.56 USD, 1234 JPY."""
    return whole + ("." + fraction[:exponent] if exponent else "")


def _limit(currency: str, exponent: int) -> str:
    return f"{currency} amounts have at most {18 - exponent} digits before the decimal point."


def parse_money(
    text: str, currency: str, *, allow_negative: bool = False, allow_zero: bool = True
) -> Money:
    """What a user typed, as `Money` in `currency`, or `BadInput` with one sentence that names
    the input and says what to type instead.

    Accepts "1234.56", "1,234.56" (well-formed thousands groups only), "1234.5", "1234", "+5",
    surrounding whitespace, a leading symbol ("$12.00") that may stand for `currency`, and the
    currency code before or after ("USD 12.00", "12.00 usd"). Refuses another currency's code or
    symbol, exponents ("1e3"), digits other than 0-9, more decimals than the currency has (unless
    they are zeros), negative amounts unless `allow_negative`, zero unless `allow_zero`, and
    amounts too large for the database.
    """
    if not isinstance(text, str):
        raise TypeError(f"parse_money reads text, not {type(text).__name__}")
    exponent = currency_exponent(currency)
    example = _example(exponent)
    stripped = text.strip()
    shown = _echo(stripped)
    if not stripped:
        raise BadInput(f"The amount is empty; enter a number such as {example}.")
    if any(ch.isdigit() and not "0" <= ch <= "9" for ch in stripped):
        raise BadInput(
            f"'{shown}' uses digits other than 0-9; type it as a number such as {example}."
        )
    not_an_amount = BadInput(f"'{shown}' is not an amount; enter a number such as {example}.")

    rest = stripped
    written_code = None
    if (before := _CODE_BEFORE.fullmatch(rest)) and before.group(1).upper() in ISO_4217_EXPONENTS:
        written_code, rest = before.group(1).upper(), before.group(2)
    elif (after := _CODE_AFTER.fullmatch(rest)) and after.group(2).upper() in ISO_4217_EXPONENTS:
        rest, written_code = after.group(1), after.group(2).upper()
    if written_code is not None and written_code != currency:
        raise BadInput(
            f"'{shown}' is in {written_code}, not {currency}; enter the amount in {currency}, "
            f"such as {example}."
        )

    parts = _SIGN_AND_SYMBOL.fullmatch(rest)
    if parts is None or (parts.group(1) and parts.group(3)):
        raise not_an_amount
    sign_before, symbol, sign_after, number = parts.groups()
    if symbol and currency not in _SYMBOLS[symbol]:
        raise BadInput(
            f"'{shown}' is marked {symbol}, which does not stand for {currency}; enter the amount "
            f"without it, such as {example}."
        )
    sign = sign_before or sign_after

    matched = _NUMBER.fullmatch(number)
    if matched is None:
        if _EXPONENT_FORM.fullmatch(number):
            raise BadInput(
                f"'{shown}' is not an amount; write it out in digits such as "
                f"{_example(exponent, '1000', '0000')}."
            )
        raise not_an_amount
    whole_text, fraction = matched.group(1), matched.group(2) or ""
    if "," in whole_text and not _GROUPED.fullmatch(whole_text):
        raise BadInput(
            f"'{shown}' has a comma out of place; commas separate thousands (1,234.56) and a "
            "dot marks the decimals."
        )
    whole = whole_text.replace(",", "")

    if fraction[exponent:].strip("0"):
        cut = whole_text + ("." + fraction[:exponent] if exponent else "")
        raise BadInput(
            f"'{shown}' has more decimal places than {currency} allows ({exponent}); enter an "
            f"amount such as {'-' if sign == '-' else ''}{cut}."
        )
    if len(whole.lstrip("0")) > 18 - exponent:
        raise BadInput(f"'{shown}' is too large; {_limit(currency, exponent)}")
    minor = int(whole.lstrip("0") or "0") * 10**exponent + int(
        fraction[:exponent].ljust(exponent, "0") or "0"
    )

    if sign == "-" and minor:
        if not allow_negative:
            raise BadInput(f"'{shown}' is negative; enter a positive amount.")
        minor = -minor
    if minor == 0 and not allow_zero:
        raise BadInput(f"'{shown}' is zero; enter an amount greater than zero.")
    return Money.from_minor(minor, currency)


def parse_local_money(
    text: str,
    currency: str,
    *,
    decimal_mark: str = ".",
    group_mark: str = ",",
    allow_zero: bool = True,
) -> Money:
    """What a person typed in their locale's way of writing numbers ("1.234,56" in Germany,
    "1 234,56" in France), as `Money`, with the same refusals as `parse_money` (thousands
    groups must be whole: "12.5" in Germany is refused, never read as 125); the message quotes
    what they typed."""
    if not isinstance(text, str):
        raise TypeError(f"parse_local_money reads text, not {type(text).__name__}")
    stripped = text.strip()
    if decimal_mark == "." and group_mark == ",":
        return parse_money(stripped, currency, allow_zero=allow_zero)
    # Written the way parse_money reads: the locale's group marks become commas and its
    # decimal mark a dot, in one pass, so that each mark keeps its meaning.
    groups = {group_mark, "\u00a0", "\u202f"} if group_mark.isspace() else {group_mark}
    table = {ord(mark): "," for mark in groups if mark}
    table[ord(decimal_mark)] = "."
    if "." not in groups and decimal_mark != ".":
        table[ord(".")] = "\x00"  # a dot that is neither mark: never an amount
    normalised = stripped.translate(table)
    try:
        return parse_money(normalised, currency, allow_zero=allow_zero)
    except BadInput as err:
        raise BadInput(
            err.message.replace(f"'{_echo(normalised)}'", f"'{_echo(stripped)}'")
        ) from None
