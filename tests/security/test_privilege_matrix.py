"""The privilege matrix of a shared database, read from the catalog and kept as a golden file:
for each group role, each table (and column, where a grant names columns), what it may SELECT,
INSERT, UPDATE, DELETE, TRUNCATE or REFERENCE. Any difference fails, so a new grant is a
reviewed change. Refresh after a deliberate change with
`BILLING_DESK_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/security/test_privilege_matrix.py`.
"""

from __future__ import annotations

import os
from pathlib import Path

import psycopg

from billing_desk.db.shared import GROUP_ROLES
from tests.security.conftest import SharedDatabase

GOLDEN = Path(__file__).with_name("privilege_matrix.txt")

_MATRIX = """
    SELECT g.rolname, c.relname, NULL::text, a.privilege_type
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
         aclexplode(c.relacl) a JOIN pg_roles g ON g.oid = a.grantee
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v') AND g.rolname = ANY (%(groups)s)
    UNION ALL
    SELECT g.rolname, c.relname, att.attname, a.privilege_type
    FROM pg_attribute att JOIN pg_class c ON c.oid = att.attrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace,
         aclexplode(att.attacl) a JOIN pg_roles g ON g.oid = a.grantee
    WHERE n.nspname = 'public' AND att.attnum > 0 AND NOT att.attisdropped
      AND g.rolname = ANY (%(groups)s)
    UNION ALL
    SELECT g.rolname, p.oid::regprocedure::text, NULL, a.privilege_type
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace,
         aclexplode(p.proacl) a JOIN pg_roles g ON g.oid = a.grantee
    WHERE n.nspname = 'public' AND g.rolname = ANY (%(groups)s)
    ORDER BY 1, 2, 3 NULLS FIRST, 4
"""


def _matrix(shared: SharedDatabase) -> str:
    with psycopg.connect(shared.admin_url) as conn:
        rows = conn.execute(_MATRIX, {"groups": list(GROUP_ROLES)}).fetchall()
    lines = []
    for group, table, column, privilege in rows:
        what = f"{table}({column})" if column else str(table)
        lines.append(f"{group:8} {privilege:10} {what}")
    return "\n".join(lines) + "\n"


def test_the_privilege_matrix_is_the_reviewed_one(shared: SharedDatabase) -> None:
    actual = _matrix(shared)
    if os.environ.get("BILLING_DESK_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(actual, encoding="utf-8")
    expected = GOLDEN.read_text(encoding="utf-8")
    assert actual == expected, (
        "the grants differ from tests/security/privilege_matrix.txt; review the difference and "
        "refresh the file with BILLING_DESK_UPDATE_GOLDEN=1 if it is deliberate"
    )
