"""Bank statements written in each format we import, from plain lines: what a bank would send
for a period's money in and out. The demo writes its bank's statements with these (and imports
them through the importers, as a clerk would); the tests use them to drive import, matching and
reconciliation end to end through every importer."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from billing_desk.domain.money import currency_exponent


def _ascii(text: str) -> str:
    """What a bank's older formats carry: names transliterated to plain ASCII."""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


@dataclass(frozen=True)
class BankEntry:
    booked: date
    amount_minor: int  # credits positive
    bank_id: str
    reference: str | None
    counterparty: str


def _major(minor: int, currency: str, *, comma: bool = False) -> str:
    exponent = currency_exponent(currency)
    text = f"{Decimal(abs(minor)).scaleb(-exponent):.{exponent}f}"
    return text.replace(".", ",") if comma else text


def write_csv(account: str, currency: str, entries: Sequence[BankEntry]) -> bytes:
    rows = ["Date,Amount,Currency,Reference,Counterparty,Transaction ID"]
    for e in entries:
        sign = "-" if e.amount_minor < 0 else ""
        rows.append(
            f"{e.booked.isoformat()},{sign}{_major(e.amount_minor, currency)},{currency},"
            f"{e.reference or ''},{e.counterparty},{e.bank_id}"
        )
    return ("\r\n".join(rows) + "\r\n").encode()


def write_ofx(
    account: str, currency: str, entries: Sequence[BankEntry], *, opening_minor: int = 0
) -> bytes:
    start = min(e.booked for e in entries).strftime("%Y%m%d")
    end = max(e.booked for e in entries).strftime("%Y%m%d")
    total = opening_minor + sum(e.amount_minor for e in entries)
    parts = [
        "OFXHEADER:100\nDATA:OFXSGML\nVERSION:102\nSECURITY:NONE\nENCODING:USASCII\n"
        "CHARSET:1252\nCOMPRESSION:NONE\nOLDFILEUID:NONE\nNEWFILEUID:NONE\n\n",
        "<OFX><SIGNONMSGSRSV1><SONRS><STATUS><CODE>0<SEVERITY>INFO</STATUS>"
        f"<DTSERVER>{end}<LANGUAGE>ENG</SONRS></SIGNONMSGSRSV1>\n",
        "<BANKMSGSRSV1><STMTTRNRS><TRNUID>1<STATUS><CODE>0<SEVERITY>INFO</STATUS>"
        f"<STMTRS><CURDEF>{currency}<BANKACCTFROM><BANKID>021000021<ACCTID>{account}"
        "<ACCTTYPE>CHECKING</BANKACCTFROM>\n",
        f"<BANKTRANLIST><DTSTART>{start}<DTEND>{end}\n",
    ]
    for e in entries:
        kind = "CREDIT" if e.amount_minor > 0 else "DEBIT"
        sign = "-" if e.amount_minor < 0 else ""
        ref = f"<REFNUM>{e.reference}" if e.reference else ""
        parts.append(
            f"<STMTTRN><TRNTYPE>{kind}<DTPOSTED>{e.booked.strftime('%Y%m%d')}"
            f"<TRNAMT>{sign}{_major(e.amount_minor, currency)}<FITID>{e.bank_id}"
            f"<NAME>{e.counterparty}{ref}</STMTTRN>\n"
        )
    sign = "-" if total < 0 else ""
    parts.append(
        f"</BANKTRANLIST><LEDGERBAL><BALAMT>{sign}{_major(total, currency)}<DTASOF>{end}"
        "</LEDGERBAL></STMTRS></STMTTRNRS></BANKMSGSRSV1></OFX>\n"
    )
    return "".join(parts).encode("cp1252", errors="replace")


def write_camt053(
    account: str, currency: str, entries: Sequence[BankEntry], *, opening_minor: int = 0
) -> bytes:
    end = max(e.booked for e in entries).isoformat()
    total = opening_minor + sum(e.amount_minor for e in entries)

    def balance(code: str, minor: int) -> str:
        indicator = "CRDT" if minor >= 0 else "DBIT"
        return (
            f"<Bal><Tp><CdOrPrtry><Cd>{code}</Cd></CdOrPrtry></Tp>"
            f'<Amt Ccy="{currency}">{_major(minor, currency)}</Amt>'
            f"<CdtDbtInd>{indicator}</CdtDbtInd><Dt><Dt>{end}</Dt></Dt></Bal>"
        )

    ntries = []
    for e in entries:
        indicator = "CRDT" if e.amount_minor > 0 else "DBIT"
        refs = f"<EndToEndId>{e.reference}</EndToEndId>" if e.reference else ""
        party = "Dbtr" if e.amount_minor > 0 else "Cdtr"
        ntries.append(
            f'<Ntry><Amt Ccy="{currency}">{_major(e.amount_minor, currency)}</Amt>'
            f"<CdtDbtInd>{indicator}</CdtDbtInd><Sts>BOOK</Sts>"
            f"<BookgDt><Dt>{e.booked.isoformat()}</Dt></BookgDt>"
            f"<ValDt><Dt>{e.booked.isoformat()}</Dt></ValDt>"
            f"<AcctSvcrRef>{e.bank_id}</AcctSvcrRef>"
            "<BkTxCd><Prtry><Cd>TRF</Cd></Prtry></BkTxCd>"
            f"<NtryDtls><TxDtls><Refs>{refs}</Refs>"
            f"<RltdPties><{party}><Nm>{e.counterparty}</Nm></{party}></RltdPties>"
            "</TxDtls></NtryDtls></Ntry>"
        )
    document = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"><BkToCstmrStmt>'
        f"<GrpHdr><MsgId>MSG-{end}</MsgId><CreDtTm>{end}T08:00:00</CreDtTm></GrpHdr>"
        f"<Stmt><Id>STMT-{end}</Id><CreDtTm>{end}T08:00:00</CreDtTm>"
        f"<Acct><Id><Othr><Id>{account}</Id></Othr></Id><Ccy>{currency}</Ccy></Acct>"
        + balance("OPBD", opening_minor)
        + balance("CLBD", total)
        + "".join(ntries)
        + "</Stmt></BkToCstmrStmt></Document>"
    )
    return document.encode("utf-8")


def write_mt940(
    account: str, currency: str, entries: Sequence[BankEntry], *, opening_minor: int = 0
) -> bytes:
    first = min(e.booked for e in entries)
    last = max(e.booked for e in entries)
    total = opening_minor + sum(e.amount_minor for e in entries)
    opening_mark = "C" if opening_minor >= 0 else "D"
    lines = [
        f":20:STMT{last.strftime('%y%m%d')}",
        f":25:{account}",
        ":28C:1/1",
        f":60F:{opening_mark}{first.strftime('%y%m%d')}{currency}"
        f"{_major(opening_minor, currency, comma=True)}",
    ]
    for e in entries:
        mark = "C" if e.amount_minor > 0 else "D"
        day = e.booked.strftime("%y%m%d")
        # The customer reference of :61: is at most 16 characters with no spaces; a longer one
        # travels in the :86: text, as banks send it.
        short = (
            e.reference
            if e.reference and len(e.reference) <= 16 and " " not in e.reference
            else None
        )
        lines.append(
            f":61:{day}{day[2:]}{mark}{_major(e.amount_minor, currency, comma=True)}"
            f"NTRF{short or 'NONREF'}//{e.bank_id}"
        )
        lines.append(f":86:{_ascii(e.counterparty)}")
        if e.reference and not short:
            lines.append(_ascii(e.reference))
    mark = "C" if total >= 0 else "D"
    lines.append(
        f":62F:{mark}{last.strftime('%y%m%d')}{currency}{_major(total, currency, comma=True)}"
    )
    lines.append("-")
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def write_bai2(
    account: str, currency: str, entries: Sequence[BankEntry], *, opening_minor: int = 0
) -> bytes:
    """A BAI2 report is one group per as-of date, so the lines of each day go in its group."""
    days = sorted({e.booked for e in entries})
    groups: list[str] = []
    file_total = 0
    balance = opening_minor
    for day in days:
        todays = [e for e in entries if e.booked == day]
        details = []
        for e in todays:
            # 165 preauthorized ACH credit; 555 deposited item returned.
            code = "165" if e.amount_minor > 0 else "555"
            details.append(
                f"16,{code},{abs(e.amount_minor)},Z,{e.bank_id},{e.reference or ''},"
                f"{_ascii(e.counterparty)}/"
            )
        opening = balance
        balance += sum(e.amount_minor for e in todays)
        account_total = opening + balance + sum(abs(e.amount_minor) for e in todays)
        records = [f"03,{account},{currency},010,{opening},,,015,{balance},,/", *details]
        records.append(f"49,{account_total},{len(records) + 1}/")
        group = [f"02,RECEIVER,021000021,1,{day.strftime('%y%m%d')},0800,{currency},2/", *records]
        group.append(f"98,{account_total},1,{len(group) + 1}/")
        groups += group
        file_total += account_total
    last = days[-1].strftime("%y%m%d")
    lines = [f"01,BANK,RECEIVER,{last},0800,1,,,2/", *groups]
    lines.append(f"99,{file_total},{len(days)},{len(lines) + 1}/")
    return ("\n".join(lines) + "\n").encode("ascii")


WRITERS: dict[str, Callable[[str, str, Sequence[BankEntry]], bytes]] = {
    "csv": write_csv,
    "ofx": write_ofx,
    "camt053": write_camt053,
    "mt940": write_mt940,
    "bai2": write_bai2,
}
