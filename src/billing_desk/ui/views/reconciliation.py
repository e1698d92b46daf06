"""Reconciliation, side by side: the bank lines on the left (unmatched, or all), and for the
selected line the payments and deposit slips that could explain it on the right, ranked by the
rule that makes each a candidate, with the difference between the line and the candidate. Match
is the default only at a difference of zero; a match with a difference asks for a reason and is
kept as such. Unmatch asks why. Auto-match runs the rules in the background and says what it
matched and which lines it left. Matching clears the payments, as the service does."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from html import escape as esc
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from billing_desk.domain.csv_mappings import CsvMapping
from billing_desk.domain.errors import BadInput, BillingError, EnvironmentFault
from billing_desk.domain.money import Money
from billing_desk.domain.roles import Permission
from billing_desk.domain.statements import StatementRefused
from billing_desk.importers.statements import csv_statement, registry
from billing_desk.services.csv_mappings import find_mapping
from billing_desk.services.matching import (
    Candidate,
    LineInfo,
    MatchInfo,
    MatchSummary,
    auto_match,
    candidates,
    list_lines,
    match_line,
    match_together,
    unmatch_line,
)
from billing_desk.services.reconciliation import DiscrepancyInfo
from billing_desk.services.statements import (
    ImportResult,
    LinePreview,
    ProgressFn,
    import_statements,
)
from billing_desk.services.unit_of_work import Workspace
from billing_desk.ui.desk import Desk
from billing_desk.ui.errors import WARNING, MessageBar
from billing_desk.ui.formatting import money_sort_key
from billing_desk.ui.models import RIGHT, Column, RowsModel
from billing_desk.ui.operations import Cancelled, Operation, changes
from billing_desk.ui.views.base import (
    View,
    fit_columns,
    make_table,
    select_key,
    selected_row,
)
from billing_desk.ui.views.csv_mapping import CsvMappingDialog, MappingNeeded
from billing_desk.ui.views.reconciliation_runs import ReconciliationRunDialog
from billing_desk.ui.widgets import ReasonDialog, make_primary

# The lines table's "Matched to" column.
MATCHED_COLUMN = 4
SHOW = (
    ("Unmatched lines", "unmatched"),
    ("Matched lines", "matched"),
    ("Matched with a difference", "difference"),
    ("All lines", "all"),
)


def shown(which: str, line: LineInfo) -> bool:
    """Whether the line belongs in the list the person chose."""
    matched = line.matched
    if which == "matched":
        return matched
    if which == "difference":
        return matched and line.rule == "manual with difference"
    return which != "unmatched" or not matched


STATEMENT_FILES = (
    "Bank statements (*.ofx *.qfx *.xml *.sta *.mt940 *.940 *.txt *.bai *.bai2 *.csv);;"
    "All files (*)"
)


def line_amount(line: LineInfo) -> Money:
    return Money.from_minor(line.amount_minor, line.currency)


def matched_to(line: LineInfo) -> str:
    if line.payment_id is not None:
        first = f"payment {line.payment_id}"
    elif line.deposit_id is not None:
        first = f"deposit {line.deposit_id}"
    elif line.matched_elsewhere:
        return "another facility"
    else:
        return ""
    return f"{', '.join((first, *line.also))} ({line.rule})"


def fits_text(candidate: Candidate) -> str:
    """Whether the candidate explains the line alone, only with others (its amount is part of
    the line's), or cannot be matched to it at all."""
    if candidate.fits:
        return "yes"
    return "with others" if candidate.fits_together else "no"


def target_of(candidate: Candidate) -> str:
    if candidate.payment_id is not None:
        return f"payment {candidate.payment_id}"
    return f"deposit {candidate.deposit_id}"


class ReconciliationView(View):
    title = "Reconciliation"
    summary = "bank lines against payments"
    permission = Permission.RECONCILE
    listens = frozenset({"statements", "payments", "deposits"})

    def __init__(self, desk: Desk, parent: QWidget | None = None) -> None:
        super().__init__(desk, parent)
        f = desk.formats
        self.lines: RowsModel[LineInfo] = RowsModel(
            [
                Column("Line", lambda r: str(r.id), lambda r: r.id, RIGHT),
                Column("Booked", lambda r: f.date(r.booked), lambda r: r.booked),
                Column(
                    "Amount",
                    lambda r: f.money(line_amount(r)),
                    lambda r: money_sort_key(line_amount(r)),
                    RIGHT,
                ),
                Column(
                    "Reference / counterparty",
                    # Where the bank names no party, its own text says what the line is.
                    lambda r: " — ".join(
                        t for t in (r.reference, r.counterparty or r.description) if t
                    ),
                    tooltip=lambda r: " — ".join(
                        t for t in (r.reference, r.counterparty, r.description) if t
                    ),
                ),
                Column("Matched to", matched_to, tooltip=matched_to),
            ],
            key=lambda r: r.id,
            parent=self,
        )
        self.found: RowsModel[Candidate] = RowsModel(
            [
                Column("Candidate", target_of, lambda r: r.rank),
                Column("Date", lambda r: f.date(r.day), lambda r: r.day),
                Column(
                    "Amount",
                    lambda r: f.money(Money.from_minor(r.amount_minor, r.currency)),
                    lambda r: (r.currency, r.amount_minor),
                    RIGHT,
                ),
                Column("Payer", lambda r: r.payer or ""),
                Column(
                    "Why a candidate",
                    lambda r: r.rule + _agreeing(r),
                    tooltip=lambda r: r.rule + _agreeing(r),
                ),
                Column(
                    "Fits",
                    fits_text,
                    emphasis=lambda r: not r.fits_together,
                    tooltip=lambda r: r.refusal_together or r.refusal,
                ),
            ],
            key=lambda r: (r.payment_id, r.deposit_id),
            parent=self,
        )
        self.which = QComboBox(self)
        for label, value in SHOW:
            self.which.addItem(label, value)
        self.which.setAccessibleName("Lines shown")
        self.count = QLabel(self)
        top = QHBoxLayout()
        caption = QLabel("&Show:", self)
        caption.setBuddy(self.which)
        top.addWidget(caption)
        top.addWidget(self.which)
        top.addStretch(1)
        top.addWidget(self.count)
        self.layout_.addLayout(top)

        self.lines_table = make_table(self, self.lines, "Bank lines", stretch=3)
        self.found_table = make_table(self, self.found, "Candidates", stretch=4)
        # Several candidates may be the line's money together (Ctrl or Shift to add).
        self.found_table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.difference = QLabel(self)
        self.difference.setAccessibleName("Difference")
        self.difference.setWordWrap(True)
        font = self.difference.font()
        font.setBold(True)
        self.difference.setFont(font)
        self.match_button = QPushButton("&Match", self)
        self.unmatch_button = QPushButton("&Unmatch…", self)
        self.auto_button = QPushButton("&Auto-match all", self)
        right = QWidget(self)
        column = QVBoxLayout(right)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(QLabel("Candidates for the selected line, best first:", right))
        # Any payment or slip by hand, when the rules' candidates are not the right ones.
        self.search = QLineEdit(right)
        self.search.setAccessibleName("Find any payment")
        self.search.setPlaceholderText(
            "Find any payment: number, reference, check, payer or amount"
        )
        self.search.setClearButtonEnabled(True)
        self.search.returnPressed.connect(self._line_chosen)
        self.search.textChanged.connect(self._search_changed)
        column.addWidget(self.search)
        column.addWidget(self.found_table, 1)
        column.addWidget(self.difference)
        buttons = QHBoxLayout()
        buttons.addWidget(self.auto_button)
        buttons.addStretch(1)
        buttons.addWidget(self.unmatch_button)
        buttons.addWidget(self.match_button)
        column.addLayout(buttons)
        splitter = QSplitter(Qt.Orientation.Horizontal, self)
        splitter.addWidget(self.lines_table)
        splitter.addWidget(right)
        # The candidates have six columns to the lines' four: they get the larger share.
        splitter.setStretchFactor(0, 5)
        splitter.setStretchFactor(1, 7)
        splitter.setSizes([470, 650])
        self.layout_.addWidget(splitter, 1)

        self.which.currentIndexChanged.connect(lambda _: self.refresh())
        self.lines_table.selectionModel().selectionChanged.connect(lambda *_: self._line_chosen())
        self.found_table.selectionModel().selectionChanged.connect(lambda *_: self._weigh())
        self.found_table.activated.connect(lambda _: self.match())
        self.match_button.clicked.connect(self.match)
        self.unmatch_button.clicked.connect(self.unmatch)
        self.auto_button.clicked.connect(self.auto)
        self.match_action = self.action("&Match the line", self.match, shortcut="Ctrl+M")
        self.auto_action = self.action(
            "&Auto-match",
            self.auto,
            shortcut="Ctrl+Shift+M",
            tip="Match every line a rule matches alone.",
        )
        self.import_action = self.action(
            "&Import a statement…",
            self._choose_file,
            shortcut="Ctrl+I",
            tip="Read a bank's file (OFX, camt.053, MT940, BAI2), see every line, then import.",
        )
        self.runs_action = self.action(
            "Reconciliation &run…",
            self.open_run,
            shortcut="Ctrl+Shift+R",
            tip="Compare the books with the bank for a period; managers resolve and seal.",
        )
        self.history_action = self.action(
            "&History",
            self._history,
            shortcut="Ctrl+Shift+H",
            tip="The selected bank line's own history (when and by whom it was imported), in "
            "the Audit view.",
        )
        self.refresh_action = self.action(
            "Re&fresh", self.refresh, shortcut=QKeySequence.StandardKey.Refresh
        )
        # Statement files dropped on the view (or chosen together) are previewed one by one.
        self.setAcceptDrops(desk.may(Permission.IMPORT_STATEMENTS))
        self._files_waiting: list[Path] = []
        self._wanted: int | None = None
        self._weigh()

    def menu_actions(self) -> list[QAction]:
        return [
            self.import_action,
            self.match_action,
            self.auto_action,
            self.runs_action,
            self.history_action,
            self.refresh_action,
        ]

    def _history(self) -> None:
        line = selected_row(self.lines_table, self.lines)
        if line is not None:
            self.open_history("bank_line", str(line.id))

    def open_run(self) -> None:
        self.run_dialog = ReconciliationRunDialog(self.desk, self)
        self.run_dialog.open_requested.connect(self.show_concerned)
        self.run_dialog.open()

    def show_concerned(self, found: DiscrepancyInfo) -> None:
        """A discrepancy's payment in the register, its invoice among the invoices, its bank
        line among all lines, else its deposit slip among the deposits."""
        show_view = getattr(self.window(), "show_view", None)
        if found.payment_id is not None and show_view is not None:
            open_payment = getattr(show_view("Payments"), "open_payment", None)
            if open_payment is not None:
                open_payment(found.payment_id)
                return
        if found.invoice_number is not None and show_view is not None:
            open_invoice = getattr(show_view("Invoices"), "open_invoice", None)
            if open_invoice is not None:
                open_invoice(found.invoice_number)
                return
        if found.line_id is None and found.deposit_id is not None and show_view is not None:
            open_deposit = getattr(show_view("Deposits"), "open_deposit", None)
            if open_deposit is not None:
                open_deposit(found.deposit_id)
                return
        if found.line_id is not None:
            self._wanted = found.line_id
            index = self.which.findData("all")
            if self.which.currentIndex() != index:
                self.which.setCurrentIndex(index)  # refreshes
            else:
                self.refresh()

    def _choose_file(self) -> None:
        chosen, _ = QFileDialog.getOpenFileNames(
            self, "Import bank statements", "", STATEMENT_FILES
        )
        if chosen:
            self.import_files([Path(name) for name in chosen])

    def import_files(self, paths: list[Path]) -> StatementImportDialog | None:
        """Preview the files one after the other: each next one opens when the person has
        imported or cancelled the one before. Returns the first file's preview."""
        self._files_waiting.extend(paths)
        if any(d.isVisible() for d in self.findChildren(StatementImportDialog)):
            return None  # the open preview's end opens the next
        return self._next_file()

    def _next_file(self) -> StatementImportDialog | None:
        if not self._files_waiting:
            return None
        dialog = self.import_file(self._files_waiting.pop(0))
        dialog.finished.connect(lambda _result: self._next_file())
        return dialog

    def import_file(self, path: Path) -> StatementImportDialog:
        dialog = StatementImportDialog(self.desk, path, self)
        dialog.imported.connect(
            lambda result: self.message_bar.show_message(_imported_sentence(result))
        )
        dialog.open()
        return dialog

    def dropped(self, files: list[Path]) -> None:
        self.import_files(files)

    # -- fetching -----------------------------------------------------------------------------

    def refresh(self) -> None:
        which = str(self.which.currentData())
        self.desk.query(
            self,
            lambda ws: [
                line
                for line in list_lines(ws, unmatched=which == "unmatched")
                if shown(which, line)
            ],
            self._arrived,
            key="reconcile-lines",
        )

    def _arrived(self, lines: list[LineInfo]) -> None:
        chosen = selected_row(self.lines_table, self.lines)
        self.lines.set_rows(lines)
        fit_columns(self.lines_table, widest_chars=24)
        # Unmatched lines are matched to nothing: their reference gets the room.
        self.lines_table.setColumnHidden(MATCHED_COLUMN, self.which.currentData() == "unmatched")
        n = len(lines)
        self.count.setText(f"{self.desk.formats.count(n)} line{'s' if n != 1 else ''}")
        key = self._wanted or (chosen.id if chosen else None)
        self._wanted = None
        if key is not None and self.lines.row_of(key) is not None:
            select_key(self.lines_table, self.lines, key)
        elif lines:
            self.lines_table.selectRow(0)
        else:
            self.found.set_rows([])
            self._weigh()

    def _search_changed(self, text: str) -> None:
        if not text:
            self._line_chosen()  # cleared: the rules' candidates again

    def _line_chosen(self) -> None:
        line = selected_row(self.lines_table, self.lines)
        self.found.set_rows([])
        self._weigh()
        if line is None or line.matched:
            return
        number, wanted = line.id, self.search.text().strip() or None
        self.desk.query(
            self,
            lambda ws: candidates(ws, number, search=wanted, limit=50 if wanted else 10),
            lambda found: self._candidates(number, found),
            key="reconcile-candidates",
        )

    def _candidates(self, line_id: int, found: list[Candidate]) -> None:
        line = selected_row(self.lines_table, self.lines)
        if line is None or line.id != line_id or line.matched:
            return  # another line was chosen meanwhile: these are not its candidates
        self.found.set_rows(found)
        fit_columns(self.found_table, widest_chars=16)
        if found:
            self.found_table.selectRow(0)
        self._weigh()

    # -- deciding -----------------------------------------------------------------------------

    def chosen_candidates(self) -> list[Candidate]:
        """The candidates selected (several when the line is their money together)."""
        model = self.found_table.selectionModel()
        rows = sorted({i.row() for i in model.selectedRows()}) if model is not None else []
        return [c for c in (self.found.row_at(r) for r in rows) if c is not None]

    def _weigh(self) -> None:
        """The difference between the line and the chosen candidates, and what may be done."""
        line = selected_row(self.lines_table, self.lines)
        chosen = self.chosen_candidates()
        may = self.desk.may(Permission.RECONCILE) and not self.desk.read_only
        matched = line is not None and line.matched
        # Another facility's match is theirs to undo.
        self.unmatch_button.setEnabled(
            may and matched and line is not None and not line.matched_elsewhere
        )
        self.auto_button.setEnabled(may)
        self.auto_action.setEnabled(may)
        if line is None or not chosen:
            if line is not None and line.matched_elsewhere:
                said = (
                    f"Line {line.id} is matched to another facility's payment or slip; "
                    "someone who works for it unmatches it if it is wrong."
                )
            elif line is not None and matched:
                said = f"Line {line.id} is matched to {matched_to(line)}."
            else:
                said = ""
            self.difference.setText(said)
            self.match_button.setEnabled(False)
            self.match_action.setEnabled(False)
            return
        f = self.desk.formats
        # A debit is explained by money that went back out: the candidates count negative.
        sign = 1 if line.amount_minor > 0 else -1
        together = sum(c.amount_minor for c in chosen)
        left = line.amount_minor - sign * together
        several = len(chosen) > 1
        what = f"the {len(chosen)} chosen" if several else "the candidate"
        if any(c.currency != line.currency for c in chosen):
            text = f"A candidate is in another currency; the line is in {line.currency}."
        elif left == 0:
            text = (
                f"Difference {f.money(Money.from_minor(0, line.currency))}: the line is explained"
                + (
                    f" by {what}, {f.money(Money.from_minor(sign * together, line.currency))} "
                    "together."
                    if several
                    else "."
                )
            )
        else:
            text = (
                f"Difference {f.money(Money.from_minor(left, line.currency))} between the line "
                f"and {what}: a match needs a reason and is kept as a match with a difference."
            )
        if several:
            refusals = [c.refusal_together for c in chosen if c.refusal_together]
            fits = all(c.fits_together for c in chosen)
        else:
            refusals = [c.refusal for c in chosen if not c.fits and c.refusal]
            fits = chosen[0].fits
        if refusals:
            text += " " + " ".join(refusals)
        self.difference.setText(text)
        self.match_button.setText(
            ("&Match" if left == 0 else "&Match with a difference…")
            + (f" ({len(chosen)} together)" if several else "")
        )
        # An exact choice that does not fit says why and cannot be matched; a difference goes
        # to the reason dialog, and the service refuses what does not fit.
        self.match_button.setEnabled(may and (fits if several else fits or left != 0))
        self.match_button.setDefault(left == 0)
        self.match_action.setEnabled(self.match_button.isEnabled())

    def match(self) -> None:
        line = selected_row(self.lines_table, self.lines)
        chosen = self.chosen_candidates()
        if line is None or not chosen or not self.match_button.isEnabled():
            return
        number = line.id
        payments = [c.payment_id for c in chosen if c.payment_id is not None]
        deposits = [c.deposit_id for c in chosen if c.deposit_id is not None]
        sign = 1 if line.amount_minor > 0 else -1
        exact = line.amount_minor == sign * sum(c.amount_minor for c in chosen)

        def work(note: str | None) -> Callable[[Workspace], MatchInfo]:
            if len(chosen) == 1:
                payment, deposit = chosen[0].payment_id, chosen[0].deposit_id
                return lambda ws: match_line(
                    ws, number, payment_id=payment, deposit_id=deposit, note=note
                )
            return lambda ws: match_together(
                ws, number, payment_ids=payments, deposit_ids=deposits, note=note
            )

        if exact and (chosen[0].fits if len(chosen) == 1 else True):
            self._matching(line, work(None), together=len(chosen))
            return
        named = ", ".join(target_of(c) for c in chosen)
        dialog = ReasonDialog(
            self,
            f"Match line {number} with a difference",
            f"Line {number} and {named} differ. Match them anyway, kept as a match "
            "with a difference that every run reports until a manager resolves it? &Why?",
            "&Match with a difference",
        )
        dialog.submitted.connect(
            lambda reason: self._matching(line, work(reason), dialog, together=len(chosen))
        )
        dialog.open()

    def _matching(
        self,
        line: LineInfo,
        work: Callable[[Workspace], MatchInfo],
        dialog: ReasonDialog | None = None,
        together: int = 1,
    ) -> None:
        self.match_button.setEnabled(False)

        def done(info: MatchInfo) -> None:
            if dialog is not None:
                dialog.accept()
            target = (
                f"payment {info.payment_id}" if info.payment_id else f"deposit {info.deposit_id}"
            )
            if together > 1:
                target += f" and {together - 1} more together"
            self.message_bar.show_message(f"Line {info.line_id} matched to {target} ({info.rule}).")

        def refused(error: BaseException) -> None:
            self._weigh()
            if dialog is not None:
                dialog.failed(error, self.desk.presenter.present)
            else:
                self.desk.presenter.present(self, error, None)

        self.desk.change(self, work, done, changes("statements", "payments"), failure=refused)

    def unmatch(self) -> None:
        line = selected_row(self.lines_table, self.lines)
        if line is None or (line.payment_id is None and line.deposit_id is None):
            return
        number = line.id
        dialog = ReasonDialog(
            self,
            f"Unmatch line {number}",
            f"Unmatch line {number} from {matched_to(line)}? Its payments go back to where they "
            "were before the match. &Why?",
            "&Unmatch",
        )

        def done(_: MatchInfo) -> None:
            dialog.accept()
            self._wanted = number
            self.message_bar.show_message(f"Line {number} is unmatched.")

        dialog.submitted.connect(
            lambda reason: self.desk.change(
                dialog,
                lambda ws: unmatch_line(ws, number, reason),
                done,
                changes("statements", "payments"),
                failure=lambda err: dialog.failed(err, self.desk.presenter.present),
            )
        )
        dialog.open()

    def auto(self) -> None:
        if not self.auto_button.isEnabled():
            return
        self.auto_button.setEnabled(False)

        def done(summary: MatchSummary) -> None:
            self.auto_button.setEnabled(True)
            n = len(summary.matched)
            left = len(summary.left_line_ids)
            text = f"Auto-match matched {n} line{'s' if n != 1 else ''}"
            text += f"; {left} left for you" if left else "; none left"
            if summary.ambiguous_lines:
                text += f" ({summary.ambiguous_lines} with more than one candidate)"
            self.message_bar.show_message(text + ".", WARNING if left else "info")

        self.desk.change(
            self,
            lambda ws, progress: auto_match(ws, progress=progress),
            done,
            changes("statements", "payments"),
            failure=self._auto_failed,
            progress_label="Auto-matching the bank lines",
        )

    def _auto_failed(self, error: BaseException) -> None:
        self.auto_button.setEnabled(True)
        if isinstance(error, Cancelled):
            self.message_bar.show_message("Auto-match cancelled: nothing was matched.", WARNING)
            return
        self.desk.presenter.present(self, error, self.auto)


def _imported_sentence(result: ImportResult) -> str:
    if result.kept_conflicting:
        n = result.kept_conflicting
        return (
            f"{result.file}: {n} conflicting line{'s' if n != 1 else ''} kept as new, with your "
            "reason in the audit log."
        )
    return f"{result.file}: {result.count('new')} new lines imported."


def _agreeing(candidate: Candidate) -> str:
    return f" ({', '.join(candidate.agreeing)} agree)" if candidate.agreeing else ""


def preview_statement_file(
    workspace: Workspace,
    path: Path,
    *,
    commit: bool,
    mapping: CsvMapping | None = None,
    keep_conflicting: str | None = None,
    progress: ProgressFn | None = None,
) -> Previewed:
    """Read a bank's file and compare its lines with what is imported; with `commit`, save it.
    A CSV file is read with `mapping`, else with the saved mapping that reads it; when none
    does, MappingNeeded carries the guessed mapping to the editor."""
    if progress is not None:
        progress(0, 1, "Reading the file")
    data = registry.read_statement_file(path)
    chosen = registry.detect(data)
    if chosen == "csv":
        if mapping is None:
            mapping = find_mapping(workspace, data)
        if mapping is None:
            raise _mapping_needed(path, data)
        statements = csv_statement.parse_with(data, mapping)
    else:
        statements = registry.parse(data, chosen)
    for statement in statements:
        if not statement.account:
            raise BadInput(
                f"{path.name} does not say which bank account it is; import it with `billing-desk "
                f"import statement {path} --account ACCOUNT`."
            )
    result = import_statements(
        workspace,
        path.name,
        data,
        chosen,
        statements,
        commit=commit,
        keep_conflicting=keep_conflicting,
        progress=progress,
    )
    return Previewed(result, mapping)


@dataclass(frozen=True)
class Previewed:
    """A file's lines compared with what is imported, and the CSV mapping that read them."""

    result: ImportResult
    mapping: CsvMapping | None = None


def _mapping_needed(path: Path, data: bytes) -> MappingNeeded:
    name = path.stem[:60]
    try:
        record = csv_statement.guess_mapping(data, name=name).to_record()
        problem = None
    except StatementRefused as refused:
        record = csv_statement.guess_layout(data, name=name)
        problem = refused.problem
    return MappingNeeded(path.name, data, record, problem)


class StatementImportDialog(QDialog):
    """A bank statement file before it is saved: each statement's account and period, the
    file's own checks in words, and every line new, already imported or conflicting (with what
    differs). Nothing is written until Import; a file whose checks failed is imported only
    once the person ticks that they have seen the failure."""

    imported = Signal(object)

    def __init__(self, desk: Desk, path: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.desk = desk
        self.path = path
        self.setWindowTitle(f"Import {path.name}")
        f = desk.formats
        self.message_bar = MessageBar(self)
        self.summary = QLabel(f"Reading {path.name}…", self)
        self.summary.setWordWrap(True)
        self.rows: RowsModel[LinePreview] = RowsModel(
            [
                Column("Where", lambda r: r.location),
                Column(
                    "Booked", lambda r: f.date(date.fromisoformat(r.booked)), lambda r: r.booked
                ),
                Column(
                    "Amount", lambda r: f.money(r.amount), lambda r: money_sort_key(r.amount), RIGHT
                ),
                Column(
                    "Status",
                    lambda r: str(r.status),
                    emphasis=lambda r: str(r.status) == "conflicting",
                ),
                Column(
                    "Reference / counterparty",
                    lambda r: " — ".join(t for t in (r.reference, r.counterparty) if t),
                    tooltip=lambda r: r.description,
                ),
                Column("What differs", lambda r: r.why or "", tooltip=lambda r: r.why),
            ],
            key=lambda r: r.location,
            parent=self,
        )
        self.table = make_table(self, self.rows, "Lines of the file", stretch=4)
        self.seen_failure = QCheckBox(
            "I have seen that the file's own checks &failed, and import it anyway", self
        )
        self.seen_failure.hide()
        buttons = QDialogButtonBox(self)
        self.import_button = buttons.addButton("&Import", QDialogButtonBox.ButtonRole.AcceptRole)
        buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        self.import_button.setEnabled(False)
        # A bank that gave one id to two real lines must not cost a line: a person who has
        # checked with the bank keeps the conflicting ones as new lines, saying why.
        self.keep_button = buttons.addButton(
            "&Keep conflicting lines…", QDialogButtonBox.ButtonRole.ActionRole
        )
        self.keep_button.hide()
        self.keep_button.clicked.connect(self.keep_conflicting)
        make_primary(buttons, self.import_button)
        buttons.accepted.connect(self.commit)
        buttons.rejected.connect(self.reject)
        self.seen_failure.toggled.connect(lambda _: self._ready())
        layout = QVBoxLayout(self)
        layout.addWidget(self.message_bar)
        layout.addWidget(self.summary)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.seen_failure)
        layout.addWidget(buttons)
        self.resize(1000, 560)
        self.previewed: ImportResult | None = None
        # The CSV mapping the file is read with (found among the saved ones, or just saved).
        self.mapping: CsvMapping | None = None
        self.mapping_editor: CsvMappingDialog | None = None
        self.read()

    def read(self) -> None:
        """Read the file in the background with progress and Cancel: a bank's year is tens of
        thousands of lines, and the window keeps answering meanwhile."""
        target, mapping = self.path, self.mapping
        self.desk.run(
            Operation(
                self,
                lambda ws, progress: preview_statement_file(
                    ws, target, commit=False, mapping=mapping, progress=progress
                ),
                success=self._previewed,
                failure=self._refused,
                progress_label=f"Reading {self.path.name}",
            )
        )

    def _edit_mapping(self, needed: MappingNeeded) -> None:
        self.summary.setText(
            f"{esc(self.path.name)} is a CSV export: say how to read it in the mapping editor."
        )
        editor = CsvMappingDialog(
            self.desk, self.path.name, needed.data, needed.record, needed.problem, self
        )
        self.mapping_editor = editor

        def saved(mapping: CsvMapping) -> None:
            self.mapping = mapping
            self.summary.setText(f"Reading {esc(self.path.name)} with the mapping just saved…")
            self.read()

        editor.saved.connect(saved)
        editor.rejected.connect(
            lambda: self.message_bar.show_message(
                "No mapping saved: the CSV file is not read until one says how.", WARNING
            )
        )
        editor.open()

    def _refused(self, error: BaseException) -> None:
        self.summary.setText("")
        if isinstance(error, MappingNeeded):
            self._edit_mapping(error)
        elif isinstance(error, Cancelled):
            self.message_bar.show_message("Cancelled: nothing was written.", WARNING)
        elif isinstance(error, BillingError) and not isinstance(error, EnvironmentFault):
            self.message_bar.show_message(error.message, WARNING)
        else:
            self.desk.presenter.present(self, error, None)

    def _previewed(self, previewed: Previewed) -> None:
        result = previewed.result
        self.previewed = result
        self.mapping = previewed.mapping
        parts = []
        if previewed.mapping is not None:
            parts.append(f"Read with the saved CSV mapping “{esc(previewed.mapping.name)}”.")
        f = self.desk.formats
        for s in result.statements:
            period = (
                f", {f.date(date.fromisoformat(s.period_start))} to "
                f"{f.date(date.fromisoformat(s.period_end))}"
                if s.period_start and s.period_end
                else ""
            )
            balances = ", ".join(
                f"{label} {f.money(amount)}"
                for label, amount in (("opening balance", s.opening), ("closing", s.closing))
                if amount is not None
            )
            checks = "; ".join(
                f"{c.name}: {'passed' if c.ok else 'FAILED'} ({c.detail})" for c in s.checks
            )
            parts.append(
                f"Account <b>{esc(s.account)}</b> in {esc(s.currency)}{esc(period)}: "
                f"{len(s.lines)} line{'s' if len(s.lines) != 1 else ''}"
                + (f"; {esc(balances)}" if balances else "")
                + (f"<br>The file's own checks: {esc(checks)}" if checks else "")
            )
        parts.append(
            f"{result.format}: {result.count('new')} new, {result.count('already imported')} "
            f"already imported, {result.count('conflicting')} conflicting. Nothing is written "
            "until Import."
        )
        conflicting = [ln for st in result.statements for ln in st.lines if ln.why]
        for line in conflicting[:5]:
            parts.append(f"Conflicting, {esc(line.location)}: {esc(line.why or '')}.")
        if len(conflicting) > 5:
            parts.append(f"… and {len(conflicting) - 5} more conflicting lines, listed below.")
        self.summary.setText("<br>".join(parts))
        self.rows.set_rows([line for s in result.statements for line in s.lines])
        fit_columns(self.table, widest_chars=28)
        self.seen_failure.setVisible(not result.checks_ok)
        self._ready()

    def _ready(self) -> None:
        result = self.previewed
        ok = result is not None and result.count("new") > 0
        if result is not None and not result.checks_ok:
            ok = ok and self.seen_failure.isChecked()
        self.import_button.setEnabled(ok)
        n = result.count("new") if result is not None else 0
        self.import_button.setText(
            f"&Import {n} new line{'s' if n != 1 else ''}" if n else "&Import"
        )
        conflicting = result.count("conflicting") if result is not None else 0
        self.keep_button.setVisible(conflicting > 0)
        self.keep_button.setEnabled(
            conflicting > 0
            and result is not None
            and (result.checks_ok or self.seen_failure.isChecked())
        )

    def keep_conflicting(self) -> None:
        result = self.previewed
        if result is None or not self.keep_button.isEnabled():
            return
        n = result.count("conflicting")
        dialog = ReasonDialog(
            self,
            f"Keep {n} conflicting line{'s' if n != 1 else ''}",
            "The bank's id of each was imported before with another date or amount. Keep them "
            "as new lines only when the bank has confirmed they are real.\n\n&What did the "
            "bank say?",
            "&Keep them",
        )
        target, mapping = self.path, self.mapping

        def done(saved: Previewed) -> None:
            dialog.accept()
            self.imported.emit(saved.result)
            self.accept()

        dialog.submitted.connect(
            lambda reason: self.desk.change(
                dialog,
                lambda ws: preview_statement_file(
                    ws, target, commit=True, mapping=mapping, keep_conflicting=reason
                ),
                done,
                changes("statements"),
            )
        )
        dialog.open()

    def commit(self) -> None:
        if not self.import_button.isEnabled():
            return
        self.import_button.setEnabled(False)
        target, mapping = self.path, self.mapping

        def done(previewed: Previewed) -> None:
            self.imported.emit(previewed.result)
            self.accept()

        def refused(error: BaseException) -> None:
            self._ready()
            self._refused(error)

        self.desk.run(
            Operation(
                self,
                lambda ws, progress: preview_statement_file(
                    ws, target, commit=True, mapping=mapping, progress=progress
                ),
                success=done,
                failure=refused,
                changes=changes("statements"),
                progress_label=f"Importing {self.path.name}",
            )
        )
