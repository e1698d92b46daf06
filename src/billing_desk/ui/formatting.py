"""How the desktop application shows money, dates and times: one formatter, in the person's
locale. Amounts are formatted from their exact decimal value (Babel), never through a float."""

from __future__ import annotations

from datetime import UTC, date, datetime

from babel import Locale, UnknownLocaleError
from babel.numbers import format_currency
from PySide6.QtCore import QDate, QLocale

from billing_desk.domain.money import Money


class Formats:
    """Money as the locale writes it (thousands separators, its decimal mark, the currency's
    symbol where it is unambiguous, negative amounts in accounting style); dates in the locale's
    short format with a four-digit year; times in the machine's local zone."""

    def __init__(self, locale: QLocale | None = None) -> None:
        self.locale = locale if locale is not None else QLocale()
        try:
            self._babel = Locale.parse(self.locale.name(), sep="_")
        except (UnknownLocaleError, ValueError):
            self._babel = Locale.parse("en_US")
        short = self.locale.dateFormat(QLocale.FormatType.ShortFormat)
        # A finance date keeps its century: 12/05/2026, not 12/5/26.
        if "yyyy" not in short:
            short = short.replace("yy", "yyyy")
        self._date_format = short

    def money(self, amount: Money) -> str:
        return format_currency(
            amount.as_decimal(),
            amount.currency,
            locale=self._babel,
            format_type="accounting",
            currency_digits=True,
        )

    def date(self, day: date | None) -> str:
        if day is None:
            return ""
        return self.locale.toString(QDate(day.year, day.month, day.day), self._date_format)

    def date_format(self) -> str:
        """The pattern of `date`, for date editors (QDateEdit.setDisplayFormat)."""
        return self._date_format

    def datetime(self, moment: datetime | None) -> str:
        if moment is None:
            return ""
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        local = moment.astimezone()
        return f"{self.date(local.date())} {local:%H:%M}"

    def count(self, number: int) -> str:
        return self.locale.toString(number)


def money_sort_key(amount: Money) -> tuple[str, int]:
    """Amounts sort as numbers within their currency."""
    return (amount.currency, amount.minor)
