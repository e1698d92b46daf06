"""`reconcile lines`, `reconcile match --auto` listing what it left, and the run's table in money
with its currency, as a clerk types them."""

from __future__ import annotations

from pathlib import Path

from tests.cli.conftest import Cli, set_up_billing


def _statement(cli: Cli, tmp_path: Path) -> None:
    sample = tmp_path / "bank.csv"
    sample.write_text(
        "Date,Amount,Reference,Counterparty\n2026-06-02,999.99,STRAY,Unknown payer\n"
        "2026-06-03,-25.00,FEE,Bank fee\n",
        encoding="utf-8",
    )
    mapped = cli(
        "mapping",
        "save",
        "ops",
        "--file",
        str(sample),
        "--currency",
        "USD",
        "--set",
        "account=OPS-1",
    )
    assert mapped.code == 0, mapped.err
    saved = cli("import", "statement", str(sample), "--mapping", "ops", "--commit", "--json")
    assert saved.code == 0, saved.err


def test_every_line_can_be_found(cli: Cli, tmp_path: Path) -> None:
    set_up_billing(cli, tmp_path)
    _statement(cli, tmp_path)
    listed = cli("reconcile", "lines", "--json")
    assert listed.code == 0, listed.err
    rows = listed.json()
    assert isinstance(rows, list)
    assert [(r["amount_minor"], r["currency"], r["counterparty"]) for r in rows] == [
        (99999, "USD", "Unknown payer"),
        (-2500, "USD", "Bank fee"),
    ]
    assert all(isinstance(r["id"], int) for r in rows)
    human = cli("reconcile", "lines", "--unmatched")
    assert "999.99 USD" in human.out and "-25.00 USD" in human.out and "unmatched" in human.out
    assert cli("reconcile", "lines", "--from", "2026-06-03", "--json").json() == rows[1:]
    auto = cli("reconcile", "match", "--auto")
    assert auto.code == 0, auto.err
    assert "2 lines left for a person" in auto.out
    # Which lines, not only how many.
    assert "999.99 USD" in auto.out and "-25.00 USD" in auto.out
    ranked = cli("reconcile", "candidates", str(rows[0]["id"]), "--json")
    assert ranked.code == 0 and ranked.json() == []  # the books hold no money of this line
    human = cli("reconcile", "candidates", str(rows[0]["id"]))
    assert "0 candidates for bank line" in human.out
    missing = cli("reconcile", "candidates", "99999")
    assert missing.code == 2 and "reconcile lines" in missing.err
    bad = cli("reconcile", "lines", "--from", "June")
    assert bad.code == 2 and "YYYY-MM-DD" in bad.err


def test_the_run_prints_money_with_its_currency(cli: Cli, tmp_path: Path) -> None:
    set_up_billing(cli, tmp_path)
    _statement(cli, tmp_path)
    run = cli("reconcile", "run", "--from", "2026-06-01", "--to", "2026-06-30")
    assert run.code == 1
    assert "999.99 USD" in run.out and "-25.00 USD" in run.out
    assert "99999" not in run.out
    assert "unexplained bank debit" in run.out


def test_one_line_is_matched_to_several_payments_together(cli: Cli, tmp_path: Path) -> None:
    """A card processor's payout of two transfers in one bank line, matched by naming both."""
    set_up_billing(cli, tmp_path)
    paid = []
    for amount, reference in (("60.00", "ACH-T-1"), ("40.00", "ACH-T-2")):
        recorded = cli(
            "payment", "record", "--facility", "STMARY", "--method", "transfer",
            "--amount", amount, "--received", "2026-06-02", "--reference", reference,
            "--idempotency-key", reference, "--json",
        )  # fmt: skip
        assert recorded.code == 0, recorded.err
        paid.append(recorded.json()["payment_id"])
    sample = tmp_path / "payout.csv"
    sample.write_text(
        "Date,Amount,Reference,Counterparty\n2026-06-03,100.00,PAYOUT,Processor\n",
        encoding="utf-8",
    )
    mapped = cli(
        "mapping", "save", "ops", "--file", str(sample), "--currency", "USD",
        "--set", "account=OPS-1",
    )  # fmt: skip
    assert mapped.code == 0, mapped.err
    assert cli("import", "statement", str(sample), "--commit").code == 0
    (line,) = cli("reconcile", "lines", "--json").json()  # type: ignore[misc]
    short = cli("reconcile", "match", "--line", str(line["id"]), "--payment", str(paid[0]))
    assert short.code == 3 and "--note" in short.err, short.err
    matched = cli(
        "reconcile", "match", "--line", str(line["id"]),
        "--payment", str(paid[0]), "--payment", str(paid[1]), "--json",
    )  # fmt: skip
    assert matched.code == 0, matched.err
    (shown,) = cli("reconcile", "lines", "--json").json()  # type: ignore[misc]
    assert (shown["payment_id"], shown["also"]) == (paid[0], [f"payment {paid[1]}"])
