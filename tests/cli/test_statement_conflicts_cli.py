"""A false conflict never loses a line: lines without a bank id never conflict, and a line whose
bank id was imported before with another date or amount is shown with both versions, then kept
as a new line by a person who gives the reason, audited."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.cli.conftest import Cli, set_up_billing


def mt940(path: Path, number: int, *lines: str) -> Path:
    """An MT940 statement of account NL00BANK0123456789 with the given :61: lines, whose closing
    balance is what they add up to."""
    total = 0
    for line in lines:
        mark = line[6] if line[6] in "CD" else line[10]
        amount = line.split(mark, 1)[1]
        digits = "".join(c for c in amount.split("N")[0].split("//")[0] if c.isdigit() or c == ",")
        units, cents = digits.split(",")
        minor = int(units) * 100 + int(cents or 0)
        total += minor if mark == "C" else -minor
    closing = 100_000 + total
    body = "".join(f":61:{line}\r\n" for line in lines)
    path.write_bytes(
        (
            f":20:STMT{number}\r\n:25:NL00BANK0123456789\r\n:28C:{number}/1\r\n"
            f":60F:C26060{number}EUR1000,00\r\n{body}"
            f":62F:C26060{number}EUR{closing // 100},{closing % 100:02d}\r\n-\r\n"
        ).encode()
    )
    return path


def imported(cli: Cli, path: Path, *extra: str) -> dict[str, Any]:
    ran = cli("import", "statement", str(path), "--json", *extra)
    assert ran.code == 0, ran.err
    shown = ran.json()
    assert isinstance(shown, dict)
    return shown


def test_a_bank_that_sends_no_bank_ids_never_makes_a_conflict(cli: Cli, tmp_path: Path) -> None:
    """Type-less :61: lines with NONREF, the same amounts and references in two statements."""
    set_up_billing(cli, tmp_path)
    first = mt940(tmp_path / "1.sta", 1, "260601D20,00NONREF", "260601C20,00NONREF")
    second = mt940(tmp_path / "2.sta", 2, "260602D20,00NONREF", "260602C35,00NONREF")
    assert imported(cli, first, "--commit")["new"] == 2
    shown = imported(cli, second, "--commit")
    assert (shown["new"], shown["conflicting"], shown["committed"]) == (2, 0, True)
    lines = cli("reconcile", "lines", "--json").json()
    assert isinstance(lines, list) and len(lines) == 4


def test_a_conflicting_line_is_kept_only_with_a_reason_and_audited(
    cli: Cli, tmp_path: Path
) -> None:
    set_up_billing(cli, tmp_path)
    first = mt940(tmp_path / "1.sta", 1, "260601C20,00NTRFNONREF//BANK-7")
    # The bank gives the same id to another real line a day later.
    second = mt940(tmp_path / "2.sta", 2, "260602C45,00NTRFNONREF//BANK-7", "260602D1,00NONREF")
    saved = imported(cli, first, "--commit")
    (line,) = saved["statements"][0]["lines"]
    assert isinstance(line["line_id"], int)

    shown = imported(cli, second, "--commit")
    conflicting = [ln for ln in shown["statements"][0]["lines"] if ln["status"] == "conflicting"]
    assert len(conflicting) == 1
    assert (
        conflicting[0]["why"] == "the bank id BANK-7 was imported before as 20.00 EUR on 2026-06-01"
    )
    assert conflicting[0]["line_id"] is None
    human = cli("import", "statement", str(second))
    assert "--keep-conflicting REASON" in human.out

    refused = cli("import", "statement", str(second), "--keep-conflicting", "bank said so")
    assert refused.code == 2 and "--commit" in refused.err
    blank = cli("import", "statement", str(second), "--commit", "--keep-conflicting", "  ")
    assert blank.code == 2 and "--keep-conflicting REASON" in blank.err
    assert len(cli("reconcile", "lines", "--json").json()) == 2  # type: ignore[arg-type]

    kept = imported(
        cli, second, "--commit", "--keep-conflicting", "bank confirmed two transfers, ticket 88"
    )
    assert (kept["kept_conflicting"], kept["committed"]) == (1, True)
    assert len(cli("reconcile", "lines", "--json").json()) == 3  # type: ignore[arg-type]
    again = imported(cli, second, "--commit", "--keep-conflicting", "once more")
    assert (again["kept_conflicting"], again["already_imported"], again["conflicting"]) == (
        0,
        2,
        0,
    )

    log = cli("audit", "log", "--action", "statement.keep_conflicting", "--json", user="auditor")
    assert log.code == 0, log.err
    entries = log.json()
    assert isinstance(entries, list) and len(entries) == 1
    detail = entries[0]["after"] if "after" in entries[0] else entries[0]
    text = json.dumps(detail)
    assert "bank confirmed two transfers, ticket 88" in text
    assert "BANK-7" in text and "20.00 EUR on 2026-06-01" in text


def test_keeping_works_on_a_file_imported_before(cli: Cli, tmp_path: Path) -> None:
    set_up_billing(cli, tmp_path)
    first = mt940(tmp_path / "1.sta", 1, "260601C20,00NTRFNONREF//BANK-7")
    second = mt940(tmp_path / "2.sta", 2, "260602C45,00NTRFNONREF//BANK-7", "260602D1,00NONREF")
    imported(cli, first, "--commit")
    assert imported(cli, second, "--commit")["new"] == 1
    kept = imported(cli, second, "--commit", "--keep-conflicting", "bank confirmed")
    assert (kept["file_already_imported"], kept["kept_conflicting"]) == (True, 1)
    lines = [ln["line_id"] for ln in kept["statements"][0]["lines"] if ln["line_id"] is not None]
    assert len(lines) == 2
