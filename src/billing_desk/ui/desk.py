"""What every view works with: the open database (reached only through background operations),
the person working in it and their role, the formats, and the error presenter. The application
makes one when a database opens and hands it to each view; nothing reaches for it globally."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any, TypeVar

from PySide6.QtCore import QCoreApplication, QObject, QSettings, QThread, Signal
from PySide6.QtWidgets import QWidget

from billing_desk.domain.roles import Permission, Role, role_allows
from billing_desk.services.unit_of_work import Workspace
from billing_desk.ui.errors import ErrorPresenter
from billing_desk.ui.formatting import Formats
from billing_desk.ui.operations import Changes, Operation, Operations

T = TypeVar("T")


@dataclass(frozen=True)
class Person:
    """Who is working: their name in the database and their role (None: not registered)."""

    name: str
    role: Role | None

    @property
    def describe(self) -> str:
        return f"{self.name} ({self.role.value})" if self.role else f"{self.name} (not a user)"


class GuiThreadUnit(RuntimeError):
    """A unit of work was about to open on the GUI thread: a bug, refused before it happens."""


def refuse_gui_thread() -> None:
    """A workspace check (`Workspace.unit_checks`): no transaction on the GUI thread, ever."""
    app = QCoreApplication.instance()
    if app is not None and QThread.currentThread() is app.thread():
        raise GuiThreadUnit(
            "a unit of work was opened on the GUI thread; run it as a background operation"
        )


class Desk(QObject):
    """One open database and the person working in it, for the views."""

    changed = Signal(object)  # Changes, coalesced
    # A person's full verification finished (services.verification.VerificationReport): the
    # status bar's badge shows its verdict.
    verified = Signal(object)

    def __init__(
        self,
        workspace: Workspace,
        person: Person,
        *,
        formats: Formats,
        presenter: ErrorPresenter,
        settings: QSettings,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.workspace = workspace
        self.person = person
        self.formats = formats
        self.presenter = presenter
        self.settings = settings
        if refuse_gui_thread not in workspace.unit_checks:
            workspace.unit_checks.append(refuse_gui_thread)
        self.ops = Operations(workspace, presenter.present, self)
        self.ops.changed.connect(self.changed)
        self._closed = threading.Event()

    # -- who may do what ------------------------------------------------------------------

    @property
    def read_only(self) -> bool:
        return self.workspace.read_only

    @property
    def is_shared(self) -> bool:
        return self.workspace.location.is_postgresql

    def may(self, permission: Permission) -> bool:
        """Whether the person's role allows `permission` here (nothing is written to an
        archive, whatever the role)."""
        if self.person.role is None:
            return False
        if self.read_only and permission is not Permission.READ:
            return False
        return role_allows(self.person.role, permission)

    # -- running work -----------------------------------------------------------------------

    def run(self, op: Operation[T]) -> Operation[T]:
        return self.ops.run(op)

    def query(
        self,
        parent: QWidget | None,
        work: Callable[[Workspace], T],
        success: Callable[[T], None],
        *,
        key: str | None = None,
        failure: Callable[[BaseException], None] | None = None,
    ) -> Operation[T]:
        """Read in the background; a newer query of the same `key` supersedes this one."""
        return self.ops.run(Operation(parent, work, success=success, failure=failure, key=key))

    def change(
        self,
        parent: QWidget | None,
        work: Callable[..., T],
        success: Callable[[T], None] | None,
        what: Changes,
        *,
        failure: Callable[[BaseException], None] | None = None,
        progress_label: str | None = None,
    ) -> Operation[T]:
        """Write in the background; the views hear of `what` once it has committed."""
        return self.ops.run(
            Operation(
                parent,
                work,
                success=success,
                failure=failure,
                changes=what,
                progress_label=progress_label,
            )
        )

    def close(self, wait_msecs: int = 30_000) -> None:
        """Let running work finish, then close the database."""
        if self._closed.is_set():
            return
        self._closed.set()
        self.ops.wait(wait_msecs)
        self.workspace.close()

    def today(self) -> date:
        """The person's today: the workspace clock's moment in the machine's time zone."""
        return self.workspace.clock().astimezone(self.workspace.zone).date()

    def describe_database(self) -> str:
        return self.workspace.location.describe()

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"Desk({self.describe_database()!r}, {self.person.describe!r})"


def noop(*_: Any) -> None:
    """A success handler for work whose result the view does not need."""
