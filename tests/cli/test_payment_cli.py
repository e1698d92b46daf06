"""The payment commands as a clerk and a manager run them."""

from __future__ import annotations

from pathlib import Path

from tests.cli.conftest import Cli, set_up_billing

CHECK = [
    "payment",
    "record",
    "--facility",
    "STMARY",
    "--method",
    "check",
    "--amount",
    "60.00",
    "--received",
    "2026-06-02",
    "--check-number",
    "1001",
    "--routing",
    "021000021",
    "--account",
    "000123456789",
]


def test_recording_replaying_and_refusing_payments(cli: Cli, tmp_path: Path) -> None:
    set_up_billing(cli, tmp_path)
    assert cli("invoice", "run", "--facility", "STMARY", "--period", "2026-05").code == 0

    first = cli(*CHECK, "--auto", "--idempotency-key", "k-1", "--json")
    assert first.code == 0, first.err
    doc = first.json()
    assert {k: doc[k] for k in ("status", "replayed", "credit_minor")} == {
        "status": "recorded",
        "replayed": False,
        "credit_minor": 766,
    }
    assert [(a["invoice_number"], a["amount_minor"]) for a in doc["allocations"]] == [
        ("STMARY-000001", 5234)
    ]

    replay = cli(*CHECK, "--auto", "--idempotency-key", "k-1", "--json")
    assert replay.code == 0
    assert replay.json()["replayed"] is True
    assert replay.json()["payment_id"] == doc["payment_id"]

    mismatch = cli(
        *CHECK[:-6],
        "--amount",
        "61.00",
        "--received",
        "2026-06-02",
        "--check-number",
        "1001",
        "--routing",
        "021000021",
        "--account",
        "000123456789",
        "--auto",
        "--idempotency-key",
        "k-1",
    )
    assert mismatch.code == 3
    assert "amount_minor differs" in mismatch.err

    duplicate = cli(*CHECK, "--auto", "--idempotency-key", "k-2")
    assert duplicate.code == 3
    assert duplicate.err.strip().startswith(
        "The check 1001 from account ending 6789 was already recorded as payment"
    )

    missing_key = cli(*CHECK)
    assert missing_key.code == 2
    assert "--idempotency-key" in missing_key.err

    card = cli(
        "payment",
        "record",
        "--facility",
        "STMARY",
        "--method",
        "card",
        "--amount",
        "5",
        "--received",
        "2026-06-02",
        "--card-brand",
        "Visa",
        "--card-last4",
        "1111",
        "--processor-ref",
        "ch_1",
        "--memo",
        "card 4111 1111 1111 1111",
        "--idempotency-key",
        "k-3",
    )
    assert card.code == 2
    assert "looks like a full card number" in card.err

    own_void = cli(
        "payment",
        "transition",
        str(doc["payment_id"]),
        "--to",
        "voided",
        "--reason",
        "typo",
        "--idempotency-key",
        "t-1",
        user="clerk",
    )
    assert own_void.code == 3
    void = cli(
        "payment",
        "transition",
        str(doc["payment_id"]),
        "--to",
        "voided",
        "--reason",
        "entered in error",
        "--idempotency-key",
        "t-2",
        "--json",
        user="manager",
    )
    assert void.code == 0, void.err
    assert void.json()["status"] == "voided"
    invoices = cli("invoice", "list", "--json").json()
    assert invoices[0]["status"] == "issued"

    shown = cli("payment", "show", str(doc["payment_id"]), "--json").json()
    assert [h["to_status"] for h in shown["history"]] == ["recorded", "voided"]
    assert "000123456789" not in str(shown)


def test_deposit_and_credit_commands(cli: Cli, tmp_path: Path) -> None:
    set_up_billing(cli, tmp_path)
    assert cli("invoice", "run", "--facility", "STMARY", "--period", "2026-05").code == 0
    paid = cli(*CHECK, "--idempotency-key", "k-9", "--json").json()
    assert paid["credit_minor"] == 6000
    slip = cli(
        "deposit", "create", "--payments", str(paid["payment_id"]), "--date", "2026-06-03", "--json"
    )
    assert slip.code == 0, slip.err
    assert slip.json()["total_minor"] == 6000
    again = cli(
        "deposit", "create", "--payments", str(paid["payment_id"]), "--date", "2026-06-03", "--json"
    )
    assert again.json()["replayed"] is True
    applied = cli(
        "credit",
        "apply",
        "--facility",
        "STMARY",
        "--invoice",
        "STMARY-000001",
        "--amount",
        "52.34",
        "--idempotency-key",
        "c-1",
        "--json",
    )
    assert applied.code == 0, applied.err
    assert applied.json()["credit_left_minor"] == 766
    too_much = cli(
        "credit",
        "apply",
        "--facility",
        "STMARY",
        "--invoice",
        "STMARY-000001",
        "--amount",
        "1.00",
        "--idempotency-key",
        "c-2",
    )
    assert too_much.code == 3
    purge = cli("maintenance", "purge-keys", "--json", user="admin")
    assert purge.code == 0, purge.err
    assert purge.json()["removed"] == 0
