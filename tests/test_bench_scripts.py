"""Every bench script starts: `make bench` runs them as plain scripts (no PYTHONPATH), and one
that cannot import its helpers measures nothing. Each is asked for its usage, which imports all
it needs and measures nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
SCRIPTS = sorted(p.name for p in BENCH.glob("*.py") if not p.name.startswith("_"))


def test_there_are_bench_scripts() -> None:
    assert "reconcile.py" in SCRIPTS and "monitoring.py" in SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_bench_script_starts_as_make_bench_runs_it(script: str, tmp_path: Path) -> None:
    ran = subprocess.run(
        [sys.executable, str(BENCH / script), "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "QT_QPA_PLATFORM": "offscreen", "HOME": str(tmp_path)},
        check=False,
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert "usage:" in ran.stdout
