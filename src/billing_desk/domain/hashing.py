"""Canonical bytes of a record and their SHA-256: the one encoding every integrity hash is built on.

The rules are pinned by golden vectors in tests/domain/test_hashing.py and docs/hashing-vectors.md;
changing a single byte of the output breaks them, and must come with a new hash version.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, date, datetime
from enum import Enum

from billing_desk.domain.money import Money

_Json = None | bool | int | str | list["_Json"] | dict[str, "_Json"]


def canonical_bytes(record: Mapping[str, object]) -> bytes:
    """The canonical encoding of `record`: compact JSON in UTF-8, keys sorted by code point.

    Separators are "," and ":" with no spaces and there is no trailing newline. Non-ASCII text is
    written as itself (UTF-8), never as \\u escapes; only '"', '\\' and control characters
    U+0000-U+001F are escaped, as \\" \\\\ \\b \\f \\n \\r \\t or \\u00xx (lower-case hex).
    Strings are hashed exactly as given: no Unicode normalisation, no trimming, so "é" written
    precomposed and decomposed hash differently; normalise before storing if that matters.

    Values allowed: None, bool, int, str; `date` as "YYYY-MM-DD"; a time-zone-aware `datetime`
    converted to UTC as "YYYY-MM-DDTHH:MM:SS.ffffffZ" (always six fractional digits); `Money` as
    {"currency": ..., "minor": ...}; an `Enum` as its str or int value; list and tuple as arrays;
    a Mapping with str keys as an object. Anything else (float, Decimal, naive datetime, bytes,
    set, non-str keys ...) is refused with `TypeError` naming where it sits ("payment.amount").
    """
    if not isinstance(record, Mapping):
        raise TypeError(f"record: {_kind(record)} is not allowed; a record is a mapping")
    tree = _canonical(record, "")
    text = json.dumps(
        tree, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
    )
    return text.encode("utf-8")


def sha256_hex(data: bytes) -> str:
    """Lower-case hex SHA-256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def record_digest(record: Mapping[str, object]) -> str:
    """Lower-case hex SHA-256 of `canonical_bytes(record)`."""
    return sha256_hex(canonical_bytes(record))


def _canonical(value: object, path: str) -> _Json:
    # Order matters: bool before int, datetime before date, Enum before str and int.
    if value is None or value is True or value is False:
        return value
    if isinstance(value, Enum):
        inner = value.value
        if isinstance(inner, bool) or not isinstance(inner, str | int):
            raise _refused(path, f"{type(value).__name__} with a {_kind(inner)} value")
        return _canonical(inner, path)
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        return _text(value, path)
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise TypeError(
                f"{_where(path)}: a naive datetime is not allowed in canonical records; "
                "give it a time zone"
            )
        utc = value.astimezone(UTC)
        return (
            f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T"
            f"{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}.{utc.microsecond:06d}Z"
        )
    if isinstance(value, date):
        return f"{value.year:04d}-{value.month:02d}-{value.day:02d}"
    if isinstance(value, Money):
        return {"currency": value.currency, "minor": value.minor}
    if isinstance(value, list | tuple):
        return [_canonical(item, f"{path}[{index}]") for index, item in enumerate(value)]
    if isinstance(value, Mapping):
        return _object(value, path)
    raise _refused(path, _kind(value))


def _object(mapping: Mapping[object, object], path: str) -> dict[str, _Json]:
    out: dict[str, _Json] = {}
    for key, item in mapping.items():
        if isinstance(key, Enum) and isinstance(key.value, str):
            key = key.value
        if not isinstance(key, str):
            raise TypeError(
                f"{_where(path)}: key {key!r} is a {_kind(key)}; canonical records have str keys"
            )
        name = _text(key, path)
        if name in out:
            raise ValueError(f"{_where(path)}: key {name!r} appears twice")
        out[name] = _canonical(item, f"{path}.{name}" if path else name)
    return out


def _text(value: str, path: str) -> str:
    plain = str.__str__(value)  # a str subclass is hashed as its characters, nothing more
    try:
        plain.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            f"{_where(path)}: text contains a lone surrogate, which UTF-8 cannot encode"
        ) from None
    return plain


def _refused(path: str, kind: str) -> TypeError:
    return TypeError(f"{_where(path)}: {kind} is not allowed in canonical records")


def _where(path: str) -> str:
    return path or "record"


def _kind(value: object) -> str:
    return type(value).__name__
