"""The hash chain's bytes, versions 1 and 2 (specified in docs/integrity.md).

Version 1: link hash = SHA-256 of the canonical bytes (domain.hashing) of
    {"v": 1, "sequence": n, "prev_hash": hex of the previous link ("0" * 64 first),
     "entry": the entry's content}
Version 2: the writer stores each entry's digest, SHA-256 of the canonical bytes of the same
content, and the link hash is SHA-256 of the canonical bytes of
    {"v": 2, "sequence": n, "prev_hash": ..., "entry_digest": that digest}
so a sealer (on PostgreSQL, a database function) chains entries without reading them.
Hashes are lower-case hex. A version only ever goes up along the chain.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from billing_desk.domain.hashing import canonical_bytes, sha256_hex

CURRENT_HASH_VERSION = 2
ZERO_HASH = "0" * 64
SUPPORTED_HASH_VERSIONS = frozenset({1, 2})
# The PostgreSQL function that seals the chain (migration 0004); shared-mode roles are granted
# EXECUTE on it, never INSERT on audit_link.
SEAL_FUNCTION = "public.billing_desk_seal_audit"

_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


def is_hex_digest(value: object) -> bool:
    """Whether `value` is a str of exactly 64 lower-case hex digits."""
    return type(value) is str and _HEX_DIGEST.fullmatch(value) is not None


def entry_digest(entry: Mapping[str, object]) -> str:
    """An entry's digest (version 2): SHA-256 of the canonical bytes of its content, the same
    mapping version 1 puts under "entry"."""
    return sha256_hex(canonical_bytes(entry))


def link_bytes(version: int, sequence: int, prev_hash: str, entry: Mapping[str, object]) -> bytes:
    """The canonical bytes of a link over the entry content `entry` (for version 2, over the
    digest of that content)."""
    if version not in SUPPORTED_HASH_VERSIONS:
        raise ValueError(f"hash version {version} is not one this verifier knows")
    if version == 2:
        return sealed_link_bytes(sequence, prev_hash, entry_digest(entry))
    return canonical_bytes(
        {"v": version, "sequence": sequence, "prev_hash": prev_hash, "entry": entry}
    )


def link_hash(version: int, sequence: int, prev_hash: str, entry: Mapping[str, object]) -> str:
    return sha256_hex(link_bytes(version, sequence, prev_hash, entry))


def sealed_link_bytes(sequence: int, prev_hash: str, digest: str) -> bytes:
    """The version-2 link bytes from a stored entry digest. Refuses a digest or previous hash
    that is not 64 lower-case hex digits: the database sealer builds the same bytes by
    concatenation and must never have to escape anything."""
    if not is_hex_digest(digest):
        raise ValueError(f"entry digest {digest!r} is not 64 lower-case hex digits")
    if not is_hex_digest(prev_hash):
        raise ValueError(f"previous hash {prev_hash!r} is not 64 lower-case hex digits")
    return canonical_bytes(
        {"v": 2, "sequence": sequence, "prev_hash": prev_hash, "entry_digest": digest}
    )


def sealed_link_hash(sequence: int, prev_hash: str, digest: str) -> str:
    """The version-2 link hash from a stored entry digest."""
    return sha256_hex(sealed_link_bytes(sequence, prev_hash, digest))


def content_hash(kind: str, record: Mapping[str, object]) -> str:
    """The stored integrity hash of a payment (with its allocations) or an invoice (with its
    lines): SHA-256 of {"kind": kind, "v": 1, "record": record} in canonical bytes."""
    return sha256_hex(canonical_bytes({"kind": kind, "v": 1, "record": record}))
