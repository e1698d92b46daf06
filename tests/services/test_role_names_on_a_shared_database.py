"""Nobody acts under a group role's name on a shared database: users named like the roles
billing-desk creates (a demo's `clerk`, `manager`...) are disabled when the database is set up
for logins, saying so, and no such user can be added afterwards."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from billing_desk.domain.errors import BadInput
from billing_desk.services import admin
from billing_desk.services.audit import audit_log
from billing_desk.services.users import add_user, list_users
from tests.conftest import Database
from tests.support import seed_users


def test_users_named_like_group_roles_are_disabled_by_init_and_never_added_again(
    fresh_database: Callable[[str], Database],
) -> None:
    database = fresh_database("postgresql")
    # Before `admin init` the names are labels, as on an embedded database.
    seed_users(database.workspace("admin"))
    add_user(database.workspace("admin"), "postgres", "admin")

    report = admin.init_shared(database.url)

    assert report.disabled_users == ("admin", "auditor", "clerk", "manager")
    owner = database.workspace("postgres")
    assert {u.name: u.active for u in list_users(owner)} == {
        "admin": False,
        "auditor": False,
        "clerk": False,
        "manager": False,
        "postgres": True,
    }
    init = [e for e in audit_log(owner, action="admin.init") if e.entity_type == "database"]
    assert '"disabled_users":["admin","auditor","clerk","manager"]' in str(init[-1].after)
    with pytest.raises(BadInput, match="'clerk' is the name of a role billing-desk uses itself"):
        add_user(owner, "clerk", "clerk")
    # Running init again finds nobody left to disable.
    assert admin.init_shared(database.url).disabled_users == ()
