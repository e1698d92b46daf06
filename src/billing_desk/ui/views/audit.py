"""Audit: the tamper-evident history, browsed. The list holds only the entries fetched so far
and asks for the next keyset page when the person scrolls near its end (Qt's canFetchMore and
fetchMore), so a log of a million entries opens as fast as one of a hundred. A filter starts a
new first page; it never loads the whole log. The selected entry shows its fields before and
after (changed ones first and marked, the unchanged folded below), its digest and sequence, and
everything the same request did; from a payment or invoice elsewhere, History opens this view
filtered to it. "Go to sequence", and the first and last entries, read a page around that place
(keyset in both directions), and pages before it arrive when the person scrolls up. Verify runs
the full verification in the background; each finding opens the entry or the row it names."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from html import escape as esc
from pathlib import Path
from typing import Any

from PySide6.QtCore import (
    QByteArray,
    QDate,
    QModelIndex,
    QPersistentModelIndex,
    Qt,
    QUrl,
)
from PySide6.QtGui import QAction, QIntValidator, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDateEdit,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QSplitter,
    QTableView,
    QTabWidget,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from billing_desk.domain.money import Money
from billing_desk.domain.roles import Role
from billing_desk.services.archive import ArchiveSummary, archived_tables, export_archive
from billing_desk.services.audit_browser import (
    PAGE_SIZE,
    AuditEntryDetail,
    AuditFilter,
    AuditRow,
    AuditWindow,
    FieldChange,
    audit_entry,
    audit_page,
    audit_window,
)
from billing_desk.services.checkpoints import SIGN_CHECKPOINTS
from billing_desk.services.facilities import FacilityInfo, list_facilities
from billing_desk.services.verification import Finding, VerificationReport, verify
from billing_desk.ui.desk import Desk
from billing_desk.ui.errors import INFO, WARNING
from billing_desk.ui.formatting import Formats
from billing_desk.ui.models import RIGHT, Column, PagedModel
from billing_desk.ui.operations import Cancelled, Changes, Operation
from billing_desk.ui.views.base import View
from billing_desk.ui.views.checkpoints import (
    CheckpointsDialog,
    SignCheckpointDialog,
    SignedNote,
    checkpoint_claims,
    trusted_keys,
)
from billing_desk.ui.widgets import FacilityBox, pydate

NO_DATE = QDate(2000, 1, 1)
Index = QModelIndex | QPersistentModelIndex
# Scrolled this close to the top of a list that does not start at its first entry, the page
# before is fetched.
NEAR_TOP_ROWS = 5


class AuditModel(PagedModel[AuditRow]):
    """A window on the log: the entries fetched so far, which may start after the list's first
    entry (a jump to a sequence or to the end) and then grows at both ends: at the end through
    Qt's canFetchMore/fetchMore, at the start when the view asks (`more_before`, `prepend`)."""

    def __init__(self, columns: Sequence[Column[AuditRow]], parent: Any = None) -> None:
        super().__init__(columns, key=lambda r: r.entry_id, page_size=PAGE_SIZE, parent=parent)
        self.more_before = False
        self.loading_before = False

    def restart(self) -> None:
        self.more_before = self.loading_before = False
        super().restart()

    def set_window(self, window: AuditWindow) -> None:
        self.beginResetModel()
        self.rows = list(window.rows)
        self.more_before, self.exhausted = window.more_before, not window.more_after
        self.loading = self.loading_before = False
        self.endResetModel()

    def first_key(self) -> int | None:
        return self.rows[0].entry_id if self.rows else None

    def prepend(self, page: Sequence[AuditRow], size: int) -> None:
        """The page before the first row arrived (in the list's order); a short one is the
        first."""
        self.loading_before = False
        self.more_before = len(page) == size
        if not page:
            return
        self.beginInsertRows(QModelIndex(), 0, len(page) - 1)
        self.rows[:0] = page
        self.endInsertRows()


# What each kind of finding means, in a sentence for the person reading it.
FINDING_MEANS = {
    "gap": "Links are missing from the chain here: entries were removed from the history.",
    "duplicate": "Two links claim the same place in the chain.",
    "broken link": "This link does not follow the one before it: entries were deleted, inserted "
    "or reordered.",
    "hash version downgraded": "The link uses an older hash format than the links before it.",
    "entry missing": "The audit entry sealed here was deleted from the database; its link is left.",
    "entry altered": "The entry's content was changed after it was sealed into the chain.",
    "unreadable entry": "The entry's stored values cannot be read back as they were written.",
    "entry outside the chain": "An entry was added to the log behind the chain's back.",
    "head missing": "The record of where the chain ends is gone.",
    "head mismatch": "The chain does not end where its head record says: links were removed or "
    "added behind the sealer's back.",
    "row without audit entry": "A row exists that no audit entry ever recorded: it was added "
    "outside billing-desk.",
    "row differs from its audit trail": "The row is not what its newest audit entry says it "
    "became: it was changed outside billing-desk.",
    "row deleted without audit entry": "The trail says this row exists, but it is gone.",
    "payment hash mismatch": "The payment's integrity hash no longer matches its amount, state "
    "or allocations: they were changed outside billing-desk.",
    "invoice hash mismatch": "The invoice's integrity hash no longer matches its total, state "
    "or lines: they were changed outside billing-desk.",
    "checkpoint not trusted": "The checkpoint note cannot be relied on.",
    "chain behind checkpoint": "This is a rollback: the history is older than a signed "
    "checkpoint proves it was.",
    "checkpoint contradicted": "The history up to a signed checkpoint was rewritten (a fork).",
}


# Kinds whose detail only repeats, in fewer words, what FINDING_MEANS says.
SAID_BY_MEANS = frozenset(
    {
        "row without audit entry",
        "row differs from its audit trail",
        "row deleted without audit entry",
        "payment hash mismatch",
        "invoice hash mismatch",
        "entry outside the chain",
    }
)


def finding_text(finding: Finding) -> str:
    """A finding as the list shows it: what and where, then what it means in a sentence."""
    means = FINDING_MEANS.get(finding.kind, "")
    title = f"{finding.kind[:1].upper()}{finding.kind[1:]} — {finding.entity}"
    detail = finding.detail.rstrip(".")
    said = f"{detail[:1].upper()}{detail[1:]}."
    if finding.kind in SAID_BY_MEANS and means:
        said = ""
    return f"{title}\n{' '.join(part for part in (said, means) if part)}".rstrip()


def audit_model(formats: Formats, parent: QWidget | None = None) -> AuditModel:
    """The entries fetched so far under one filter (the model never touches the database:
    pages arrive from the background when it asks for more)."""
    f = formats
    return AuditModel(
        [
            Column(
                "Seq.",
                lambda r: f.count(r.sequence) if r.sequence is not None else "…",
                align=RIGHT,
                tooltip=lambda r: (
                    "Not sealed into the chain yet; the sealer adds it shortly."
                    if r.sequence is None
                    else None
                ),
            ),
            Column("Recorded", lambda r: f.datetime(r.recorded_at)),
            Column("Who", lambda r: f"{r.user} ({r.role})" if r.role else r.user),
            Column("Facility", lambda r: r.facility or ""),
            Column("Action", lambda r: r.action),
            Column("Entity", lambda r: r.entity_type.replace("_", " ")),
            Column("Id", lambda r: r.entity_id),
        ],
        parent=parent,
    )


def shown_value(formats: Formats, name: str, value: object, values: dict[str, object]) -> str:
    """A stored value as a person reads it: money as money, nothing as an em dash."""
    if value is None:
        return "—"
    currency = values.get("currency")
    if (
        name.endswith("_minor")
        and isinstance(value, int)
        and not isinstance(value, bool)
        and isinstance(currency, str)
    ):
        return formats.money(Money.from_minor(value, currency))
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def detail_html(formats: Formats, detail: AuditEntryDetail) -> str:
    row = detail.row
    before = {f.name: f.before for f in detail.fields}
    after = {f.name: f.after for f in detail.fields}

    def cell(change: FieldChange, side: str) -> str:
        values = before if side == "before" else after
        value = change.before if side == "before" else change.after
        return esc(shown_value(formats, change.name, value, {**after, **values}))

    where = (
        f"sequence {formats.count(row.sequence)} of the sealed chain"
        if row.sequence is not None
        else "not sealed yet"
    )
    parts = [
        f"<h3>{esc(row.action)} — {esc(row.entity_type.replace('_', ' '))} "
        f"{esc(row.entity_id)}</h3>",
        f"<p>Entry {row.entry_id}, {where}; recorded {esc(formats.datetime(row.recorded_at))} "
        f"by <b>{esc(row.user)}</b>{f' ({esc(row.role)})' if row.role else ''}"
        f"{f', facility {esc(row.facility)}' if row.facility else ''}.<br>"
        f"Digest <code>{esc(detail.entry_digest or '(not sealed yet)')}</code></p>",
    ]
    changed, unchanged = detail.changed, detail.unchanged
    headings: tuple[str, ...]
    if detail.kind == "event":
        parts.append("<p><b>Recorded event</b> (no row of a table changed):</p>")
        changed, unchanged = tuple(f for f in detail.fields), ()
        headings = ("Detail", "", "Value")
    elif detail.kind == "created":
        parts.append("<p><b>Row created</b> with these values:</p>")
        changed, unchanged = tuple(f for f in detail.fields), ()
        headings = ("Field", "", "Value")
    elif detail.kind == "deleted":
        parts.append("<p><b>Row deleted</b>; it held:</p>")
        headings = ("Field", "Value", "")
        changed, unchanged = tuple(f for f in detail.fields), ()
    elif changed:
        n = len(changed)
        parts.append(f"<p><b>{n} field{'s' if n != 1 else ''} changed</b>:</p>")
        headings = ("Field", "Before", "After")
    else:
        headings = ()
        parts.append("<p><b>No field a person reads changed</b>; the row was stored again.</p>")
    parts.append(
        "<table cellspacing='0' cellpadding='3' border='1' style='border-collapse:collapse'>"
    )
    parts.append("<tr>" + "".join(f"<th align='left'>{h}</th>" for h in headings if h) + "</tr>")
    for change in changed:
        name = f"<b>{esc(change.name)}</b>"
        if detail.kind in ("event", "created"):
            parts.append(f"<tr><td>{name}</td><td>{cell(change, 'after')}</td></tr>")
        elif detail.kind == "deleted":
            parts.append(f"<tr><td>{name}</td><td>{cell(change, 'before')}</td></tr>")
        else:
            parts.append(
                f"<tr><td>{name}</td><td><s>{cell(change, 'before')}</s></td>"
                f"<td><b>{cell(change, 'after')}</b></td></tr>"
            )
    if headings:
        parts.append("</table>")
    restamped = detail.restamped if detail.kind == "changed" else ()
    if restamped:
        names = ", ".join(esc(f.name) for f in restamped)
        parts.append(f"<p>Also updated: {names} (how the row is stored).</p>")
    if unchanged:
        names = ", ".join(esc(f.name) for f in unchanged)
        parts.append(f"<p style='color:gray'>Unchanged ({len(unchanged)}): {names}</p>")
    others = [r for r in detail.request if r.entry_id != row.entry_id]
    parts.append(
        f"<p><b>Everything this request did</b> (request <code>{esc(row.request_id)}</code>, "
        f"{len(detail.request)} entr{'ies' if len(detail.request) != 1 else 'y'}):</p><ul>"
    )
    for other in detail.request:
        label = (
            f"{esc(other.action)}: {esc(other.entity_type.replace('_', ' '))} "
            f"{esc(other.entity_id)}"
        )
        if other.entry_id == row.entry_id:
            parts.append(f"<li>{label} (this entry)</li>")
        else:
            parts.append(f"<li><a href='entry:{other.entry_id}'>{label}</a></li>")
    parts.append("</ul>")
    if not others:
        parts.append("<p>It did nothing else.</p>")
    return "".join(parts)


class AuditView(View):
    title = "Audit"
    summary = "who changed what, and when"
    # Every write adds entries; refilling on each would pull the list from under the reader.
    # New entries come with Refresh (F5) or a new filter.
    listens = frozenset[str]()

    def __init__(self, desk: Desk, parent: QWidget | None = None) -> None:
        super().__init__(desk, parent)
        self.model = audit_model(desk.formats, self)
        self.facility = FacilityBox(self, allow_all=True)
        self.user = QLineEdit(self)
        self.action_name = QLineEdit(self)
        self.entity_type = QLineEdit(self)
        self.entity_id = QLineEdit(self)
        self.request = QLineEdit(self)
        self.text = QLineEdit(self)
        self.since = self._date_edit("From")
        self.until = self._date_edit("To")
        self.order = QComboBox(self)
        self.order.addItem("Newest first", True)
        self.order.addItem("Oldest first", False)
        self.user.setPlaceholderText("any person")
        self.action_name.setPlaceholderText("e.g. payment.void")
        self.entity_type.setPlaceholderText("e.g. payment")
        self.entity_id.setPlaceholderText("any")
        self.request.setPlaceholderText("a request id")
        self.text.setPlaceholderText("a word or number in the values")
        grid = QGridLayout()
        fields: list[tuple[str, QWidget]] = [
            ("&Facility:", self.facility),
            ("&Who:", self.user),
            ("A&ction:", self.action_name),
            ("&Entity:", self.entity_type),
            ("&Id:", self.entity_id),
            ("Fro&m:", self.since),
            ("&To:", self.until),
            ("&Request:", self.request),
            ("Te&xt:", self.text),
            ("&Order:", self.order),
        ]
        for number, (caption_text, widget) in enumerate(fields):
            caption = QLabel(caption_text, self)
            caption.setBuddy(widget)
            widget.setAccessibleName(caption_text.replace("&", "").rstrip(":"))
            grid.addWidget(caption, number // 5, (number % 5) * 2)
            grid.addWidget(widget, number // 5, (number % 5) * 2 + 1)
        for column in range(1, 10, 2):
            grid.setColumnStretch(column, 1)
        self.layout_.addLayout(grid)
        self.count = QLabel(self)
        self.count.setAccessibleName("Entries shown")
        self.sequence = QLineEdit(self)
        self.sequence.setValidator(QIntValidator(1, 2_000_000_000, self))
        self.sequence.setPlaceholderText("number")
        self.sequence.setAccessibleName("Go to sequence")
        self.sequence.setMaximumWidth(self.sequence.fontMetrics().averageCharWidth() * 14)
        go_to = QLabel("Go to se&quence:", self)
        go_to.setBuddy(self.sequence)
        count_line = QHBoxLayout()
        count_line.addWidget(self.count, 1)
        count_line.addWidget(go_to)
        count_line.addWidget(self.sequence)
        self.layout_.addLayout(count_line)

        self.table = QTableView(self)
        self.table.setModel(self.model)
        self.table.setObjectName("AuditEntries")
        self.table.setAccessibleName("Audit entries")
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.setTabKeyNavigation(False)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(self.table.fontMetrics().height() + 8)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        header.setHighlightSections(False)
        width = self.table.fontMetrics().averageCharWidth()
        for column, chars in enumerate((9, 18, 26, 12, 26, 20)):
            header.resizeSection(column, width * chars)
        self.detail = QTextBrowser(self)
        self.detail.setAccessibleName("Audit entry")
        self.detail.setOpenLinks(False)
        self.detail.anchorClicked.connect(self._link)
        self.findings = FindingsPanel(self)
        self.findings.list.itemActivated.connect(self._finding_chosen)
        self.tabs = QTabWidget(self)
        self.tabs.setAccessibleName("Entry and findings")
        self.tabs.addTab(self.detail, "The &entry")
        self.tabs.addTab(self.findings, "Verification fi&ndings")
        self.splitter = QSplitter(Qt.Orientation.Vertical, self)
        self.splitter.addWidget(self.table)
        self.splitter.addWidget(self.tabs)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.layout_.addWidget(self.splitter, 1)
        self.detail.setHtml("<p>Select an entry to see what it changed.</p>")

        self.model.more_wanted.connect(self._next_page)
        self.table.selectionModel().selectionChanged.connect(lambda *_: self._selected())
        self.table.verticalScrollBar().valueChanged.connect(lambda _: self._near_top())
        self.sequence.returnPressed.connect(self._go_to_typed)
        for line in (
            self.user,
            self.action_name,
            self.entity_type,
            self.entity_id,
            self.request,
            self.text,
        ):
            line.returnPressed.connect(self.refresh)
        # A date box or the facility box losing the focus says "edited" even when nothing
        # changed: only a changed filter reads the log again (and never undoes a jump).
        self.facility.when_chosen(self._filter_edited)
        self.since.editingFinished.connect(self._filter_edited)
        self.until.editingFinished.connect(self._filter_edited)
        self.order.currentIndexChanged.connect(lambda _: self.refresh())
        self.refresh_action = self.action(
            "Re&fresh", self.refresh, shortcut=QKeySequence.StandardKey.Refresh
        )
        self.clear_action = self.action(
            "&Clear the filters",
            self.clear_filters,
            shortcut="Ctrl+Shift+X",
            tip="Show every entry again.",
        )
        self.go_to_action = self.action(
            "&Go to sequence…",
            self._focus_sequence,
            shortcut="Ctrl+G",
            tip="Type a sequence number of the audit chain and press Enter.",
        )
        self.first_action = self.action(
            "Jump to the &first entry",
            lambda: self.jump(oldest=True),
            shortcut="Ctrl+Shift+Home",
            tip="The oldest entry the filters select.",
        )
        self.last_action = self.action(
            "Jump to the &last entry",
            lambda: self.jump(oldest=False),
            shortcut="Ctrl+Shift+End",
            tip="The newest entry the filters select.",
        )
        self.verify_action = self.action(
            "&Verify the audit trail",
            self.verify,
            shortcut="Ctrl+Shift+V",
            tip="Recompute the whole chain, every row against its trail and the payments' and "
            "invoices' hashes.",
        )
        self.export_action = self.action(
            "E&xport an archive…",
            self._export_chosen,
            shortcut="Ctrl+Shift+E",
            tip="Write the whole database to one file an auditor opens read-only, offline.",
        )
        # Managers and auditors take archives; an archive is not exported again.
        self.export_action.setVisible(
            not desk.read_only and desk.person.role in (Role.MANAGER, Role.AUDITOR)
        )
        self.sign_action = self.action(
            "&Sign a checkpoint…",
            self.sign_checkpoint,
            shortcut="Ctrl+Shift+K",
            tip="Sign the audit chain's head with your key and save the note where you choose.",
        )
        self.sign_action.setVisible(desk.may(SIGN_CHECKPOINTS))
        self.checkpoints_action = self.action(
            "Verify against &checkpoints…",
            self.choose_checkpoints,
            shortcut="Ctrl+Shift+P",
            tip="Hold the chain to signed checkpoint notes, with the keys you trust.",
        )
        # The checkpoint notes the next verification holds the chain to (files the person keeps).
        self.notes: list[Path] = []
        self._filter = AuditFilter()
        self._wanted_entry: int | None = None
        self._facilities_loaded = False
        self._verifying: Operation[VerificationReport] | None = None
        self.report: VerificationReport | None = None

    def _date_edit(self, name: str) -> QDateEdit:
        edit = QDateEdit(self)
        edit.setCalendarPopup(True)
        edit.setDisplayFormat(self.desk.formats.date_format())
        edit.setMinimumDate(NO_DATE)
        edit.setSpecialValueText("any")
        edit.setDate(NO_DATE)
        edit.setAccessibleName(name)
        return edit

    def menu_actions(self) -> list[QAction]:
        return [
            self.verify_action,
            self.checkpoints_action,
            self.sign_action,
            self.export_action,
            self.go_to_action,
            self.first_action,
            self.last_action,
            self.refresh_action,
            self.clear_action,
        ]

    # -- fetching -----------------------------------------------------------------------------

    def current_filter(self) -> AuditFilter:
        def day(edit: QDateEdit) -> date | None:
            return None if edit.date() == NO_DATE else pydate(edit.date())

        def text(line: QLineEdit) -> str | None:
            return line.text().strip() or None

        return AuditFilter(
            facility=self.facility.code(),
            user=text(self.user),
            action=text(self.action_name),
            entity_type=text(self.entity_type),
            entity_id=text(self.entity_id),
            request_id=text(self.request),
            since=day(self.since),
            until=day(self.until),
            text=text(self.text),
        )

    def refresh(self) -> None:
        if not self._facilities_loaded:
            self.desk.query(self, list_facilities, self._facilities, key="audit-facilities")
        self._filter = self.current_filter()
        self.model.restart()
        self.count.setText("Reading the log…")
        self._fetch(None)

    def _filter_edited(self) -> None:
        if self.current_filter() != self._filter:
            self.refresh()

    def _facilities(self, facilities: list[FacilityInfo]) -> None:
        self._facilities_loaded = True
        self.facility.set_facilities(facilities)

    def _next_page(self) -> None:
        last = self.model.last_key()
        self._fetch(last if isinstance(last, int) else None)

    def _fetch(self, after: int | None) -> None:
        wanted, newest_first = self._filter, bool(self.order.currentData())
        self.desk.query(
            self,
            lambda ws: audit_page(ws, wanted, after=after, newest_first=newest_first),
            self._arrived,
            key="audit-page",
        )

    def _arrived(self, page: list[AuditRow]) -> None:
        first = not self.model.rows
        self.model.append(page)
        self._count()
        if self._wanted_entry is not None:
            row = self.model.row_of(self._wanted_entry)
            if row is not None:
                self._wanted_entry = None
                self.table.selectRow(row)
                self.table.scrollTo(self.model.index(row, 0))
        elif first and self.model.rows:
            self.table.selectRow(0)

    def _count(self) -> None:
        n = len(self.model.rows)
        entries = f"{self.desk.formats.count(n)} entr{'ies' if n != 1 else 'y'}"
        if not n:
            self.count.setText("No entry matches these filters.")
        elif self.model.more_before and not self.model.exhausted:
            self.count.setText(f"{entries} shown (more above and below as you scroll)")
        elif self.model.more_before:
            self.count.setText(f"{entries} shown, to the end (more above as you scroll)")
        elif self.model.exhausted:
            self.count.setText(entries)
        else:
            self.count.setText(f"{entries} so far (more as you scroll)")

    # -- places in the log -----------------------------------------------------------------------

    def _focus_sequence(self) -> None:
        self.sequence.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.sequence.selectAll()

    def _go_to_typed(self) -> None:
        text = self.sequence.text().strip()
        if text.isdigit():
            self.go_to_sequence(int(text))

    def go_to_sequence(self, sequence: int) -> None:
        """Show the entry sealed at `sequence` among its neighbours, selected."""
        self._open_window(sequence=sequence)

    def go_to_entry(self, entry_id: int) -> None:
        """Show audit entry `entry_id` among its neighbours, selected."""
        row = self.model.row_of(entry_id)
        if row is not None:
            self.table.selectRow(row)
            self.table.scrollTo(self.model.index(row, 0))
            return
        self._open_window(entry_id=entry_id)

    def jump(self, *, oldest: bool) -> None:
        """The first or the last entry the filters select, whichever end of the list it is."""
        newest_first = bool(self.order.currentData())
        self._open_window(at_end=oldest == newest_first)

    def _open_window(
        self, *, sequence: int | None = None, entry_id: int | None = None, at_end: bool = False
    ) -> None:
        if not self._facilities_loaded:
            self.desk.query(self, list_facilities, self._facilities, key="audit-facilities")
        wanted, newest_first = self.current_filter(), bool(self.order.currentData())
        self._filter = wanted
        self.model.restart()
        self.count.setText("Reading the log…")
        self.desk.query(
            self,
            lambda ws: audit_window(
                ws,
                wanted,
                sequence=sequence,
                entry_id=entry_id,
                at_end=at_end,
                newest_first=newest_first,
            ),
            self._window_arrived,
            key="audit-page",
        )

    def _window_arrived(self, window: AuditWindow) -> None:
        if window.wanted != self._filter:
            self.clear_filters_quietly()
            self.entity_type.clear()
            self.entity_id.clear()
            self._filter = window.wanted
        self.model.set_window(window)
        self._count()
        if window.note:
            self.message_bar.show_message(window.note, WARNING)
        row = self.model.row_of(window.selected) if window.selected is not None else None
        if row is not None:
            self.table.selectRow(row)
            self.table.scrollTo(
                self.model.index(row, 0), QAbstractItemView.ScrollHint.PositionAtCenter
            )
            self.table.setFocus(Qt.FocusReason.OtherFocusReason)

    def _near_top(self) -> None:
        """Scrolled (or moved) to the top of a window that starts after the list's first
        entry: fetch the page before it."""
        model = self.model
        if not model.more_before or model.loading_before or model.loading:
            return
        top = self.table.rowAt(0)
        if top < 0 or top >= NEAR_TOP_ROWS:
            return
        first = model.first_key()
        if first is None:
            return
        model.loading_before = True
        wanted, newest_first = self._filter, bool(self.order.currentData())
        self.desk.query(
            self,
            lambda ws: audit_page(ws, wanted, after=first, newest_first=not newest_first)[::-1],
            lambda page: self._before_arrived(first, page),
            key="audit-before",
        )

    def _before_arrived(self, first: int, page: list[AuditRow]) -> None:
        if self.model.first_key() != first:
            return  # the list was filled again meanwhile
        top = max(self.table.rowAt(0), 0)
        self.model.prepend(page, PAGE_SIZE)
        # The rows on screen stay where they were; the new ones are above them.
        self.table.scrollTo(
            self.model.index(top + len(page), 0), QAbstractItemView.ScrollHint.PositionAtTop
        )
        self._count()

    # -- verification ----------------------------------------------------------------------------

    def verify(self) -> None:
        """The full verification in the background, with progress and Cancel."""
        if self._verifying is not None and not self._verifying.done:
            return
        self.findings.show_running()
        self.tabs.setCurrentWidget(self.findings)
        notes, keys = list(self.notes), trusted_keys(self.desk)
        self._verifying = self.desk.run(
            Operation(
                self,
                lambda ws, progress: verify(
                    ws, checkpoint_claims(ws, notes, keys) if notes else (), progress=progress
                ),
                success=self._verified,
                failure=self._verify_failed,
                # The run is itself audited (not in an archive, which is never written).
                changes=Changes() if self.desk.read_only else Changes(frozenset({"audit"})),
                progress_label="Verifying the audit trail",
            )
        )

    def _verified(self, report: VerificationReport) -> None:
        self.report = report
        self.findings.show_report(report, self.desk.formats)
        self.tabs.setCurrentWidget(self.findings)
        self.desk.verified.emit(report)
        if not report.ok:
            self.findings.list.setFocus(Qt.FocusReason.OtherFocusReason)

    def _verify_failed(self, error: BaseException) -> None:
        if isinstance(error, Cancelled):
            self.findings.show_cancelled()
            return
        self.findings.show_cancelled("The verification did not finish.")
        self.desk.presenter.present(self, error, self.verify)

    def show_findings(self, findings: Sequence[Finding], summary: str) -> None:
        """Findings of a check made elsewhere (the status bar's badge), listed here."""
        self.findings.show_list(findings, summary)
        self.tabs.setCurrentWidget(self.findings)

    def _finding_chosen(self, item: QListWidgetItem) -> None:
        finding = item.data(Qt.ItemDataRole.UserRole)
        if isinstance(finding, Finding):
            self.open_finding(finding)

    def open_finding(self, finding: Finding) -> None:
        """What a finding names: a payment or an invoice in its own view, another row's trail,
        or the chain's entry at its place."""
        window = self.window()
        show_view = getattr(window, "show_view", None)
        if finding.table == "payment" and finding.row is not None and finding.row.isdigit():
            payments = show_view("Payments") if show_view is not None else None
            open_payment = getattr(payments, "open_payment", None)
            if open_payment is not None:
                open_payment(int(finding.row))
                return
        if finding.table == "invoice" and finding.number:
            invoices = show_view("Invoices") if show_view is not None else None
            open_invoice = getattr(invoices, "open_invoice", None)
            if open_invoice is not None:
                open_invoice(finding.number)
                return
        if finding.table is not None and finding.row is not None:
            self.show_entity(finding.table, finding.row)
            self.tabs.setCurrentWidget(self.detail)
            return
        if finding.sequence is not None:
            self.clear_filters_quietly()
            self.entity_type.clear()
            self.entity_id.clear()
            self.go_to_sequence(finding.sequence)
        elif finding.entry_id is not None:
            self.clear_filters_quietly()
            self.entity_type.clear()
            self.entity_id.clear()
            self._open_window(entry_id=finding.entry_id)
        else:
            return
        self.tabs.setCurrentWidget(self.detail)

    # -- checkpoints ------------------------------------------------------------------------------

    def sign_checkpoint(self) -> None:
        dialog = self.sign_dialog = SignCheckpointDialog(self.desk, self)
        dialog.signed.connect(self._signed)
        dialog.open()

    def _signed(self, signed: SignedNote) -> None:
        f = self.desk.formats
        self.message_bar.show_message(
            f"Checkpoint signed with {signed.note.key_name}: the chain up to entry "
            f"{f.count(signed.note.sequence)}, saved to {signed.saved_to}. Give the note to the "
            "auditors; keep it outside this database.",
            INFO,
        )

    def choose_checkpoints(self) -> None:
        dialog = self.checkpoints_dialog = CheckpointsDialog(self.desk, self.notes, self)
        dialog.verify_wanted.connect(self._verify_against)
        dialog.open()

    def _verify_against(self, notes: list[Path]) -> None:
        self.notes = list(notes)
        self.verify()

    # -- the auditor's archive ------------------------------------------------------------------

    def _export_chosen(self) -> None:
        self.choose_archive_file()

    def choose_archive_file(self) -> QFileDialog:
        """Ask where the archive goes (the dialog is returned for tests to fill)."""
        folder = str(self.desk.settings.value("archive/folder", str(Path.home())))
        return choose_file(
            self,
            "Export an auditor's archive",
            ARCHIVE_FILES,
            self.export_archive,
            save_in=folder,
            suggested="billing-desk-archive.sqlite3",
        )

    def export_archive(self, path: Path) -> None:
        """Write the archive in the background with progress (per table) and Cancel."""
        self.desk.settings.setValue("archive/folder", str(path.parent))
        tables = [t.name for t in archived_tables()]

        def work(ws: Any, progress: Callable[[int, int, str], None]) -> ArchiveSummary:
            def copied(table: str, done: int, total: int) -> None:
                # One bar over every table: each is an equal share, filled as its rows go.
                index = tables.index(table) if table in tables else 0
                share = done / total if total else 1.0
                label = table.replace("_", " ")
                progress(
                    int((index + share) * 1000),
                    len(tables) * 1000,
                    f"Table {index + 1} of {len(tables)}: {label} ({done:,} of {total:,} rows)",
                )

            return export_archive(ws, path, progress=copied)

        self.desk.run(
            Operation(
                self,
                work,
                success=self._exported,
                failure=self._export_failed,
                changes=Changes(frozenset({"audit"})),
                progress_label=f"Exporting the archive to {path.name}",
            )
        )

    def _exported(self, summary: ArchiveSummary) -> None:
        f = self.desk.formats
        rows = sum(summary.tables.values())
        path = summary.path
        window = self.window()
        wanted = getattr(window, "recent_wanted", None)
        actions = {"&Open it": lambda: wanted.emit(str(path))} if wanted is not None else None
        self.message_bar.show_message(
            f"Archive written: {path} ({f.count(rows)} rows, the chain up to entry "
            f"{f.count(summary.head_sequence)}). It opens read-only with File ▸ Open an "
            "auditor's archive, here or on another machine.",
            INFO,
            actions=actions,
        )

    def _export_failed(self, error: BaseException) -> None:
        if isinstance(error, Cancelled):
            self.message_bar.show_message("Export cancelled: no file was written.", WARNING)
            return
        self.desk.presenter.present(self, error, None)

    def _selected(self) -> None:
        indexes = self.table.selectionModel().selectedRows()
        if indexes and indexes[0].row() < NEAR_TOP_ROWS:
            self._near_top()
        if not indexes:
            self.detail.setHtml("<p>Select an entry to see what it changed.</p>")
            return
        row = self.model.rows[indexes[0].row()]
        entry_id = row.entry_id
        self.desk.query(self, lambda ws: audit_entry(ws, entry_id), self._show, key="audit-entry")

    def _show(self, detail: AuditEntryDetail) -> None:
        self.shown = detail
        self.detail.setHtml(detail_html(self.desk.formats, detail))

    def _link(self, url: QUrl) -> None:
        text = url.toString()
        if text.startswith("entry:"):
            self.go_to_entry(int(text.split(":", 1)[1]))

    # -- from elsewhere -----------------------------------------------------------------------

    def clear_filters(self) -> None:
        for line in (
            self.user,
            self.action_name,
            self.entity_type,
            self.entity_id,
            self.request,
            self.text,
        ):
            line.clear()
        self.facility.set_code(None)
        self.since.setDate(NO_DATE)
        self.until.setDate(NO_DATE)
        self.refresh()

    def show_entity(
        self, entity_type: str, entity_id: str | None = None, *, text: str | None = None
    ) -> None:
        """The history of one row (a payment by its id, an invoice by its number in the values),
        newest first."""
        self.clear_filters_quietly()
        self.entity_type.setText(entity_type)
        self.entity_id.setText(entity_id or "")
        self.text.setText(text or "")
        self.refresh()

    def clear_filters_quietly(self) -> None:
        blocked = self.order.blockSignals(True)
        for line in (self.user, self.action_name, self.request, self.text):
            line.clear()
        self.facility.set_code(None)
        self.since.setDate(NO_DATE)
        self.until.setDate(NO_DATE)
        self.order.setCurrentIndex(0)
        self.order.blockSignals(blocked)

    def save_state(self) -> None:
        self.desk.settings.setValue(
            self.settings_key("header"), self.table.horizontalHeader().saveState()
        )
        self.desk.settings.setValue(self.settings_key("splitter"), self.splitter.saveState())

    def restore_state(self) -> None:
        for key, target in (
            ("header", self.table.horizontalHeader()),
            ("splitter", self.splitter),
        ):
            state = self.desk.settings.value(self.settings_key(key))
            if isinstance(state, QByteArray):
                target.restoreState(state)


class FindingsPanel(QWidget):
    """The last verification: what was checked, and each finding in a sentence. Enter or a
    double click opens what a finding names."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.summary = QLabel("Verify (Ctrl+Shift+V) to check the whole history.", self)
        self.summary.setWordWrap(True)
        self.summary.setAccessibleName("Verification")
        self.summary.setTextFormat(Qt.TextFormat.PlainText)
        self.list = QListWidget(self)
        self.list.setAccessibleName("Findings")
        self.list.setWordWrap(True)
        self.list.setAlternatingRowColors(True)
        self.list.setSpacing(2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.summary)
        layout.addWidget(self.list, 1)
        layout.addStretch(0)

    def show_running(self) -> None:
        self.summary.setText("Verifying the whole history…")
        self.list.clear()

    def show_cancelled(self, why: str = "Verification cancelled; nothing was recorded.") -> None:
        self.summary.setText(why)

    def show_report(self, report: VerificationReport, formats: Formats) -> None:
        f = formats
        checked = (
            f"Checked {f.count(report.entries_checked)} chain entries, "
            f"{f.count(report.payments_checked)} payments and "
            f"{f.count(report.invoices_checked)} invoices"
        )
        if report.checkpoints_checked:
            n = report.checkpoints_checked
            checked += f" against {f.count(n)} checkpoint{'s' if n != 1 else ''}"
        checked += f"; the chain ends at sequence {f.count(report.head_sequence)}."
        if report.unsealed.count:
            checked += f" {f.count(report.unsealed.count)} newer entries are not sealed yet."
        if report.ok:
            verdict = "Intact: every link, entry and row is as the history says."
        else:
            n = len(report.findings)
            verdict = (
                f"{f.count(n)} finding{'s' if n != 1 else ''}: the history was changed outside "
                "billing-desk. Press Enter on a finding to open what it names."
            )
        self.show_list(report.findings, f"{verdict}\n{checked}")

    def show_list(self, findings: Sequence[Finding], summary: str) -> None:
        self.summary.setText(summary)
        self.list.clear()
        # An intact history needs no empty list under its verdict.
        self.list.setVisible(bool(findings))
        for finding in findings:
            item = QListWidgetItem(finding_text(finding))
            item.setData(Qt.ItemDataRole.UserRole, finding)
            item.setToolTip("Enter or double click: open what this finding names.")
            self.list.addItem(item)
        if findings:
            self.list.setCurrentRow(0)


ARCHIVE_FILES = "Audit archives (*.sqlite3 *.archive);;All files (*)"


def choose_file(
    parent: QWidget,
    title: str,
    filters: str,
    chosen: Callable[[Path], None],
    *,
    save_in: str | None = None,
    suggested: str | None = None,
    save: bool = True,
) -> QFileDialog:
    """A file dialog that does not block (it is opened, not exec'd): `chosen` gets the path."""
    dialog = QFileDialog(parent, title, save_in or str(Path.home()), filters)
    dialog.setObjectName("chooseFile")
    dialog.setOption(QFileDialog.Option.DontUseNativeDialog, True)
    if save:
        dialog.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)
        dialog.setFileMode(QFileDialog.FileMode.AnyFile)
    else:
        dialog.setFileMode(QFileDialog.FileMode.ExistingFile)
    if suggested:
        dialog.selectFile(suggested)
    dialog.fileSelected.connect(lambda name: chosen(Path(name)))
    dialog.finished.connect(lambda _result: dialog.deleteLater())
    dialog.open()
    return dialog
