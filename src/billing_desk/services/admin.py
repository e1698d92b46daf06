"""Setting up and running a shared PostgreSQL database: the administrator's operations.

Each runs through a superuser connection (`--admin-url`), in one audited transaction: the
migrations, then the roles, grants, row-level security and triggers of db.shared; login roles
for people, with the facilities they work for. PostgreSQL's DDL is transactional, so a role is
created exactly when its user row, its facility access and their audit entries are.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from billing_desk.db import shared
from billing_desk.db.engine import resolve_location
from billing_desk.db.live_updates import install_live_updates
from billing_desk.db.models import Facility, FacilityAccess, User
from billing_desk.domain.errors import BadInput, EnvironmentFault, Refused
from billing_desk.domain.integrity import SEAL_FUNCTION
from billing_desk.domain.roles import parse_role
from billing_desk.services.credentials import connection_failure
from billing_desk.services.unit_of_work import UnitOfWork, Workspace

# PostgreSQL role names we create: plain, so they never need quoting in pg_hba.conf or psql.
_LOGIN_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
RESERVED_NAMES = frozenset({shared.OWNER_ROLE, *shared.GROUP_ROLES, "postgres", "public"})
# The names of the roles billing-desk creates itself: never a person's on a shared database.
ROLE_NAMES = frozenset({shared.OWNER_ROLE, *shared.GROUP_ROLES, "public"})
MIN_PASSWORD_LENGTH = 12
SCRAM_ITERATIONS = 4096


@dataclass(frozen=True)
class InitReport:
    database: str
    migrated: bool
    created_roles: tuple[str, ...]
    tables: int
    policies: int
    # Users named like a group role (a demo's `clerk`, `manager`...): no login can carry those
    # names on a shared database, so they are disabled rather than left for someone to act as.
    disabled_users: tuple[str, ...] = ()


@dataclass(frozen=True)
class SharedUser:
    name: str
    role: str
    active: bool
    can_log_in: bool
    facilities: tuple[str, ...]  # codes; ("*",) for every facility


def open_admin(admin_url: str) -> Workspace:
    """A workspace on the administrator's superuser connection, acting as that role."""
    location = resolve_location(admin_url)
    if not location.is_postgresql:
        raise BadInput(
            "--admin-url must be a postgresql:// URL; a shared database needs PostgreSQL."
        )
    workspace = Workspace(location, location.url.username or "postgres")
    # Asked before anything else, on a schema that may not exist yet.
    try:
        with workspace.engine.connect() as connection:
            superuser = connection.execute(
                text("SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user")
            ).scalar()
    except DBAPIError as err:
        workspace.close()
        raise connection_failure(location, err) from err
    if not superuser:
        name = workspace.user_name
        workspace.close()
        raise Refused(
            f"The role {name} is not a superuser; connect --admin-url as a superuser "
            "(for example postgres) to set up or change a shared database."
        )
    return workspace


# The administrator's setting (seconds) for how far a login's stated time of a write may be off
# the database's clock (db/shared.py, DEFAULT_MAX_CLOCK_SKEW when unset).
MAX_CLOCK_SKEW_ENV = "BILLING_DESK_MAX_CLOCK_SKEW"


def max_clock_skew_from_environment() -> int:
    raw = os.environ.get(MAX_CLOCK_SKEW_ENV, "").strip()
    if not raw:
        return shared.DEFAULT_MAX_CLOCK_SKEW
    if not raw.isdigit():
        raise BadInput(f"{MAX_CLOCK_SKEW_ENV}={raw!r} is not a whole number of seconds.")
    return int(raw)


def init_shared(admin_url: str, *, max_clock_skew: int | None = None) -> InitReport:
    """Migrate the database to head and set it up for sharing; safe to run again.
    `max_clock_skew` (seconds; by default from BILLING_DESK_MAX_CLOCK_SKEW, else 300): how far
    a login's stated time of a payment may be off the database's clock."""
    skew = max_clock_skew_from_environment() if max_clock_skew is None else max_clock_skew
    workspace = open_admin(admin_url)
    try:
        migrated = workspace.upgrade()

        def operation(unit: UnitOfWork) -> InitReport:
            connection = unit.session.connection()
            database = connection.execute(text("SELECT current_database()")).scalar_one()
            # Installed first, so that the setup hands its function to the owner role too.
            install_live_updates(connection)
            setup = shared.apply(connection, seal_function=SEAL_FUNCTION, max_clock_skew=skew)
            named_like_roles = list(
                unit.session.scalars(
                    select(User).where(User.name.in_(sorted(ROLE_NAMES)), User.active)
                )
            )
            for user in named_like_roles:
                user.active = False
            disabled = tuple(sorted(user.name for user in named_like_roles))
            unit.record_event(
                "admin.init",
                "database",
                database,
                detail={
                    "migrated": migrated,
                    "created_roles": list(setup.created_roles),
                    "tables": setup.tables,
                    "policies": setup.policies,
                    "max_clock_skew_seconds": skew,
                    "disabled_users": list(disabled),
                },
            )
            return InitReport(
                database,
                migrated,
                setup.created_roles,
                setup.tables,
                setup.policies,
                disabled,
            )

        return workspace.write(operation, action="admin.init")
    finally:
        workspace.close()


def add_user(
    admin_url: str,
    name: str,
    role: str,
    password: str,
    *,
    facilities: list[str] | None = None,
    all_facilities: bool = False,
) -> SharedUser:
    """Create a login role in its group, its user row, and the facilities it works for."""
    wanted = parse_role(role)
    clean = name.strip()
    if not _LOGIN_NAME.fullmatch(clean) or clean in RESERVED_NAMES:
        raise BadInput(
            f"'{name}' cannot be a login name; use lower-case letters, digits and '_', "
            "starting with a letter, and none of the role names billing-desk uses itself."
        )
    if all_facilities == bool(facilities):
        raise BadInput("Give either --facilities CODE,CODE or --all-facilities, not both.")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise BadInput(f"The password is too short; use at least {MIN_PASSWORD_LENGTH} characters.")
    codes = sorted({code.strip().upper() for code in facilities or [] if code.strip()})
    verifier = scram_verifier(password)

    def operation(unit: UnitOfWork) -> SharedUser:
        session = unit.session
        _require_shared(unit)
        if session.execute(
            text("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = :n"), {"n": clean}
        ).first():
            raise Refused(
                f"A database role named {clean} already exists; pick another name, or "
                f"`admin user disable {clean}` and add the person under a new one."
            )
        found = {
            str(code): int(fid)
            for code, fid in session.execute(
                select(Facility.code, Facility.id).where(Facility.code.in_(codes))
            )
        }
        missing = [code for code in codes if code not in found]
        if missing:
            raise BadInput(
                f"No facility has the code {', '.join(missing)}; `billing-desk facility list` "
                "shows the codes."
            )
        existing = session.scalars(select(User).where(User.name == clean)).one_or_none()
        if existing is None:
            session.add(
                User(
                    name=clean,
                    role=wanted.value,
                    active=True,
                    created_at=unit.now,
                    created_by=unit.actor.name,
                )
            )
        else:
            existing.role, existing.active = wanted.value, True
        session.flush()
        ids: list[int | None] = [None] if all_facilities else [found[c] for c in codes]
        for facility_id in ids:
            session.add(
                FacilityAccess(
                    user_name=clean,
                    facility_id=facility_id,
                    granted_at=unit.now,
                    granted_by=unit.actor.name,
                )
            )
        # The verifier travels pre-hashed, so the password itself never reaches the server
        # (nor its statement log).
        session.connection().exec_driver_sql(
            f"CREATE ROLE {clean} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS "
            f"INHERIT IN ROLE \"{wanted.value}\" PASSWORD '{verifier}'"
        )
        return SharedUser(
            clean, wanted.value, True, True, ("*",) if all_facilities else tuple(codes)
        )

    return _admin_write(admin_url, operation, "admin.user_add")


def disable_user(admin_url: str, name: str) -> SharedUser:
    """Stop a person logging in and acting, ending their open sessions; nothing is deleted."""

    def operation(unit: UnitOfWork) -> SharedUser:
        session = unit.session
        _require_shared(unit)
        user = session.scalars(select(User).where(User.name == name)).one_or_none()
        role_exists = session.execute(
            text("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = :n"), {"n": name}
        ).first()
        if user is None or role_exists is None or name in RESERVED_NAMES:
            raise Refused(
                f"{name} is not a user of this shared database; `admin user list` shows them."
            )
        user.active = False
        session.connection().exec_driver_sql(f"ALTER ROLE {name} NOLOGIN")
        session.execute(
            text(
                "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity "
                "WHERE usename = :n AND pid <> pg_catalog.pg_backend_pid()"
            ),
            {"n": name},
        )
        session.flush()
        return _describe(unit, name)

    return _admin_write(admin_url, operation, "admin.user_disable")


def list_users(admin_url: str) -> list[SharedUser]:
    workspace = open_admin(admin_url)
    try:

        def operation(unit: UnitOfWork) -> list[SharedUser]:
            names = unit.session.scalars(select(User.name).order_by(User.name)).all()
            return [_describe(unit, n) for n in names]

        return workspace.read(operation)
    finally:
        workspace.close()


def _describe(unit: UnitOfWork, name: str) -> SharedUser:
    session = unit.session
    user = session.scalars(select(User).where(User.name == name)).one()
    can_log_in = bool(
        session.execute(
            text(
                "SELECT rolcanlogin AND (rolvaliduntil IS NULL OR rolvaliduntil > now()) "
                "FROM pg_catalog.pg_roles WHERE rolname = :n"
            ),
            {"n": name},
        ).scalar()
    )
    rows = session.execute(
        select(FacilityAccess.facility_id, Facility.code)
        .outerjoin(Facility, Facility.id == FacilityAccess.facility_id)
        .where(FacilityAccess.user_name == name)
    ).all()
    codes = tuple(sorted("*" if fid is None else str(code) for fid, code in rows))
    return SharedUser(name, user.role, user.active, can_log_in, codes)


def _require_shared(unit: UnitOfWork) -> None:
    exists = unit.session.execute(
        text("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = :n"), {"n": shared.OWNER_ROLE}
    ).first()
    owner = unit.session.execute(
        text("SELECT tableowner FROM pg_catalog.pg_tables WHERE tablename = 'payment'")
    ).scalar()
    if exists is None or owner != shared.OWNER_ROLE:
        raise Refused(
            "This database is not set up for sharing yet; run `billing-desk admin init "
            "--admin-url URL` first."
        )


def _admin_write(
    admin_url: str, operation: Callable[[UnitOfWork], SharedUser], action: str
) -> SharedUser:
    workspace = open_admin(admin_url)
    try:
        return workspace.write(operation, action=action)
    except DBAPIError as err:
        raise EnvironmentFault(f"The database refused the change ({_first_line(err)}).") from err
    finally:
        workspace.close()


def _first_line(err: DBAPIError) -> str:
    lines = str(err.orig if err.orig is not None else err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def scram_verifier(
    password: str, *, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS
) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802, RFC 7677), as
    psql's \\password computes it, so that only the verifier is sent."""
    salt = salt if salt is not None else os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode("ascii")

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"
