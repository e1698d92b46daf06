"""`import statement`, `mapping` and `reconcile` as a clerk and a manager type them."""

from __future__ import annotations

from pathlib import Path

from tests.cli.conftest import Cli, set_up_billing
from tests.corpus import CORPUS_ROOT

CORPUS = CORPUS_ROOT
CAMT = CORPUS / "camt053" / "camt053v04_raiffeisen_ch_16_entries.xml"


def test_preview_then_commit_then_again(cli: Cli, tmp_path: Path) -> None:
    set_up_billing(cli, tmp_path)
    preview = cli("import", "statement", str(CAMT), "--json")
    assert preview.code == 0, preview.err
    shown = preview.json()
    assert isinstance(shown, dict)
    assert (shown["format"], shown["lines"], shown["new"], shown["committed"]) == (
        "camt053",
        16,
        16,
        False,
    )
    assert (shown["credits_minor"], shown["debits_minor"]) == (36800, -404785)
    assert all(check["ok"] for check in shown["checks"])
    saved = cli("import", "statement", str(CAMT), "--commit", "--json").json()
    assert isinstance(saved, dict) and saved["committed"] and saved["new"] == 16
    again = cli("import", "statement", str(CAMT), "--commit", "--json").json()
    assert isinstance(again, dict)
    assert (again["committed"], again["file_already_imported"], again["already_imported"]) == (
        False,
        True,
        16,
    )
    human = cli("import", "statement", str(CAMT))
    assert "already imported: nothing changed" in human.out


def test_a_refused_file_exits_2_with_its_reason(cli: Cli, tmp_path: Path) -> None:
    set_up_billing(cli, tmp_path)
    bad = tmp_path / "garbage.xml"
    bad.write_bytes(b"\x00\x01\x02 not a statement \xff")
    ran = cli("import", "statement", str(bad))
    assert ran.code == 2
    assert len(ran.err.strip().splitlines()) == 1
    refused = cli(
        "import", "statement", str(CORPUS / "camt053" / "camt053v02_postfinance_dupl_ccy_xxx.xml")
    )
    assert refused.code == 2 and "'XXX'" in refused.err


def test_a_csv_file_goes_through_a_saved_mapping(cli: Cli, tmp_path: Path) -> None:
    set_up_billing(cli, tmp_path)
    sample = tmp_path / "bank.csv"
    sample.write_text(
        "Date,Amount,Reference,Counterparty\n2026-06-02,60.00,ACH-1,St Mary\n"
        "2026-06-03,-5.00,,Bank fee\n",
        encoding="utf-8",
    )
    guessed = cli(
        "import", "statement", str(sample), "--account", "OPS-1", "--currency", "USD", "--json"
    )
    assert guessed.code == 0, guessed.err
    result = guessed.json()
    assert isinstance(result, dict) and result["new"] == 2 and "guessed_mapping" in result
    refused = cli(
        "import", "statement", str(sample), "--account", "OPS-1", "--currency", "USD", "--commit"
    )
    assert refused.code == 2 and "mapping save" in refused.err
    saving = cli(
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
    assert saving.code == 0, saving.err
    listed = cli("mapping", "list", "--json").json()
    assert isinstance(listed, list) and [m["name"] for m in listed] == ["ops"]
    saved = cli("import", "statement", str(sample), "--mapping", "ops", "--commit", "--json")
    assert saved.code == 0, saved.err
    assert saved.json()["new"] == 2  # type: ignore[index]


def test_reconcile_run_exits_1_while_discrepancies_are_open(cli: Cli, tmp_path: Path) -> None:
    set_up_billing(cli, tmp_path)
    assert cli("import", "statement", str(CAMT), "--commit").code == 0
    matched = cli("reconcile", "match", "--auto", "--json")
    assert matched.code == 0, matched.err
    run = cli("reconcile", "run", "--from", "2017-04-01", "--to", "2017-04-30", "--json")
    assert run.code == 1
    report = run.json()
    assert isinstance(report, dict)
    kinds = {d["kind"] for d in report["discrepancies"]}
    # The statement's debits are bank charges: nothing in the books explains them.
    assert kinds == {"unmatched bank credit", "unexplained bank debit"}
    first = report["discrepancies"][0]["id"]
    assert cli("reconcile", "resolve", str(first), "--note", "x").code == 3  # a clerk may not
    for found in report["discrepancies"]:
        done = cli(
            "reconcile", "resolve", str(found["id"]), "--note", "bank interest", user="manager"
        )
        assert done.code == 0, done.err
    closed = cli("reconcile", "close", str(report["run_id"]), "--json", user="manager")
    assert closed.code == 0 and closed.json()["status"] == "closed"  # type: ignore[index]
    bad_date = cli("reconcile", "run", "--from", "April", "--to", "2017-04-30")
    assert bad_date.code == 2 and "YYYY-MM-DD" in bad_date.err
