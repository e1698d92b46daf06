"""Importer tests read the statement corpus in tests/data/statements; without it they fail."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.corpus import CORPUS_ROOT


@pytest.fixture
def corpus_root() -> Path:
    if not CORPUS_ROOT.is_dir():
        pytest.fail(
            f"The statement corpus is not at {CORPUS_ROOT}; it belongs to the repository.",
            pytrace=False,
        )
    return CORPUS_ROOT
