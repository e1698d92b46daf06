"""How to read one bank's CSV export: a saved column mapping, checked when it is built, stored as a
versioned JSON record and reused for every later file of that account.

Columns are named by header text (a `str`, when the file has a header row) or by position (an
`int`, 1 for the first column), so a mapping survives a bank reordering its columns and still
reads files without a header. Nothing here reads files; the CSV importer applies the mapping.
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import date
from typing import Any, Final

from billing_desk.domain.errors import BadInput
from billing_desk.domain.money import currency_exponent

# Bumped when a field changes meaning; from_record refuses versions it does not know.
MAPPING_VERSION: Final = 1

ColumnRef = int | str

# Date layouts a mapping may name: field order, separator and year digits. Day and month may be
# written with or without a leading zero (Chase writes 3/6/2016).
DATE_FORMATS: Final[Mapping[str, tuple[str, str, int]]] = {
    "dd.mm.yyyy": ("dmy", ".", 4),
    "dd.mm.yy": ("dmy", ".", 2),
    "dd-mm-yyyy": ("dmy", "-", 4),
    "dd/mm/yyyy": ("dmy", "/", 4),
    "dd/mm/yy": ("dmy", "/", 2),
    "mm/dd/yyyy": ("mdy", "/", 4),
    "mm/dd/yy": ("mdy", "/", 2),
    "yyyy-mm-dd": ("ymd", "-", 4),
    "yyyy/mm/dd": ("ymd", "/", 4),
    "yyyymmdd": ("ymd", "", 4),
    # Month names (English, German, Dutch, French, Spanish, Swedish; short or full).
    "mon d, yyyy": ("mdy", "name", 4),
    "d mon yyyy": ("dmy", "name", 4),
    "dd-mon-yyyy": ("dmy", "name-", 4),
    "dd-mon-yy": ("dmy", "name-", 2),
}
# Month names as written in the languages whose bank headers we recognise, folded to lower case
# without accents or a final dot ("Mär" and "mär." read as 3).
MONTH_NAMES: Final[Mapping[str, int]] = {
    name: number
    for number, names in enumerate(
        (
            "jan january januar januari janvier janv enero ene",
            "feb february februar februari fevrier fev fevr febrero",
            "mar march marz mrz maart mrt mars marzo",
            "apr april avril avr abril abr",
            "may mai mei maj mayo",
            "jun june juni juin junio",
            "jul july juli juillet juil julio",
            "aug august augustus aout agosto ago",
            "sep sept september septembre septiembre set",
            "oct october oktober okt octobre octubre",
            "nov november novembre noviembre",
            "dec december dezember dez decembre diciembre dic",
        ),
        start=1,
    )
    for name in names.split()
}
# A time after the date ("2022-01-02 12:16:55", "2022-01-02T12:16:55Z", "02.01.2022 12:16"):
# the bank's calendar date is the date; the time and zone are dropped, not applied.
_TIME_PART: Final = re.compile(
    r"(?:[ T]+[0-9]{1,2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]+)?)?\s*(?:[AaPp][Mm])?"
    r"\s*(?:Z|[+-][0-9]{2}:?[0-9]{2})?)$"
)
_NAMED_DATES: Final = {
    "mon d, yyyy": re.compile(r"([^\W\d_]+)\.?\s+([0-9]{1,2}),?\s+([0-9]{4})"),
    "d mon yyyy": re.compile(r"([0-9]{1,2})\.?\s+([^\W\d_]+)\.?\s+([0-9]{4})"),
    "dd-mon-yyyy": re.compile(r"([0-9]{1,2})-([^\W\d_]+)\.?-([0-9]{4})"),
    "dd-mon-yy": re.compile(r"([0-9]{1,2})-([^\W\d_]+)\.?-([0-9]{2})"),
}
THOUSANDS_SEPARATORS: Final = ("", ".", ",", "'", " ")
MAX_COLUMN: Final = 1000
MAX_SKIPPED_LINES: Final = 1000
MAX_NAME_CHARS: Final = 100
MAX_TEXT_CHARS: Final = 200

_DATE_PATTERNS: Final = {
    name: re.compile(
        r"([0-9]{4})([0-9]{2})([0-9]{2})"
        if not sep
        else (
            rf"([0-9]{{{year}}}){re.escape(sep)}([0-9]{{1,2}}){re.escape(sep)}([0-9]{{1,2}})"
            if order == "ymd"
            else rf"([0-9]{{1,2}}){re.escape(sep)}([0-9]{{1,2}}){re.escape(sep)}([0-9]{{{year}}})"
        )
    )
    for name, (order, sep, year) in DATE_FORMATS.items()
    if not sep.startswith("name")
}
_COLUMN_FIELDS: Final = (
    "date", "value_date", "amount", "debit", "credit", "direction", "currency_column",
    "account_column", "reference", "counterparty", "bank_id", "kind", "balance", "keep_column",
)  # fmt: skip
_TEXT_TUPLES: Final = ("debit_marks", "credit_marks", "ignore_rows_starting", "keep_values")


def parse_date(text: str, date_format: str) -> date | None:
    """The date `text` holds in `date_format` (a key of DATE_FORMATS), or None when it does not.

    Two-digit years are 2000-2069 for 00-69 and 1970-1999 for 70-99 (the POSIX rule)."""
    cleaned = _TIME_PART.sub("", text.strip())
    if date_format in _NAMED_DATES:
        return _named_date(cleaned, date_format)
    pattern = _DATE_PATTERNS.get(date_format)
    matched = pattern.fullmatch(cleaned) if pattern else None
    if matched is None:
        return None
    order = DATE_FORMATS[date_format][0]
    first, second, third = (int(part) for part in matched.groups())
    if order == "dmy":
        day, month, year = first, second, third
    elif order == "mdy":
        month, day, year = first, second, third
    else:
        year, month, day = first, second, third
    if DATE_FORMATS[date_format][2] == 2:
        year += 2000 if year < 70 else 1900
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _named_date(text: str, date_format: str) -> date | None:
    matched = _NAMED_DATES[date_format].fullmatch(text)
    if matched is None:
        return None
    first, second, third = matched.groups()
    month_word, day_text = (first, second) if date_format == "mon d, yyyy" else (second, first)
    folded = unicodedata.normalize("NFKD", month_word.casefold())
    month = MONTH_NAMES.get("".join(c for c in folded if not unicodedata.combining(c)))
    if month is None:
        return None
    year = int(third)
    if DATE_FORMATS[date_format][2] == 2:
        year += 2000 if year < 70 else 1900
    try:
        return date(year, month, int(day_text))
    except ValueError:
        return None


@dataclass(frozen=True)
class CsvMapping:
    """Where each statement field is in one bank's CSV export, and how the file is written.

    Amounts come from one signed `amount` column; or from an unsigned `amount` plus a `direction`
    column whose cells are one of `debit_marks` or `credit_marks` (Af/Bij, D/C, S/H); or from
    separate `debit` and `credit` columns (Soll/Haben, Withdrawal/Deposit). The currency and the
    account are fixed or read from a column. `balance` is a running balance after each row, or
    before it when `balance_before`. Building one with contradictory or impossible settings
    raises `BadInput` with one sentence.
    """

    name: str
    date: ColumnRef
    date_format: str
    amount: ColumnRef | None = None
    debit: ColumnRef | None = None
    credit: ColumnRef | None = None
    direction: ColumnRef | None = None
    debit_marks: tuple[str, ...] = ()
    credit_marks: tuple[str, ...] = ()
    currency: str | None = None
    currency_column: ColumnRef | None = None
    account: str | None = None
    account_column: ColumnRef | None = None
    value_date: ColumnRef | None = None
    reference: ColumnRef | None = None
    counterparty: ColumnRef | None = None
    description: tuple[ColumnRef, ...] = ()
    bank_id: ColumnRef | None = None
    kind: ColumnRef | None = None
    balance: ColumnRef | None = None
    balance_before: bool = False
    encoding: str = "utf-8"
    delimiter: str = ","
    quote_char: str = '"'
    # Physical lines before the header row (or before the first row when there is no header):
    # ING DE's "Umsatzanzeige" block, Knab's "KNAB EXPORT" title.
    skip_lines: int = 0
    has_header: bool = True
    decimal_comma: bool = False
    thousands: str = ""
    # Rows whose first cell starts with one of these (case ignored) are not movements: footers,
    # "Saldo" or "Total" rows.
    ignore_rows_starting: tuple[str, ...] = ()
    footer_rows: int = 0
    skip_zero_amounts: bool = True
    # Only rows whose `keep_column` holds one of `keep_values` (case ignored) are movements:
    # a record-type column that also lists balances and turnover totals, or a state column
    # that also lists pending and reverted rows.
    keep_column: ColumnRef | None = None
    keep_values: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_text("The mapping name", self.name, MAX_NAME_CHARS, allow_empty=True)
        self._check_columns()
        self._check_amounts()
        self._check_layout()
        if not isinstance(self.date_format, str) or self.date_format not in DATE_FORMATS:
            raise BadInput(
                f"The date format '{_shown(self.date_format)}' is not one billing-desk reads; "
                f"use one of {', '.join(DATE_FORMATS)}."
            )
        if (self.currency is None) == (self.currency_column is None):
            raise BadInput(
                "The mapping needs either a fixed currency or a currency column, not both and "
                "not neither."
            )
        if (self.keep_column is None) != (not self.keep_values):
            raise BadInput(
                "A row filter needs both the column (keep_column) and the values of the rows "
                "to keep (keep_values)."
            )
        if self.currency is not None:
            currency_exponent(self.currency)
        if self.account is not None:
            _check_text("The account", self.account, MAX_TEXT_CHARS, allow_empty=False)
            if self.account_column is not None:
                raise BadInput(
                    "The mapping gives both a fixed account and an account column; keep one."
                )

    def _check_columns(self) -> None:
        for field_name in _COLUMN_FIELDS:
            column = getattr(self, field_name)
            if column is not None or field_name == "date":
                self._check_column(field_name, column)
        if not isinstance(self.description, tuple) or len(self.description) > 20:
            raise BadInput("The description is made of at most 20 columns, given as a list.")
        for column in self.description:
            self._check_column("description", column)

    def _check_column(self, field_name: str, column: object) -> None:
        label = field_name.replace("_", " ")
        if isinstance(column, bool) or not isinstance(column, int | str):
            raise BadInput(
                f"The {label} column must be a header name or a column number, not "
                f"{type(column).__name__}."
            )
        if isinstance(column, int) and not 1 <= column <= MAX_COLUMN:
            raise BadInput(
                f"The {label} column number {column} is out of range; columns are numbered "
                f"from 1 to {MAX_COLUMN}."
            )
        if isinstance(column, str):
            _check_text(f"The {label} column name", column, MAX_TEXT_CHARS, allow_empty=False)
            if not self.has_header:
                raise BadInput(
                    f"The {label} column is named '{_shown(column)}', but the file has no "
                    "header row; give its number instead."
                )

    def _check_amounts(self) -> None:
        pair = (self.debit is not None, self.credit is not None)
        if self.amount is not None and any(pair):
            raise BadInput(
                "The mapping gives both an amount column and debit/credit columns; keep one way."
            )
        if self.amount is None and not all(pair):
            raise BadInput(
                "The mapping needs an amount column, or both a debit and a credit column."
            )
        for marks_name in _TEXT_TUPLES:
            marks = getattr(self, marks_name)
            if not isinstance(marks, tuple) or len(marks) > 20:
                raise BadInput(f"The {marks_name.replace('_', ' ')} are a list of at most 20.")
            for mark in marks:
                _check_text(f"A {marks_name[:-1].replace('_', ' ')}", mark, 40, allow_empty=False)
        if self.direction is None:
            if self.debit_marks or self.credit_marks:
                raise BadInput("Debit and credit marks need a direction column to read them from.")
            return
        if self.amount is None:
            raise BadInput("A direction column signs an amount column; give the amount column.")
        if not self.debit_marks or not self.credit_marks:
            raise BadInput(
                "A direction column needs the marks it uses for debits and for credits, "
                "such as Af and Bij."
            )
        debit = {mark.strip().casefold() for mark in self.debit_marks}
        if debit & {mark.strip().casefold() for mark in self.credit_marks}:
            raise BadInput("A mark cannot stand for both a debit and a credit.")

    def _check_layout(self) -> None:
        try:
            is_text = codecs.lookup(self.encoding)._is_text_encoding
        except (LookupError, TypeError):
            is_text = False
        if not is_text:
            raise BadInput(
                f"'{_shown(str(self.encoding))}' is not a text encoding; use one such as "
                "utf-8, cp1252 or latin-1."
            )
        for label, char in (("delimiter", self.delimiter), ("quote character", self.quote_char)):
            if not isinstance(char, str) or len(char) != 1 or char in "\r\n" or char.isalnum():
                raise BadInput(
                    f"The {label} must be one character that is neither a letter, a digit nor "
                    "a line break."
                )
        if self.delimiter == self.quote_char:
            raise BadInput("The delimiter and the quote character must differ.")
        for label, count in (("skip lines", self.skip_lines), ("footer rows", self.footer_rows)):
            if isinstance(count, bool) or not isinstance(count, int):
                raise BadInput(f"The {label} must be a whole number.")
            if not 0 <= count <= MAX_SKIPPED_LINES:
                raise BadInput(f"The {label} must be between 0 and {MAX_SKIPPED_LINES}.")
        for label, flag in (
            ("has header", self.has_header),
            ("decimal comma", self.decimal_comma),
            ("balance before", self.balance_before),
            ("skip zero amounts", self.skip_zero_amounts),
        ):
            if not isinstance(flag, bool):
                raise BadInput(f"The {label} setting must be true or false.")
        if self.thousands not in THOUSANDS_SEPARATORS:
            raise BadInput(
                "The thousands separator must be none, a dot, a comma, an apostrophe or a space."
            )
        if self.thousands == ("," if self.decimal_comma else "."):
            raise BadInput("The thousands separator cannot also be the decimal mark.")

    def to_record(self) -> dict[str, Any]:
        """The mapping as JSON-ready data, with the record version; from_record reads it back."""
        record: dict[str, Any] = {"version": MAPPING_VERSION}
        for item in fields(self):
            value = getattr(self, item.name)
            record[item.name] = list(value) if isinstance(value, tuple) else value
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> CsvMapping:
        """A mapping from a stored record; refuses (`BadInput`) an unknown version, an unknown
        field and anything the constructor refuses."""
        if not isinstance(record, Mapping):
            raise BadInput("A stored CSV mapping must be a JSON object.")
        version = record.get("version")
        if version != MAPPING_VERSION:
            raise BadInput(
                f"The stored CSV mapping has version {version!r}; this billing-desk reads "
                f"version {MAPPING_VERSION}, so save the mapping again."
            )
        known = {item.name for item in fields(cls)}
        unknown = sorted(str(key) for key in record if key != "version" and key not in known)
        if unknown:
            raise BadInput(f"The stored CSV mapping has unknown fields: {', '.join(unknown)}.")
        for required in ("name", "date", "date_format"):
            if required not in record:
                raise BadInput(f"The stored CSV mapping has no {required.replace('_', ' ')}.")
        values: dict[str, Any] = {
            key: tuple(value) if isinstance(value, list) else value
            for key, value in record.items()
            if key != "version"
        }
        return cls(**values)


def _check_text(label: str, text: object, limit: int, *, allow_empty: bool) -> None:
    if not isinstance(text, str):
        raise BadInput(f"{label} must be text.")
    if not allow_empty and not text.strip():
        raise BadInput(f"{label} is empty.")
    if len(text) > limit:
        raise BadInput(f"{label} is longer than {limit} characters.")
    if any(ord(char) < 32 or ord(char) == 127 for char in text):
        raise BadInput(f"{label} contains a control character.")


def _shown(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."
