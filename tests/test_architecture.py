"""The layers of DESIGN.md, checked by import-linter as part of the suite."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold() -> None:
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint_imports, "import-linter is part of the test dependencies"
    done = subprocess.run([lint_imports], cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_contracts_name_the_forbidden_frameworks() -> None:
    """Guards the contracts themselves against being loosened by accident."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    forbidden = {c["name"]: set(c.get("forbidden_modules", [])) for c in config["contracts"]}
    assert {"sqlalchemy", "PySide6", "reportlab", "typer"} <= forbidden["The domain is pure Python"]
    assert "PySide6" in forbidden["Services never import Qt or the command line"]
    assert {"sqlalchemy", "billing_desk.db"} <= forbidden[
        "The command line opens no session and writes no SQL"
    ]
    assert {"sqlalchemy", "billing_desk.db"} <= forbidden[
        "The desktop application opens no session and writes no SQL"
    ]
    assert "PySide6" in forbidden["Nothing outside the desktop application imports Qt"]
    assert "billing_desk.ui" in forbidden["The command line never imports the desktop application"]
    sources = {c["name"]: set(c.get("source_modules", [])) for c in config["contracts"]}
    assert {"billing_desk.cli", "billing_desk.services", "billing_desk.domain"} <= sources[
        "Nothing outside the desktop application imports Qt"
    ]


def test_no_float_reaches_money_code() -> None:
    """A float near money is a bug: no `float(` call in the domain or services."""
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for package in ("domain", "services", "db", "ui")
        for path in (ROOT / "src" / "billing_desk" / package).rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if "float(" in line and "not money" not in line
    ]
    assert offenders == []
