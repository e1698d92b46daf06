"""What every statement importer shares: the protocol, reading amounts exactly, and refusals.

An importer is a module with `NAME` (the --format value), `identify(data) -> bool` (cheap: looks
at the first kilobytes only) and `parse(data) -> list[Statement]`, raising only
`StatementRefused` for anything wrong with the file. Parsing works on bytes already in memory,
at most MAX_STATEMENT_BYTES of them; XML is parsed with entity resolution and network access off.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Protocol

from billing_desk.domain.errors import BadInput
from billing_desk.domain.money import Money, currency_exponent
from billing_desk.domain.statements import MAX_STATEMENT_BYTES, Statement, StatementRefused

# How much of a file `identify` may look at.
SNIFF_BYTES = 8192
_DECIMAL = re.compile(r"[-+]?[0-9]+(?:\.[0-9]*)?|[-+]?\.[0-9]+")


class StatementFormat(Protocol):
    NAME: str

    def identify(self, data: bytes) -> bool: ...

    def parse(self, data: bytes) -> list[Statement]: ...


def check_size(format_name: str, data: bytes) -> None:
    if len(data) > MAX_STATEMENT_BYTES:
        raise StatementRefused(
            format_name,
            None,
            f"it is {len(data) // (1024 * 1024)} MB, larger than the "
            f"{MAX_STATEMENT_BYTES // (1024 * 1024)} MB a statement may be",
        )


def currency_of(format_name: str, code: str | None, where: str | None) -> str:
    """An active ISO 4217 code, or a refusal naming the one the file gives."""
    cleaned = (code or "").strip().upper()
    try:
        currency_exponent(cleaned)
    except BadInput:
        shown = f"'{code}'" if code else "no currency"
        raise StatementRefused(
            format_name, where, f"it gives {shown}, which is not an active ISO 4217 currency"
        ) from None
    return cleaned


def money_of(
    format_name: str, text: str, currency: str, where: str | None, *, decimal_comma: bool = False
) -> Money:
    """An amount written in major units ("1234.50", "-0,29", "+100", "107,") as exact Money;
    refused when it is not a number or has more decimals than the currency (beyond zeros)."""
    cleaned = text.strip().replace(" ", "")
    if decimal_comma:
        cleaned = cleaned.replace(".", "").replace(",", ".")
    if cleaned.endswith("."):
        cleaned += "0"
    if not _DECIMAL.fullmatch(cleaned):
        raise StatementRefused(format_name, where, f"the amount '{text.strip()}' is not a number")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise StatementRefused(
            format_name, where, f"the amount '{text.strip()}' is not a number"
        ) from None
    return money_from_decimal(format_name, value, currency, where, shown=text.strip())


def money_from_decimal(
    format_name: str, value: Decimal, currency: str, where: str | None, *, shown: str
) -> Money:
    exponent = currency_exponent(currency)
    minor = value.scaleb(exponent)
    if minor != minor.to_integral_value():
        raise StatementRefused(
            format_name,
            where,
            f"the amount '{shown}' has more decimals than {currency} allows ({exponent})",
        )
    return Money.from_minor(int(minor), currency)
