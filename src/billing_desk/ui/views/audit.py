"""Audit: the tamper-evident history, browsed. The list holds only the entries fetched so far
and asks for the next keyset page when the person scrolls near its end (Qt's canFetchMore and
fetchMore), so a log of a million entries opens as fast as one of a hundred. A filter starts a
new first page; it never loads the whole log. The selected entry shows its fields before and
after (changed ones first and marked, the unchanged folded below), its digest and sequence, and
everything the same request did; from a payment or invoice elsewhere, History opens this view
filtered to it."""

from __future__ import annotations

from datetime import date
from html import escape as esc

from PySide6.QtCore import (
    QByteArray,
    QDate,
    Qt,
    QUrl,
)
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDateEdit,
    QGridLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QSplitter,
    QTableView,
    QTextBrowser,
    QWidget,
)

from billing_desk.domain.money import Money
from billing_desk.services.audit_browser import (
    PAGE_SIZE,
    AuditEntryDetail,
    AuditFilter,
    AuditRow,
    FieldChange,
    audit_entry,
    audit_page,
)
from billing_desk.services.facilities import FacilityInfo, list_facilities
from billing_desk.ui.desk import Desk
from billing_desk.ui.formatting import Formats
from billing_desk.ui.models import RIGHT, Column, PagedModel
from billing_desk.ui.views.base import View
from billing_desk.ui.widgets import FacilityBox, pydate

NO_DATE = QDate(2000, 1, 1)


def audit_model(formats: Formats, parent: QWidget | None = None) -> PagedModel[AuditRow]:
    """The entries fetched so far under one filter (the model never touches the database:
    pages arrive from the background when it asks for more)."""
    f = formats
    return PagedModel(
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
        key=lambda r: r.entry_id,
        page_size=PAGE_SIZE,
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
        self.layout_.addWidget(self.count)

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
        self.splitter = QSplitter(Qt.Orientation.Vertical, self)
        self.splitter.addWidget(self.table)
        self.splitter.addWidget(self.detail)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.layout_.addWidget(self.splitter, 1)
        self.detail.setHtml("<p>Select an entry to see what it changed.</p>")

        self.model.more_wanted.connect(self._next_page)
        self.table.selectionModel().selectionChanged.connect(lambda *_: self._selected())
        for line in (
            self.user,
            self.action_name,
            self.entity_type,
            self.entity_id,
            self.request,
            self.text,
        ):
            line.returnPressed.connect(self.refresh)
        self.facility.when_chosen(self.refresh)
        self.since.editingFinished.connect(self.refresh)
        self.until.editingFinished.connect(self.refresh)
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
        self._filter = AuditFilter()
        self._wanted_entry: int | None = None
        self._facilities_loaded = False

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
        return [self.refresh_action, self.clear_action]

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
        n = len(self.model.rows)
        entries = f"{self.desk.formats.count(n)} entr{'ies' if n != 1 else 'y'}"
        if not n:
            self.count.setText("No entry matches these filters.")
        elif self.model.exhausted:
            self.count.setText(entries)
        else:
            self.count.setText(f"{entries} so far (more as you scroll)")
        if self._wanted_entry is not None:
            row = self.model.row_of(self._wanted_entry)
            if row is not None:
                self._wanted_entry = None
                self.table.selectRow(row)
                self.table.scrollTo(self.model.index(row, 0))
        elif first and n:
            self.table.selectRow(0)

    def _selected(self) -> None:
        indexes = self.table.selectionModel().selectedRows()
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
            entry_id = int(text.split(":", 1)[1])
            row = self.model.row_of(entry_id)
            if row is not None:
                self.table.selectRow(row)
                self.table.scrollTo(self.model.index(row, 0))
            else:
                self.desk.query(
                    self, lambda ws: audit_entry(ws, entry_id), self._show, key="audit-entry"
                )

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
