"""One error presenter for the whole application. A refusal (bad input, a business rule, a
permission) is shown as its own sentence, next to the field at fault when there is one, and what
the person typed stays; an environment problem (the database unreachable or locked) offers
Retry; a bug is logged with its traceback and shown as a short apology naming the log file, and
the application keeps running."""

from __future__ import annotations

import logging
import logging.handlers
import sys
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QApplication,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QStyle,
    QToolButton,
    QWidget,
)

from billing_desk.domain.errors import BillingError, EnvironmentFault
from billing_desk.ui.operations import Cancelled

log = logging.getLogger("billing_desk.ui")

INFO, WARNING, ERROR = "info", "warning", "error"


class MessageBar(QFrame):
    """A line above a view's content: what just happened, with at most two actions (Retry,
    Open). It stays until the next message or until closed."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("messageBar")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setAutoFillBackground(True)
        self.setBackgroundRole(self.palette().ColorRole.AlternateBase)
        self._icon = QLabel(self)
        self.text = QLabel(self)
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.text.setAccessibleName("Message")
        self._buttons: list[QPushButton] = []
        close = QToolButton(self)
        close.setText("×")
        close.setAutoRaise(True)
        close.setAccessibleName("Close the message")
        close.setToolTip("Close the message (Esc)")
        close.clicked.connect(self.hide)
        self._layout = QHBoxLayout(self)
        self._layout.setContentsMargins(8, 4, 4, 4)
        self._layout.addWidget(self._icon)
        self._layout.addWidget(self.text, 1)
        self._layout.addWidget(close)
        self.level = INFO
        self.hide()

    def show_message(
        self,
        text: str,
        level: str = INFO,
        actions: Mapping[str, Callable[[], None]] | None = None,
    ) -> None:
        self.level = level
        icon = {
            INFO: QStyle.StandardPixmap.SP_MessageBoxInformation,
            WARNING: QStyle.StandardPixmap.SP_MessageBoxWarning,
            ERROR: QStyle.StandardPixmap.SP_MessageBoxCritical,
        }[level]
        size = self.style().pixelMetric(QStyle.PixelMetric.PM_SmallIconSize)
        self._icon.setPixmap(self.style().standardIcon(icon).pixmap(size, size))
        self.text.setText(text)
        for button in self._buttons:
            self._layout.removeWidget(button)
            button.deleteLater()
        self._buttons = []
        for index, (label, action) in enumerate((actions or {}).items()):
            button = QPushButton(label, self)
            # Enter in a form stays the form's own action, never this one.
            button.setAutoDefault(False)
            button.setAccessibleName(label.replace("&", ""))
            button.clicked.connect(self._run_and_hide(action))
            self._layout.insertWidget(2 + index, button)
            self._buttons.append(button)
        self.show()

    def _run_and_hide(self, action: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            self.hide()
            action()

        return run

    def button(self, label: str) -> QPushButton | None:
        """The action button labelled `label` (tests press it as a person would)."""
        wanted = label.replace("&", "")
        return next((b for b in self._buttons if b.text().replace("&", "") == wanted), None)


def find_message_bar(widget: QWidget | None) -> MessageBar | None:
    """The message bar of the nearest view or dialog holding `widget`."""
    while widget is not None:
        bar = getattr(widget, "message_bar", None)
        if isinstance(bar, MessageBar):
            return bar
        widget = widget.parentWidget()
    return None


class ErrorPresenter:
    """Shows every failure the same way (see the module's docstring)."""

    def __init__(self, log_file: Path) -> None:
        self.log_file = log_file

    def present(
        self,
        parent: QWidget | None,
        error: BaseException,
        retry: Callable[[], None] | None = None,
    ) -> None:
        if isinstance(error, Cancelled):
            self._show(parent, "Cancelled; nothing was written.", INFO, {})
        elif isinstance(error, EnvironmentFault):
            actions = {"&Retry": retry} if retry is not None else {}
            self._show(parent, error.message, WARNING, actions)
        elif isinstance(error, BillingError):
            self._show(parent, error.message, WARNING, {})
        else:
            self.bug(parent, error)

    def bug(self, parent: QWidget | None, error: BaseException) -> None:
        log.error(
            "internal error in the desktop application",
            exc_info=(type(error), error, error.__traceback__),
        )
        self._show(
            parent,
            "Sorry: billing-desk hit an internal error; nothing was half-written and you can "
            f"go on working. The details are in {self.log_file}; please report them.",
            ERROR,
            {},
        )

    def _show(
        self,
        parent: QWidget | None,
        text: str,
        level: str,
        actions: Mapping[str, Callable[[], None] | None],
    ) -> None:
        usable = {label: action for label, action in actions.items() if action is not None}
        bar = find_message_bar(parent)
        if bar is not None:
            bar.show_message(text, level, usable)
            return
        box = QMessageBox(parent)
        box.setWindowTitle("billing-desk")
        box.setText(text)
        box.setIcon(QMessageBox.Icon.Critical if level == ERROR else QMessageBox.Icon.Warning)
        box.setStandardButtons(QMessageBox.StandardButton.Close)
        retry = usable.get("&Retry")
        if retry is not None:
            again = box.addButton("&Retry", QMessageBox.ButtonRole.AcceptRole)
            again.clicked.connect(retry)
        box.setWindowModality(Qt.WindowModality.WindowModal)
        box.open()


def show_at_field(
    error: BaseException,
    fields: Mapping[str, QLabel],
    fallback: Callable[[BaseException], None],
) -> None:
    """A refusal shown under the field it names: `fields` maps a word the message may name
    ("code", "currency", "reason") to that field's error label. What was typed stays put."""
    if isinstance(error, BillingError) and not isinstance(error, EnvironmentFault):
        text = error.message
        lowered = text.lower()
        for word, label in fields.items():
            if word in lowered:
                label.setText(text)
                label.show()
                return
    fallback(error)


def setup_logging(folder: Path) -> Path:
    """Log warnings and errors of the application to a rotating file in `folder` (one file for
    the process: a later call moves the log there)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "billing-desk.log"
    root = logging.getLogger("billing_desk")
    root.setLevel(logging.WARNING)
    for old in [h for h in root.handlers if isinstance(h, logging.handlers.RotatingFileHandler)]:
        if Path(old.baseFilename) == path:
            return path
        root.removeHandler(old)
        old.close()
    handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=2_000_000, backupCount=3, encoding="utf-8", delay=True
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    return path


def install_excepthook(presenter: ErrorPresenter) -> None:
    """A bug in any slot is logged and apologised for; the application keeps running."""

    def hook(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            QApplication.quit()
            return
        if error.__traceback__ is None and tb is not None:
            error = error.with_traceback(tb)
        try:
            window = QApplication.activeWindow()
            presenter.bug(window, error)
        except Exception:
            traceback.print_exception(kind, error, tb, file=sys.stderr)

    sys.excepthook = hook
