"""Importer tests read the shared corpus; without it they fail, saying where it was looked for."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.corpus import CORPUS_ROOT


@pytest.fixture
def corpus_root() -> Path:
    if not CORPUS_ROOT.is_dir():
        pytest.fail(
            f"The statement corpus is not at {CORPUS_ROOT}; set BILLING_DESK_CORPUS.",
            pytrace=False,
        )
    return CORPUS_ROOT
