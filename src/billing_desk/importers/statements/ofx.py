"""OFX and QFX statements: OFX 1.x (SGML), OFX 2.x (XML) and Quicken's QFX (OFX 1.02 with
Intuit's extra tags). Each STMTRS (bank account) and CCSTMTRS (credit card) in the file becomes
one `Statement`, its lines the STMTTRNs of all its BANKTRANLISTs, in file order.

What a line holds: booked = DTPOSTED (the date as the bank wrote it: the time and zone are
dropped, never used to move the date), value date = DTAVAIL, amount = TRNAMT (a decimal point or
a decimal comma), bank id = FITID, reference = CHECKNUM or else REFNUM (a check number of zeros
is no reference), counterparty = NAME (or PAYEE/NAME), description = MEMO, kind = TRNTYPE.
`raw` keeps every field of the STMTTRN as text (nested aggregates as "CURRENCY/CURSYM") plus the
account's fields ("BANKACCTFROM/BANKID") and CURDEF.

Balances: the closing balance is LEDGERBAL. OFX has no opening balance, so there is no balance
check; a note says so. Zero-amount entries ("-0", "null") move no money and are skipped, each
named in a note. A file is refused, with its line, when a date or an amount cannot be read, when
a line is in another currency than its statement, when it holds an investment statement, when
its structure is broken or it ends early (no closing </OFX>).

Why our own reader and not ofxparse (pinned in pyproject.toml; the tests use it to cross-check
the corpus):
- its SGML pass looks up every start tag in a *list* of every end tag in the file, so reading
  time grows with the square of the size: 8,000 entries (0.7 MB) take 5 s, a 50 MB file hours;
- it moves every date to UTC, so an entry posted in the evening west of Greenwich, or in the
  morning east of it, lands on another day;
- its amounts go through `Decimal()`, which also takes "NaN", "Infinity" and "1E+9";
- its strict mode refuses the empty FITID and NAME that real banks send, and its lenient mode
  drops such entries without a word;
- it decodes an OFX 2 file as ASCII whatever its XML declaration says, and it keeps no line
  numbers to tell the user where a problem is.

OFX is only tags and text, so the reader is short. In SGML files a leaf element (<TRNAMT>-6.60)
has no end tag while an aggregate (<STMTTRN> ... </STMTTRN>) always has one; XML files close
everything; real files mix the two. The rule that reads them all: a start tag followed by text is
a leaf holding that text (an end tag of its own right after is taken with it); a start tag
followed by its own end tag is an empty leaf; any other start tag opens an aggregate if its name
is closed somewhere in the file, and is an empty leaf otherwise. An end tag must close the
innermost open aggregate. Nothing is expanded: CDATA is text, "&amp;"-style references of XML's
five entities and numeric character references are decoded, DOCTYPE declarations are skipped.
"""

from __future__ import annotations

import codecs
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import NoReturn

from billing_desk.domain.money import MAX_MINOR, Money
from billing_desk.domain.statements import Statement, StatementLine, StatementRefused
from billing_desk.importers.statements.base import (
    SNIFF_BYTES,
    check_size,
    currency_of,
    money_of,
)

NAME = "ofx"
_SHOWN_AS = "OFX"  # in the sentences the user reads: "This OFX file cannot be imported ..."

# Bounds that keep a hostile file from exhausting memory: a statement of 100,000 entries has
# about a million elements, and real OFX nests about ten deep.
MAX_ELEMENTS = 1_000_000
MAX_DEPTH = 32

_SNIFF = re.compile(rb"OFXHEADER\s*[:=]|<OFX>", re.IGNORECASE)
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9_.]*)\s*>")
_END_TAG = re.compile(r"</([A-Za-z][A-Za-z0-9_.]*)\s*>")
_REFERENCE = re.compile(r"&(?:#([0-9]{1,7})|#[xX]([0-9A-Fa-f]{1,6})|(amp|lt|gt|quot|apos));")
_NAMED_REFERENCES = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}
# YYYYMMDD, then optionally HHMMSS.XXX and a zone such as [-5:EST]; the date is all we keep.
_DATE = re.compile(
    r"([0-9]{4})([0-9]{2})([0-9]{2})(?:[0-9]{2}(?:[0-9]{2}(?:[0-9]{2}(?:\.[0-9]{1,6})?)?)?)?"
    r"\s*(?:\[[-+]?[0-9]{1,2}(?:\.[0-9]{1,2})?(?::[A-Za-z]{0,8})?\])?"
)
_XML_ENCODING = re.compile(rb"<\?xml[^>]{0,200}?encoding\s*=\s*[\"']([A-Za-z0-9._-]{1,40})[\"']")
_HEADER_FIELD = re.compile(rb"^[ \t]*([A-Z]+)[ \t]*:[ \t]*([^\r\n]*?)[ \t]*\r?$", re.MULTILINE)
_ASCII_NAMES = {"ascii", "us-ascii", "usascii", "646"}
_LATIN1_CHARSETS = {"8859-1", "ISO-8859-1", "ISO8859-1", "LATIN-1", "LATIN1"}
# ASCII-compatible encodings a bank might name; anything else (UTF-16, EBCDIC ...) is refused.
_READABLE_CODECS = (
    {"utf-8", "cp437", "cp850", "cp852", "cp858"}
    | {f"cp{page}" for page in range(1250, 1259)}
    | {f"iso8859-{part}" for part in range(1, 17)}
)
_ENCODING_NAMES = {"utf-8": "UTF-8", "cp1252": "Windows-1252", "iso8859-1": "ISO-8859-1"}
# Fields a line cannot have twice without the file being ambiguous.
_SINGLE_FIELDS = ("TRNTYPE", "DTPOSTED", "TRNAMT", "FITID")
_SHOWN_CHARS = 40

_START, _END, _TEXT = "start", "end", "text"


def identify(data: bytes) -> bool:
    return _SNIFF.search(data[:SNIFF_BYTES]) is not None


def parse(data: bytes) -> list[Statement]:
    check_size(_SHOWN_AS, data)
    text, file_notes = _decode(data)
    root = _read_tree(text)
    statements: list[Statement] = []
    entries_read: set[int] = set()
    entry_numbers = itertools.count(1)  # STMTTRNs are numbered through the file
    for element, parent in root.walk():
        if element.name == "INVSTMTRS":
            _refuse(
                f"line {element.line}",
                "it holds an investment statement (INVSTMTRS), which is not a bank statement",
            )
        if element.name in ("STMTRS", "CCSTMTRS"):
            statement, entries = _statement(element, parent, file_notes, entry_numbers)
            statements.append(statement)
            entries_read.update(id(entry) for entry in entries)
    if not statements:
        _refuse(None, _why_no_statement(root))
    # Every STMTTRN must have been read as part of a statement: one elsewhere means the file's
    # structure is not what we think, and importing the rest would be a guess.
    for element, _ in root.walk():
        if element.name == "STMTTRN" and id(element) not in entries_read:
            _refuse(f"line {element.line}", "this STMTTRN is not part of a statement")
    return statements


# Reading the bytes as text


def _decode(data: bytes) -> tuple[str, tuple[str, ...]]:
    """The file as text with its line ends made "\\n", in the encoding its header names."""
    nul = data.find(b"\x00")
    if nul >= 0:
        _refuse(
            _line_at(data, nul),
            "it holds NUL bytes, so it is a binary file or UTF-16 text, not OFX",
        )
    body = data.removeprefix(codecs.BOM_UTF8)
    encoding, named_by = (
        ("utf-8", "its byte-order mark") if len(body) < len(data) else _declared_encoding(body)
    )
    notes: tuple[str, ...] = ()
    if encoding is None:
        if _is_utf8(body):
            encoding = "utf-8"
        else:
            encoding, named_by = "cp1252", "assumed for a file that names none"
            notes = ("The file names no encoding and is not UTF-8; it was read as Windows-1252.",)
    elif encoding == "ascii":
        # Banks label Windows-1252 text as ASCII (OFX 1 says ENCODING:USASCII with CHARSET:1252
        # for it); an ASCII file reads the same either way.
        encoding = "cp1252"
        if not body.isascii():
            notes = (
                "The file says it is ASCII but holds other bytes; they were read as Windows-1252.",
            )
    try:
        text = body.decode(encoding)
    except UnicodeDecodeError as err:
        _refuse(
            _line_at(body, err.start),
            f"the byte 0x{body[err.start]:02X} is not {_ENCODING_NAMES.get(encoding, encoding)} "
            f"text, the encoding {named_by}",
        )
    return text.replace("\r\n", "\n").replace("\r", "\n"), notes


def _line_at(data: bytes, offset: int) -> str:
    line = data.count(b"\n", 0, offset) + 1
    return f"line {line}"


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _declared_encoding(data: bytes) -> tuple[str | None, str]:
    """The codec the OFX 1 header or the XML declaration names ("ascii" for US-ASCII), or None
    when the file names none."""
    head = data[:SNIFF_BYTES]
    root_at = head.upper().find(b"<OFX>")
    if root_at >= 0:
        head = head[:root_at]
    first_tag = head.find(b"<")
    sgml_header = head if first_tag < 0 else head[:first_tag]
    fields = {key.upper(): value for key, value in _HEADER_FIELD.findall(sgml_header)}
    if b"ENCODING" in fields:
        encoding = fields[b"ENCODING"].decode("ascii", "replace").upper()
        if encoding in ("UTF-8", "UTF8", "UNICODE"):
            return "utf-8", "its header names"
        if encoding not in ("USASCII", "US-ASCII", "ASCII"):
            _refuse(None, f"its header names ENCODING '{encoding}', which is not USASCII or UTF-8")
        charset = fields.get(b"CHARSET", b"1252").decode("ascii", "replace").upper()
        if charset in ("1252", "NONE", ""):
            return "cp1252", "its header names"
        if charset in _LATIN1_CHARSETS:
            return "iso8859-1", "its header names"
        codec = _codec(f"cp{charset}" if charset.isdigit() else charset)
        if codec is None:
            _refuse(None, f"its header names CHARSET '{charset}', which billing-desk cannot read")
        return codec, "its header names"
    declared = _XML_ENCODING.search(head)
    if declared is None:
        return None, ""
    name = declared.group(1).decode("ascii").lower()
    if name in _ASCII_NAMES:
        return "ascii", "its XML declaration names"
    codec = _codec(name)
    if codec is None:
        _refuse(
            None, f"its XML declaration names encoding '{name}', which billing-desk cannot read"
        )
    return codec, "its XML declaration names"


def _codec(name: str) -> str | None:
    try:
        codec = codecs.lookup(name).name
    except LookupError:
        return None
    return codec if codec in _READABLE_CODECS else None


# Reading the text as a tree of elements


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # _START, _END or _TEXT
    value: str  # the tag's name in upper case, or the text
    line: int


@dataclass(slots=True)
class _Element:
    name: str
    line: int
    text: str | None  # a leaf's text (stripped); None for an aggregate
    children: list[_Element] = field(default_factory=list)
    # A start tag with neither text nor an end tag anywhere in the file: an SGML empty leaf, or
    # an aggregate whose end tag the bank left out.
    open_ended: bool = False

    def child(self, name: str) -> _Element | None:
        return next((c for c in self.children if c.name == name), None)

    def value(self, name: str) -> str:
        """The text of the leaf child `name`; empty when there is none."""
        found = self.child(name)
        return (found.text or "") if found is not None else ""

    def walk(self) -> Iterator[tuple[_Element, _Element | None]]:
        """Every element below this one with its parent, in file order (the element itself
        first, with no parent)."""
        pending: list[tuple[_Element, _Element | None]] = [(self, None)]
        while pending:
            element, parent = pending.pop()
            yield element, parent
            pending.extend((c, element) for c in reversed(element.children))


class _Lookahead:
    def __init__(self, tokens: Iterator[_Token]) -> None:
        self._tokens = tokens
        self._next = next(tokens, None)

    def peek(self) -> _Token | None:
        return self._next

    def take(self) -> _Token | None:
        token = self._next
        self._next = next(self._tokens, None)
        return token


class _LineCounter:
    """Line numbers of increasing positions in one text, counted once."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._position = 0
        self._line = 1

    def at(self, position: int) -> int:
        self._line += self._text.count("\n", self._position, position)
        self._position = position
        return self._line


def _read_tree(text: str) -> _Element:
    closed_names = {match.group(1).upper() for match in _END_TAG.finditer(text)}
    tokens = _Lookahead(_tokens(text))
    root: _Element | None = None
    open_elements: list[_Element] = []
    elements = 0
    last_line = 1
    while (token := tokens.take()) is not None:
        last_line = token.line
        where = f"line {token.line}"
        if not open_elements:
            if root is not None:
                _refuse(where, "there is more after the closing </OFX> tag")
            if token.kind == _TEXT:
                continue  # the OFX 1 header, before <OFX>
            if token.kind == _END or token.value != "OFX":
                _refuse(where, f"the file must start with <OFX>, not with {_tag(token)}")
            root = _Element("OFX", token.line, None)
            open_elements.append(root)
            continue
        innermost = open_elements[-1]
        if token.kind == _TEXT:
            _refuse(where, f"the text '{_shown(token.value)}' is not the value of any element")
        if token.kind == _END:
            if token.value == innermost.name:
                open_elements.pop()
                continue
            if any(e.name == token.value for e in open_elements):
                _refuse(
                    where,
                    f"</{token.value}> comes while <{innermost.name}> (line {innermost.line}) "
                    "is still open",
                )
            _refuse(where, f"</{token.value}> closes nothing that is open")
        elements += 1
        if elements > MAX_ELEMENTS:
            _refuse(
                where, f"it holds more than {MAX_ELEMENTS:,} elements, too many for a statement"
            )
        element = _element(token, tokens, closed_names)
        innermost.children.append(element)
        if element.text is None:
            if len(open_elements) >= MAX_DEPTH:
                _refuse(where, f"its elements are nested more than {MAX_DEPTH} deep")
            open_elements.append(element)
    if root is None:
        _refuse(None, "it has no <OFX> element")
    if open_elements:
        innermost = open_elements[-1]
        _refuse(
            f"line {last_line}",
            f"the file ends while <{innermost.name}> (line {innermost.line}) is still open, "
            "so it is cut short",
        )
    return root


def _element(start: _Token, tokens: _Lookahead, closed_names: set[str]) -> _Element:
    """A leaf or an aggregate, by the rule in the module's docstring."""
    following = tokens.peek()
    if following is not None and following.kind == _TEXT:
        tokens.take()
        after = tokens.peek()
        if after is not None and after.kind == _END and after.value == start.value:
            tokens.take()
        return _Element(start.value, start.line, following.value.strip())
    if following is not None and following.kind == _END and following.value == start.value:
        tokens.take()
        return _Element(start.value, start.line, "")
    if start.value in closed_names:
        return _Element(start.value, start.line, None)
    return _Element(start.value, start.line, "", open_ended=True)


def _tokens(text: str) -> Iterator[_Token]:
    """Start tags, end tags and the text between them; blank text, comments, processing
    instructions and declarations are left out. Each step moves forward: linear time."""
    lines = _LineCounter(text)
    position = 0
    pieces: list[str] = []  # text and CDATA since the last tag
    pieces_line = 0
    while position < len(text):
        opening = text.find("<", position)
        if opening < 0:
            opening = len(text)
        if opening > position:
            chunk = text[position:opening]
            if not pieces_line and chunk.strip():
                pieces_line = lines.at(position + len(chunk) - len(chunk.lstrip()))
            pieces.append(_unescape(chunk))
            position = opening
            continue
        if text.startswith("<![CDATA[", opening):
            end = _closing(text, "]]>", opening + 9, lines, "a CDATA section")
            if not pieces_line and text[opening + 9 : end].strip():
                pieces_line = lines.at(opening)
            pieces.append(text[opening + 9 : end])
            position = end + 3
        elif text.startswith("<!--", opening):
            position = _closing(text, "-->", opening + 4, lines, "a comment") + 3
        elif text.startswith(("<?", "<!"), opening):
            position = _closing(text, ">", opening + 2, lines, "a declaration") + 1
        elif (tag := _TAG.match(text, opening)) is not None:
            if pieces_line:
                yield _Token(_TEXT, "".join(pieces), pieces_line)
            pieces, pieces_line = [], 0
            kind = _END if tag.group(1) else _START
            yield _Token(kind, tag.group(2).upper(), lines.at(opening))
            position = tag.end()
        else:
            pieces.append("<")  # a '<' that starts no tag is text ("A<B")
            position = opening + 1
    if pieces_line:
        yield _Token(_TEXT, "".join(pieces), pieces_line)


def _closing(text: str, marker: str, start: int, lines: _LineCounter, what: str) -> int:
    end = text.find(marker, start)
    if end < 0:
        _refuse(f"line {lines.at(start)}", f"{what} is never closed (no '{marker}')")
    return end


def _unescape(text: str) -> str:
    if "&" not in text:
        return text
    return _REFERENCE.sub(_reference, text)


def _reference(match: re.Match[str]) -> str:
    decimal, hexadecimal, name = match.groups()
    if name:
        return _NAMED_REFERENCES[name]
    code = int(decimal) if decimal else int(hexadecimal, 16)
    if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        return match.group(0)  # not a character: keep the text as written
    return chr(code)


# Reading the tree as statements


def _statement(
    element: _Element,
    parent: _Element | None,
    file_notes: tuple[str, ...],
    entry_numbers: Iterator[int],
) -> tuple[Statement, list[_Element]]:
    """The statement and the STMTTRNs it was read from (zero-amount ones included)."""
    where = f"line {element.line}"
    account_tag = "BANKACCTFROM" if element.name == "STMTRS" else "CCACCTFROM"
    account = element.child(account_tag)
    if account is None or not account.value("ACCTID"):
        _refuse(where, f"this {element.name} names no account ({account_tag}/ACCTID)")
    account_raw = {f"{account_tag}/{key}": value for key, value in _fields(account).items()}
    # Entries sit in BANKTRANLISTs. Nubank never closes its BANKTRANLIST, which leaves it an
    # open-ended empty element, so its DTSTART, DTEND and STMTTRNs stand right after it, inside
    # the statement.
    holders = [element, *(c for c in element.children if c.name == "BANKTRANLIST")]
    entries: list[_Element] = []
    after_open_ended_list = False
    for child in element.children:
        if child.name == "BANKTRANLIST":
            entries.extend(c for c in child.children if c.name == "STMTTRN")
            after_open_ended_list = child.open_ended
        elif child.name == "STMTTRN" and after_open_ended_list:
            entries.append(child)
    currency, notes = _currency(element, entries)
    shared_raw = {"CURDEF": element.value("CURDEF"), **account_raw}

    lines: list[StatementLine] = []
    no_fitid: list[str] = []
    for entry in entries:
        line = _line(entry, f"STMTTRN {next(entry_numbers)}", currency, shared_raw)
        if line.amount.is_zero():
            notes.append(
                f"Skipped the zero-amount entry at {line.location} ({_described(line)}): "
                "it moves no money."
            )
            continue
        lines.append(line)
        if line.bank_id is None:
            no_fitid.append(line.location)
        if entry.value("CORRECTACTION"):
            notes.append(
                f"The entry at {line.location} corrects an earlier one "
                f"({entry.value('CORRECTACTION')} of FITID {entry.value('CORRECTFITID')})."
            )
    if no_fitid:
        notes.append(
            f"The bank gives no FITID for the entry at {_listed(no_fitid)}, so a repeated import "
            "cannot recognise it by the bank's id."
        )

    starts = [_date_of(holder, "DTSTART") for holder in holders]
    ends = [_date_of(holder, "DTEND") for holder in holders]
    closing = _closing_balance(element, currency, notes)
    statement_id = parent.value("TRNUID") if parent is not None else ""
    return (
        Statement(
            format=NAME,
            account=account.value("ACCTID"),
            currency=currency,
            lines=tuple(lines),
            statement_id=statement_id or None,
            period_start=min((d for d in starts if d), default=None),
            period_end=max((d for d in ends if d), default=None),
            opening=None,
            closing=closing,
            notes=(*file_notes, *notes),
        ),
        entries,
    )


def _currency(element: _Element, entries: list[_Element]) -> tuple[str, list[str]]:
    curdef = element.child("CURDEF")
    if curdef is not None and curdef.text:
        return currency_of(_SHOWN_AS, curdef.text, f"line {curdef.line} (CURDEF)"), []
    # Some banks leave CURDEF empty but name the currency on every entry (CURRENCY/CURSYM).
    named = {_fields(e).get("CURRENCY/CURSYM", "") for e in entries}
    if len(named) == 1 and (only := named.pop()):
        where = f"line {entries[0].line} (CURRENCY/CURSYM)"
        currency = currency_of(_SHOWN_AS, only, where)
        return currency, [f"The statement names no currency (CURDEF); its entries say {currency}."]
    _refuse(f"line {element.line}", f"this {element.name} names no currency (CURDEF)")


def _line(entry: _Element, label: str, currency: str, shared_raw: dict[str, str]) -> StatementLine:
    where = f"line {entry.line}, {label}"
    fields = _fields(entry, label, refuse_twice=_SINGLE_FIELDS)
    entry_currency = fields.get("CURRENCY/CURSYM", "").upper()
    if entry_currency and entry_currency != currency:
        _refuse(
            where,
            f"the entry is in {_shown(entry_currency)} (CURRENCY/CURSYM), not in the "
            f"statement's {currency}",
        )
    booked = _date_of(entry, "DTPOSTED", label)
    if booked is None:
        _refuse(where, "the entry has no posting date (DTPOSTED)")
    amount_leaf = entry.child("TRNAMT")
    if amount_leaf is None or not amount_leaf.text:
        _refuse(where, "the entry has no amount (TRNAMT)")
    amount = _money(amount_leaf, currency, label)
    # VALUEDATE is not OFX; one Australian bank writes the value date there.
    value_date = _date_of(entry, "DTAVAIL", label) or _date_of(entry, "VALUEDATE", label)
    return StatementLine(
        booked=booked,
        amount=amount,
        location=where,
        value_date=value_date,
        bank_id=fields.get("FITID") or None,
        reference=_reference_of(fields),
        counterparty=(
            fields.get("NAME") or fields.get("PAYEE/NAME") or fields.get("EXTDNAME") or None
        ),
        description=fields.get("MEMO") or None,
        kind=fields.get("TRNTYPE", "").upper() or None,
        raw={**fields, **shared_raw},
    )


def _reference_of(fields: dict[str, str]) -> str | None:
    for key in ("CHECKNUM", "REFNUM"):
        value = fields.get(key, "")
        # Banks write CHECKNUM 0 for "no check"; matching on it would pair unrelated lines.
        if value.strip("0"):
            return value
    return None


def _fields(
    element: _Element, label: str | None = None, refuse_twice: tuple[str, ...] = ()
) -> dict[str, str]:
    """The leaves below `element` as text, keyed by their path ("CURRENCY/CURSYM"); a field
    that comes twice keeps both ("MEMO", "MEMO#2") unless it is one of `refuse_twice`."""
    found: dict[str, str] = {}
    first_lines: dict[str, int] = {}
    pending = [(child, child.name) for child in reversed(element.children)]
    while pending:
        child, key = pending.pop()
        if child.text is None:
            pending.extend((c, f"{key}/{c.name}") for c in reversed(child.children))
            continue
        if key in found:
            if key in refuse_twice:
                _refuse(
                    _where(child, label),
                    f"the entry has a second {key} (the first is at line {first_lines[key]})",
                )
            key = _next_free(found, key)
        found[key] = child.text
        first_lines[key] = child.line
    return found


def _next_free(found: dict[str, str], key: str) -> str:
    number = 2
    while f"{key}#{number}" in found:
        number += 1
    return f"{key}#{number}"


def _money(leaf: _Element, currency: str, label: str | None = None) -> Money:
    """An OFX amount: a decimal point or a decimal comma, never both (OFX allows either and no
    thousands separators); "null" is how some banks write an entry without money."""
    where = _where(leaf, label)
    written = leaf.text or ""
    if written.lower() in ("null", "-null"):
        return Money.zero(currency)
    if len(written) > _SHOWN_CHARS or ("," in written and "." in written):
        _refuse(where, f"the amount '{_shown(written)}' is not a number")
    money = money_of(_SHOWN_AS, written, currency, where, decimal_comma="," in written)
    if abs(money.minor) > MAX_MINOR:
        _refuse(where, f"the amount '{written}' is too large")
    return money


def _date_of(element: _Element, name: str, label: str | None = None) -> date | None:
    """The date part of the leaf `name`, None when it is absent or empty."""
    leaf = element.child(name)
    if leaf is None or not leaf.text:
        return None
    matched = _DATE.fullmatch(leaf.text)
    try:
        if matched is None:
            raise ValueError(leaf.text)
        return date(int(matched.group(1)), int(matched.group(2)), int(matched.group(3)))
    except ValueError:
        _refuse(
            _where(leaf, label),
            f"'{_shown(leaf.text)}' is not a date (OFX writes YYYYMMDD, then the time)",
        )


def _closing_balance(element: _Element, currency: str, notes: list[str]) -> Money | None:
    ledger = element.child("LEDGERBAL")
    amount = ledger.child("BALAMT") if ledger is not None else None
    if ledger is None or amount is None or not amount.text:
        notes.append("The file gives no closing balance (LEDGERBAL), so nothing is checked.")
        return None
    closing = _money(amount, currency)
    as_of = _date_of(ledger, "DTASOF")
    shown_as_of = f" as of {as_of.isoformat()}" if as_of else ""
    notes.append(
        f"OFX gives no opening balance, only the closing (ledger) balance {closing.plain()}"
        f"{shown_as_of}, so the lines are not checked against the balances."
    )
    return closing


def _why_no_statement(root: _Element) -> str:
    problem = "it holds no bank or credit-card statement (STMTRS or CCSTMTRS)"
    for element, _ in root.walk():
        if element.name == "STATUS" and element.value("CODE").strip("0"):
            message = element.value("MESSAGE")
            said = f": '{_shown(message)}'" if message else ""
            return f"{problem}; the bank answered with status {element.value('CODE')}{said}"
    return problem


def _described(line: StatementLine) -> str:
    parts = [f"FITID {line.bank_id}" if line.bank_id else "no FITID"]
    if line.counterparty:
        parts.append(f"'{line.counterparty}'")
    return ", ".join(parts)


def _listed(places: list[str]) -> str:
    shown = "; ".join(places[:5])
    return shown + (f" and {len(places) - 5} more" if len(places) > 5 else "")


def _where(leaf: _Element, label: str | None) -> str:
    """ "line 36 (DTPOSTED of STMTTRN 1)": the line alone is not enough in files that put a
    whole statement on one line."""
    return (
        f"line {leaf.line} ({leaf.name} of {label})" if label else f"line {leaf.line} ({leaf.name})"
    )


def _tag(token: _Token) -> str:
    return f"</{token.value}>" if token.kind == _END else f"<{token.value}>"


def _shown(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _SHOWN_CHARS else flat[: _SHOWN_CHARS - 1] + "…"


def _refuse(where: str | None, problem: str) -> NoReturn:
    raise StatementRefused(_SHOWN_AS, where, problem)
