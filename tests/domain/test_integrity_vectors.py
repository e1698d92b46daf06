"""The vectors of docs/integrity.md, read from the document itself and recomputed."""

from __future__ import annotations

import itertools
import json
import re
from datetime import datetime
from pathlib import Path

import pytest

from billing_desk.domain.integrity import ZERO_HASH, link_bytes, link_hash

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
