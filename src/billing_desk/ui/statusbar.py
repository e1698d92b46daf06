"""The main window's status bar: which database, who is working, the live connection (shared
mode) and the integrity badge. The badge's check runs in the background at start and after each
change has been sealed into the audit chain, never on the GUI thread."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QListWidget,
    QPushButton,
    QSizePolicy,
    QStatusBar,
    QStyle,
    QVBoxLayout,
    QWidget,
)

from billing_desk.services.archive import ArchiveOrigin, archive_origin
from billing_desk.services.verification import (
    ChainCheck,
    Finding,
    VerificationReport,
    as_chain_check,
    check_chain,
)
from billing_desk.ui.desk import Desk
from billing_desk.ui.operations import Changes, Operation

# After a burst of changes, the badge checks the new links once, this long after the last.
BADGE_SETTLE_MS = 300


class IntegrityBadge(QPushButton):
    """ "Verified up to entry N at HH:MM", "N entries not yet sealed", or a red "Integrity
    problem: ..." that opens the findings."""

    checked = Signal(object)  # ChainCheck

    def __init__(self, desk: Desk, parent: QWidget | None = None) -> None:
        super().__init__("Checking the audit trail…", parent)
        self.desk = desk
        self.setFlat(True)
        self.setAccessibleName("Integrity")
        self.setToolTip("The audit trail's hash chain, checked in the background.")
        self.result: ChainCheck | None = None
        self._running = False
        self._again = False
        self._settle = QTimer(self)
        self._settle.setSingleShot(True)
        self._settle.setInterval(BADGE_SETTLE_MS)
        self._settle.timeout.connect(self.check)
        # What the last full verification found beyond the chain (rows, hashes, checkpoints),
        # which the badge's own check of the links does not look at: shown until the next one.
        self.beyond_chain: tuple[Finding, ...] = ()
        self.clicked.connect(self.show_findings)
        desk.changed.connect(self._changed)
        desk.verified.connect(self.take_report)

    def _changed(self, what: Changes) -> None:
        if what.touches("audit"):
            self._settle.start()

    def check(self) -> None:
        """Check the links added since the last check (all of them the first time)."""
        if self._running:
            self._again = True
            return
        self._running = True
        since = self.result
        self.desk.run(
            Operation(
                self,
                lambda ws: check_chain(ws, since),
                success=self._checked,
                failure=self._failed,
            )
        )

    def take_report(self, report: VerificationReport) -> None:
        """A person's full verification finished: its verdict is the badge's."""
        self.beyond_chain = tuple(
            f for f in report.findings if f.table is not None or f.entity.startswith("checkpoint")
        )
        self._show(as_chain_check(report, datetime.now(UTC)))

    def _checked(self, result: ChainCheck) -> None:
        self._running = False
        if self.beyond_chain and not result.partial_view:
            extra = tuple(f for f in self.beyond_chain if f not in result.findings)
            result = replace(result, findings=result.findings + extra)
        self._show(result)
        if self._again:
            self._again = False
            self.check()

    def _show(self, result: ChainCheck) -> None:
        self.result = result
        f = self.desk.formats
        if result.partial_view:
            self.setText("Chain verified by auditors")
            self._paint(problem=False, waiting=True)
            self.setToolTip(
                "Your login reads only your facilities' entries, and the audit chain links every "
                "facility's: an auditor or administrator verifies it (`billing-desk audit "
                "verify`)."
            )
        elif not result.ok:
            first = result.findings[0]
            self.setText(f"Integrity problem: {first.kind} at {first.entity}")
            self._paint(problem=True)
            self.setToolTip("Click to see every finding.")
        elif result.unsealed.count:
            n = result.unsealed.count
            self.setText(f"{f.count(n)} entr{'ies' if n != 1 else 'y'} not yet sealed")
            self._paint(problem=False, waiting=True)
            self.setToolTip(
                f"Verified up to entry {f.count(result.sequence)}; newer entries wait for the "
                "sealer."
            )
        else:
            at = result.checked_at.astimezone()
            self.setText(f"Verified up to entry {f.count(result.sequence)} at {at:%H:%M}")
            self._paint(problem=False)
            self.setToolTip("Every link of the audit chain and every entry's digest checked.")
        self.checked.emit(result)

    def _failed(self, error: BaseException) -> None:
        self._running = False
        self.setText("Audit trail not checked")
        self.setToolTip(str(error))
        if self._again:
            self._again = False
            self._settle.start()

    def _paint(self, *, problem: bool, waiting: bool = False) -> None:
        """The style's own icons (a red stop sign for a problem) and a bold face, not colours
        of ours: they follow the light and dark schemes."""
        font = self.font()
        font.setBold(problem)
        self.setFont(font)
        pixmap = QStyle.StandardPixmap
        if problem:
            icon = pixmap.SP_MessageBoxCritical
        elif waiting:
            icon = pixmap.SP_MessageBoxInformation
        else:
            icon = pixmap.SP_DialogApplyButton
        self.setIcon(self.style().standardIcon(icon))

    def show_findings(self) -> None:
        """The findings in the Audit view when the person may see it (each opens what it
        names), else in a dialog."""
        if self.result is None or self.result.ok:
            return
        window = self.window()
        show_view = getattr(window, "show_view", None)
        audit = show_view("Audit") if show_view is not None else None
        listed = getattr(audit, "show_findings", None)
        if listed is not None:
            n = len(self.result.findings)
            listed(
                self.result.findings,
                f"{n} finding{'s' if n != 1 else ''} of the last check: the history was changed "
                "outside billing-desk. Press Enter on a finding to open what it names; Verify "
                "(Ctrl+Shift+V) checks everything again.",
            )
            return
        dialog = FindingsDialog(self.result, window)
        dialog.open()


class FindingsDialog(QDialog):
    """Every finding of the last check, each in a sentence."""

    def __init__(self, result: ChainCheck, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Integrity findings")
        first = result.findings[0]
        intro = QLabel(
            f"The audit trail's hash chain does not hold: the first problem is at {first.entity}. "
            "Someone changed the database outside billing-desk, or its file was damaged. An "
            "auditor should run a full verification (`billing-desk audit verify`) and compare "
            "with a signed checkpoint.",
            self,
        )
        intro.setWordWrap(True)
        self.findings = QListWidget(self)
        self.findings.setAccessibleName("Findings")
        for finding in result.findings:
            self.findings.addItem(f"{finding.kind}: {finding.entity} — {finding.detail}")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.findings, 1)
        layout.addWidget(buttons)
        self.resize(640, 360)


class StatusBar(QStatusBar):
    """Database, person, live connection and integrity, left to right. An auditor's archive
    says so, and of which database and when it was exported (`archive_described` gives the
    window its title)."""

    archive_described = Signal(str)

    def __init__(self, desk: Desk, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.desk = desk
        self.database = QLabel(self)
        # A path is shown as typed: plain text, so '&' or '<' in it is never markup.
        self.database.setTextFormat(Qt.TextFormat.PlainText)
        # A long path gives way (it is cut) before the person, live state and integrity do.
        self.database.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.database.setMinimumWidth(60)
        self.database.setAccessibleName("Database")
        where = desk.describe_database()
        if desk.read_only:
            where = f"{where} — auditor's archive, read-only"
        self.database.setText(where)
        self.person = QLabel(desk.person.describe, self)
        self.person.setAccessibleName("Working as")
        self.live = QLabel(self)
        self.live.setAccessibleName("Live updates")
        self.live.setVisible(desk.is_shared)
        self.badge = IntegrityBadge(desk, self)
        self.addWidget(self.database, 1)
        self.addPermanentWidget(self.person)
        self.addPermanentWidget(self.live)
        self.addPermanentWidget(self.badge)
        self.origin: ArchiveOrigin | None = None
        if desk.read_only:
            desk.query(self, archive_origin, self._archive_origin, key="archive-origin")

    def _archive_origin(self, origin: ArchiveOrigin) -> None:
        self.origin = origin
        f = self.desk.formats
        source = origin.source or f"database {origin.database_id}"
        when = f" as of {f.datetime(origin.exported_at)}" if origin.exported_at else ""
        by = f", exported by {origin.exported_by}" if origin.exported_by else ""
        path = self.desk.describe_database()
        # A file by its name here (the whole path is in the tooltip and the title).
        short = source if "://" in source or origin.source is None else Path(source).name
        self.database.setText(
            f"An auditor's archive, read-only, of {short}{when}{by}, up to entry "
            f"{f.count(origin.head_sequence)} — {Path(path).name}"
        )
        self.database.setToolTip(
            f"{path}\nAn auditor's archive of {source} (database id {origin.database_id}), "
            f"exported{when or ''}{by}. Nothing can be changed in it."
        )
        self.archive_described.emit(f"Auditor's archive of {source}{when} (read-only)")

    def set_live(self, text: str) -> None:
        self.live.setText(text)
        self.live.show()
