"""`billing-desk mapping save|list|show`: CSV column mappings of bank exports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from billing_desk.cli.output import echo, emit, print_json, table
from billing_desk.cli.state import state
from billing_desk.domain.errors import BadInput
from billing_desk.domain.statements import StatementRefused
from billing_desk.importers.statements import csv_statement
from billing_desk.importers.statements.registry import read_statement_file
from billing_desk.services.csv_mappings import get_mapping, list_mappings, save_mapping

app = typer.Typer(help="Column mappings for banks' CSV exports.", no_args_is_help=True)


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


@app.command("save")
def save(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="A name for this bank's layout, e.g. chase-checking."),
    file: Path | None = typer.Option(
        None, "--file", help="A sample export: the mapping is guessed from it, then saved."
    ),
    from_json: Path | None = typer.Option(
        None, "--json-file", help="A mapping written out by `mapping show --json`, edited."
    ),
    currency: str | None = typer.Option(
        None, "--currency", help="The account's currency, when the sample does not say."
    ),
    settings: list[str] = typer.Option(
        [], "--set", help="Change one field of the guess: --set date_format=dd.mm.yyyy (repeat)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Save the mapping guessed from a sample file (after looking at it in `import statement`),
    with any --set corrections; or one written as JSON."""
    if (file is None) == (from_json is None):
        raise BadInput("Give a sample with --file FILE, or a mapping with --json-file FILE.")
    if file is not None:
        data = read_statement_file(file)
        try:
            record = csv_statement.guess_mapping(data, name=name, currency=currency).to_record()
        except StatementRefused as refused:
            if not settings:
                raise BadInput(
                    f"The mapping cannot be guessed from {file.name} ({refused.problem}); give "
                    "the fields yourself with --set FIELD=VALUE (such as --set date=1 --set "
                    "date_format=dd.mm.yyyy --set amount=2 --set currency=EUR), or save a whole "
                    "mapping with --json-file FILE."
                ) from None
            # The sets complete what the file's layout gives.
            record = csv_statement.guess_layout(data, name=name, currency=currency)
    else:
        assert from_json is not None
        try:
            record = json.loads(from_json.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise BadInput(f"{from_json} is not a readable JSON mapping ({err}).") from err
    record["name"] = name
    for setting in settings:
        key, sep, value = setting.partition("=")
        if not sep or not key.strip():
            raise BadInput(f"--set '{setting}' is not FIELD=VALUE.")
        record[key.strip()] = _value(value)
    try:
        info = save_mapping(state(ctx).workspace(), record)
    except BadInput as err:
        if isinstance(err, StatementRefused) or from_json is not None:
            raise
        raise BadInput(
            f"{err.message.rstrip('.')}: complete the mapping with --set FIELD=VALUE, or save "
            "a whole mapping with --json-file FILE (`mapping show NAME --json` prints one to "
            "start from)."
        ) from None
    emit(
        info,
        as_json,
        lambda: echo(f"{'Replaced' if info.replaced else 'Saved'} the mapping {info.name}."),
    )


@app.command("list")
def list_(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Saved mappings."""
    rows = list_mappings(state(ctx).workspace())
    emit(rows, as_json, lambda: table(["name", "saved by"], [(m.name, m.saved_by) for m in rows]))


@app.command("show")
def show(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """One mapping, field by field (--json to edit and save back with --json-file)."""
    record = get_mapping(state(ctx).workspace(), name).to_record()
    if as_json:
        print_json(record)
        return
    for key, value in record.items():
        echo(f"{key}: {value}")
