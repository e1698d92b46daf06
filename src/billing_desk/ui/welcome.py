"""The first page of an empty database: explore with demo data, start empty (then add the first
facility and the people who work here), open a shared database, or open an auditor's archive."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QCommandLinkButton, QLabel, QVBoxLayout, QWidget

from billing_desk.services.unit_of_work import Workspace
from billing_desk.ui.desk import Desk
from billing_desk.ui.errors import MessageBar
from billing_desk.ui.operations import Progress, changes


class WelcomePage(QWidget):
    demo_loaded = Signal(object)  # DemoSummary
    start_empty = Signal()
    connect_wanted = Signal()
    archive_wanted = Signal()

    def __init__(self, desk: Desk, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.desk = desk
        self.setObjectName("welcome")
        self.setAccessibleName("Welcome")
        self.message_bar = MessageBar(self)
        heading = QLabel("Welcome to billing-desk", self)
        font = heading.font()
        font.setPointSizeF(font.pointSizeF() * 1.8)
        font.setBold(True)
        heading.setFont(font)
        intro = QLabel(
            f"This database ({desk.describe_database()}) is empty. You are working as "
            f"{desk.person.describe}. How would you like to start?",
            self,
        )
        intro.setWordWrap(True)
        self.demo = QCommandLinkButton(
            "&Explore with demo data",
            "Twelve facilities, six months of trips, invoices, payments and deposits, and the "
            "people clerk, manager, auditor and admin to try each role.",
            self,
        )
        self.empty = QCommandLinkButton(
            "&Start empty",
            "Add your first facility, then the people who will work here.",
            self,
        )
        self.shared = QCommandLinkButton(
            "Open a s&hared database",
            "Connect to your organisation's PostgreSQL server with your own login.",
            self,
        )
        self.archive = QCommandLinkButton(
            "Open an &auditor's archive",
            "Browse and verify an exported archive, read-only and offline.",
            self,
        )
        for button in (self.demo, self.empty, self.shared, self.archive):
            button.setAccessibleName(button.text().replace("&", ""))
        self.demo.clicked.connect(self.load_demo)
        self.empty.clicked.connect(self.start_empty)
        self.shared.clicked.connect(self.connect_wanted)
        self.archive.clicked.connect(self.archive_wanted)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(48, 36, 48, 36)
        layout.setSpacing(12)
        layout.addWidget(self.message_bar)
        layout.addWidget(heading)
        layout.addWidget(intro)
        layout.addSpacing(12)
        for button in (self.demo, self.empty, self.shared, self.archive):
            button.setMaximumWidth(620)
            layout.addWidget(button)
        layout.addStretch(1)

    def load_demo(self) -> None:
        if not self.demo.isEnabled():
            return
        self.demo.setEnabled(False)

        # Imported when asked for: the demo's tables would slow every start of the window.
        from billing_desk.services.demo import DemoSummary, load_demo_data

        def load(ws: Workspace, progress: Progress) -> DemoSummary:
            return load_demo_data(
                ws, progress=lambda stage, done, total: progress(done, total, stage)
            )

        self.desk.change(
            self,
            load,
            self.demo_loaded.emit,
            changes(
                "facilities", "trips", "invoices", "payments", "deposits", "people", "statements"
            ),
            failure=self._failed,
            progress_label="Loading demo data…",
        )

    def _failed(self, error: BaseException) -> None:
        self.demo.setEnabled(True)
        self.desk.presenter.present(self, error, self.load_demo)
