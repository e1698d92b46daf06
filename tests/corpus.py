"""Where the real bank statements the importers are tested against live (../shared/corpus of
the development machines; BILLING_DESK_CORPUS elsewhere). A missing corpus fails the suite
(tests/importers/test_corpus_present.py): importer tests never skip quietly."""

from __future__ import annotations

import os
from pathlib import Path

CORPUS_ROOT = Path(os.environ.get("BILLING_DESK_CORPUS", "/work/shared/corpus"))
EXPECTED_FILES = {"ofx": 14, "camt053": 15, "mt940": 14, "bai2": 8, "csv": 15}
