"""Who may do what: the four roles and the permissions each holds, as data."""

from __future__ import annotations

from enum import StrEnum

from billing_desk.domain.errors import BadInput


class Role(StrEnum):
    CLERK = "clerk"
    MANAGER = "manager"
    AUDITOR = "auditor"
    ADMIN = "admin"


class Permission(StrEnum):
    READ = "read billing data"
    MANAGE_FACILITIES = "add or change facilities"
    IMPORT_TRIPS = "import trips"
    RUN_INVOICES = "run invoices"
    VOID_INVOICES = "void invoices"
    MANAGE_USERS = "add or change users"
    LOAD_DEMO_DATA = "load demo data"
    RECORD_PAYMENTS = "record payments"
    APPROVE_PAYMENTS = "void, refund or approve payments"
    MAINTAIN = "run maintenance"
    IMPORT_STATEMENTS = "import bank statements"
    RECONCILE = "match bank lines and run reconciliations"
    RESOLVE_DISCREPANCIES = "resolve discrepancies and close reconciliation runs"
    MANAGE_PROVIDER = "change the provider's details and remittance settings"


_CLERK = frozenset(
    {
        Permission.READ,
        Permission.IMPORT_TRIPS,
        Permission.RUN_INVOICES,
        Permission.RECORD_PAYMENTS,
        Permission.IMPORT_STATEMENTS,
        Permission.RECONCILE,
    }
)

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.CLERK: _CLERK,
    Role.MANAGER: _CLERK
    | {
        Permission.VOID_INVOICES,
        Permission.MANAGE_FACILITIES,
        Permission.APPROVE_PAYMENTS,
        Permission.RESOLVE_DISCREPANCIES,
        Permission.MANAGE_PROVIDER,
    },
    Role.AUDITOR: frozenset({Permission.READ}),
    # The administrator sets up the system; billing itself stays with clerks and managers.
    Role.ADMIN: frozenset(
        {
            Permission.READ,
            Permission.MANAGE_USERS,
            Permission.MANAGE_FACILITIES,
            Permission.LOAD_DEMO_DATA,
            Permission.MAINTAIN,
            Permission.MANAGE_PROVIDER,
        }
    ),
}


def role_allows(role: Role, permission: Permission) -> bool:
    return permission in ROLE_PERMISSIONS[role]


def parse_role(text: str) -> Role:
    try:
        return Role(text.strip().lower())
    except ValueError:
        names = ", ".join(r.value for r in Role)
        raise BadInput(f"'{text}' is not a role; choose one of {names}.") from None


def roles_table() -> str:
    """The README's roles table, in Markdown: each role and what it may do, in the order the
    permissions are declared (tests/domain/test_roles_readme.py holds the README to it)."""
    lines = ["| role | may |", "|---|---|"]
    for role in Role:
        allowed = ", ".join(p.value for p in Permission if p in ROLE_PERMISSIONS[role])
        lines.append(f"| {role.value} | {allowed} |")
    return "\n".join(lines)
