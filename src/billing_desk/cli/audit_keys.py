"""`billing-desk audit key generate|register|list` and `billing-desk audit checkpoint`."""

from __future__ import annotations

from pathlib import Path

import typer

from billing_desk.cli.output import echo, emit, table
from billing_desk.cli.state import state
from billing_desk.domain.errors import BadInput
from billing_desk.services.checkpoints import (
    generate_key,
    list_keys,
    register_key,
    sign_checkpoint,
)

app = typer.Typer(help="Keys that sign audit checkpoints.", no_args_is_help=True)

JSON = typer.Option(False, "--json", help="Print one JSON document.")
KEY_FILE_HELP = (
    "Keep the private key in this file (created readable by you only) instead of the OS "
    "keyring: for machines without one. The file holds the key in plain text."
)


@app.command("generate")
def generate(
    name: str = typer.Argument(..., help="Key name, e.g. manager-ann-2026 (no spaces or '+')."),
    key_file: Path | None = typer.Option(None, "--key-file", help=KEY_FILE_HELP),
    as_json: bool = JSON,
) -> None:
    """Make a new signing key: the private key stays with you, the printed verifier key is
    registered in the database and given to auditors."""
    generated = generate_key(name, key_file=key_file)
    if key_file is not None:
        echo(
            f"Warning: {key_file} holds your private key in plain text; keep it where only you "
            "can read it and never copy it into the database or mail it.",
            err=True,
        )

    def human() -> None:
        echo(f"Key {generated.name}: private key kept in {generated.stored_in}.")
        echo(f"Verifier key: {generated.vkey}")
        echo(
            f"Register it with `billing-desk audit key register {generated.vkey}` and give "
            "auditors the verifier key by a channel other than the database."
        )

    emit(generated, as_json, human)


@app.command("register")
def register(
    ctx: typer.Context,
    vkey_or_file: str = typer.Argument(
        ..., metavar="VKEY_OR_FILE", help="A verifier key, or a file whose first key line it is."
    ),
    owner: str | None = typer.Option(
        None, "--owner", help="The user who holds the private key (default: you)."
    ),
    as_json: bool = JSON,
) -> None:
    """Register a checkpoint signer's verifier key (managers)."""
    info = register_key(state(ctx).workspace(), _vkey_text(vkey_or_file), owner)
    emit(
        info,
        as_json,
        lambda: echo(f"Registered {info.name} ({info.key_id}), owned by {info.owner}."),
    )


def _vkey_text(value: str) -> str:
    """The argument itself, unless it names a file: then that file's first key line."""
    path = Path(value)
    if "+" in value and not path.exists():
        return value
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise BadInput(f"'{value}' is neither a verifier key nor an existing file.") from None
    except (OSError, UnicodeDecodeError) as err:
        raise BadInput(f"Cannot read {value} ({err}).") from None
    for line in lines:
        if line.strip() and not line.strip().startswith("#"):
            return line.strip()
    raise BadInput(f"{value} holds no verifier key.")


@app.command("list")
def list_(ctx: typer.Context, as_json: bool = JSON) -> None:
    """Registered signing keys and their owners."""
    keys = list_keys(state(ctx).workspace())
    emit(
        keys,
        as_json,
        lambda: table(
            ["name", "key id", "owner", "registered", "by"],
            [
                (k.name, k.key_id, k.owner, f"{k.registered_at:%Y-%m-%d %H:%M}", k.registered_by)
                for k in keys
            ],
        ),
    )


def checkpoint_command(
    ctx: typer.Context,
    key: str | None = typer.Option(
        None, "--key", help="Signing key name (default: your one registered key)."
    ),
    key_file: Path | None = typer.Option(
        None, "--key-file", help="Read the private key from this file instead of the OS keyring."
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Write the note to this new file instead of printing it."
    ),
    as_json: bool = JSON,
) -> None:
    """Seal the audit chain and sign its head (managers): prints a note to keep outside the
    database."""
    if out is not None and out.exists():
        raise BadInput(f"{out} already exists; choose a new file for the checkpoint note.")
    signed = sign_checkpoint(state(ctx).workspace(), key, key_file=key_file)
    if out is not None:
        try:
            with out.open("x", encoding="utf-8", newline="\n") as handle:
                handle.write(signed.note_text)
        except OSError as err:
            typer.echo(signed.note_text, nl=False)
            raise BadInput(
                f"The checkpoint was signed and stored, but {out} could not be written "
                f"({err.strerror}); the note is printed above."
            ) from None

    def human() -> None:
        if out is None:
            typer.echo(signed.note_text, nl=False)
        else:
            echo(
                f"Checkpoint at sequence {signed.sequence} signed by {signed.key_name}, "
                f"written to {out}."
            )

    emit(signed, as_json, human)
