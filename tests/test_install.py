"""The project as a user installs it: the wheel built from this tree, installed non-editable into
a fresh virtual environment, runs `billing-desk --version` and `--self-test` from there (a new
database, a payment verified, a statement PDF with its fonts, the window opened offscreen).
Every resource the program reads must be package data for this to pass; the source tree is not
on the path. The dependencies are borrowed from the test environment, not downloaded again."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tomllib
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{args[0]} failed ({done.returncode}):\n{done.stderr[-3000:]}"
    return done.stdout


def test_the_built_wheel_installs_and_passes_its_self_test(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--quiet",
        "--no-deps",
        "-w",
        wheels,
        ROOT,
        cwd=tmp_path,
    )
    (wheel,) = wheels.glob("billing_desk-*.whl")
    target = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(target)
    python = target / "bin" / "python"
    _run(python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", wheel, cwd=tmp_path)
    # The dependencies of the test environment, as a plain path entry: its .pth files (the
    # editable install's finder among them) are not read, so only the wheel provides the app.
    site = Path(
        _run(
            python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path
        ).strip()
    )
    (site / "borrowed-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")} | {
        "QT_QPA_PLATFORM": "offscreen"
    }
    where = _run(
        python, "-c", "import billing_desk; print(billing_desk.__file__)", cwd=tmp_path, env=env
    )
    assert str(target) in where and str(ROOT / "src") not in where, where
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    program = target / "bin" / "billing-desk"
    assert _run(program, "--version", cwd=tmp_path, env=env).strip() == f"billing-desk {version}"
    said = _run(program, "--self-test", cwd=tmp_path, env=env)
    lines = said.splitlines()
    for step in ("database", "payment", "statement", "window"):
        assert any(line.startswith(f"ok     {step}:") for line in lines), said
    assert lines[-1] == "self-test passed"
