"""Which importer reads a file: by --format, or by asking each format whether it recognises the
file's first bytes (XML and OFX before the line formats, CSV last as the catch-all)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import cast

from billing_desk.domain.errors import BadInput
from billing_desk.domain.statements import MAX_STATEMENT_BYTES, Statement, StatementRefused
from billing_desk.importers.statements.base import StatementFormat

MODULES = {
    "camt053": "billing_desk.importers.statements.camt",
    "ofx": "billing_desk.importers.statements.ofx",
    "bai2": "billing_desk.importers.statements.bai2",
    "mt940": "billing_desk.importers.statements.mt940",
    "csv": "billing_desk.importers.statements.csv_statement",
}
FORMATS = tuple(MODULES)


def importer(name: str) -> StatementFormat:
    if name not in MODULES:
        raise BadInput(f"'{name}' is not a statement format; choose auto, {', '.join(FORMATS)}.")
    return cast(StatementFormat, importlib.import_module(MODULES[name]))


def read_statement_file(path: Path) -> bytes:
    """The file's bytes, refused before reading when it is too large to be a statement."""
    try:
        size = path.stat().st_size
        if size > MAX_STATEMENT_BYTES:
            raise StatementRefused(
                "statement",
                None,
                f"it is {size // (1024 * 1024)} MB, larger than the "
                f"{MAX_STATEMENT_BYTES // (1024 * 1024)} MB a statement may be",
            )
        with path.open("rb") as handle:
            return handle.read(MAX_STATEMENT_BYTES + 1)
    except OSError as err:
        raise BadInput(f"Cannot read {path}: {err.strerror or err}.") from err


def detect(data: bytes) -> str:
    for name in FORMATS:
        if importer(name).identify(data):
            return name
    raise BadInput(
        "This file is not a bank statement billing-desk recognises (OFX/QFX, camt.053, MT940, "
        "BAI2 or CSV); give --format if you know what it is."
    )


def parse(data: bytes, name: str) -> list[Statement]:
    return importer(name).parse(data)
