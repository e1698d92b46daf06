"""Alembic, driven from code: the application migrates its database to head on start. A
database already at head is recognised without loading Alembic (a start of the window pays
for it only when there is something to migrate)."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_REVISION = re.compile(r'^revision\s*=\s*"([^"]+)"', re.MULTILINE)
_DOWN = re.compile(r'^down_revision\s*=\s*"([^"]+)"', re.MULTILINE)


@cache
def head_revision_of_files() -> str | None:
    """The one revision no other migration file revises, read from the files themselves;
    None when that is not a single revision (Alembic then decides)."""
    revisions, revised = set(), set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        source = path.read_text(encoding="utf-8")
        if found := _REVISION.search(source):
            revisions.add(found.group(1))
        if down := _DOWN.search(source):
            revised.add(down.group(1))
    heads = revisions - revised
    return next(iter(heads)) if len(heads) == 1 else None


def alembic_config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError("the migrations directory has no head revision")
    return head


def known_revisions() -> frozenset[str]:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    return frozenset(revision.revision for revision in script.walk_revisions())


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        rows = connection.execute(text("SELECT version_num FROM alembic_version")).scalars()
        found = list(rows)
    return found[0] if len(found) == 1 else None


def upgrade_to_head(engine: Engine) -> bool:
    """Bring the schema to head; returns True when anything was applied."""
    current = current_revision(engine)
    if current is not None and current == (head_revision_of_files() or head_revision()):
        return False
    from alembic import command

    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    return True
