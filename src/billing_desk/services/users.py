"""Local users and their roles (embedded mode); the acting user of every operation."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import func, select

from billing_desk.db.models import User
from billing_desk.domain.errors import BadInput, Refused
from billing_desk.domain.roles import Permission, Role, parse_role
from billing_desk.services.unit_of_work import UnitOfWork, Workspace

_USER_NAME = re.compile(r"[a-z_][a-z0-9_.-]{0,62}")


@dataclass(frozen=True)
class UserInfo:
    name: str
    role: str
    active: bool


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
