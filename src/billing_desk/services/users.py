"""Local users and their roles (embedded mode); the acting user of every operation."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import func, select, text

from billing_desk.db.models import User
from billing_desk.domain.errors import BadInput, Refused
from billing_desk.domain.roles import Permission, Role, parse_role
from billing_desk.services.admin import ROLE_NAMES
from billing_desk.services.unit_of_work import UnitOfWork, Workspace

_USER_NAME = re.compile(r"[a-z_][a-z0-9_.-]{0,62}")


@dataclass(frozen=True)
class UserInfo:
    name: str
    role: str
    active: bool


def _set_up_for_logins(unit: UnitOfWork) -> bool:
    """Whether this is a shared database (`admin init` ran), where every user is a login."""
    session = unit.session
    if session.get_bind().dialect.name != "postgresql":
        return False
    probe = "SELECT to_regprocedure('public.billing_desk_reads_all()') IS NOT NULL"
    return bool(session.scalar(text(probe)))


def add_user(workspace: Workspace, name: str, role: str) -> UserInfo:
    """Register a user. On a database with no users yet, anyone may add the first one;
    afterwards only an administrator may."""
    wanted_role = parse_role(role)
    clean = name.strip()
    if not _USER_NAME.fullmatch(clean):
        raise BadInput(
            f"'{name}' is not a valid user name; use lower-case letters, digits, '.', '_' or '-'."
        )

    def operation(unit: UnitOfWork) -> UserInfo:
        session = unit.session
        if session.scalar(select(func.count()).select_from(User)):
            unit.require(Permission.MANAGE_USERS)
        if clean in ROLE_NAMES and _set_up_for_logins(unit):
            raise BadInput(
                f"'{clean}' is the name of a role billing-desk uses itself; on a shared "
                "database people log in under names of their own (`billing-desk admin user add`)."
            )
        if session.scalar(select(User.id).where(User.name == clean)) is not None:
            raise Refused(f"A user named '{clean}' already exists; pick another name.")
        session.add(
            User(
                name=clean,
                role=wanted_role.value,
                active=True,
                created_at=unit.now,
                created_by=unit.actor.name,
            )
        )
        return UserInfo(clean, wanted_role.value, True)

    return workspace.write(operation, action="user.add")


def change_user(
    workspace: Workspace, name: str, *, role: str | None = None, active: bool | None = None
) -> UserInfo:
    """An administrator changes a user's role or turns them off (never deleted: their name is
    in the audit trail). Nobody changes their own role or turns themselves off, and the last
    active administrator stays one."""
    wanted_role = parse_role(role) if role is not None else None

    def operation(unit: UnitOfWork) -> UserInfo:
        unit.require(Permission.MANAGE_USERS)
        session = unit.session
        user = session.scalar(select(User).where(User.name == name.strip()))
        if user is None:
            raise BadInput(f"There is no user '{name}'; `billing-desk user list` shows them.")
        if user.name == unit.actor.name:
            raise Refused(
                "You cannot change your own role or turn yourself off; ask another administrator."
            )
        new_role = wanted_role.value if wanted_role is not None else user.role
        new_active = user.active if active is None else active
        if (
            user.role == Role.ADMIN.value
            and user.active
            and (new_role != Role.ADMIN.value or not new_active)
        ):
            admins = session.scalar(
                select(func.count())
                .select_from(User)
                .where(User.role == Role.ADMIN.value, User.active.is_(True))
            )
            if (admins or 0) <= 1:
                raise Refused(
                    f"{user.name} is the last active administrator; make someone else an "
                    "administrator first."
                )
        user.role = new_role
        user.active = new_active
        session.flush()
        return UserInfo(user.name, user.role, user.active)

    return workspace.write(operation, action="user.change")


def who_may_work(workspace: Workspace) -> list[UserInfo]:
    """The active people of an embedded database, for the desktop's "Working as" chooser.
    Asks for no permission: on one person's machine the names are the choice itself (the
    command line's --user is the same choice)."""
    if workspace.location.is_postgresql:
        raise BadInput("On a shared database you work as the login you connect with.")

    def operation(unit: UnitOfWork) -> list[UserInfo]:
        rows = unit.session.execute(
            select(User.name, User.role, User.active)
            .where(User.active.is_(True))
            .order_by(User.name)
        )
        return [UserInfo(r.name, r.role, r.active) for r in rows]

    return workspace.read(operation)


def list_users(workspace: Workspace) -> list[UserInfo]:
    def operation(unit: UnitOfWork) -> list[UserInfo]:
        unit.require(Permission.READ)
        rows = unit.session.execute(select(User.name, User.role, User.active).order_by(User.name))
        return [UserInfo(r.name, r.role, r.active) for r in rows]

    return workspace.read(operation)


def ensure_user(unit: UnitOfWork, name: str, role: Role) -> None:
    """Add `name` with `role` when absent (demo data)."""
    if unit.session.scalar(select(User.id).where(User.name == name)) is None:
        unit.session.add(
            User(
                name=name,
                role=role.value,
                active=True,
                created_at=unit.now,
                created_by=unit.actor.name,
            )
        )
