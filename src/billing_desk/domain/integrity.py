"""The hash chain's bytes, version 1 (specified in docs/integrity.md).

link hash = SHA-256 of the canonical bytes (domain.hashing) of the object
    {"v": version, "sequence": n, "prev_hash": hex of the previous link ("0" * 64 first),
     "entry": the entry's content}
written as lower-case hex. A version only ever goes up along the chain.
"""

from __future__ import annotations

from collections.abc import Mapping

from billing_desk.domain.hashing import canonical_bytes, sha256_hex

CURRENT_HASH_VERSION = 1
ZERO_HASH = "0" * 64
SUPPORTED_HASH_VERSIONS = frozenset({1})


def link_bytes(version: int, sequence: int, prev_hash: str, entry: Mapping[str, object]) -> bytes:
    if version not in SUPPORTED_HASH_VERSIONS:
        raise ValueError(f"hash version {version} is not one this verifier knows")
    return canonical_bytes(
        {"v": version, "sequence": sequence, "prev_hash": prev_hash, "entry": entry}
    )


def link_hash(version: int, sequence: int, prev_hash: str, entry: Mapping[str, object]) -> str:
    return sha256_hex(link_bytes(version, sequence, prev_hash, entry))


def content_hash(kind: str, record: Mapping[str, object]) -> str:
    """The stored integrity hash of a payment (with its allocations) or an invoice (with its
    lines): SHA-256 of {"kind": kind, "v": 1, "record": record} in canonical bytes."""
    return sha256_hex(canonical_bytes({"kind": kind, "v": 1, "record": record}))
