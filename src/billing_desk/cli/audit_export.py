"""`billing-desk audit export --out FILE`: the auditor's self-contained SQLite archive."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer

from billing_desk.cli.output import echo, emit
from billing_desk.cli.state import state
from billing_desk.services.archive import export_archive


def export_command(
    ctx: typer.Context,
    out: Path = typer.Option(
        ..., "--out", help="The new archive file (SQLite); an existing file is never replaced."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Export billing data, the audit chain, public keys and checkpoints to one SQLite file that
    `billing-desk --db FILE` opens read-only. The export itself is audited."""
    summary = export_archive(state(ctx).workspace(), out)
    document = {
        "path": str(summary.path),
        "tables": summary.tables,
        "head_sequence": summary.head_sequence,
        "head_hash": summary.head_hash,
        "database_id": summary.database_id,
    }

    def human() -> None:
        rows = sum(summary.tables.values())
        entries = summary.tables.get("audit_entry", 0)
        echo(
            f"Exported {rows} rows of {len(summary.tables)} tables, {entries} audit entries "
            f"among them, to {summary.path}."
        )
        echo(
            f"Database {summary.database_id}; chain head at sequence {summary.head_sequence}, "
            f"hash {summary.head_hash}."
        )
        echo(f"Check it with: billing-desk --db {shlex.quote(str(summary.path))} audit verify")

    emit(document, as_json, human)
