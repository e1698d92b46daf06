"""The provider's remittance settings on a shared database: every login reads them, only a
manager or an administrator changes them, through the application or with psql alike; a change
is audited."""

from __future__ import annotations

import psycopg
import pytest

from billing_desk.domain.errors import PermissionDenied
from billing_desk.services.audit import audit_log
from billing_desk.services.provider import ProviderChange, change_provider, provider_details
from tests.security.conftest import SharedDatabase

SETTINGS = ProviderChange(
    name="Prairie Wheels Transport",
    address="1200 Depot Lane; Springfield, IL 62701",
    bank_name="First Prairie Bank",
    account_number="4410023391",
    routing_number="021000021",
)


def test_only_managers_and_administrators_change_the_remittance_settings(
    shared: SharedDatabase,
) -> None:
    change_provider(shared.workspace("administrator"), ProviderChange(name="Prairie Wheels"))
    changed = change_provider(shared.workspace("manager_b"), SETTINGS)
    for person in ("clerk_a", "manager_a", "auditor"):
        assert provider_details(shared.workspace(person)) == changed
    with pytest.raises(PermissionDenied):
        change_provider(shared.workspace("clerk_a"), ProviderChange(account_number="99999999"))

    # With their own credentials and psql, a clerk or an auditor cannot redirect the payments.
    for person in ("clerk_a", "auditor"):
        with shared.connect(person) as conn:
            assert conn.execute("SELECT bank_name FROM provider_setting").fetchone() == (
                "First Prairie Bank",
            )
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("UPDATE provider_setting SET account_number = '99999999'")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("DELETE FROM provider_setting")
    assert provider_details(shared.workspace("clerk_a")).account_number == "4410023391"

    entries = audit_log(shared.workspace("auditor"), action="provider.change")
    assert [e.user for e in entries] == [
        shared.login("administrator"),
        shared.login("manager_b"),
    ]
