"""The `billing-desk` program: with no command (or `gui`) it opens the desktop application;
every other command goes to the command line, which never loads Qt."""

from __future__ import annotations

import sys
from collections.abc import Sequence

# The root options the desktop application understands too, and whether each takes a value.
ROOT_OPTIONS = {"--db": True, "--user": True, "--report-db": True}
GUI_USAGE = "usage: billing-desk [gui] [--db URL_OR_PATH] [--user NAME]"


def wants_window(argv: Sequence[str]) -> bool:
    """True for no command at all (root options alone included) and for `gui`."""
    rest = _without_root_options(argv)
    return rest is not None and (not rest or rest[0] == "gui")


def _without_root_options(argv: Sequence[str]) -> list[str] | None:
    """The arguments after the root options; None when something else comes first (a flag
    such as --help, which is the command line's)."""
    items = list(argv)
    while items and items[0].startswith("--"):
        name, _, value = items[0].partition("=")
        takes_value = ROOT_OPTIONS.get(name)
        if takes_value is None:
            return None
        items = items[1:] if value or not takes_value else items[2:]
    return items


def _gui_options(argv: Sequence[str]) -> tuple[str | None, str | None] | str:
    """--db and --user from anywhere in a window's command line, or a usage sentence."""
    found: dict[str, str] = {}
    items = [a for a in argv if a != "gui"]
    while items:
        name, eq, value = items[0].partition("=")
        if name not in ROOT_OPTIONS:
            return f"billing-desk gui does not take {items[0]!r}; {GUI_USAGE}"
        if not eq:
            if len(items) < 2:
                return f"{name} needs a value; {GUI_USAGE}"
            value = items[1]
            items = items[2:]
        else:
            items = items[1:]
        found[name] = value
    return found.get("--db"), found.get("--user")


def run(argv: Sequence[str]) -> int:
    if list(argv) == ["--version"]:
        from billing_desk import __version__

        print(f"billing-desk {__version__}")
        return 0
    if list(argv) == ["--self-test"]:
        from billing_desk.selftest import main as self_test

        return self_test()
    if not wants_window(argv):
        from billing_desk.cli.app import run as run_cli

        return run_cli(list(argv))
    options = _gui_options(argv)
    if isinstance(options, str):
        print(options, file=sys.stderr)
        return 2
    import os

    db = options[0] or os.environ.get("BILLING_DESK_DB") or None
    user = options[1] or os.environ.get("BILLING_DESK_USER") or None
    from billing_desk.ui.app import run as run_window

    return run_window(db, user)


def main() -> None:
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
