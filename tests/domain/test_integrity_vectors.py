"""The vectors of docs/integrity.md, read from the document itself and recomputed."""

from __future__ import annotations

import itertools
import json
import re
from datetime import datetime
from pathlib import Path

import pytest

from billing_desk.domain.hashing import canonical_bytes
from billing_desk.domain.integrity import (
    ZERO_HASH,
    entry_digest,
    link_bytes,
    link_hash,
    sealed_link_bytes,
    sealed_link_hash,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "integrity.md"
VECTOR = re.compile(
    r"#### Link (\d+)\s+Input:\s+```json\n(.*?)```\s+Canonical bytes \(hex\):\s+```hex\n"
    r"([0-9a-f]+)\n```\s+Link hash: `([0-9a-f]{64})`",
    re.DOTALL,
)


def _vectors() -> list[tuple[int, dict[str, object], str, str]]:
    found = [
        (int(n), json.loads(body), hex_bytes, digest)
        for n, body, hex_bytes, digest in VECTOR.findall(DOC.read_text(encoding="utf-8"))
    ]
    assert len(found) == 3, "docs/integrity.md lost its vectors"
    return found


@pytest.mark.parametrize(("sequence", "given", "hex_bytes", "digest"), _vectors())
def test_document_vectors_match_the_code(
    sequence: int, given: dict[str, object], hex_bytes: str, digest: str
) -> None:
    entry = dict(given["entry"])  # type: ignore[call-overload]
    entry["recorded_at"] = datetime.fromisoformat(str(entry["recorded_at"]))
    produced = link_bytes(int(given["v"]), sequence, str(given["prev_hash"]), entry)  # type: ignore[call-overload]
    assert produced.hex() == hex_bytes
    assert link_hash(1, sequence, str(given["prev_hash"]), entry) == digest


def test_vectors_chain_from_zero() -> None:
    vectors = _vectors()
    assert vectors[0][1]["prev_hash"] == ZERO_HASH
    for (_, _, _, earlier), (_, later, _, _) in itertools.pairwise(vectors):
        assert later["prev_hash"] == earlier


def test_an_unknown_hash_version_is_refused() -> None:
    with pytest.raises(ValueError, match="hash version 3"):
        link_bytes(3, 1, ZERO_HASH, {})


VECTOR_V2 = re.compile(
    r"#### Version 2, link (\d+)\s+Entry record:\s+```json\n(.*?)```\s+"
    r"Entry bytes \(hex\):\s+```hex\n([0-9a-f]+)\n```\s+"
    r"Entry digest: `([0-9a-f]{64})`\s+"
    r"Link bytes \(hex\), sequence \d+:\s+```hex\n([0-9a-f]+)\n```\s+"
    r"Link hash: `([0-9a-f]{64})`",
    re.DOTALL,
)


def _vectors_v2() -> list[tuple[int, dict[str, object], str, str, str, str]]:
    found = [
        (int(n), json.loads(body), entry_hex, digest, link_hex, link)
        for n, body, entry_hex, digest, link_hex, link in VECTOR_V2.findall(
            DOC.read_text(encoding="utf-8")
        )
    ]
    assert len(found) == 3, "docs/integrity.md lost its version-2 vectors"
    return found


def test_version_2_vectors_match_the_code_and_chain_from_zero() -> None:
    previous = ZERO_HASH
    for sequence, given, entry_hex, digest, link_hex, link in _vectors_v2():
        entry = dict(given)
        entry["recorded_at"] = datetime.fromisoformat(str(entry["recorded_at"]))
        assert canonical_bytes(entry).hex() == entry_hex
        assert entry_digest(entry) == digest
        assert sealed_link_bytes(sequence, previous, digest).hex() == link_hex
        # The link bytes are the plain ASCII the database function concatenates.
        assert bytes.fromhex(link_hex) == (
            f'{{"entry_digest":"{digest}","prev_hash":"{previous}",'
            f'"sequence":{sequence},"v":2}}'.encode("ascii")
        )
        assert sealed_link_hash(sequence, previous, digest) == link
        assert link_hash(2, sequence, previous, entry) == link
        previous = link


def test_version_2_vectors_describe_the_same_entries_as_version_1() -> None:
    assert [given["entry"] for _, given, _, _ in _vectors()] == [
        given for _, given, _, _, _, _ in _vectors_v2()
    ]


@pytest.mark.parametrize(
    "digest", ["", "0" * 63, "A" * 64, "g" * 64, '0" ' + "0" * 61, "0" * 65, None]
)
def test_a_version_2_link_refuses_a_digest_that_is_not_hex(digest: object) -> None:
    with pytest.raises(ValueError, match="64 lower-case hex"):
        sealed_link_bytes(1, ZERO_HASH, digest)  # type: ignore[arg-type]
