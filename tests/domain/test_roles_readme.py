"""The README's roles table says what domain/roles.py grants, word for word, so it cannot
drift."""

from __future__ import annotations

from pathlib import Path

from billing_desk.domain.roles import ROLE_PERMISSIONS, Permission, Role, roles_table

README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_table() -> str:
    lines = README.read_text(encoding="utf-8").splitlines()
    start = lines.index("| role | may |")
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return "\n".join(lines[start:end])


def test_readme_roles_table_is_the_one_roles_py_generates() -> None:
    assert _readme_table() == roles_table(), (
        "README.md's roles table is out of date; paste billing_desk.domain.roles.roles_table()"
    )


def test_the_table_names_every_grant_and_nothing_else() -> None:
    rows = {
        line.split("|")[1].strip(): line.split("|")[2].strip()
        for line in roles_table().splitlines()[2:]
    }
    assert set(rows) == {r.value for r in Role}
    for role, may in rows.items():
        granted = {p for p in Permission if p.value in may}
        assert granted == ROLE_PERMISSIONS[Role(role)]
    # What the issue found missing: clerks record payments and reconcile; managers void
    # payments and resolve discrepancies.
    assert "record payments" in rows["clerk"] and "match bank lines" in rows["clerk"]
    assert "void, refund or approve payments" in rows["manager"]
    assert "resolve discrepancies" in rows["manager"]
