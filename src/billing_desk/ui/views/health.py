"""Health and compliance: each health item as ok, warning or failing with its sentence (which
says what to do), refreshed in the background while the view is open; and the compliance score
with every check, its weight, its evidence and what to do."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QLabel, QSplitter, QVBoxLayout, QWidget

from billing_desk.services.compliance import CheckResult, ComplianceReport, compliance_report
from billing_desk.services.health import HealthItem, HealthReport, check_health
from billing_desk.ui.desk import Desk
from billing_desk.ui.models import RIGHT, Column, RowsModel
from billing_desk.ui.views.base import View, fit_columns, make_table

# While the view is on screen its figures are fetched again this often.
REFRESH_MS = 60_000
STATUS_ORDER = {"failing": 0, "warning": 1, "ok": 2}
STATUS_WORDS = {"ok": "OK", "warning": "Warning", "failing": "Failing"}


class HealthView(View):
    title = "Health"
    summary = "the database, the audit trail and the compliance score"
    listens = frozenset({"audit", "alerts", "statements", "settings"})

    def __init__(self, desk: Desk, parent: QWidget | None = None) -> None:
        super().__init__(desk, parent)
        self.summary_label = QLabel("Checking…", self)
        self.summary_label.setWordWrap(True)
        self.summary_label.setAccessibleName("Health summary")
        self.layout_.addWidget(self.summary_label)
        self.items: RowsModel[HealthItem] = RowsModel(
            [
                Column(
                    "Status",
                    lambda r: STATUS_WORDS.get(r.status, r.status),
                    lambda r: STATUS_ORDER.get(r.status, 9),
                    emphasis=lambda r: r.status != "ok",
                ),
                Column("Item", lambda r: r.name.replace("_", " ")),
                Column("What it says", lambda r: r.sentence, tooltip=lambda r: r.sentence),
            ],
            key=lambda r: r.name,
            parent=self,
        )
        self.health_table = make_table(
            self, self.items, "Health items", stretch=2, sort=(0, Qt.SortOrder.AscendingOrder)
        )
        self.score = QLabel(self)
        self.score.setAccessibleName("Compliance score")
        font = self.score.font()
        font.setBold(True)
        self.score.setFont(font)
        self.checks: RowsModel[CheckResult] = RowsModel(
            [
                Column("Check", lambda r: r.title),
                Column(
                    "Result",
                    lambda r: "Passed" if r.passed else "Not passed",
                    emphasis=lambda r: not r.passed,
                ),
                Column("Weight", lambda r: str(r.weight), lambda r: r.weight, RIGHT),
                Column("Evidence", lambda r: r.evidence, tooltip=lambda r: r.evidence),
                Column("What to do", lambda r: r.action, tooltip=lambda r: r.action or None),
            ],
            key=lambda r: r.name,
            parent=self,
        )
        self.checks_table = make_table(self, self.checks, "Compliance checks", stretch=3)
        lower = QWidget(self)
        column = QVBoxLayout(lower)
        column.setContentsMargins(0, 6, 0, 0)
        column.addWidget(self.score)
        column.addWidget(self.checks_table, 1)
        self.splitter = QSplitter(Qt.Orientation.Vertical, self)
        self.splitter.addWidget(self.health_table)
        self.splitter.addWidget(lower)
        self.layout_.addWidget(self.splitter, 1)
        self.refresh_action = self.action(
            "Re&fresh", self.refresh, shortcut=QKeySequence.StandardKey.Refresh
        )
        self._timer = QTimer(self)
        self._timer.setInterval(REFRESH_MS)
        self._timer.timeout.connect(self._refresh_if_shown)
        self._timer.start()

    def menu_actions(self) -> list[QAction]:
        return [self.refresh_action]

    def _refresh_if_shown(self) -> None:
        if self.isVisible():
            self.refresh()

    def refresh(self) -> None:
        self.desk.query(self, check_health, self._health, key="health")
        self.desk.query(self, compliance_report, self._compliance, key="compliance")

    def _health(self, report: HealthReport) -> None:
        self.items.set_rows(report.items)
        fit_columns(self.health_table)
        counts = {s: sum(1 for i in report.items if i.status == s) for s in STATUS_ORDER}
        self.summary_label.setText(
            f"{report.database}: {STATUS_WORDS[report.status].lower()} — {counts['failing']} "
            f"failing, {counts['warning']} warning, {counts['ok']} ok; checked "
            f"{self.desk.formats.datetime(report.checked_at)}."
        )

    def _compliance(self, report: ComplianceReport) -> None:
        self.checks.set_rows(report.checks)
        fit_columns(self.checks_table)
        passed = sum(1 for c in report.checks if c.passed)
        self.score.setText(
            f"Compliance score: {report.score} of 100 ({passed} of {len(report.checks)} checks "
            "passed)"
        )
