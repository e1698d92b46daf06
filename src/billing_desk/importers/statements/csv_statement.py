"""Bank CSV exports read through a saved column mapping (domain.csv_mappings.CsvMapping), and the
first guess at that mapping for a new bank, which the user confirms before it is saved.

Our own code on the standard `csv` module: a bank CSV is a plain table, and what varies is the
mapping, which no CSV library guesses from German, Dutch, French or Spanish header names. The
delimiter is chosen by counting fields per line rather than by csv.Sniffer, which gives up
("Could not determine delimiter") on ING DE's 13-line preamble. charset-normalizer reads
encodings.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Protocol

import charset_normalizer

from billing_desk.domain.csv_mappings import (
    DATE_FORMATS,
    MAPPING_VERSION,
    ColumnRef,
    CsvMapping,
    parse_date,
)
from billing_desk.domain.errors import BadInput
from billing_desk.domain.money import Money
from billing_desk.domain.statements import Check, Statement, StatementLine, StatementRefused
from billing_desk.importers.statements.base import (
    SNIFF_BYTES,
    check_size,
    currency_of,
    money_from_decimal,
)

NAME = "csv"
_SHOWN_FORMAT: Final = "CSV"
_DELIMITERS: Final = (";", ",", "\t", "|")
# How far into a file a header row may be: ING DE's preamble is 13 lines.
_HEADER_SEARCH_ROWS: Final = 40
_MAX_AMOUNT_CHARS: Final = 40
_SHOWN_CHARS: Final = 40
_CURRENCY_SYMBOLS: Final = "$€£¥"
# Code pages charset-normalizer may name for Latin text: on a short German file it answers
# cp1250 or cp775 as readily as cp1252, so for all of them we read Windows-1252 (what Western
# European banks export) and the user confirms it in the mapping.
_LATIN_GUESSES: Final = frozenset({
    "cp1250", "cp1252", "latin_1", "iso8859_15", "iso8859_2", "cp775", "cp850", "cp437",
    "iso8859_10", "iso8859_13", "iso8859_4", "cp1257", "mac_latin2", "mac_roman", "cp858",
})  # fmt: skip
_NOT_CSV_STARTS: Final = ("<", "OFXHEADER", "{1:", ":20:", "01,", "\x01")
_CONTROL: Final = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


# -- the protocol --------------------------------------------------------------------------------


def identify(data: bytes) -> bool:
    """Whether the first SNIFF_BYTES look like a delimited text table: at least two rows with
    the same three or more fields, one of them a date."""
    head = data[:SNIFF_BYTES]
    if b"\x00" in head and not head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return False
    try:
        text = head.decode(_guess_encoding(head), errors="replace")
    except LookupError:
        return False
    if text.lstrip("\ufeff \r\n\t").startswith(_NOT_CSV_STARTS) or _CONTROL.search(text):
        return False
    lines = text.splitlines()[:-1] if len(head) == SNIFF_BYTES else text.splitlines()
    delimiter, width = _delimiter_of(lines)
    if width < 3:
        return False
    rows = [row for row in _quick_rows(lines, delimiter, '"') if len(row) == width]
    return len(rows) >= 2 and any(_looks_like_date(cell) for row in rows for cell in row)


def parse(data: bytes) -> list[Statement]:
    """The protocol's parse: guess the mapping, then read the file with it. The service reads
    CSV through `parse_with` and a mapping the user confirmed."""
    return parse_with(data, guess_mapping(data))


# -- reading with a mapping ----------------------------------------------------------------------


class _Cell(Protocol):
    """Reads one cell of the current row by position, refusing a missing required one."""

    def __call__(self, index: int | None, label: str, *, required: bool = False) -> str: ...


@dataclass(frozen=True)
class _Columns:
    """The mapping's columns resolved to 0-based positions for one file."""

    date: int
    value_date: int | None
    amount: int | None
    debit: int | None
    credit: int | None
    direction: int | None
    currency: int | None
    account: int | None
    reference: int | None
    counterparty: int | None
    bank_id: int | None
    kind: int | None
    balance: int | None
    description: tuple[int, ...]
    keep: int | None = None


@dataclass
class _Account:
    account: str
    currency: str
    lines: list[StatementLine]
    balances: list[Money | None]


def parse_with(data: bytes, mapping: CsvMapping) -> list[Statement]:
    """The file read with `mapping`: one Statement per account and currency, lines in file
    order. Raises only StatementRefused, naming the line."""
    check_size(_SHOWN_FORMAT, data)
    text = _decode(data, mapping.encoding)
    header, rows = _table(text, mapping)
    columns = _resolve(mapping, header)
    names = _raw_names(header)
    if mapping.footer_rows:
        rows = rows[: max(0, len(rows) - mapping.footer_rows)]
    accounts: dict[tuple[str, str], _Account] = {}
    zero_lines: list[int] = []
    ignored_lines: list[int] = []
    unbooked_lines: list[int] = []
    filtered_lines: list[int] = []
    prefixes = tuple(prefix.strip().casefold() for prefix in mapping.ignore_rows_starting)
    kept = {value.strip().casefold() for value in mapping.keep_values}
    for line, cells in rows:
        if prefixes and cells[0].strip().casefold().startswith(prefixes):
            ignored_lines.append(line)
            continue
        if columns.keep is not None and _cell_at(cells, columns.keep).casefold() not in kept:
            filtered_lines.append(line)
            continue
        if _not_booked(cells, columns):
            unbooked_lines.append(line)
            continue
        where = f"line {line}"
        statement_line, currency, account, balance = _line(
            where, cells, mapping, columns, names, len(header) if header else None
        )
        if statement_line.amount.is_zero() and mapping.skip_zero_amounts:
            zero_lines.append(line)
            continue
        key = (account, currency)
        if key not in accounts:
            accounts[key] = _Account(account, currency, [], [])
        accounts[key].lines.append(statement_line)
        accounts[key].balances.append(balance)
    notes = _notes(zero_lines, ignored_lines)
    if filtered_lines:
        notes += (
            f"{len(filtered_lines)} row(s) left out by the row filter: their "
            f"'{_shown(str(mapping.keep_column))}' is not {' or '.join(mapping.keep_values)} "
            f"(line {_lines_shown(filtered_lines)}).",
        )
    if unbooked_lines:
        notes += (
            f"{len(unbooked_lines)} row(s) not booked, left out: they have no date or no amount, "
            f"as pending rows do (line {_lines_shown(unbooked_lines)}).",
        )
    statements = [_statement(found, mapping, notes) for found in accounts.values()]
    if not statements:
        raise StatementRefused(
            _SHOWN_FORMAT, None, "it holds no movements (no row with an amount other than zero)"
        )
    return statements


def sample_rows(
    data: bytes, mapping: CsvMapping, limit: int = 40
) -> tuple[list[str] | None, list[list[str]]]:
    """The file as `mapping` splits it, for a person checking the mapping: the header (None
    without one, empty when the mapping expects one the file lacks) and the first `limit`
    rows' cells. Raises StatementRefused like parse_with."""
    check_size(_SHOWN_FORMAT, data)
    header, records = _split(_decode(data, mapping.encoding), mapping)
    if mapping.has_header and header is None:
        header = []
    return header, [cells for _, cells in itertools.islice(records, limit)]


def fits(data: bytes, mapping: CsvMapping) -> bool:
    """Whether `mapping` reads the file: every column it names is in the header and every row
    reads (a saved mapping of the same bank's export does; another bank's does not)."""
    try:
        parse_with(data, mapping)
    except StatementRefused:
        return False
    return True


def _cell_at(cells: list[str], index: int) -> str:
    return cells[index].strip() if index < len(cells) else ""


def _not_booked(cells: list[str], columns: _Columns) -> bool:
    """A row without a booking date, or without any amount: pending (Revolut's empty
    'Completed Date'), or a notice; never a movement to import."""
    amounts = [columns.amount] if columns.amount is not None else [columns.debit, columns.credit]
    needed = [columns.date, *(index for index in amounts if index is not None)]
    if any(index >= len(cells) for index in needed):
        return False  # a short row is damage, refused where it is read
    if not _cell_at(cells, columns.date):
        return True
    return not any(_cell_at(cells, index) for index in amounts if index is not None)


def _lines_shown(lines: list[int]) -> str:
    shown = ", ".join(map(str, lines[:20]))
    return shown + (f" and {len(lines) - 20} more" if len(lines) > 20 else "")


def _decode(data: bytes, encoding: str) -> str:
    if data.startswith(codecs.BOM_UTF8) and codecs.lookup(encoding).name == "utf-8":
        data = data[len(codecs.BOM_UTF8) :]
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as err:
        raise StatementRefused(
            _SHOWN_FORMAT,
            f"line {_line_at(data, err.start)}",
            f"the byte 0x{data[err.start]:02X} is not {encoding} text; the file is in another "
            "encoding or is not text",
        ) from None
    except LookupError:
        raise StatementRefused(
            _SHOWN_FORMAT, None, f"the encoding '{encoding}' is not one this system knows"
        ) from None
    text = text.removeprefix("\ufeff")
    control = _CONTROL.search(text)
    if control:
        raise StatementRefused(
            _SHOWN_FORMAT,
            f"line {text.count(chr(10), 0, control.start()) + 1}",
            f"it holds the control character 0x{ord(control.group()):02X}, so it is a binary "
            "file, not CSV text",
        )
    return text


def _line_at(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _table(text: str, mapping: CsvMapping) -> tuple[list[str] | None, list[tuple[int, list[str]]]]:
    """The header (None without one) and each non-blank row with the line it starts on."""
    header, records = _split(text, mapping)
    if mapping.has_header and header is None:
        raise StatementRefused(
            _SHOWN_FORMAT,
            f"line {mapping.skip_lines + 1}",
            "the header row the mapping expects is missing",
        )
    return header, list(records)


def _split(
    text: str, mapping: CsvMapping
) -> tuple[list[str] | None, Iterator[tuple[int, list[str]]]]:
    """The header the mapping expects (None when it expects none or the file has no rows) and
    the rows after it, read lazily, each with the line it starts on."""
    source = io.StringIO(text, newline="")
    for _ in range(mapping.skip_lines):
        source.readline()
    records = _records(source, mapping.delimiter, mapping.quote_char, mapping.skip_lines)
    if not mapping.has_header:
        return None, records
    first = next(records, None)
    return (None if first is None else [cell.strip() for cell in first[1]]), records


def _records(
    source: io.StringIO, delimiter: str, quote_char: str, skipped: int
) -> Iterator[tuple[int, list[str]]]:
    reader = csv.reader(source, delimiter=delimiter, quotechar=quote_char, skipinitialspace=True)
    start = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            raise StatementRefused(
                _SHOWN_FORMAT,
                f"line {skipped + start}",
                f"it cannot be read as CSV ({err}); a quote may never be closed",
            ) from None
        if any(cell.strip() for cell in row):
            yield skipped + start, row
        start = reader.line_num + 1


def _resolve(mapping: CsvMapping, header: list[str] | None) -> _Columns:
    def position(column: ColumnRef | None, label: str) -> int | None:
        if column is None:
            return None
        if isinstance(column, int):
            return column - 1
        wanted = column.strip().casefold()
        for index, name in enumerate(header or ()):
            if name.casefold() == wanted:
                return index
        raise StatementRefused(
            _SHOWN_FORMAT,
            f"line {mapping.skip_lines + 1}",
            f"the header has no column '{_shown(column)}', which the mapping reads the {label} "
            "from; the bank may have changed its export, so check the mapping",
        )

    date_position = position(mapping.date, "date")
    assert date_position is not None  # the mapping always names a date column
    return _Columns(
        date=date_position,
        value_date=position(mapping.value_date, "value date"),
        amount=position(mapping.amount, "amount"),
        debit=position(mapping.debit, "debit"),
        credit=position(mapping.credit, "credit"),
        direction=position(mapping.direction, "direction"),
        currency=position(mapping.currency_column, "currency"),
        account=position(mapping.account_column, "account"),
        reference=position(mapping.reference, "reference"),
        counterparty=position(mapping.counterparty, "counterparty"),
        bank_id=position(mapping.bank_id, "transaction id"),
        kind=position(mapping.kind, "transaction type"),
        balance=position(mapping.balance, "balance"),
        description=tuple(
            index
            for column in mapping.description
            if (index := position(column, "description")) is not None
        ),
        keep=position(mapping.keep_column, "row filter"),
    )


def _raw_names(header: list[str] | None) -> list[str]:
    """Provenance keys: header names, a repeated name numbered ("Währung (2)")."""
    names: list[str] = []
    seen: Counter[str] = Counter()
    for index, name in enumerate(header or ()):
        label = name or f"column {index + 1}"
        seen[label] += 1
        names.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return names


def _line(
    where: str,
    cells: list[str],
    mapping: CsvMapping,
    columns: _Columns,
    names: list[str],
    width: int | None,
) -> tuple[StatementLine, str, str, Money | None]:
    def cell(index: int | None, label: str, *, required: bool = False) -> str:
        if index is None:
            return ""
        if index >= len(cells):
            if required:
                raise StatementRefused(
                    _SHOWN_FORMAT,
                    where,
                    f"the row has {len(cells)} fields, and the mapping reads the {label} from "
                    f"column {index + 1}",
                )
            return ""
        return cells[index].strip()

    raw = {
        (names[index] if index < len(names) else f"column {index + 1}"): value
        for index, value in enumerate(cells)
    }
    booked = _date(where, cell(columns.date, "date", required=True), mapping.date_format)
    value_text = cell(columns.value_date, "value date")
    value_date = _date(where, value_text, mapping.date_format) if value_text else None
    if columns.currency is not None:
        currency = currency_of(
            _SHOWN_FORMAT, cell(columns.currency, "currency", required=True), where
        )
    else:
        currency = mapping.currency or ""
    amount = _amount_of_row(where, mapping, columns, currency, cell)
    balance_text = cell(columns.balance, "balance")
    balance = _money(where, balance_text, mapping, currency) if balance_text else None
    account = mapping.account or cell(columns.account, "account", required=True) or ""
    description_parts = [cell(index, "description") for index in columns.description]
    # Rows longer than the header (livebank) carry text that spilled out of the last column.
    if width is not None and len(cells) > width and columns.description:
        description_parts += [value.strip() for value in cells[width:]]
    statement_line = StatementLine(
        booked=booked,
        amount=amount,
        location=where,
        value_date=value_date,
        bank_id=_text(cell(columns.bank_id, "transaction id")),
        reference=_text(cell(columns.reference, "reference")),
        counterparty=_text(cell(columns.counterparty, "counterparty")),
        description=_text(" ".join(part for part in description_parts if part)),
        kind=_text(cell(columns.kind, "transaction type")),
        raw=raw,
    )
    return statement_line, currency, account, balance


def _amount_of_row(
    where: str,
    mapping: CsvMapping,
    columns: _Columns,
    currency: str,
    cell: _Cell,
) -> Money:
    if columns.amount is not None:
        amount = _money(where, cell(columns.amount, "amount", required=True), mapping, currency)
        if columns.direction is None:
            return amount
        mark = cell(columns.direction, "direction", required=True).casefold()
        if mark in {m.strip().casefold() for m in mapping.debit_marks}:
            return -abs(amount)
        if mark in {m.strip().casefold() for m in mapping.credit_marks}:
            return abs(amount)
        raise StatementRefused(
            _SHOWN_FORMAT,
            where,
            f"the direction '{_shown(mark)}' is neither a debit mark "
            f"({', '.join(mapping.debit_marks)}) nor a credit mark "
            f"({', '.join(mapping.credit_marks)})",
        )
    debit_text = cell(columns.debit, "debit")
    credit_text = cell(columns.credit, "credit")
    if not debit_text and not credit_text:
        raise StatementRefused(
            _SHOWN_FORMAT, where, "the row has neither a debit nor a credit amount"
        )
    debit = _money(where, debit_text or "0", mapping, currency)
    credit = _money(where, credit_text or "0", mapping, currency)
    return credit - abs(debit)


_GROUPS: Final = r"[0-9]{{1,3}}(?:{sep}[0-9]{{3}})+"


def _money(where: str, text: str, mapping: CsvMapping, currency: str) -> Money:
    """An amount as the bank writes it: signs before or after, parentheses for negatives, a
    currency symbol, the mapping's decimal mark and thousands separator."""
    value = _decimal(text, mapping)
    if value is None:
        mark = "comma" if mapping.decimal_comma else "point"
        grouping = f" and '{mapping.thousands}' between thousands" if mapping.thousands else ""
        raise StatementRefused(
            _SHOWN_FORMAT,
            where,
            f"the amount '{_shown(text)}' is not a number written with a decimal {mark}{grouping}",
        )
    if not currency:
        raise StatementRefused(_SHOWN_FORMAT, where, "the row gives no currency")
    try:
        return money_from_decimal(_SHOWN_FORMAT, value, currency, where, shown=text.strip())
    except BadInput as err:
        if isinstance(err, StatementRefused):
            raise
        raise StatementRefused(
            _SHOWN_FORMAT, where, f"the amount '{_shown(text)}' is too large"
        ) from None


def _decimal(text: str, mapping: CsvMapping) -> Decimal | None:
    cleaned = text.strip()
    if len(cleaned) > _MAX_AMOUNT_CHARS:
        return None
    negative = False
    if cleaned.startswith("(") and cleaned.endswith(")"):
        negative, cleaned = True, cleaned[1:-1].strip()
    if cleaned[-1:] in "+-" and cleaned[:-1]:
        negative, cleaned = cleaned.endswith("-"), cleaned[:-1].strip()
    if cleaned[:1] in ("+", "-"):
        negative, cleaned = negative != (cleaned[0] == "-"), cleaned[1:].strip()
    cleaned = cleaned.strip(_CURRENCY_SYMBOLS).strip()
    if cleaned[:1] in ("+", "-"):  # "$-12.00"
        negative, cleaned = negative != (cleaned[0] == "-"), cleaned[1:].strip()
    decimal_mark = "," if mapping.decimal_comma else "."
    whole, _, fraction = cleaned.partition(decimal_mark)
    if not re.fullmatch(r"[0-9]*", fraction) or (not whole and not fraction):
        return None
    if mapping.thousands and mapping.thousands in whole:
        grouped = _GROUPS.format(sep=re.escape(mapping.thousands))
        if not re.fullmatch(grouped, whole):
            return None
        whole = whole.replace(mapping.thousands, "")
    if not re.fullmatch(r"[0-9]*", whole):
        return None
    try:
        value = Decimal(f"{whole or '0'}.{fraction or '0'}")
    except InvalidOperation:
        return None
    return -value if negative else value


def _date(where: str, text: str, date_format: str) -> date:
    parsed = parse_date(text, date_format)
    if parsed is None:
        raise StatementRefused(
            _SHOWN_FORMAT,
            where,
            f"the date '{_shown(text)}' is not a real date written {date_format}",
        )
    return parsed


def _text(value: str) -> str | None:
    return " ".join(value.split()) or None


def _notes(zero_lines: list[int], ignored_lines: list[int]) -> tuple[str, ...]:
    notes = []
    if zero_lines:
        notes.append(
            f"{len(zero_lines)} row(s) with amount 0 skipped (line "
            f"{', '.join(map(str, zero_lines))}): notices, not movements."
        )
    if ignored_lines:
        notes.append(
            f"{len(ignored_lines)} row(s) ignored as the mapping asks (line "
            f"{', '.join(map(str, ignored_lines))})."
        )
    return tuple(notes)


def _statement(found: _Account, mapping: CsvMapping, notes: tuple[str, ...]) -> Statement:
    opening = closing = None
    checks: tuple[Check, ...] = ()
    if mapping.balance is not None:
        opening, closing, check = _running_balance(found, mapping.balance_before)
        checks = (check,)
    return Statement(
        format=NAME,
        account=found.account,
        currency=found.currency,
        lines=tuple(found.lines),
        opening=opening,
        closing=closing,
        declared_checks=checks,
        notes=notes,
    )


def _running_balance(found: _Account, before: bool) -> tuple[Money | None, Money | None, Check]:
    """Opening and closing balances from a running-balance column, if the rows chain in file
    order (oldest first or newest first), and a check saying whether they do."""
    lines, balances = found.lines, found.balances
    if any(balance is None for balance in balances):
        missing = next(ln for ln, b in zip(lines, balances, strict=True) if b is None)
        return None, None, Check("running balance", False, f"{missing.location} has no balance")
    known = [b for b in balances if b is not None]
    amounts = [ln.amount for ln in lines]
    # The balance after row i is known[i] (+ amounts[i] when the column shows it before the row).
    after = [b + a for b, a in zip(known, amounts, strict=True)] if before else known
    oldest_first = all(after[i] == after[i - 1] + amounts[i] for i in range(1, len(after)))
    newest_first = all(after[i - 1] == after[i] + amounts[i - 1] for i in range(1, len(after)))
    if oldest_first:
        opening, closing = after[0] - amounts[0], after[-1]
    elif newest_first:
        opening, closing = after[-1] - amounts[-1], after[0]
    else:
        # Blame the first break in the order most rows follow: in a newest-first file the row
        # before a row in time is the one after it in the file.
        forward = [i for i in range(1, len(after)) if after[i] != after[i - 1] + amounts[i]]
        backward = [
            i - 1 for i in range(1, len(after)) if after[i - 1] != after[i] + amounts[i - 1]
        ]
        broken = forward[0] if len(forward) <= len(backward) else backward[-1]
        order = "oldest first" if len(forward) <= len(backward) else "newest first"
        return (
            None,
            None,
            Check(
                "running balance",
                False,
                f"the balance at {lines[broken].location} ({known[broken].plain()}) does not "
                f"follow from the row before it in time (the file reads {order}); rows may be "
                "missing or unsorted",
            ),
        )
    order = "oldest first" if oldest_first else "newest first"
    return (
        opening,
        closing,
        Check(
            "running balance",
            True,
            f"every row's balance follows from the one before ({order}): "
            f"{opening.plain()} to {closing.plain()}",
        ),
    )


# -- guessing a mapping --------------------------------------------------------------------------

# Header names, compared after _normal(): lower case, accents and punctuation gone.
_BOOKING_DATE: Final = (
    "buchungstag", "buchungsdatum", "buchung", "boekdatum", "booking date", "posting date",
    "fecha operacion", "fecha contable", "datum", "date", "fecha", "transactiedatum",
    "transaction date", "data", "date operation", "date comptable", "completed date",
    "date completed", "posted date", "post date", "settlement date",
)  # fmt: skip
_VALUE_DATE: Final = (
    "wertstellung", "wertstellungsdatum", "valutadatum", "valuta", "value date", "valuedate",
    "date de valeur", "fecha valor", "rentedatum",
)  # fmt: skip
_AMOUNT: Final = (
    "betrag", "amount", "bedrag", "importe", "montant", "umsatz", "transaction amount", "net",
    "betrag eur", "importe eur", "bedrag eur",
)  # fmt: skip
_DEBIT: Final = (
    "soll", "debit", "debet", "withdrawal", "withdrawals", "paid out", "money out", "af",
    "cargo", "cargos", "belastung", "uitgaven", "debit amount", "withdrawal amount",
)  # fmt: skip
_CREDIT: Final = (
    "haben", "credit", "deposit", "deposits", "paid in", "money in", "bij", "abono", "abonos",
    "gutschrift", "inkomsten", "credit amount", "deposit amount",
)  # fmt: skip
_DIRECTION: Final = (
    "af bij", "creditdebet", "credit debet", "debet credit", "debit credit", "credit debit",
    "soll haben", "s h", "d c", "c d", "cd", "dc",
)  # fmt: skip
_DEBIT_MARKS: Final = frozenset({"af", "d", "debit", "debet", "s", "soll", "dr", "db"})
_CREDIT_MARKS: Final = frozenset({"bij", "c", "credit", "h", "haben", "cr"})
_DESCRIPTION: Final = (
    "verwendungszweck", "vwz", "omschrijving", "description", "concepto", "memo",
    "mededelingen", "umsatztext", "text", "desc", "reason", "purpose", "notes", "note",
    "libelle", "descripcion", "buchungsdetails",
)  # fmt: skip
_COUNTERPARTY: Final = (
    "auftraggeber empfanger", "auftraggeber empfaenger", "empfanger", "auftraggeber",
    "zahlungsempfanger", "beguenstigter zahlungspflichtiger", "naam", "name", "payee",
    "beneficiary", "tegenrekeninghouder", "naam omschrijving", "ordenante", "beneficiario",
    "counterparty", "naam tegenpartij",
)  # fmt: skip
_REFERENCE: Final = (
    "zahlungsreferenz", "sepa reference", "end to end reference", "betalingskenmerk",
    "check or slip", "checknumber", "check number", "check", "kundenreferenz",
    "mandatsreferenz", "referencia",
)  # fmt: skip
_BANK_ID: Final = (
    "transaction id", "n de transaction", "referentie", "transactie id", "transaktions id",
    "id",
)  # fmt: skip
_KIND: Final = (
    "buchungstext", "type", "mutatiesoort", "betaalwijze", "posting text", "transaction type",
    "umsatzart", "code",
)  # fmt: skip
# A column saying what each row is; and the values that mean a booked movement.
_RECORD_KIND: Final = (
    "record type", "row type", "recordtype", "satzart", "type de ligne", "regeltype",
    "state", "status", "transaction status", "buchungsstatus", "statut", "estado",
)  # fmt: skip
_BOOKED_ROWS: Final = frozenset({
    "transaction", "transactions", "booking", "movement", "transactie", "mutatie", "buchung",
    "umsatz", "completed", "booked", "posted", "settled", "gebucht", "executed", "cleared",
    "done", "geboekt", "comptabilise", "contabilizado",
})  # fmt: skip
_BALANCE: Final = (
    "kontostand", "saldo", "balance", "solde", "runningbalance", "running balance",
    "saldo na mutatie", "saldo nach buchung",
)  # fmt: skip
_CURRENCY: Final = (
    "wahrung", "waehrung", "currency", "monn", "monnaie", "valutacode", "moneda", "divisa",
    "devise", "munt",
)  # fmt: skip
_ACCOUNT: Final = (
    "kontonummer", "konto", "iban", "rekening", "rekeningnummer", "account", "account number",
    "produit", "cuenta", "auftragskonto", "eigen rekening",
)  # fmt: skip


def guess_mapping(
    data: bytes, *, name: str = "", currency: str | None = None, date_format: str | None = None
) -> CsvMapping:
    """A first mapping for a bank's CSV file, for the user to confirm before it is saved.

    Detects the encoding, delimiter, preamble and header row, the columns by their header names
    (German, Dutch, French, Spanish, English), the date format (from every row) and the decimal
    mark; a file without a header is matched against the few layouts we know. `currency` is used
    when the file names none, and `date_format` (a DATE_FORMATS key) instead of detecting one.
    Refuses (StatementRefused) with a sentence saying what to put in the mapping when it cannot
    tell: day/month order, the currency, the decimal mark, or a header-less layout.
    """
    check_size(_SHOWN_FORMAT, data)
    encoding = _guess_encoding(data)
    text = _decode(data, encoding)
    lines = text.splitlines()
    delimiter, width = _delimiter_of(lines[:200])
    if width < 3:
        raise StatementRefused(
            _SHOWN_FORMAT,
            None,
            "no delimiter (; , tab or |) splits its lines into the same three or more columns, "
            "so it is not a table billing-desk can read",
        )
    base = CsvMapping(
        name=name, date=1, date_format="yyyy-mm-dd", amount=2, currency="EUR",
        encoding=encoding, delimiter=delimiter,
    )  # fmt: skip
    records = list(_records(io.StringIO(text, newline=""), delimiter, '"', 0))
    found = _find_header(records[:_HEADER_SEARCH_ROWS])
    if found is None:
        return _headerless(records, base, currency)
    header_index, header = found
    rows = [cells for _, cells in records[header_index + 1 :]]
    mapping = _from_header(header, rows, base, currency, date_format, records[:header_index])
    return replace(mapping, skip_lines=records[header_index][0] - 1)


def guess_layout(data: bytes, *, name: str = "", currency: str | None = None) -> dict[str, Any]:
    """How the file is written (encoding, delimiter, header row, lines before it), as the start
    of a mapping record when the columns cannot be guessed: `mapping save --set` completes it."""
    check_size(_SHOWN_FORMAT, data)
    encoding = _guess_encoding(data)
    text = _decode(data, encoding)
    delimiter, _width = _delimiter_of(text.splitlines()[:200])
    records = list(_records(io.StringIO(text, newline=""), delimiter, '"', 0))
    found = _find_header(records[:_HEADER_SEARCH_ROWS])
    record: dict[str, Any] = {"version": MAPPING_VERSION, "name": name}
    record.update(encoding=encoding, delimiter=delimiter, quote_char='"')
    if found is not None:
        record.update(has_header=True, skip_lines=records[found[0]][0] - 1)
    if currency is not None:
        record["currency"] = currency
    return record


def _guess_encoding(data: bytes) -> str:
    if data.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        # A file cut inside a multi-byte character is still UTF-8 up to there.
        if err.start < len(data) - 3 or err.reason != "unexpected end of data":
            return _single_byte(data)
    return "utf-8"


def _single_byte(data: bytes) -> str:
    best = charset_normalizer.from_bytes(data[: 256 * 1024]).best()
    guessed = best.encoding if best is not None else None
    # charset-normalizer is trusted only for other scripts (Cyrillic, Greek ...).
    if guessed is not None and guessed not in _LATIN_GUESSES and not guessed.startswith("utf"):
        return guessed
    try:
        data.decode("cp1252")
    except UnicodeDecodeError:
        return "latin-1"  # decodes any bytes; the user sees the result and may correct it
    return "cp1252"


def _delimiter_of(lines: Sequence[str]) -> tuple[str, int]:
    """The delimiter that splits the most lines into the same number (3 or more) of fields, and
    that number."""
    best = (0, 0, ",")
    for delimiter in _DELIMITERS:
        widths = Counter(len(row) for row in _quick_rows(lines, delimiter, '"'))
        widths = Counter({w: n for w, n in widths.items() if w >= 3})
        if not widths:
            continue
        width, count = max(widths.items(), key=lambda item: (item[1], item[0]))
        if (count, width) > best[:2]:
            best = (count, width, delimiter)
    return best[2], best[1]


def _quick_rows(lines: Sequence[str], delimiter: str, quote_char: str) -> list[list[str]]:
    """Rows of single lines, for sniffing only (a quoted line break splits a row here)."""
    rows = []
    for line in lines:
        if line.strip():
            try:
                rows.append(next(csv.reader([line], delimiter=delimiter, quotechar=quote_char)))
            except (csv.Error, StopIteration):
                continue
    return rows


def _normal(name: str) -> str:
    """A header name for comparison: 'Auftraggeber/Empfänger' -> 'auftraggeber empfanger'."""
    folded = unicodedata.normalize("NFKD", name.casefold())
    letters = "".join(char for char in folded if not unicodedata.combining(char))
    return " ".join(re.sub(r"[^a-z0-9]+", " ", letters).split())


def _find_header(records: list[tuple[int, list[str]]]) -> tuple[int, list[str]] | None:
    """The first row that names a date column and an amount (or debit and credit) column."""
    for index, (_, cells) in enumerate(records):
        names = [_normal(cell) for cell in cells]
        has_date = any(n in _BOOKING_DATE or n in _VALUE_DATE for n in names)
        has_amount = any(_is_amount_name(n) for n in names) or (
            any(n in _DEBIT for n in names) and any(n in _CREDIT for n in names)
        )
        if has_date and has_amount and len(cells) >= 3:
            return index, [cell.strip() for cell in cells]
    return None


def _is_amount_name(name: str) -> bool:
    word, _, rest = name.partition(" ")
    return name in _AMOUNT or (word in _AMOUNT and _is_currency_code(rest.upper()))


def _is_currency_code(code: str) -> bool:
    try:
        currency_of(_SHOWN_FORMAT, code, None)
    except StatementRefused:
        return False
    return True


def _from_header(
    header: list[str],
    rows: list[list[str]],
    base: CsvMapping,
    currency: str | None,
    date_format_given: str | None,
    preamble: list[tuple[int, list[str]]],
) -> CsvMapping:
    names = [_normal(cell) for cell in header]
    taken: set[int] = set()

    def find(vocabulary: Sequence[str], *, after: int | None = None) -> int | None:
        for wanted in vocabulary:
            for index, name in enumerate(names):
                if name == wanted and index not in taken and (after is None or index > after):
                    taken.add(index)
                    return index
        return None

    def ref(index: int | None) -> ColumnRef | None:
        if index is None:
            return None
        if header[index] and header.count(header[index]) == 1:
            return header[index]
        return index + 1

    def values(index: int | None) -> list[str]:
        if index is None:
            return []
        return [row[index].strip() for row in rows if index < len(row) and row[index].strip()]

    value_date = find(_VALUE_DATE)
    booking = find(_BOOKING_DATE)
    if booking is None:  # UBS gives only the value date
        booking, value_date = value_date, None
    assert booking is not None  # _find_header saw a date name
    amount = next(
        (i for i, n in enumerate(names) if _is_amount_name(n) and n not in ("net",)), None
    )
    if amount is None:
        amount = find(("net",))
    taken.add(amount) if amount is not None else None
    debit = credit = direction = None
    if amount is None:
        debit, credit = find(_DEBIT), find(_CREDIT)
    else:
        direction = find(_DIRECTION)
    balance = find(_BALANCE)
    bank_id = find(_BANK_ID)
    reference = find(_REFERENCE)
    kind = find(_KIND)
    counterparty = find(_COUNTERPARTY)
    account = find(_ACCOUNT)
    currency_index = (find(_CURRENCY, after=amount) if amount is not None else None) or find(
        _CURRENCY
    )
    keep_index, keep_values = _row_filter(find(_RECORD_KIND), values)
    description = _description_columns(names, taken)

    date_format = date_format_given or _date_format(header[booking], values(booking))
    if value_date is not None and not all(parse_date(v, date_format) for v in values(value_date)):
        value_date = None
    money_cells = [v for i in (amount, debit, credit, balance) for v in values(i)]
    decimal_comma, thousands = _number_style(money_cells)

    debit_marks: tuple[str, ...] = ()
    credit_marks: tuple[str, ...] = ()
    if direction is not None:
        marks = {v.casefold(): v for v in values(direction)}
        if marks and set(marks) <= _DEBIT_MARKS | _CREDIT_MARKS:
            debit_marks = tuple(sorted(v for k, v in marks.items() if k in _DEBIT_MARKS))
            credit_marks = tuple(sorted(v for k, v in marks.items() if k in _CREDIT_MARKS))
        if not debit_marks or not credit_marks:
            debit_marks, credit_marks = _DEFAULT_MARKS.get(names[direction], ((), ()))
            if not debit_marks:
                direction = None

    fixed_currency = None
    if currency_index is None:
        fixed_currency = _currency_in_name(names[amount] if amount is not None else "") or (
            currency
        )
        if fixed_currency is None:
            raise StatementRefused(
                _SHOWN_FORMAT,
                None,
                "it names no currency (no currency column, no code in the amount header), so "
                "the mapping cannot be guessed; give the account's currency with --currency",
            )
    fixed_account = _preamble_account(preamble) if account is None else None
    try:
        return replace(
            base,
            date=ref(booking) or 1,
            date_format=date_format,
            value_date=ref(value_date),
            amount=ref(amount),
            debit=ref(debit),
            credit=ref(credit),
            direction=ref(direction),
            debit_marks=debit_marks,
            credit_marks=credit_marks,
            currency=fixed_currency,
            currency_column=ref(currency_index),
            account=fixed_account,
            account_column=ref(account),
            reference=ref(reference),
            counterparty=ref(counterparty),
            description=tuple(r for i in description if (r := ref(i)) is not None),
            bank_id=ref(bank_id),
            kind=ref(kind),
            balance=ref(balance),
            keep_column=ref(keep_index),
            keep_values=keep_values,
            decimal_comma=decimal_comma,
            thousands=thousands,
        )
    except BadInput as err:
        raise StatementRefused(
            _SHOWN_FORMAT, None, f"the guessed mapping is not usable ({err.message.rstrip('.')})"
        ) from None


def _row_filter(
    index: int | None, values: Callable[[int | None], list[str]]
) -> tuple[int | None, tuple[str, ...]]:
    """A record-type or state column whose cells name booked movements among other rows
    (balances, turnover totals, pending or reverted payments): keep only the booked ones."""
    if index is None:
        return None, ()
    seen = {_normal(value) for value in values(index)}
    booked = tuple(sorted(seen & _BOOKED_ROWS))
    return (index, booked) if booked else (None, ())


_DEFAULT_MARKS: Final = {
    "af bij": (("Af",), ("Bij",)),
    "creditdebet": (("D",), ("C",)),
    "credit debet": (("D",), ("C",)),
    "soll haben": (("S",), ("H",)),
}


def _description_columns(names: list[str], taken: set[int]) -> list[int]:
    """Every column named like a description; numbered ones (VWZ1..VWZ14, Description 1..3)
    replace a plain one."""
    plain: list[int] = []
    numbered: list[int] = []
    for index, name in enumerate(names):
        if index in taken:
            continue
        stem = re.sub(r"\s*[0-9]+$", "", name)
        if stem in _DESCRIPTION:
            (plain if stem == name else numbered).append(index)
    return numbered or plain


def _currency_in_name(name: str) -> str | None:
    code = name.rpartition(" ")[2].upper()
    return code if code and _is_currency_code(code) else None


def _preamble_account(preamble: list[tuple[int, list[str]]]) -> str | None:
    """ING DE writes 'IBAN;DE12 3456 ...' above the table."""
    for _, cells in preamble:
        if len(cells) >= 2 and _normal(cells[0]) in ("iban", "konto", "kontonummer"):
            account = "".join(cells[1].split())
            if account:
                return account
    return None


def _date_format(column: str, values: list[str]) -> str:
    """The one format every date in the column fits; refuses none and more than one."""
    if not values:
        raise StatementRefused(
            _SHOWN_FORMAT, None, f"the date column '{_shown(column)}' is empty in every row"
        )
    fitting = [fmt for fmt in DATE_FORMATS if all(parse_date(v, fmt) for v in values)]
    if not fitting:
        # A value no format reads, or (when each reads in some format) the first one.
        example = next(
            (v for v in values if not any(parse_date(v, fmt) for fmt in DATE_FORMATS)), values[0]
        )
        raise StatementRefused(
            _SHOWN_FORMAT,
            None,
            f"the dates in column '{_shown(column)}' (such as '{_shown(example)}') are in no "
            f"format billing-desk knows ({', '.join(DATE_FORMATS)}) or not all in one",
        )
    if len(fitting) > 1:
        raise StatementRefused(
            _SHOWN_FORMAT,
            None,
            f"the dates in column '{_shown(column)}' (such as '{_shown(values[0])}') fit both "
            f"{' and '.join(fitting)}, and no row tells which; give the date format in the "
            "mapping",
        )
    return fitting[0]


def _number_style(cells: list[str]) -> tuple[bool, str]:
    """Decimal comma or point, and the thousands separator, from the amounts written."""
    digits = [c.strip(" +-()" + _CURRENCY_SYMBOLS) for c in cells]
    comma = any(re.search(r"[0-9],[0-9]{1,2}$", c) for c in digits)
    point = any(re.search(r"[0-9]\.[0-9]{1,2}$", c) for c in digits)
    if comma and point:
        raise StatementRefused(
            _SHOWN_FORMAT,
            None,
            "its amounts use both a decimal comma and a decimal point, so the mapping cannot "
            "be guessed; give the decimal mark in the mapping",
        )
    decimal_comma = comma or (
        not point and any(re.search(r"[0-9]\.[0-9]{3}(?![0-9])", c) for c in digits)
    )
    mark = "," if decimal_comma else "."
    for separator in (".", ",", "'", " "):
        if separator != mark and any(
            re.search(rf"[0-9]{re.escape(separator)}[0-9]{{3}}(?![0-9])", c) for c in digits
        ):
            return decimal_comma, separator
    # Nothing above a thousand in this file: take the convention that goes with the decimal
    # mark, so a later file of the same bank with "1.234,56" still reads.
    return decimal_comma, "." if decimal_comma else ","


def _looks_like_date(cell: str) -> bool:
    return any(parse_date(cell, fmt) for fmt in DATE_FORMATS if fmt != "yyyymmdd") or bool(
        re.fullmatch(r"(19|20)[0-9]{6}", cell.strip()) and parse_date(cell, "yyyymmdd")
    )


# -- files without a header row ------------------------------------------------------------------


def _headerless(
    records: list[tuple[int, list[str]]], base: CsvMapping, currency: str | None
) -> CsvMapping:
    rows = [cells for _, cells in records]
    for shape in _SHAPES:
        if rows and all(shape.fits(row) for row in rows):
            return shape.mapping(base)
    raise StatementRefused(
        _SHOWN_FORMAT,
        None,
        "it has no header row naming a date and an amount column in its first "
        f"{_HEADER_SEARCH_ROWS} lines and is not a header-less layout billing-desk knows "
        "(easybank, Raiffeisen ELBA, ASN), so the mapping cannot be guessed; save a mapping "
        "that gives the column numbers",
    )


_DMY_DOTS: Final = re.compile(r"[0-9]{2}\.[0-9]{2}\.[0-9]{4}")
_DMY_DASHES: Final = re.compile(r"[0-9]{2}-[0-9]{2}-[0-9]{4}")
_COMMA_AMOUNT: Final = re.compile(r"[-+]?[0-9]{1,3}(?:\.?[0-9]{3})*,[0-9]{2}")
_POINT_AMOUNT: Final = re.compile(r"-?[0-9]+\.[0-9]{2}")
_CODE: Final = re.compile(r"[A-Z]{3}")


@dataclass(frozen=True)
class _Shape:
    """A known header-less export: how to recognise a row, and the mapping that reads it."""

    bank: str
    width: int
    patterns: tuple[tuple[int, re.Pattern[str]], ...]
    settings: tuple[tuple[str, object], ...]

    def fits(self, row: list[str]) -> bool:
        cells = [cell.strip() for cell in row]
        return len(cells) == self.width and all(
            pattern.fullmatch(cells[index]) for index, pattern in self.patterns
        )

    def mapping(self, base: CsvMapping) -> CsvMapping:
        return replace(base, has_header=False, **dict(self.settings))  # type: ignore[arg-type]


_SHAPES: Final = (
    # easybank giro: account; text; booking date; value date; signed amount; currency
    _Shape(
        "easybank",
        6,
        ((2, _DMY_DOTS), (3, _DMY_DOTS), (4, re.compile(r"[-+][0-9.]*[0-9],[0-9]{2}")), (5, _CODE)),
        (
            ("account_column", 1),
            ("description", (2,)),
            ("date", 3),
            ("value_date", 4),
            ("amount", 5),
            ("currency", None),
            ("currency_column", 6),
            ("date_format", "dd.mm.yyyy"),
            ("decimal_comma", True),
            ("thousands", "."),
        ),
    ),
    # Raiffeisen ELBA: booking date; text; value date; amount; currency; timestamp; (empty)
    _Shape(
        "Raiffeisen ELBA",
        7,
        (
            (0, _DMY_DOTS),
            (2, _DMY_DOTS),
            (3, _COMMA_AMOUNT),
            (4, _CODE),
            (5, re.compile(r"[0-9]{2}\.[0-9]{2}\.[0-9]{4} [0-9:]+")),
            (6, re.compile("")),
        ),
        (
            ("date", 1),
            ("description", (2,)),
            ("value_date", 3),
            ("amount", 4),
            ("currency", None),
            ("currency_column", 5),
            ("date_format", "dd.mm.yyyy"),
            ("decimal_comma", True),
            ("thousands", "."),
        ),
    ),
    # ASN Bank: 19 columns; booking date, own and other IBAN, name, ..., balance before the
    # row, amount, journal and value dates, codes, sequence number, reference, description
    # in single quotes, statement number.
    _Shape(
        "ASN",
        19,
        (
            (0, _DMY_DASHES),
            (7, _CODE),
            (8, _POINT_AMOUNT),
            (9, _CODE),
            (10, _POINT_AMOUNT),
            (11, _DMY_DASHES),
            (12, _DMY_DASHES),
        ),
        (
            ("date", 1),
            ("account_column", 2),
            ("counterparty", 4),
            ("balance", 9),
            ("balance_before", True),
            ("currency", None),
            ("currency_column", 10),
            ("amount", 11),
            ("value_date", 13),
            ("kind", 15),
            ("reference", 17),
            ("description", (18,)),
            ("date_format", "dd-mm-yyyy"),
            ("quote_char", "'"),
        ),
    ),
)


def _shown(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _SHOWN_CHARS else flat[: _SHOWN_CHARS - 1] + "…"
