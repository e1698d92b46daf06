"""Where the real bank statements the importers are tested against live: tests/data/statements,
with SOURCES.md (origin and licence of every file) and EXPECTED.md (the figures each should give).
A missing file fails the suite (tests/importers/test_corpus_present.py): importer tests never skip
quietly."""

from __future__ import annotations

from pathlib import Path

CORPUS_ROOT = Path(__file__).resolve().parent / "data" / "statements"
EXPECTED_FILES = {"ofx": 14, "camt053": 15, "mt940": 14, "bai2": 8, "csv": 15}
