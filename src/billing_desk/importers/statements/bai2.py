"""BAI2 cash management balance reports: one Statement per account identifier (03) per group (02).

A BAI2 file nests records: 01 file header, 02 group header (one as-of date), 03 account
identifier with its summary and status amounts, 16 transaction details, 49 account trailer,
98 group trailer, 99 file trailer; an 88 record continues the record before it. Amounts are
whole numbers of the currency's minor units (cents; yen for JPY), so they become `Money` with
`from_minor` and no decimal point is ever read. A detail's sign comes from its type code:
100-399 are credits, 400-699 debits.

The ministryofjustice `bai2` library parses the records' fields and their nesting (type codes,
funds types with their availability fields, dates and times). Its own line reader is not used,
for three reasons found in the corpus: it takes every physical line as one record, so a file
with several records on a line ('.../ 16,...') cannot be read, nor one record broken over two
lines; and when an 88 continues an account identifier in the middle of a summary ('...,190/'
then '88,500000,...', the BAI2 specification's own example) it glues the two fields together.
So `_read_rows` below splits the text into logical records and joins each record's 88s, and the
library parses those. Around it: the record order is checked first (the library loops forever
on a file that ends in a 16), type codes missing from its list are accepted (it refuses them;
the sign comes from the range), and blank availability amounts are read as zero (its int()
refuses them). Its integrity checks are switched off: the trailers' totals and counts are
checked here and reported as findings, never as refusals.

Every line's location is "record N (line L)": N counts logical records (88s included, as the
trailers count them) and L is the physical line the record starts on.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any, Final

from bai2 import constants as bai2_constants  # type: ignore[import-untyped]
from bai2 import exceptions as bai2_exceptions
from bai2 import models as bai2_models
from bai2 import parsers as bai2_parsers

from billing_desk.domain.money import Money
from billing_desk.domain.statements import Check, Statement, StatementLine, StatementRefused
from billing_desk.importers.statements.base import SNIFF_BYTES, check_size, currency_of

NAME: Final = "bai2"

_RECORD_NAMES: Final = {
    "01": "file header (01)",
    "02": "group header (02)",
    "03": "account identifier (03)",
    "16": "transaction detail (16)",
    "49": "account trailer (49)",
    "88": "continuation (88)",
    "98": "group trailer (98)",
    "99": "file trailer (99)",
}
# Which record may come next: the nesting the specification prescribes. Checked before the
# library sees the records, because the library loops forever on a file that ends in a 16.
_MAY_FOLLOW: Final = {
    "01": {"02"},
    "02": {"03"},
    "03": {"16", "49"},
    "16": {"16", "49"},
    "49": {"03", "98"},
    "98": {"02", "99"},
    "99": set(),
}
_CODE: Final = r"(?:01|02|03|16|49|88|98|99)"
_RECORD_START: Final = re.compile(rf"\s*({_CODE}),")
# Some banks write several records on one line ('...2/   02,...'): a '/' ends a record, and a
# record code after blanks starts the next one. Blanks are required so that text such as
# 'PAID 3/16,4/16' in a detail is not split.
_NEXT_RECORD: Final = re.compile(rf"/\s+(?={_CODE},)")
_LINE_BREAK: Final = re.compile(r"\r\n|\r|\n")
_CONTROL: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# 01,sender,receiver,YYMMDD creation date,time,file id,record length,block size,version 2
_SNIFF: Final = re.compile(
    rb"\A(?:\xef\xbb\xbf)?\s*01,[^,\r\n]*,[^,\r\n]*,[0-9]{6}"
    rb"(?:,[^,\r\n]*){4},\s*2\s*(?:/|,|\r|\n|\Z)"
)
_DETAIL_AMOUNT: Final = re.compile(r"\+?[0-9]{1,18}")
_SIGNED_AMOUNT: Final = re.compile(r"[-+]?[0-9]{1,18}")
_COUNT: Final = re.compile(r"[0-9]{1,9}")
_AS_OF_DATE: Final = re.compile(r"[0-9]{6}")
# No record with its 88s comes near these (a 16's text is a few hundred characters, an 03 has
# a few dozen summaries); the caps keep the library's list copying per field cheap on a
# hostile file.
_MAX_RECORD_CHARS: Final = 100_000
_MAX_RECORD_FIELDS: Final = 2_000
# Physical records were punched-card wide; a text that fills a whole line was cut there, in the
# middle of a word, so its continuation joins without a blank.
_DEFAULT_RECORD_WIDTH: Final = 80


def identify(data: bytes) -> bool:
    """A 01 file header of BAI version 2 at the start of the file."""
    return _SNIFF.match(data[:SNIFF_BYTES]) is not None


def parse(data: bytes) -> list[Statement]:
    check_size(NAME, data)
    text, notes = _decode(data)
    records = _read_rows(text)
    _check_nesting(records)
    for record in records:
        record.fields = _fields(record)
    bai_file = _parse_with_library(records)
    by_rows = {id(record.library.rows): record for record in records}
    return _statements(bai_file, by_rows, notes)


# -- from bytes to logical records ---------------------------------------------------------------


@dataclass
class _Row:
    """One logical record as written: its code, the text after 'NN,' and where it is."""

    code: str
    text: str
    line: int
    number: int  # logical record number, 88s included
    fills_line: bool  # the record was the whole of a physical line as wide as a record

    @property
    def where(self) -> str:
        return f"record {self.number} (line {self.line})"


@dataclass
class _Record:
    """A record with the 88 rows that continue it, its fields once joined, and the library's
    view of it."""

    rows: list[_Row]
    fields: list[str] = field(default_factory=list)
    library: Any = None

    @property
    def code(self) -> str:
        return self.rows[0].code

    @property
    def where(self) -> str:
        return self.rows[0].where

    @property
    def name(self) -> str:
        return _RECORD_NAMES[self.code]


def _decode(data: bytes) -> tuple[str, tuple[str, ...]]:
    body = data.removeprefix(b"\xef\xbb\xbf")
    if not body.strip():
        raise StatementRefused(NAME, None, "it is empty")
    try:
        text = body.decode("utf-8")
        notes: tuple[str, ...] = ()
    except UnicodeDecodeError:
        # BAI2 is ASCII; a bank that puts accented names in the text uses a single-byte code
        # page, and Latin-1 reads every byte, so only the text fields can come out wrong.
        text = body.decode("latin-1")
        notes = ("The file is not UTF-8; its text was read as Latin-1.",)
    bad = _CONTROL.search(text)
    if bad is not None:
        line = len(_LINE_BREAK.findall(text[: bad.start()])) + 1
        raise StatementRefused(
            NAME,
            f"line {line}",
            f"it holds the control character 0x{ord(bad.group()):02X}, so it is not BAI2 text",
        )
    return text, notes


def _read_rows(text: str) -> list[_Record]:
    """The logical records, each with the 88s that continue it."""
    width = _record_width(text)
    rows: list[_Row] = []
    # The pieces of each row's text, joined once at the end: a hostile file of a million
    # broken lines must not cost a million copies of a growing string.
    pieces_of: list[list[str]] = []
    for line_number, line in enumerate(_LINE_BREAK.split(text), start=1):
        if not line.strip():
            continue
        pieces = _split_line(line)
        alone = len(pieces) == 1
        for piece in pieces:
            start = _RECORD_START.match(piece)
            if start is None:
                if not rows:
                    raise StatementRefused(
                        NAME, f"line {line_number}", "it does not begin with a 01 file header"
                    )
                # A record broken over two lines (no code at the start of this one).
                previous = rows[-1]
                pieces_of[-1] += [_separator(previous), piece.strip()]
                previous.fills_line = alone and len(line) == width
                continue
            rows.append(
                _Row(
                    code=start.group(1),
                    text="",
                    line=line_number,
                    number=len(rows) + 1,
                    fills_line=alone and len(line) == width,
                )
            )
            pieces_of.append([piece[start.end() :].rstrip()])
    records: list[_Record] = []
    for row, row_pieces in zip(rows, pieces_of, strict=True):
        row.text = "".join(row_pieces)
        if row.code != "88":
            records.append(_Record([row]))
        elif records:
            records[-1].rows.append(row)
        else:
            raise StatementRefused(NAME, row.where, "it begins with a continuation (88)")
    return records


def _record_width(text: str) -> int:
    """The physical record length the 01 header declares, else the customary 80."""
    header = text[:SNIFF_BYTES].lstrip("\ufeff \t\r\n").split("/", 1)[0].split(",")
    declared = header[6].strip() if len(header) > 6 else ""
    if _COUNT.fullmatch(declared) and int(declared) > 0:
        return int(declared)
    return _DEFAULT_RECORD_WIDTH


def _split_line(line: str) -> list[str]:
    pieces: list[str] = []
    start = 0
    for match in _NEXT_RECORD.finditer(line):
        pieces.append(line[start : match.start() + 1])
        start = match.end()
    pieces.append(line[start:])
    return pieces


def _separator(previous: _Row) -> str:
    """How a text continues on the next row: straight on when the previous row filled its
    line (cut mid-word), after a blank otherwise."""
    return "" if previous.fills_line else " "


def _check_nesting(records: Sequence[_Record]) -> None:
    if not records or records[0].code != "01":
        first = records[0] if records else None
        raise StatementRefused(
            NAME, first.where if first else None, "it does not begin with a 01 file header"
        )
    for previous, record in itertools.pairwise(records):
        if record.code not in _MAY_FOLLOW[previous.code]:
            if previous.code == "99":
                problem = f"a {record.name} follows the file trailer (99)"
            else:
                problem = f"a {record.name} cannot follow a {previous.name}"
            raise StatementRefused(NAME, record.where, problem)
    last = records[-1]
    if last.code != "99":
        raise StatementRefused(
            NAME,
            last.where,
            f"the file ends with a {last.name} and no file trailer (99), so it is incomplete",
        )


# -- from rows to fields -------------------------------------------------------------------------


def _fields(record: _Record) -> list[str]:
    size = sum(len(row.text) for row in record.rows)
    commas = sum(row.text.count(",") for row in record.rows)
    if size > _MAX_RECORD_CHARS or commas + len(record.rows) > _MAX_RECORD_FIELDS:
        raise StatementRefused(
            NAME,
            record.where,
            f"the {record.name} with its continuations holds {size} characters in "
            f"{commas + len(record.rows)} fields, far more than any BAI2 record",
        )
    if record.code == "03":
        return _account_fields(record)
    if record.code == "16":
        return _detail_fields(record)
    fields: list[str] = []
    for row in record.rows:
        fields.extend(_body(row).split(","))
    _check_trailer_numbers(record, fields)
    return fields


def _body(row: _Row) -> str:
    """The row's fields without the '/' that ends them."""
    return row.text[:-1] if row.text.endswith("/") else row.text


def _availability(funds_type: str, following: Sequence[str]) -> list[str]:
    """The fields the funds type adds after a summary or detail amount: S gives the amounts
    available at 0, 1 and >1 days, V a value date and time, D a count and that many
    (days, amount) pairs.

    A blank count or amount comes back as "0": the specification lets such a field be defaulted
    (its own example leaves an immediate amount blank), and the library reads them with int(),
    which refuses a blank.
    """
    kind = funds_type.strip().upper()
    if kind == "S":
        return [value if value.strip() else "0" for value in following[:3]]
    if kind == "V":
        return list(following[:2])
    if kind != "D" or not following:
        return []
    count = following[0].strip() or "0"
    pairs = int(count) if _COUNT.fullmatch(count) else 0
    fields = [count, *following[1 : 1 + 2 * pairs]]
    return [value if value.strip() or index % 2 == 1 else "0" for index, value in enumerate(fields)]


def _detail_fields(record: _Record) -> list[str]:
    """A 16's fields: type code, amount, funds type, availability, bank reference, customer
    reference and text. An 88 starts a new field until the text is reached, and continues the
    text after that (the text is the last field and may hold commas and '/')."""
    head = record.rows[0]
    fields = _body(head).split(",")
    text: list[str] | None = None  # the text's pieces, once an 88 continues it
    previous = head
    for row in record.rows[1:]:
        if text is None:
            funds = fields[2] if len(fields) > 2 else ""
            text_index = 3 + len(_availability(funds, fields[3:])) + 2
            if len(fields) > text_index:
                text = [fields.pop()]
        if text is None:
            fields.extend(_body(row).split(","))
        else:
            text += [_separator(previous), _body(row).strip()]
        previous = row
    if text is not None:
        fields.append("".join(text))
    if len(fields) > 2:
        availability = _availability(fields[2], fields[3:])
        fields[3 : 3 + len(availability)] = availability
    if not fields[0].strip():
        raise StatementRefused(NAME, record.where, "the transaction detail gives no type code")
    amount = fields[1].strip() if len(fields) > 1 else ""
    if not _DETAIL_AMOUNT.fullmatch(amount):
        shown = f"'{amount}'" if amount else "no amount"
        raise StatementRefused(
            NAME,
            record.where,
            f"the transaction detail gives {shown} where an unsigned whole number of minor units "
            "belongs",
        )
    return fields


def _account_fields(record: _Record) -> list[str]:
    """An 03's fields: account number, currency, then summaries of type code, amount, item
    count, funds type and the funds type's availability fields.

    Banks disagree on the field before a '/' that continues into an 88: some end the row at a
    summary's last field, some add an empty field after it ('...015,35217175,,,/'). An empty
    field that ends a row exactly where a summary would begin is that writer's habit, not an
    empty type code, and is dropped.
    """
    stream: list[tuple[str, bool]] = []  # (field, ends a row that an 88 continues)
    for index, row in enumerate(record.rows):
        parts = _body(row).split(",")
        more_rows = index < len(record.rows) - 1
        stream.extend((part, more_rows and i == len(parts) - 1) for i, part in enumerate(parts))
    fields = [value for value, _ in stream[:2]]
    fields += [""] * (2 - len(fields))
    position = 2
    while position < len(stream):
        value, ends_row = stream[position]
        if not value.strip() and (ends_row or position == len(stream) - 1):
            position += 1
            continue
        summary = [value for value, _ in stream[position : position + 4]]
        summary += [""] * (4 - len(summary))
        position += 4
        following = [value for value, _ in stream[position:]]
        extra = _availability(summary[3], following)
        summary += extra
        position += len(extra)
        amount = summary[1].strip()
        if amount and not _SIGNED_AMOUNT.fullmatch(amount):
            raise StatementRefused(
                NAME,
                record.where,
                f"the summary amount '{amount}' for type code '{summary[0].strip()}' is not a "
                "whole number of minor units",
            )
        fields += summary
    return fields


def _check_trailer_numbers(record: _Record, fields: Sequence[str]) -> None:
    """Trailer totals and counts are read by the library with int(), which also takes '1_0' or
    Arabic-Indic digits; they must be plain ASCII numbers here."""
    if record.code not in ("49", "98", "99"):
        return
    total = fields[0].strip() if fields else ""
    if total and not _SIGNED_AMOUNT.fullmatch(total):
        raise StatementRefused(
            NAME, record.where, f"the {record.name} control total '{total}' is not a number"
        )
    for count in fields[1:3]:
        if count.strip() and not _COUNT.fullmatch(count.strip()):
            raise StatementRefused(
                NAME, record.where, f"the {record.name} count '{count.strip()}' is not a number"
            )


# -- the library ---------------------------------------------------------------------------------


def _type_code(value: str) -> Any:
    """The library's entry for a type code, or an unlisted one: banks use codes of their own
    (and the specification keeps adding them); the sign of a detail comes from the range."""
    code = value.strip()
    listed = bai2_constants.TypeCodes.get(code)
    if listed is not None:
        return listed
    if not re.fullmatch(r"[0-9]{3}", code):
        raise ValueError(f"'{code}' is not a three-digit type code")
    return bai2_constants.TypeCode(code, None, None, "not in the BAI2 code list")


class _DetailParser(bai2_parsers.TransactionDetailParser):  # type: ignore[misc]
    head_fields_config = (
        ("type_code", _type_code),
        *bai2_parsers.TransactionDetailParser.head_fields_config[1:],
    )


class _AccountIdentifierParser(bai2_parsers.AccountIdentifierParser):  # type: ignore[misc]
    summary_fields_config = (
        ("type_code", _type_code),
        *bai2_parsers.AccountIdentifierParser.summary_fields_config[1:],
    )


class _AccountParser(bai2_parsers.AccountParser):  # type: ignore[misc]
    header_parser_class = _AccountIdentifierParser
    child_parser_class = _DetailParser


class _GroupParser(bai2_parsers.GroupParser):  # type: ignore[misc]
    child_parser_class = _AccountParser


class _FileParser(bai2_parsers.Bai2FileParser):  # type: ignore[misc]
    child_parser_class = _GroupParser


class _Records:
    """What the library's parsers read from: the current record and a way to the next."""

    def __init__(self, records: Sequence[_Record]) -> None:
        self._records = records
        self._index = -1
        self.current_record: Any = None
        self.advance()

    @property
    def current(self) -> _Record:
        return self._records[self._index]

    def advance(self) -> None:
        if self._index + 1 >= len(self._records):
            raise StopIteration
        self._index += 1
        self.current_record = self.current.library


def _parse_with_library(records: Sequence[_Record]) -> Any:
    for record in records:
        code = bai2_constants.RecordCode(record.code)
        rows = [(bai2_constants.RecordCode(row.code), row.text) for row in record.rows]
        record.library = bai2_models.Record(code=code, fields=record.fields, rows=rows)
    reader = _Records(records)
    try:
        return _FileParser(reader, check_integrity=False).parse()
    except bai2_exceptions.NotSupportedYetException as err:
        # With our type-code reader, only the 01 header's version check raises this.
        raise StatementRefused(
            NAME, reader.current.where, f"it is not BAI version 2 ({err})"
        ) from None
    except (bai2_exceptions.ParsingException, ValueError, IndexError, KeyError, TypeError) as err:
        # Field contents the library cannot read (a date, a funds type, a missing field);
        # the nesting was checked before, so this is about the current record.
        reason = "a field is missing" if isinstance(err, IndexError) else str(err)
        raise StatementRefused(
            NAME,
            reader.current.where,
            f"the {reader.current.name} holds a field that cannot be read ({reason})",
        ) from None


# -- from the library's objects to statements ----------------------------------------------------


@dataclass
class _Sums:
    """What a part of the file holds, for its trailer: the algebraic sum of its amounts as
    written (summaries and details alike, debits not negated) and its record count."""

    amounts: int = 0
    records: int = 0

    def add(self, other: _Sums) -> None:
        self.amounts += other.amounts
        self.records += other.records


def _statements(
    bai_file: Any, by_rows: dict[int, _Record], notes: tuple[str, ...]
) -> list[Statement]:
    def record_of(model: Any) -> _Record:
        return by_rows[id(model.rows)]

    file_id = (bai_file.header.file_id or "").strip() or None
    statements: list[Statement] = []
    file_sums = _Sums(records=_rows_in(record_of(bai_file.header), record_of(bai_file.trailer)))
    file_checks_for: list[int] = []
    for group in bai_file.children:
        group_record = record_of(group.header)
        as_of = _as_of_date(group_record, group.header.as_of_date)
        group_currency = _field(group_record, 5)
        group_sums = _Sums(records=_rows_in(group_record, record_of(group.trailer)))
        group_start = len(statements)
        for account in group.children:
            statement, account_sums = _statement(
                account, record_of, as_of, group_currency, file_id, notes
            )
            statements.append(statement)
            group_sums.add(account_sums)
        trailer = record_of(group.trailer)
        group_checks = (
            _total_check("group control total (98)", trailer, group_sums.amounts),
            _count_check("group account count (98)", trailer, 1, len(group.children)),
            _count_check("group record count (98)", trailer, 2, group_sums.records),
        )
        # Once per group, on its first account: repeated on every account they read as that
        # many findings about one trailer.
        _add_checks(
            statements, range(group_start, min(group_start + 1, len(statements))), group_checks
        )
        file_sums.add(group_sums)
        file_checks_for.extend(range(group_start, len(statements)))
    trailer = record_of(bai_file.trailer)
    file_checks = (
        _total_check("file control total (99)", trailer, file_sums.amounts),
        _count_check("file group count (99)", trailer, 1, len(bai_file.children)),
        _count_check("file record count (99)", trailer, 2, file_sums.records),
    )
    # The file's trailer checks go once, on its first statement; the import shows every
    # statement's checks together, so a file that does not add up is still plain to see.
    _add_checks(statements, file_checks_for[:1], file_checks)
    return statements


def _statement(
    account: Any,
    record_of: Any,
    as_of: date,
    group_currency: str,
    file_id: str | None,
    notes: tuple[str, ...],
) -> tuple[Statement, _Sums]:
    header = record_of(account.header)
    number = (account.header.customer_account_number or "").strip()
    if not number:
        raise StatementRefused(NAME, header.where, "the account identifier gives no account number")
    code = _field(header, 1) or group_currency
    statement_notes = notes
    if not code:
        # The specification's default when neither the 03 nor the 02 names a currency.
        code = "USD"
        statement_notes += (
            "Neither the account identifier (03) nor the group header (02) names a currency; "
            "BAI2 then means US dollars (USD).",
        )
    currency = currency_of(NAME, code, header.where)
    sums = _Sums(records=_rows_in(header, record_of(account.trailer)))
    balances: dict[str, Money] = {}
    for summary in account.header.summary_items:
        sums.amounts += summary.amount or 0
        type_code = summary.type_code.code if summary.type_code is not None else ""
        if type_code in ("010", "015") and summary.amount is not None:
            balances.setdefault(type_code, Money.from_minor(summary.amount, currency))
    lines = []
    for detail in account.children:
        record = record_of(detail)
        sums.amounts += detail.amount
        sums.records += len(record.rows)
        lines.append(_line(detail, record, as_of, currency))
    trailer = record_of(account.trailer)
    checks = (
        _total_check("account control total (49)", trailer, sums.amounts),
        _count_check("account record count (49)", trailer, 1, sums.records),
    )
    statement = Statement(
        format=NAME,
        account=number,
        currency=currency,
        lines=tuple(lines),
        statement_id=file_id,
        period_start=as_of,
        period_end=as_of,
        opening=balances.get("010"),
        closing=balances.get("015"),
        declared_checks=checks,
        notes=statement_notes,
    )
    return statement, sums


def _line(detail: Any, record: _Record, booked: date, currency: str) -> StatementLine:
    type_code = detail.type_code.code
    number = int(type_code)
    if 100 <= number <= 399:
        amount = Money.from_minor(detail.amount, currency)
    elif 400 <= number <= 699:
        amount = Money.from_minor(-detail.amount, currency)
    else:
        raise StatementRefused(
            NAME,
            record.where,
            f"the transaction detail has type code {type_code}, which is neither a credit "
            "(100-399) nor a debit (400-699)",
        )
    availability = detail.availability or {}
    value_date = availability.get("date") if detail.funds_type is not None else None
    text = detail.text or ""
    raw = {
        "record": "\n".join(f"{row.code},{row.text}" for row in record.rows),
        "type_code": type_code,
        "amount": record.fields[1].strip(),
        "funds_type": record.fields[2].strip() if len(record.fields) > 2 else "",
        "bank_reference": (detail.bank_reference or "").strip(),
        "customer_reference": (detail.customer_reference or "").strip(),
        "text": text,
    }
    return StatementLine(
        booked=booked,
        amount=amount,
        location=record.where,
        value_date=value_date if isinstance(value_date, date) else None,
        bank_id=raw["bank_reference"] or None,
        reference=raw["customer_reference"] or None,
        description=" ".join(text.split()) or None,
        kind=type_code,
        raw=raw,
    )


def _field(record: _Record, index: int) -> str:
    return record.fields[index].strip() if len(record.fields) > index else ""


def _as_of_date(record: _Record, parsed: Any) -> date:
    if not _AS_OF_DATE.fullmatch(_field(record, 3)) or not isinstance(parsed, date):
        shown = f"'{_field(record, 3)}'" if _field(record, 3) else "no as-of date"
        raise StatementRefused(
            NAME,
            record.where,
            f"the group header (02) gives {shown} where a YYMMDD as-of date belongs",
        )
    return parsed


def _rows_in(*records: _Record) -> int:
    return sum(len(record.rows) for record in records)


def _total_check(name: str, trailer: _Record, computed: int) -> Check:
    declared = _field(trailer, 0)
    if not declared:
        # Blank is what some banks write when there is nothing to add up (the library reads it
        # as zero too).
        return Check(
            name,
            computed == 0,
            f"the {trailer.name} leaves the control total blank (read as 0), the amounts sum to "
            f"{computed}",
        )
    ok = int(declared) == computed
    return Check(
        name, ok, f"the {trailer.name} declares {int(declared)}, the amounts sum to {computed}"
    )


def _count_check(name: str, trailer: _Record, index: int, counted: int) -> Check:
    declared = _field(trailer, index)
    if not declared:
        return Check(name, False, f"the {trailer.name} leaves it blank, the file holds {counted}")
    ok = int(declared) == counted
    return Check(name, ok, f"the {trailer.name} declares {int(declared)}, the file holds {counted}")


def _add_checks(
    statements: list[Statement], indexes: Iterable[int], checks: tuple[Check, ...]
) -> None:
    for index in indexes:
        statement = statements[index]
        statements[index] = replace(statement, declared_checks=statement.declared_checks + checks)
