"""Stored text that tries to drive the terminal of whoever reads it (a payer name carrying a
bell and an operating-system-command sequence that retitles the window), and an argument that
is not UTF-8. Human output escapes every control character; JSON keeps the exact text."""

from __future__ import annotations

from pathlib import Path

from billing_desk.cli.output import escape_controls
from tests.cli.conftest import Cli, cli, set_up_billing

__all__ = ["cli"]

HOSTILE = "Acme\x07\x1b]0;owned\x07\x9b2J\u202eevil"


def _cash_payment(key: str) -> tuple[str, ...]:
    """`payment record` of a cash payment at STMARY, its payer to follow."""
    return (
        "payment",
        "record",
        "--facility",
        "STMARY",
        "--method",
        "cash",
        "--amount",
        "5",
        "--received",
        "2026-06-02",
        "--idempotency-key",
        key,
        "--payer",
    )


def test_payment_show_escapes_a_hostile_payer_name(cli: Cli, tmp_path: Path) -> None:
    set_up_billing(cli, tmp_path)
    recorded = cli(*_cash_payment("hostile-1"), HOSTILE, "--json")
    assert recorded.code == 0, recorded.err
    payment_id = str(recorded.json()["payment_id"])  # type: ignore[index]

    human = cli("payment", "show", payment_id)
    assert human.code == 0, human.err
    assert not any(char in human.out for char in "\x07\x1b\x9b\u202e")
    assert "Acme\\u0007\\u001b]0;owned" in human.out

    exact = cli("payment", "show", payment_id, "--json").json()
    assert exact["payer"] == HOSTILE  # type: ignore[index]


NOT_UTF8 = "An argument is not valid UTF-8 text; retype it (or set the terminal to UTF-8).\n"


def test_an_argument_that_is_not_utf8_is_bad_input(cli: Cli, tmp_path: Path) -> None:
    """A payer typed on a terminal that is not UTF-8: Python hands the byte b"\\xff" over as
    the lone surrogate U+DCFF, which no text column can store. It is bad input, told in one
    sentence, and nothing is recorded (it was an internal error, exit 70)."""
    set_up_billing(cli, tmp_path)
    record = _cash_payment("not-utf8-1")
    refused = cli(*record, "Acme \udcff Ltd")
    assert (refused.code, refused.err, refused.out) == (2, NOT_UTF8, "")
    listed = cli("payment", "list", "--json")
    assert listed.code == 0, listed.err
    assert listed.json() == []
    # The same command with a payer that is text goes through: only the bytes were wrong.
    assert cli(*record, "Acme Ltd").code == 0


def test_every_control_character_is_escaped_but_newline_and_tab() -> None:
    for code in [*range(0x20), 0x7F, *range(0x80, 0xA0)]:
        char = chr(code)
        if char in "\n\t":
            assert escape_controls(char) == char
        else:
            assert escape_controls(char) == f"\\u{code:04x}"
