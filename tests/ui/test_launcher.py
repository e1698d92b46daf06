"""The way in: `billing-desk` with no command (or `gui`) opens the window, every other command
runs without loading Qt, no display is one sentence and exit 4, and a second start on the same
embedded database brings the first window forward instead of opening it twice."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from billing_desk.launcher import _gui_options, wants_window
from billing_desk.ui.app import EXIT_NO_DISPLAY, NO_DISPLAY, display_missing
from billing_desk.ui.instance import InstanceLock
from tests.conftest import Database


@pytest.mark.parametrize(
    ("argv", "window"),
    [
        ([], True),
        (["gui"], True),
        (["gui", "--db", "x.sqlite3"], True),
        (["--db", "x.sqlite3"], True),
        (["--db=x.sqlite3", "--user", "clerk"], True),
        (["--user", "clerk", "gui"], True),
        (["invoice", "list"], False),
        (["--db", "x.sqlite3", "invoice", "list"], False),
        (["--help"], False),
        (["demo"], False),
    ],
)
def test_which_command_lines_open_the_window(argv: list[str], window: bool) -> None:
    assert wants_window(argv) is window


def test_window_options() -> None:
    assert _gui_options(["gui", "--db", "a.sqlite3", "--user=clerk"]) == ("a.sqlite3", "clerk")
    refusal = _gui_options(["gui", "--port", "5"])
    assert isinstance(refusal, str) and "does not take '--port'" in refusal


def _program(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "import sys; from billing_desk.launcher import main; main()", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_no_display_is_one_sentence_and_exit_4(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.pop("QT_QPA_PLATFORM", None)
    done = _program(["gui", "--db", str(tmp_path / "x.sqlite3")], env)
    assert done.returncode == EXIT_NO_DISPLAY, done.stderr
    assert done.stderr.strip() == NO_DISPLAY
    assert "billing-desk invoice list" in NO_DISPLAY
    assert display_missing({"PATH": "/bin"}) is sys.platform.startswith("linux")
    assert not display_missing({"DISPLAY": ":0"})


def test_commands_never_load_qt(database: Database) -> None:
    probe = (
        "import sys\n"
        "from billing_desk.launcher import run\n"
        "code = run(sys.argv[1:])\n"
        "assert 'PySide6' not in sys.modules and 'billing_desk.ui' not in sys.modules, "
        "sorted(m for m in sys.modules if 'PySide6' in m or 'billing_desk.ui' in m)\n"
        "sys.exit(code)\n"
    )
    for args in (["facility", "list"], ["user", "list"], ["health"], ["--help"]):
        done = subprocess.run(
            [sys.executable, "-c", probe, "--db", database.url, *args]
            if args != ["--help"]
            else [sys.executable, "-c", probe, *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert "AssertionError" not in done.stderr, done.stderr
        assert done.returncode in (0, 1, 3), done.stderr


def test_a_second_start_brings_the_first_window_forward(tmp_path: Path, qapp: object) -> None:
    database = tmp_path / "one.sqlite3"
    first = InstanceLock(database)
    assert first.acquire()
    called: list[bool] = []
    first.listen(lambda: called.append(True))
    second = InstanceLock(database)
    assert not second.acquire()
    assert f"process {os.getpid()}" in second.holder()
    assert second.ask_holder_to_come_forward()
    from PySide6.QtCore import QCoreApplication, QDeadlineTimer

    deadline = QDeadlineTimer(5000)
    while not called and not deadline.hasExpired():
        QCoreApplication.processEvents()
    assert called == [True]
    first.release()
    assert second.acquire(), "released, the database can be opened again"
    second.release()
