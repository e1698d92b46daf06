"""SWIFT MT940 statements and the banks' dialects of them, read with the mt-940 library.

The file is cut into messages (one per :20:) and fields here, because that is where the
dialects differ and where we need line numbers; each field's value is then read by mt-940's own
tag grammars (statement lines, balances, totals, German structured :86:). We do not call
`mt940.parse`: it loses line numbers, adds a :86: that follows the closing balance (ING's
totals) to the last transaction, merges a :61: without a type code into the one before it,
reads only the head of an over-long balance, and drops a lone '-' that is part of an ING :86:.

Decisions a reader should know:
- One `Statement` per :20: message. A statement split over messages (:62M: ... :60M:) gives one
  `Statement` per part, each with its own balance check, so a finding points at the part that is
  off; a part opening with :60M: is also checked against the previous part's closing balance.
- Signs: C and RD (reversal of a debit) are credits, D and RC (reversal of a credit) debits.
- A statement in a currency that is not an active ISO 4217 code refuses the whole file, naming
  the statement: a file is imported whole or not at all.
- Text is UTF-8 when it decodes as UTF-8; otherwise a single-byte code page (cp1252, cp852 or
  latin-1) chosen by charset-normalizer, and each statement carries a note saying which.
"""

from __future__ import annotations

import codecs
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Final

import charset_normalizer
import mt940

from billing_desk.domain.money import Money
from billing_desk.domain.statements import (
    Check,
    Statement,
    StatementLine,
    StatementRefused,
    count_check,
)
from billing_desk.importers.statements.base import (
    SNIFF_BYTES,
    check_size,
    currency_of,
    money_from_decimal,
    money_of,
)

NAME: Final = "mt940"

# mt-940 logs every value its patterns reject at ERROR level; we turn those into refusals (or
# try the next dialect), so without a handler Python's last-resort handler would print them.
logging.getLogger("mt940").addHandler(logging.NullHandler())

# Every fix the library offers over its 5.0.0 behaviour; the one that matters most is
# reversal_sign (RC negative). applicant_iban keeps ?31 (the account) out of the name.
_OPTIONS: Final = mt940.Options.all()
# The SWIFT layout of :61: (16-character customer reference) and ASN Bank's, which puts a
# 34-character IBAN there; a file is read with the second only when the first fails it.
_STANDARD_LINE_TAG: Final = mt940.tags.Statement()
_WIDE_REFERENCE_LINE_TAG: Final = mt940.tags.StatementASNB()
_DETAILS_TAG: Final = mt940.tags.TAG_BY_ID[86]

_SINGLE_BYTE_ENCODINGS: Final = ("cp1252", "cp852", "latin_1")
_FRAMING: Final = str.maketrans("", "", "\x01\x03")  # SOH / ETX around a transmission
_CONTROL: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_LINE_BREAK: Final = re.compile(r"\r\n|\r|\n")
_TAG_LINE: Final = re.compile(r":(?P<tag>[0-9]{2}[A-Z]?|NS):")
_ENVELOPE: Final = re.compile(r"\{[1-5]:")
# "-" ends a message (but see _messages), "-}" / "-}{5:...}" a SWIFT text block, "-XXX" old ING.
_MESSAGE_END: Final = re.compile(r"-(?:\}.*|XXX)?")
_SNIFF_REFERENCE: Final = re.compile(r"(?m)^(?:\{4:)?:20:")
_SNIFF_BODY: Final = re.compile(r"(?m)^:(?:25|28C?|60[FM]):")

# SWIFT puts at most 6 x 65 characters in a :86:, banks more; a field far beyond that is not a
# statement (and would cost the character-by-character readers time).
_MAX_DETAILS_CHARS: Final = 65_536
_MAX_FIELD_CHARS: Final = 2_048
_SWIFT_LINE_WIDTH: Final = 65
_SHOWN_CHARS: Final = 40

_OPENING_TAGS: Final = frozenset({"60F", "60M", "60"})
_CLOSING_TAGS: Final = frozenset({"62F", "62M", "62"})
# Fields we know and need nothing from: report time, related reference, floor limit, available
# and forward available balances.
_IGNORED_TAGS: Final = frozenset({"13", "13D", "21", "34F", "64", "65"})
_NO_REFERENCE: Final = "NONREF"
_NO_REFERENCE_WORDS: Final = (_NO_REFERENCE, "NOTPROVIDED", "NOREF")
# Subfield 6 of :61:: S + a SWIFT message type, N or F + a code of letters or digits (some
# banks pad with spaces).
_TYPE_CODE: Final = re.compile(r"S[0-9 ]{3}|[NF][A-Z0-9][A-Z0-9 ]{2}")

# :86: dialects. German (and Polish) structured: GV code then ?00..?63; Triodos writes '>' for '?'.
_GERMAN_DETAILS: Final = re.compile(r"\d{3}\?\d{2}")
_TRIODOS_DETAILS: Final = re.compile(r"\d{3}>\d{2}")
_TRIODOS_MARK: Final = re.compile(r">(?=\d{2})")
# Dutch SEPA (ING, Rabobank, ABN AMRO): /CODE/value/CODE/value.
_SLASH_CODES: Final = frozenset(
    {
        *("EREF", "PREF", "MARF", "CSID", "CNTP", "BENM", "ORDP", "NAME", "ADDR", "REMI"),
        *("ISDT", "RTRN", "TRCD", "TRTP", "BUSP", "PURP", "ULTC", "ULTD", "IBAN", "BIC"),
    }
)
_SLASH_DETAILS: Final = re.compile(r"/(?:EREF|REMI|NAME|CNTP|ORDP|BENM|PREF|RTRN|TRTP|IBAN)/")
# A customer reference that only says which :86: sub-field holds the reference (ING, German).
_REFERENCE_POINTERS: Final = frozenset({"EREF", "PREF", "MARF", "KREF"})
# Totals for the account owner in a :86: after the closing balance: old ING
# (D<debit count>C<credit count>D<debit sum>C<credit sum>) and ING SEPA (/SUM/d/c/dsum/csum/).
_IBAN: Final = re.compile(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{10,30}")
_BIC: Final = re.compile(r"[A-Z]{6}[A-Z0-9]{2}(?:[A-Z0-9]{3})?")
_ING_TOTALS: Final = re.compile(r"D(\d{6})C(\d{6})D(\d+,\d*)C(\d+,\d*)")
_ING_SUM: Final = re.compile(r"/SUM/(\d+)/(\d+)/(\d+,\d*)/(\d+,\d*)/?")


def identify(data: bytes) -> bool:
    head = data[:SNIFF_BYTES].decode("latin-1")
    return bool(_SNIFF_REFERENCE.search(head) and _SNIFF_BODY.search(head))


def parse(data: bytes) -> list[Statement]:
    """Every statement in the file, in file order, or `StatementRefused` for the whole file."""
    check_size(NAME, data)
    text, encoding_note = _decode(data)
    lines = _physical_lines(text)
    messages = _messages(lines)
    if not messages:
        raise StatementRefused(NAME, None, "it holds no statement (no line starts with :20:)")
    notes: tuple[str, ...] = (encoding_note,) if encoding_note else ()
    notes += _damage_notes(lines)
    try:
        return _statements(messages, _STANDARD_LINE_TAG, notes)
    except _LineLayoutMismatch as standard:
        try:
            return _statements(messages, _WIDE_REFERENCE_LINE_TAG, notes)
        except _LineLayoutMismatch:
            raise StatementRefused(NAME, standard.where, standard.problem) from None


# --- Text ---------------------------------------------------------------------------------


def _decode(data: bytes) -> tuple[str, str | None]:
    body = data.removeprefix(codecs.BOM_UTF8)
    try:
        return body.decode("utf-8"), None
    except UnicodeDecodeError:
        pass
    best = charset_normalizer.from_bytes(body, cp_isolation=list(_SINGLE_BYTE_ENCODINGS)).best()
    if best is None or best.encoding not in _SINGLE_BYTE_ENCODINGS:
        raise StatementRefused(
            NAME, None, "it is neither UTF-8 nor text in a single-byte code page (binary data?)"
        )
    note = (
        f"The file is not UTF-8; its text was read as {best.encoding}, the best fit of "
        f"{', '.join(_SINGLE_BYTE_ENCODINGS)}."
    )
    return body.decode(best.encoding), note


def _physical_lines(text: str) -> list[str]:
    lines = _LINE_BREAK.split(text.rstrip("\x1a").translate(_FRAMING))
    for number, line in enumerate(lines, start=1):
        control = _CONTROL.search(line)
        if control:
            raise StatementRefused(
                NAME,
                f"line {number}",
                f"it holds the control character 0x{ord(control.group()):02X}, "
                "so this is not a text statement",
            )
    return lines


def _damage_notes(lines: Sequence[str]) -> tuple[str, ...]:
    damaged = [number for number, line in enumerate(lines, start=1) if "\ufffd" in line]
    if not damaged:
        return ()
    return (
        f"Line {damaged[0]} (and {len(damaged) - 1} more) holds replacement characters (U+FFFD): "
        "the bank's text was damaged before the file was written.",
    )


# --- Messages and fields -----------------------------------------------------------------


@dataclass
class _Field:
    tag: str  # "20", "61", "86", "60F", "NS", ...
    line: int
    lines: list[str]  # the value's physical lines, the first one after the tag

    def content_lines(self) -> list[str]:
        """The lines without trailing blanks (padding) and without blank lines at the end."""
        stripped = [line.rstrip() for line in self.lines]
        while stripped and not stripped[-1]:
            stripped.pop()
        return stripped

    def joined(self) -> str:
        """The value with its line breaks removed: ING wraps even :28C: mid-value."""
        return "".join(line.strip() for line in self.lines)

    def shown(self) -> str:
        text = " ".join(self.content_lines()).strip()
        return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 1] + "…"


@dataclass
class _Message:
    line: int  # where its :20: is
    fields: list[_Field] = field(default_factory=list)


def _messages(lines: Sequence[str]) -> list[_Message]:
    """Cut the file into :20: messages and their fields, dropping envelopes and header lines.

    Header lines (ABNANL2A, 940, 0000 01INGBNL2AXXXX00001, :940:) are whatever stands between
    the end of one message and the next :20:. A line that is only '-' ends a message, except
    inside the :86: of a statement line: a message cannot end there, and ING breaks its
    structured :86: at a '-' that belongs to the text.
    """
    messages: list[_Message] = []
    message: _Message | None = None
    current: _Field | None = None
    last_main_tag: str | None = None  # the last field that is not :86: or :NS:
    for number, line in enumerate(lines, start=1):
        content = line.rstrip()
        if _ENVELOPE.match(content):
            message = current = None
            start = content.find("{4:")
            if start < 0:
                continue
            line = content = content[start + 3 :]
            if not content.strip():
                continue
        if _MESSAGE_END.fullmatch(content):
            inside_line_details = (
                current is not None and current.tag in ("86", "NS") and last_main_tag == "61"
            )
            if content == "-" and inside_line_details and current is not None:
                current.lines.append(content)
                continue
            message = current = None
            continue
        tag_match = _TAG_LINE.match(content)
        if tag_match:
            tag = tag_match.group("tag")
            if tag == "20":
                message = _Message(number)
                messages.append(message)
                last_main_tag = None
            elif message is None:
                raise StatementRefused(
                    NAME,
                    f"line {number}",
                    f"the field :{tag}: stands outside any statement (no :20: before it)",
                )
            current = _Field(tag, number, [line[tag_match.end() :]])
            message.fields.append(current)
            if tag not in ("86", "NS"):
                last_main_tag = tag
            _check_field_size(current)
            continue
        if current is not None:
            current.lines.append(line)
            _check_field_size(current)
        # Otherwise a header line between messages: nothing in it is needed.
    return messages


def _check_field_size(item: _Field) -> None:
    limit = _MAX_DETAILS_CHARS if item.tag in ("86", "NS") else _MAX_FIELD_CHARS
    if sum(len(line) + 1 for line in item.lines) > limit:
        raise StatementRefused(
            NAME,
            f"line {item.line}",
            f"the field :{item.tag}: runs to more than {limit} characters",
        )


# --- Statements ----------------------------------------------------------------------------


class _LineLayoutMismatch(StatementRefused):
    """A :61: does not fit the statement-line layout being tried."""


@dataclass
class _Balance:
    money: Money
    booked: date
    tag: str
    line: int


@dataclass
class _Entry:
    line_field: _Field
    details: list[_Field] = field(default_factory=list)  # :86: and :NS: that follow it


@dataclass
class _PreviousPart:
    reference: str
    closing: _Balance


def _statements(
    messages: Sequence[_Message], line_tag: mt940.tags.Tag, notes: tuple[str, ...]
) -> list[Statement]:
    statements: list[Statement] = []
    previous_parts: dict[str, _PreviousPart] = {}
    for message in messages:
        statements.append(_statement(message, line_tag, notes, previous_parts))
    return statements


def _statement(
    message: _Message,
    line_tag: mt940.tags.Tag,
    file_notes: tuple[str, ...],
    previous_parts: dict[str, _PreviousPart],
) -> Statement:
    reference = message.fields[0].joined()
    named = f"statement '{reference}'" if reference else f"the statement at line {message.line}"
    context = mt940.models.Transactions(options=_OPTIONS)
    account: str | None = None
    number: str | None = None
    opening: _Balance | None = None
    closing: _Balance | None = None
    entries: list[_Entry] = []
    owner_information: list[_Field] = []
    totals: list[tuple[str, _Field]] = []
    notes: list[str] = list(file_notes)
    current: _Entry | None = None
    for item in message.fields[1:]:
        where = f"line {item.line} ({named})"
        if item.tag in ("86", "NS"):
            if current is not None:
                current.details.append(item)
            elif item.tag == "86":
                owner_information.append(item)
            continue
        current = None
        if item.tag == "20":  # pragma: no cover - every :20: starts its own message
            continue
        if item.tag == "25":
            account = " ".join(item.joined().split())
        elif item.tag.startswith("28"):
            number = item.joined()
        elif item.tag in _OPENING_TAGS:
            if opening is not None:
                raise StatementRefused(NAME, where, "a second opening balance in one statement")
            opening = _balance(context, item, None, where)
        elif item.tag in _CLOSING_TAGS:
            if opening is None:
                raise StatementRefused(
                    NAME, where, "the closing balance comes before an opening one"
                )
            if closing is not None:
                raise StatementRefused(NAME, where, "a second closing balance in one statement")
            closing = _balance(context, item, opening.money.currency, where)
        elif item.tag == "61":
            if opening is None or closing is not None:
                raise StatementRefused(
                    NAME, where, "a statement line (:61:) outside the opening and closing balances"
                )
            current = _Entry(item)
            entries.append(current)
        elif item.tag in ("90D", "90C"):
            totals.append((item.tag, item))
        elif item.tag not in _IGNORED_TAGS:
            notes.append(f"Line {item.line}: the field :{item.tag}: is not MT940 and was skipped.")
    if account is None or not account:
        raise StatementRefused(NAME, f"line {message.line}", f"{named} has no account (:25:)")
    if opening is None or closing is None:
        missing = "opening balance (:60F:)" if opening is None else "closing balance (:62F:)"
        raise StatementRefused(
            NAME,
            f"line {message.line}",
            f"{named} has no {missing}; the file may be cut short",
        )
    currency = opening.money.currency
    lines = tuple(_statement_line(context, line_tag, entry, currency, named) for entry in entries)
    checks: list[Check] = []
    for information in owner_information:
        found = _owner_totals(information, lines, currency, f"line {information.line} ({named})")
        if found:
            checks.extend(found)
        else:
            text = " ".join(information.content_lines()).strip()
            notes.append(f"Line {information.line}: information for the account owner: {text}")
    for tag, item in totals:
        checks.extend(_declared_sum(context, tag, item, lines, currency, named))
    previous = previous_parts.get(account)
    if opening.tag == "60M" and previous is not None:
        checks.append(_continuation_check(opening, previous))
    previous_parts[account] = _PreviousPart(reference, closing)
    if closing.booked < opening.booked:
        notes.append(
            f"The closing balance is dated {closing.booked.isoformat()}, before the opening "
            f"balance ({opening.booked.isoformat()})."
        )
    return Statement(
        format=NAME,
        account=account,
        currency=currency,
        lines=lines,
        statement_id=f"{reference} #{number}" if number else reference,
        period_start=opening.booked,
        period_end=closing.booked,
        opening=opening.money,
        closing=closing.money,
        declared_checks=tuple(checks),
        notes=tuple(notes),
    )


def _run_tag(
    context: mt940.models.Transactions,
    tag: mt940.tags.Tag,
    value: str,
    where: str,
    what: str,
    refusal: type[StatementRefused] = StatementRefused,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The library's reading of one field, as `Transactions.parse` does it for each tag: the
    pattern's groups and the result after the pre- and post-processors."""
    shown = " ".join(value.split())
    shown = shown if len(shown) <= _SHOWN_CHARS else shown[: _SHOWN_CHARS - 1] + "…"
    # Balance and total patterns are not anchored at the end: a value with more after it
    # would be read in part. We read it whole or not at all.
    if tag.re.fullmatch(value) is None:
        raise refusal(NAME, where, f"the {what} '{shown}' does not have the MT940 layout")
    try:
        groups: dict[str, Any] = dict(tag.parse(context, value))
        for before in context.processors.get(f"pre_{tag.slug}", []):
            groups = before(context, tag, groups)
        # The tag replaces the texts in the dict it is given with objects; keep the texts.
        working = dict(groups)
        result: dict[str, Any] = tag(context, working)
        for after in context.processors.get(f"post_{tag.slug}", []):
            result = after(context, tag, working, result)
    except (RuntimeError, ValueError, ArithmeticError):
        raise refusal(NAME, where, f"the {what} '{shown}' cannot be read") from None
    return groups, result


def _balance(
    context: mt940.models.Transactions, item: _Field, currency: str | None, where: str
) -> _Balance:
    tag = context.tags.get(item.tag) or context.tags[int(item.tag[:2])]
    groups, result = _run_tag(context, tag, item.joined(), where, "balance")
    # The :61: reader takes its currency from the balances seen so far, like the library's.
    context.data.update(result)
    balance = result[tag.slug]
    code = currency_of(NAME, groups.get("currency"), where)
    if currency is not None and code != currency:
        raise StatementRefused(
            NAME, where, f"the balance is in {code}, the opening balance in {currency}"
        )
    amount = balance.amount.amount
    shown = f"{groups['status']}{groups['amount']}"
    money = money_from_decimal(NAME, amount, code, where, shown=shown)
    return _Balance(money, _plain_date(balance.date), item.tag, item.line)


# --- Statement lines -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Details:
    counterparty: str | None = None
    description: str | None = None
    references: Mapping[str, str] = field(default_factory=dict)  # EREF, KREF, PREF, STRD ...
    fields: Mapping[str, str] = field(default_factory=dict)  # the sub-fields, for raw


def _statement_line(
    context: mt940.models.Transactions,
    line_tag: mt940.tags.Tag,
    entry: _Entry,
    currency: str,
    named: str,
) -> StatementLine:
    where = f"line {entry.line_field.line}"
    value = _line_value(entry.line_field)
    groups, result = _run_tag(
        context,
        line_tag,
        value,
        f"{where} ({named})",
        "statement line (:61:)",
        refusal=_LineLayoutMismatch,
    )
    groups = _type_code_or_not(groups)
    mark = str(groups.get("status") or "").upper()
    money = money_from_decimal(
        NAME,
        result["amount"].amount,
        currency,
        f"{where} ({named})",
        shown=f"{mark}{groups['amount']}",
    )
    value_date = _plain_date(result["date"])
    entry_date = result.get("entry_date")
    booked = _plain_date(entry_date) if entry_date is not None else value_date

    customer_reference = _reference_text(groups.get("customer_reference"))
    bank_reference = _reference_text(groups.get("bank_reference"))
    supplementary = (groups.get("extra_details") or "").strip() or None
    details_lines = [line for item in entry.details if item.tag == "86" for line in item.lines]
    details = _read_details(context, details_lines, f"{where} ({named})")
    if entry.details and not details_lines:
        details = _non_swift_details(entry.details)

    pointer = customer_reference.rstrip("+").upper() if customer_reference else None
    points = pointer in _REFERENCE_POINTERS
    reference = details.references.get(pointer or "") if points else customer_reference
    if reference is None:
        found = [details.references.get(key) for key in ("EREF", "KREF", "STRD")]
        reference = next((text for text in found if text), None)
    counterparty = details.counterparty
    description = details.description
    if counterparty is None and supplementary and "\n" not in value:
        # Old Rabobank: the name follows the 16-character customer reference on the :61: line.
        counterparty = supplementary
    elif counterparty is None and supplementary and customer_reference and description:
        # ASN Bank: the :86: repeats "<account> <name>" from the :61:, then the remittance text.
        lead = f"{customer_reference} {supplementary}"
        if description.startswith(lead):
            counterparty = supplementary
            description = description[len(lead) :].strip() or None

    raw: dict[str, str] = {":61:": "\n".join(entry.line_field.content_lines())}
    for item_tag in ("86", "NS"):
        text = "\n".join(
            line for item in entry.details if item.tag == item_tag for line in item.content_lines()
        )
        if text:
            raw[f":{item_tag}:"] = text
    for key, label in (
        ("status", "mark"),
        ("funds_code", "funds_code"),
        ("amount", "amount"),
        ("id", "type"),
        ("customer_reference", "customer_reference"),
        ("bank_reference", "bank_reference"),
        ("extra_details", "supplementary_details"),
    ):
        text = str(groups.get(key) or "").strip()
        if text:
            raw[label] = text
    raw.update(details.fields)
    return StatementLine(
        booked=booked,
        amount=money,
        location=where,
        value_date=value_date,
        # Only the account servicing institution's reference (after '//') identifies a line:
        # the customer reference is the payer's or the owner's text and repeats across lines.
        bank_id=bank_reference,
        reference=reference,
        counterparty=counterparty,
        description=description,
        kind=str(groups.get("id") or "").strip() or None,
        raw=raw,
    )


def _type_code_or_not(groups: dict[str, Any]) -> dict[str, Any]:
    """Subfield 6 of :61: (transaction type, 1!a3!c) as the standard defines it, or absent.

    The library takes any four characters after the amount as the type, so a bank that sends
    no type ('D20,00NONREF', 'C5,00REF 4711//...') had its customer reference cut in two. A
    type starts with S (a SWIFT message type: three digits), N (a non-SWIFT code) or F (a
    first advice); a reference that says there is none (NONREF, NOTPROVIDED) is never a type.
    """
    code = str(groups.get("id") or "")
    if not code:
        return groups
    rest = str(groups.get("customer_reference") or "")
    joined = code + rest
    typed = _TYPE_CODE.fullmatch(code) is not None and not joined.upper().startswith(
        _NO_REFERENCE_WORDS
    )
    if typed:
        return groups
    return {**groups, "id": None, "customer_reference": joined}


def _line_value(item: _Field) -> str:
    """The :61: as the library's pattern expects it: subfields 1-9, then at most one line of
    supplementary details.

    ING wraps :61: anywhere, even inside the bank reference ('//00000000001' + '005'). With
    more than one continuation line we join them; what comes before their first '/' still
    belongs to the bank reference, the rest ('/TRCD/00100/') is the supplementary details.
    """
    first, *more = item.content_lines() or [""]
    continuation = [line.strip() for line in more if line.strip()]
    if len(continuation) <= 1:
        return "\n".join([first, *continuation])
    joined = "".join(continuation)
    if "//" in first and "/" in joined:
        cut = joined.index("/")
        first, joined = first + joined[:cut], joined[cut:]
    return f"{first}\n{joined}" if joined else first


def _plain_date(value: date) -> date:
    return date(value.year, value.month, value.day)


def _reference_text(value: object) -> str | None:
    text = str(value or "").strip()
    return None if not text or text.upper() in _NO_REFERENCE_WORDS else text


def _read_details(context: mt940.models.Transactions, lines: Sequence[str], where: str) -> _Details:
    if not lines:
        return _Details()
    glued = "".join(line.rstrip("\r\n") for line in lines).lstrip()
    if _GERMAN_DETAILS.match(glued) or _TRIODOS_DETAILS.match(glued):
        return _german_details(context, lines, where)
    if glued.startswith("/") and _SLASH_DETAILS.search(glued):
        return _slash_details(glued)
    return _Details(description=_free_text(lines))


def _german_details(
    context: mt940.models.Transactions, lines: Sequence[str], where: str
) -> _Details:
    """GV code, ?00 posting text, ?10 primanota, ?20-?29 purpose (with SEPA keywords such as
    EREF+ and SVWZ+), ?30/?31 the counterparty's bank and account, ?32/?33 its name; read by
    the library's own structured-:86: processor. Triodos writes '>' where Germans write '?'."""
    value = "\n".join(lines).lstrip()
    if _TRIODOS_DETAILS.match(value):
        value = _TRIODOS_MARK.sub("?", value)
    _groups, result = _run_tag(context, _DETAILS_TAG, value, where, "transaction details (:86:)")
    found = {key: str(text).strip() for key, text in result.items() if text and str(text).strip()}
    references = {
        code: found[key]
        for code, key in (("EREF", "end_to_end_reference"), ("KREF", "customer_reference"))
        if key in found
    }
    return _Details(
        counterparty=found.get("applicant_name"),
        description=found.get("purpose") or found.get("posting_text"),
        references=references,
        fields={f"86.{key}": text for key, text in found.items()},
    )


def _slash_details(glued: str) -> _Details:
    """/EREF/.../CNTP/account/bic/name/city/REMI/USTD//text/ and the like (ING, Rabobank, ABN
    AMRO SEPA). A code's value runs to the next known code; lines were joined without spaces
    because these banks cut their 65-character lines anywhere."""
    codes: dict[str, list[str]] = {}
    current: list[str] | None = None
    for word in glued.split("/"):
        if word in _SLASH_CODES:
            current = codes.setdefault(word, [])
        elif current is not None:
            current.append(word)
    values = {code: "/".join(words).strip("/").strip() for code, words in codes.items()}
    references = {code: values[code] for code in ("EREF", "PREF", "MARF") if values.get(code)}
    description = None
    remittance = codes.get("REMI", [])
    if remittance and remittance[0] in ("USTD", "STRD"):
        rest = "/".join(remittance[1:]).strip("/").strip()
        if remittance[0] == "STRD":
            # Structured remittance: issuer type, then the creditor's reference.
            structured = [word for word in remittance[1:] if word]
            if structured:
                references["STRD"] = structured[-1]
                rest = structured[-1]
        description = rest or None
    elif values.get("REMI"):
        description = values["REMI"]
    counterparty = values.get("NAME") or None
    for code in ("CNTP", "BENM", "ORDP"):
        # account / BIC / name / city; a party spread over several lines may lose a slash
        # or gain an empty word, so the name is the first word that reads as one.
        words = [word.strip() for word in codes.get(code, [])]
        names = [word for word in words[1:] if _reads_as_a_name(word)]
        if counterparty is None and names:
            counterparty = names[0]
        if description is None and len(names) > 2:
            description = " ".join(names[2:])  # free text after the name and city
    return _Details(
        counterparty=counterparty,
        description=description,
        references=references,
        fields={f"86.{code}": text for code, text in values.items() if text},
    )


def _reads_as_a_name(word: str) -> bool:
    """Not an account number, an IBAN or a BIC: a counterparty's name has a letter in a word
    that is not all capitals and digits of a code's length."""
    letters = sum(c.isalpha() for c in word)
    if not letters or sum(c.isdigit() for c in word) >= letters:
        return False  # an account number, or a fragment of one
    compact = word.replace(" ", "")
    return not (_IBAN.fullmatch(compact) or _BIC.fullmatch(compact))


def _free_text(lines: Sequence[str]) -> str | None:
    """Free :86: text as one line. A line filled to the SWIFT width of 65 was cut by width and
    continues without a space; a shorter one ended where the writer ended it."""
    text = ""
    previous_full = False
    for line in lines:
        content = line.rstrip()
        if not content.strip():
            previous_full = False
            continue
        if text and not previous_full and not content[0].isspace():
            text += " "
        text += content
        previous_full = len(content) >= _SWIFT_LINE_WIDTH
    return text.strip() or None


def _non_swift_details(items: Sequence[_Field]) -> _Details:
    """Sberbank Hungary's :NS: after a :61:: numbered two-digit sub-fields; 09 carries the
    fee text and 15/16 the counterparty's name, cut at 27 characters."""
    subfields: dict[str, str] = {}
    for item in items:
        for line in item.content_lines():
            if len(line) > 2 and line[:2].isdigit():
                subfields[line[:2]] = subfields.get(line[:2], "") + line[2:]
    name = (subfields.get("15", "") + subfields.get("16", "")).strip() or None
    return _Details(
        counterparty=name,
        description=subfields.get("09", "").strip() or None,
        fields={f"NS.{key}": text.strip() for key, text in subfields.items() if text.strip()},
    )


# --- Checks --------------------------------------------------------------------------------


def _is_debit(line: StatementLine) -> bool:
    # By mark, so a zero amount still counts on its side.
    return line.raw.get("mark", "") in ("D", "RC")


def _side_checks(
    lines: Sequence[StatementLine],
    debit_count: int,
    credit_count: int,
    debit_total: Money | None,
    credit_total: Money | None,
    currency: str,
    source: str,
) -> list[Check]:
    debits = [line for line in lines if _is_debit(line)]
    credits = [line for line in lines if not _is_debit(line)]
    checks = [
        count_check(f"debit entries ({source})", debit_count, debits),
        count_check(f"credit entries ({source})", credit_count, credits),
    ]
    for side, declared, side_lines in (
        ("debit", debit_total, debits),
        ("credit", credit_total, credits),
    ):
        if declared is None:
            continue
        actual = Money.total((abs(line.amount) for line in side_lines), currency)
        checks.append(
            Check(
                f"{side} total ({source})",
                actual == declared,
                f"the file declares {declared.plain()}, the lines add up to {actual.plain()}",
            )
        )
    return checks


def _owner_totals(
    item: _Field, lines: Sequence[StatementLine], currency: str, where: str
) -> list[Check]:
    """Checks from ING's totals in the :86: after the closing balance (not a transaction)."""
    text = item.joined()
    match = _ING_TOTALS.fullmatch(text) or _ING_SUM.fullmatch(text)
    if match is None:
        return []
    debit_count, credit_count, debit_sum, credit_sum = match.groups()
    return _side_checks(
        lines,
        int(debit_count),
        int(credit_count),
        money_of(NAME, debit_sum, currency, where, decimal_comma=True),
        money_of(NAME, credit_sum, currency, where, decimal_comma=True),
        currency,
        "ING totals",
    )


def _declared_sum(
    context: mt940.models.Transactions,
    tag_id: str,
    item: _Field,
    lines: Sequence[StatementLine],
    currency: str,
    named: str,
) -> list[Check]:
    """:90D: / :90C:: number and sum of the debit or credit entries."""
    where = f"line {item.line} ({named})"
    tag = context.tags[tag_id]
    groups, _result = _run_tag(context, tag, item.joined(), where, f"total (:{tag_id}:)")
    if currency_of(NAME, groups.get("currency"), where) != currency:
        raise StatementRefused(NAME, where, f"the total is not in {currency}")
    total = money_of(NAME, groups["amount"], currency, where, decimal_comma=True)
    side = "debit" if tag_id == "90D" else "credit"
    side_lines = [line for line in lines if _is_debit(line) == (side == "debit")]
    checks: list[Check] = []
    if groups.get("number"):
        checks.append(
            count_check(f"{side} entries (:{tag_id}:)", int(groups["number"]), side_lines)
        )
    actual = Money.total((abs(line.amount) for line in side_lines), currency)
    checks.append(
        Check(
            f"{side} total (:{tag_id}:)",
            actual == total,
            f"the file declares {total.plain()}, the lines add up to {actual.plain()}",
        )
    )
    return checks


def _continuation_check(opening: _Balance, previous: _PreviousPart) -> Check:
    ok = opening.money == previous.closing.money
    verb = "=" if ok else "≠"
    return Check(
        "continuation",
        ok,
        f"this part opens (:60M:) with {opening.money.plain()} {verb} "
        f"{previous.closing.money.plain()}, the closing balance of statement "
        f"'{previous.reference}' at line {previous.closing.line}",
    )
