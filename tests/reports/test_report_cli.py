"""The report commands end to end: every report as PDF and CSV, figures equal to the database,
CSV formula cells neutralised, prints audited, `statement check` exit codes, first pages as PNG."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from sqlalchemy import text

from billing_desk.cli.app import run
from billing_desk.domain.money import Money
from billing_desk.reports.csv_export import neutralise, write_csv
from billing_desk.services.audit import audit_log
from billing_desk.services.payments import list_payments
from billing_desk.services.provider import ProviderChange, change_provider
from billing_desk.services.report_data import aging_report_data
from billing_desk.services.unit_of_work import Workspace
from tests.reports.conftest import AS_OF, assert_fonts_embedded, pdf_text, render_first_page


@pytest.fixture
def cli(demo: Workspace, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    monkeypatch.setenv(
        "BILLING_DESK_DB",
        str(demo.location.url) if not demo.location.is_sqlite else str(demo.location.sqlite_path),
    )
    change_provider(demo, ProviderChange(name="Prairie Wheels Transport", address="1 Depot Ln"))

    def invoke(*args: str, user: str = "manager") -> tuple[int, str, str]:
        capsys.readouterr()
        code = run(["--user", user, *args])
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


def _rows(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.reader(handle))


def test_every_report_prints_as_pdf_and_csv_and_is_audited(
    demo: Workspace, cli, tmp_path: Path
) -> None:
    code, out, err = cli("reconcile", "run", "--from", "2026-01-01", "--to", str(AS_OF))
    assert code in (0, 1), err
    deposits = [p for p in list_payments(demo) if p.status == "deposited"]
    commands = {
        "aging": ["report", "aging", "--as-of", str(AS_OF)],
        "audit": ["report", "audit", "--action", "demo.load", "--limit", "400"],
        "integrity": ["report", "integrity"],
        "compliance": ["report", "compliance"],
        "reconciliation": ["report", "reconciliation", "1"],
        "statements": ["report", "statements", "--all", "--as-of", str(AS_OF)],
    }
    slip = _deposit_id(demo)
    if slip is not None:
        commands["deposit"] = ["report", "deposit-slip", str(slip)]
    for name, command in commands.items():
        pdf, table = tmp_path / f"{name}.pdf", tmp_path / f"{name}.csv"
        outputs = (
            ["--out", str(pdf)]
            if name == "statements"
            else ["--out", str(pdf), "--csv", str(table)]
        )
        code, out, err = cli(*command, *outputs)
        assert code == 0, (name, out, err)
        assert_fonts_embedded(pdf)
        assert "Page 1 of" in pdf_text(pdf)
        render_first_page(pdf)
        if name != "statements":
            assert len(_rows(table)) >= 2, name
    assert deposits is not None
    printed = audit_log(demo, action="report.print")
    kinds = {e.entity_type for e in printed}
    assert {
        "aging_report",
        "audit_report",
        "compliance_report",
        "integrity_report",
        "reconciliation_report",
        "statement",
    } <= kinds


def _deposit_id(workspace: Workspace) -> int | None:
    with workspace.engine.begin() as conn:
        return conn.execute(text("SELECT min(id) FROM deposit")).scalar()


def test_aging_totals_equal_the_database(demo: Workspace, cli, tmp_path: Path) -> None:
    data = aging_report_data(demo, as_of=AS_OF)
    pdf, table = tmp_path / "aging.pdf", tmp_path / "aging.csv"
    assert (
        cli("report", "aging", "--as-of", str(AS_OF), "--out", str(pdf), "--csv", str(table))[0]
        == 0
    )
    content = pdf_text(pdf)
    ((buckets, total, _credit, balance),) = data.totals.values()
    for amount in (*buckets, total, balance):
        assert amount.format() in content
    rows = _rows(table)[1:]
    assert Money.total((Money(r[-1], "USD") for r in rows), "USD") == balance
    with demo.engine.begin() as conn:
        invoiced = (
            conn.execute(
                text(
                    "SELECT sum(total_minor) FROM invoice WHERE status <> 'void'"
                    " AND issue_date <= :d"
                ),
                {"d": str(AS_OF)},
            ).scalar()
            or 0
        )
    assert balance.minor <= invoiced


def test_statement_check_exit_codes(demo: Workspace, cli, tmp_path: Path) -> None:
    pdf = tmp_path / "s.pdf"
    code, out, err = cli(
        "report",
        "statement",
        "--facility",
        "STMARY",
        "--as-of",
        str(AS_OF),
        "--from",
        "2025-01-01",
        "--out",
        str(pdf),
    )
    assert code == 0, err
    assert cli("statement", "check", str(pdf))[0] == 0
    with demo.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE payment SET payer = 'Someone else' WHERE facility_id = "
                "(SELECT id FROM facility WHERE code = 'STMARY')"
            )
        )
    code, out, _ = cli("statement", "check", str(pdf))
    assert code == 1 and "DIFFERS" in out
    not_a_statement = tmp_path / "other.pdf"
    assert cli("report", "aging", "--out", str(not_a_statement))[0] == 0
    assert cli("statement", "check", str(not_a_statement))[0] == 2


def test_batch_statements_into_a_folder(demo: Workspace, cli, tmp_path: Path) -> None:
    folder = tmp_path / "batch"
    code, _out, err = cli(
        "report",
        "statements",
        "--facilities",
        "STMARY,OAKVIEW",
        "--as-of",
        str(AS_OF),
        "--out",
        str(folder),
        "--json",
    )
    assert code == 0, err
    files = sorted(p.name for p in folder.iterdir())
    assert files == [f"statement-OAKVIEW-{AS_OF}.pdf", f"statement-STMARY-{AS_OF}.pdf"]
    for path in folder.iterdir():
        assert cli("statement", "check", str(path))[0] == 0


@pytest.mark.parametrize(
    "value", ["=1+1", "+SUM(A1)", "-2+3", "@cmd", "\tx", "\rx", '=HYPERLINK("http://x")']
)
def test_csv_neutralises_formula_cells(value: str, tmp_path: Path) -> None:
    assert neutralise(value).startswith("'")
    path = tmp_path / "x.csv"
    write_csv(path, ["text", "amount"], [[value, Money("-12.50", "USD")]])
    row = _rows(path)[1]
    assert row[0] == "'" + value
    assert row[1] == "-12.50"  # amounts stay numbers


def test_reports_never_import_the_database_layer() -> None:
    import tomllib

    root = Path(__file__).resolve().parents[2]
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["importlinter"]
    forbidden = {c["name"]: set(c.get("forbidden_modules", [])) for c in config["contracts"]}
    assert {"sqlalchemy", "billing_desk.db"} <= forbidden[
        "Reports render the plain data of services: no session, no SQL"
    ]
    assert "billing_desk.reports" in forbidden["Services never import Qt or the command line"]
    layers = next(c for c in config["contracts"] if c["type"] == "layers")["layers"]
    assert layers.index("cli | ui") < layers.index("reports") < layers.index("services")


def test_the_compliance_report_shows_the_score_and_every_check(
    demo: Workspace, cli, tmp_path: Path
) -> None:
    pdf, table = tmp_path / "compliance.pdf", tmp_path / "compliance.csv"
    code, _out, err = cli("report", "compliance", "--out", str(pdf), "--csv", str(table))
    assert code == 0, err
    rows = _rows(table)
    score = int(rows[1][2])
    checks = rows[2:]
    assert score == sum(int(r[2]) for r in checks if r[1] == "passed")
    text = pdf_text(pdf)
    assert f"{score} of 100" in text
    assert all(r[1] == "passed" or r[4] for r in checks)  # every failure says what to do
