"""Report fixtures: a demo database on each backend, PDF text and font helpers, PNG pages."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from pypdf import PdfReader

from billing_desk.services.demo import load_demo_data
from billing_desk.services.unit_of_work import Workspace
from tests.conftest import Database

AS_OF = date(2026, 5, 20)
FACILITIES = 4


@pytest.fixture
def demo(database: Database) -> Iterator[Workspace]:
    """Demo data as of AS_OF (users clerk, manager, auditor, admin), acting as the manager."""
    load_demo_data(database.workspace("admin"), facilities=FACILITIES, months=6, as_of=AS_OF)
    yield database.workspace("manager")


def pdf_text(path: Path) -> str:
    return "\n".join(page.extract_text() or "" for page in PdfReader(str(path)).pages)


def page_texts(path: Path) -> list[str]:
    return [page.extract_text() or "" for page in PdfReader(str(path)).pages]


def font_names(path: Path) -> list[tuple[str, bool]]:
    """Every font a PDF's pages use: (base font name, embedded?)."""
    found: dict[str, bool] = {}
    for page in PdfReader(str(path)).pages:
        resources = page.get("/Resources")
        fonts = resources.get_object().get("/Font") if resources is not None else None
        if fonts is None:
            continue
        for ref in fonts.get_object().values():
            font = ref.get_object()
            name = str(font.get("/BaseFont"))
            embedded = False
            for descendant in font.get("/DescendantFonts", []) or []:
                descriptor = descendant.get_object().get("/FontDescriptor")
                embedded |= descriptor is not None and "/FontFile2" in descriptor.get_object()
            descriptor = font.get("/FontDescriptor")
            if descriptor is not None:
                d = descriptor.get_object()
                embedded |= any(k in d for k in ("/FontFile", "/FontFile2", "/FontFile3"))
            found[name] = embedded
    return sorted(found.items())


def assert_fonts_embedded(path: Path) -> None:
    raw = path.read_bytes()
    assert b"/Helvetica" not in raw, "an unembedded standard font is referenced"
    fonts = font_names(path)
    assert fonts, "no fonts found"
    for name, embedded in fonts:
        assert embedded, f"{name} is not embedded"
        assert re.match(r"/[A-Z]{6}\+", name), f"{name} is not a subset of an embedded font"


def render_first_page(pdf: Path) -> Path:
    """pdftoppm the first page to PNG (kept in BILLING_DESK_REPORT_PNGS when set, to look at)."""
    tool = shutil.which("pdftoppm")
    assert tool, "pdftoppm (poppler-utils) is needed: .ci/run installs it"
    prefix = pdf.with_suffix("")
    subprocess.run(
        [tool, "-png", "-r", "70", "-f", "1", "-l", "1", "-singlefile", str(pdf), str(prefix)],
        check=True,
        timeout=60,
    )
    png = prefix.with_suffix(".png")
    assert png.stat().st_size > 5_000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    keep = os.environ.get("BILLING_DESK_REPORT_PNGS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(png, Path(keep) / png.name)
    return png
