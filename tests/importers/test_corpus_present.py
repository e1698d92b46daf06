"""The corpus every importer is tested against is here, whole."""

from __future__ import annotations

import pytest

from tests.corpus import CORPUS_ROOT, EXPECTED_FILES


@pytest.mark.parametrize(("folder", "count"), sorted(EXPECTED_FILES.items()))
def test_the_corpus_is_here(folder: str, count: int) -> None:
    files = sorted(p for p in (CORPUS_ROOT / folder).glob("*") if p.is_file())
    assert len(files) == count, (
        f"{CORPUS_ROOT / folder} should hold {count} statement files (found {len(files)}); "
        "the corpus belongs to the repository"
    )
