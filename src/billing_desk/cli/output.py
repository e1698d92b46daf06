"""Printing results: one JSON document on stdout with --json, readable lines otherwise."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime
from enum import Enum
from typing import Any

import typer

from billing_desk.domain.money import Money


def jsonable(value: Any) -> Any:
    """Plain JSON values; money becomes `<name>_minor` integers beside a currency."""
    if isinstance(value, Money):
        return {"minor": value.minor, "currency": value.currency}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for field in dataclasses.fields(value):
            item = getattr(value, field.name)
            if isinstance(item, Money):
                out[f"{field.name}_minor"] = item.minor
                out.setdefault("currency", item.currency)
            else:
                out[field.name] = jsonable(item)
        return out
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    return value


def escape_controls(text: str) -> str:
    """`text` with every control character (C0 but newline and tab, DEL, C1) and every
    bidirectional override written as a \\uXXXX escape, so stored text cannot drive the
    terminal (ring, retitle, move the cursor, reorder what is shown). Inside a JSON string the
    escape means the same character, so JSON stays exact."""
    return _CONTROLS.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def echo(message: object = "", *, err: bool = False, nl: bool = True) -> None:
    """Print a line for a person (or a JSON document), its control characters escaped."""
    typer.echo(escape_controls(str(message)), err=err, nl=nl)


def print_json(value: Any) -> None:
    echo(json.dumps(jsonable(value), ensure_ascii=False, indent=2))


def emit(value: Any, as_json: bool, human: Callable[[], None]) -> None:
    if as_json:
        print_json(value)
    else:
        human()


def table(
    headers: Sequence[str], rows: Iterable[Sequence[object]], right: set[int] | None = None
) -> None:
    """A plain aligned text table; columns in `right` are right-aligned (amounts)."""
    right = right or set()
    cells = [[str(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]

    def line(row: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()

    echo(line(headers))
    echo(line(["-" * w for w in widths]))
    for row in cells:
        echo(line(row))
    if not cells:
        echo("(none)")
