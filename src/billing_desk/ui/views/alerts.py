"""Alerts: what the anomaly rules found, newest first, with the explanation in words; a manager
acknowledges (real, being dealt with) or dismisses (not a problem) each with a note. The
navigation shows how many are open, and a new one is announced in the status bar."""

from __future__ import annotations

from html import escape as esc

from PySide6.QtCore import QByteArray, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QSplitter,
    QSystemTrayIcon,
    QWidget,
)

from billing_desk.domain.roles import Permission
from billing_desk.services.monitoring import AlertInfo, alert_counts, close_alert, list_alerts
from billing_desk.ui.desk import Desk
from billing_desk.ui.models import Column, RowsModel
from billing_desk.ui.operations import Changes, changes
from billing_desk.ui.views.base import View, fit_columns, make_table, select_key, selected_row
from billing_desk.ui.widgets import ReasonDialog

# Newest first, as many as anyone reads; older ones stay in `billing-desk alerts list`.
ALERTS_SHOWN = 1000
SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


class AlertsView(View):
    title = "Alerts"
    summary = "what the anomaly rules found"
    listens = frozenset({"alerts", "payments"})
    # How many alerts are open, for the navigation (emitted whenever it is known anew).
    open_count = Signal(int)

    def __init__(self, desk: Desk, parent: QWidget | None = None) -> None:
        super().__init__(desk, parent)
        f = desk.formats
        self.model: RowsModel[AlertInfo] = RowsModel(
            [
                Column("Raised", lambda r: f.datetime(r.raised_at), lambda r: r.raised_at),
                Column(
                    "Severity",
                    lambda r: r.severity.capitalize(),
                    lambda r: SEVERITY_ORDER.get(r.severity, 9),
                    emphasis=lambda r: r.severity != "info" and r.status == "open",
                ),
                Column("Rule", lambda r: r.rule),
                Column("Facility", lambda r: r.facility),
                Column("Status", lambda r: r.status.capitalize()),
                Column("Explanation", lambda r: r.explanation, tooltip=lambda r: r.explanation),
            ],
            key=lambda r: r.id,
            parent=self,
        )
        self.open_only = QCheckBox("&Open only", self)
        self.open_only.setChecked(True)
        self.count = QLabel(self)
        filters = QHBoxLayout()
        filters.addWidget(self.open_only)
        filters.addStretch(1)
        filters.addWidget(self.count)
        self.layout_.addLayout(filters)
        self.table = make_table(
            self, self.model, "Alerts", stretch=5, sort=(0, Qt.SortOrder.DescendingOrder)
        )
        self.detail = QLabel(self)
        self.detail.setWordWrap(True)
        self.detail.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.detail.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.detail.setAccessibleName("Alert detail")
        self.detail.setMargin(6)
        self.splitter = QSplitter(Qt.Orientation.Vertical, self)
        self.splitter.addWidget(self.table)
        self.splitter.addWidget(self.detail)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 1)
        self.layout_.addWidget(self.splitter, 1)
        may = desk.may(Permission.RESOLVE_DISCREPANCIES)
        self.ack_action = self.action(
            "&Acknowledge…",
            lambda: self.close_selected(dismiss=False),
            shortcut="Ctrl+K",
            tip="The alert is real and being dealt with; say how.",
        )
        self.dismiss_action = self.action(
            "&Dismiss…",
            lambda: self.close_selected(dismiss=True),
            shortcut="Ctrl+D",
            tip="The alert is not a problem; say why.",
        )
        for act in (self.ack_action, self.dismiss_action):
            act.setVisible(may)
            act.setEnabled(False)
        self.refresh_action = self.action(
            "Re&fresh", self.refresh, shortcut=QKeySequence.StandardKey.Refresh
        )
        self.open_only.toggled.connect(lambda _: self.refresh())
        self.table.selectionModel().selectionChanged.connect(lambda *_: self._selected())
        self._known_open: int | None = None
        self._tray: QSystemTrayIcon | None = None
        self._clear_detail()

    def menu_actions(self) -> list[QAction]:
        return [self.ack_action, self.dismiss_action, self.refresh_action]

    def _changed(self, what: Changes) -> None:
        # The count in the navigation stays current even while the view is hidden.
        if what.touches(*self.listens) and not self.isVisible():
            self.count_open()
        super()._changed(what)

    def count_open(self) -> None:
        self.desk.query(self, alert_counts, self._counted, key="alerts-count")

    def _counted(self, counts: dict[str, int]) -> None:
        total = sum(counts.values())
        if self._known_open is not None and total > self._known_open:
            new = total - self._known_open
            window = self.window()
            said = f"{new} new alert{'s' if new != 1 else ''}: see Alerts."
            if isinstance(window, QMainWindow):
                window.statusBar().showMessage(said, 15_000)
                self._notify(window, said)
        self._known_open = total
        self.open_count.emit(total)

    def _notify(self, window: QMainWindow, said: str) -> None:
        """Also in the system tray, where the desktop has one (the window may be behind
        another program's)."""
        if not QSystemTrayIcon.isSystemTrayAvailable():
            return
        if self._tray is None:
            self._tray = QSystemTrayIcon(window.windowIcon(), self)
            self._tray.setToolTip("billing-desk")
            self._tray.messageClicked.connect(lambda: self._bring_forward(window))
            self._tray.show()
        self._tray.showMessage("billing-desk", said, QSystemTrayIcon.MessageIcon.Warning, 15_000)

    def _bring_forward(self, window: QMainWindow) -> None:
        window.showNormal()
        window.raise_()
        window.activateWindow()

    def refresh(self) -> None:
        open_only = self.open_only.isChecked()
        self.desk.query(
            self,
            lambda ws: list_alerts(ws, open_only=open_only, limit=ALERTS_SHOWN),
            self._arrived,
            key="alerts-list",
        )
        self.count_open()

    def _arrived(self, alerts: list[AlertInfo]) -> None:
        chosen = selected_row(self.table, self.model)
        self.model.set_rows(alerts)
        fit_columns(self.table)
        n = len(alerts)
        which = "open " if self.open_only.isChecked() else ""
        self.count.setText(f"{self.desk.formats.count(n)} {which}alert{'s' if n != 1 else ''}")
        if chosen is not None:
            select_key(self.table, self.model, chosen.id)
        self._selected()

    def _clear_detail(self) -> None:
        self.detail.setText("Select an alert to read it whole.")

    def _selected(self) -> None:
        alert = selected_row(self.table, self.model)
        is_open = alert is not None and alert.status == "open"
        self.ack_action.setEnabled(is_open)
        self.dismiss_action.setEnabled(is_open)
        if alert is None:
            self._clear_detail()
            return
        f = self.desk.formats
        lines = [
            f"<b>Alert {alert.id}</b> — {esc(alert.severity)}, rule <b>{esc(alert.rule)}</b>, "
            f"{esc(alert.facility)}; raised {f.datetime(alert.raised_at)} after work by "
            f"{esc(alert.raised_by)}",
            esc(alert.explanation),
        ]
        if alert.status != "open":
            lines.append(
                f"{esc(alert.status.capitalize())} by {esc(alert.closed_by or '')} on "
                f"{f.datetime(alert.closed_at)}: {esc(alert.note or '')}"
            )
        self.detail.setText("<br>".join(lines))

    def close_selected(self, *, dismiss: bool) -> None:
        alert = selected_row(self.table, self.model)
        if alert is None or alert.status != "open" or not self.ack_action.isVisible():
            return
        verb = "Dismiss" if dismiss else "Acknowledge"
        question = "Why is it not a problem?" if dismiss else "What is being done about it?"
        dialog = ReasonDialog(
            self,
            f"{verb} alert {alert.id}",
            # The explanation is the person's context; "&&" keeps its ampersands literal.
            f"{alert.explanation.replace('&', '&&')}\n\n&{question}",
            f"&{verb}",
        )
        number = alert.id

        def closed(info: AlertInfo) -> None:
            dialog.accept()
            self.message_bar.show_message(f"Alert {info.id} {info.status} by {info.closed_by}.")

        dialog.submitted.connect(
            lambda note: self.desk.change(
                dialog,
                lambda ws: close_alert(ws, number, note, dismiss=dismiss),
                closed,
                changes("alerts"),
                failure=lambda err: dialog.failed(err, self.desk.presenter.present),
            )
        )
        dialog.open()

    def save_state(self) -> None:
        self.save_header(self.table)
        self.desk.settings.setValue(self.settings_key("splitter"), self.splitter.saveState())

    def restore_state(self) -> None:
        self.restore_header(self.table)
        state = self.desk.settings.value(self.settings_key("splitter"))
        if isinstance(state, QByteArray):
            self.splitter.restoreState(state)
