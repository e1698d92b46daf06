"""`mapping save` when the guess fails: the refusal names --set and --json-file, and the sets
complete what the file's layout gives; `--mapping` alone reads the file as CSV."""

from __future__ import annotations

from pathlib import Path

from tests.cli.conftest import Cli, set_up_billing

# Columns no vocabulary knows: nothing can be guessed but the layout.
UNKNOWN_COLUMNS = "Dag;Som;Tekst\n02-01-2022 ; -12,50 ; Koffie\n03-01-2022 ; 100,00 ; Loon\n"


def test_a_failed_guess_is_completed_with_set(cli: Cli, tmp_path: Path) -> None:
    set_up_billing(cli, tmp_path)
    sample = tmp_path / "export.csv"
    sample.write_text(UNKNOWN_COLUMNS, encoding="utf-8")

    unguessed = cli("import", "statement", str(sample))
    assert unguessed.code == 2 and len(unguessed.err.strip().splitlines()) == 1
    assert "mapping save NAME --file" in unguessed.err and "--mapping NAME" in unguessed.err

    refused = cli("mapping", "save", "mybank", "--file", str(sample))
    assert refused.code == 2
    assert len(refused.err.strip().splitlines()) == 1
    assert "--set FIELD=VALUE" in refused.err and "--json-file FILE" in refused.err

    incomplete = cli("mapping", "save", "mybank", "--file", str(sample), "--set", "date=Dag")
    assert incomplete.code == 2
    assert "--set FIELD=VALUE" in incomplete.err and "--json-file FILE" in incomplete.err
    assert cli("mapping", "list", "--json").json() == []

    saved = cli(
        "mapping", "save", "mybank", "--file", str(sample),
        "--set", "date=Dag", "--set", "date_format=dd-mm-yyyy", "--set", "amount=Som",
        "--set", "description=[\"Tekst\"]", "--set", "currency=EUR",
        "--set", "decimal_comma=true", "--set", "thousands=.",
    )  # fmt: skip
    assert saved.code == 0, saved.err
    shown = cli("mapping", "show", "mybank", "--json").json()
    assert isinstance(shown, dict)
    assert (shown["delimiter"], shown["has_header"], shown["amount"]) == (";", True, "Som")

    # --mapping implies CSV: no --format needed.
    imported = cli(
        "import", "statement", str(sample), "--mapping", "mybank", "--account", "NL01", "--json"
    )
    assert imported.code == 0, imported.err
    result = imported.json()
    assert isinstance(result, dict)
    assert (result["format"], result["lines"], result["credits_minor"], result["debits_minor"]) == (
        "csv",
        2,
        10000,
        -1250,
    )


def test_the_banks_next_export_is_read_with_its_saved_mapping_unasked(
    cli: Cli, tmp_path: Path
) -> None:
    set_up_billing(cli, tmp_path)
    first = tmp_path / "june.csv"
    first.write_text(UNKNOWN_COLUMNS, encoding="utf-8")
    saved = cli(
        "mapping", "save", "mybank", "--file", str(first),
        "--set", "date=Dag", "--set", "date_format=dd-mm-yyyy", "--set", "amount=Som",
        "--set", "description=[\"Tekst\"]", "--set", "currency=EUR", "--set", "account=NL01",
        "--set", "decimal_comma=true", "--set", "thousands=.",
    )  # fmt: skip
    assert saved.code == 0, saved.err
    later = tmp_path / "july.csv"
    later.write_text("Dag;Som;Tekst\n02-07-2022 ; -3,10 ; Thee\n", encoding="utf-8")
    imported = cli("import", "statement", str(later), "--commit", "--json")
    assert imported.code == 0, imported.err
    result = imported.json()
    assert isinstance(result, dict)
    assert (result["mapping"], result["lines"], result["debits_minor"]) == ("mybank", 1, -310)
    human = cli("import", "statement", str(later))
    assert "Read with the saved CSV mapping 'mybank'." in human.out
    # A file of another layout is not read with it: it is guessed afresh, as before.
    other = tmp_path / "other.csv"
    other.write_text("Datum;Bedrag;Notitie\n02-07-2022;1,00;x\n", encoding="utf-8")
    refused = cli("import", "statement", str(other))
    assert refused.code == 2 and "--currency" in refused.err and "mybank" not in refused.out
