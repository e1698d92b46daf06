"""Deposits: the recorded checks and cash not yet taken to the bank, picked with the mouse or
the keyboard (Ctrl+A takes them all) under a running count and total, then one deposit for a
date and bank account, whose slip opens in the preview to print or keep."""

from __future__ import annotations

import shutil
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from billing_desk.domain.money import Money
from billing_desk.domain.payments import PaymentStatus
from billing_desk.domain.roles import Permission
from billing_desk.reports.deposit_slip import write_deposit_slip
from billing_desk.services.deposit_register import DepositRow, recent_deposits
from billing_desk.services.deposits import DEFAULT_BANK_ACCOUNT, DepositSlip, create_deposit
from billing_desk.services.payments import PaymentDetail, list_payments
from billing_desk.services.provider import provider_details
from billing_desk.services.report_data import Printed, deposit_slip_data, record_prints
from billing_desk.services.unit_of_work import Workspace
from billing_desk.ui.desk import Desk
from billing_desk.ui.errors import WARNING
from billing_desk.ui.formatting import money_sort_key
from billing_desk.ui.models import RIGHT, Column, RowsModel
from billing_desk.ui.operations import changes
from billing_desk.ui.pdf_preview import PdfPreview
from billing_desk.ui.views.base import View, fit_columns, make_table, select_key, selected_row
from billing_desk.ui.views.payment_entry import ReceivedDate
from billing_desk.ui.widgets import make_primary, pydate

# What goes to the bank on a deposit slip; transfers and cards arrive there by themselves.
DEPOSITABLE = frozenset({"check", "cash"})


@dataclass(frozen=True)
class MadeDeposit:
    """A deposit just created (or found already made by the same submission), with its slip."""

    slip: DepositSlip
    pdf: Path


def ready_to_deposit(workspace: Workspace) -> list[PaymentDetail]:
    recorded = list_payments(workspace, status=PaymentStatus.RECORDED.value)
    return [p for p in recorded if p.method in DEPOSITABLE]


def slip_of(workspace: Workspace, deposit_id: int, folder: Path) -> Path:
    """Write deposit `deposit_id`'s slip into `folder` (recorded as printed)."""
    data = deposit_slip_data(workspace, deposit_id)
    pdf = folder / f"deposit-slip-{deposit_id}.pdf"
    write_deposit_slip(pdf, data, provider_details(workspace), workspace.user_name)
    record_prints(
        workspace,
        "report.print",
        [Printed("deposit_slip", str(deposit_id), None, {"total_minor": data.total.minor})],
    )
    return pdf


def make_deposit(
    workspace: Workspace, ids: list[int], day: date, account: str, folder: Path
) -> MadeDeposit:
    """Create the deposit and write its slip. Without a key of ours the service derives one from
    the payments, date and account, so a second press of the button returns the same deposit."""
    slip = create_deposit(workspace, ids, day, bank_account=account)
    return MadeDeposit(slip, slip_of(workspace, slip.deposit_id, folder))


def totals_text(desk: Desk, amounts: list[Money]) -> str:
    """'3 items, $1,234.00' (one figure per currency when they are mixed)."""
    by_currency: dict[str, int] = defaultdict(int)
    for amount in amounts:
        by_currency[amount.currency] += amount.minor
    n = len(amounts)
    figures = " + ".join(
        desk.formats.money(Money.from_minor(minor, currency))
        for currency, minor in sorted(by_currency.items())
    )
    return f"{n} item{'s' if n != 1 else ''}" + (f", {figures}" if n else "")


class DepositsView(View):
    title = "Deposits"
    summary = "checks and cash to the bank"
    permission = Permission.RECORD_PAYMENTS
    listens = frozenset({"payments", "deposits"})

    def __init__(self, desk: Desk, parent: QWidget | None = None) -> None:
        super().__init__(desk, parent)
        f = desk.formats
        self.model: RowsModel[PaymentDetail] = RowsModel(
            [
                Column("No.", lambda r: str(r.payment_id), lambda r: r.payment_id, RIGHT),
                Column("Received", lambda r: f.date(r.received_date), lambda r: r.received_date),
                Column("Facility", lambda r: r.facility),
                Column("Method", lambda r: r.method.capitalize()),
                Column("Check / instrument", lambda r: r.instrument),
                Column("Payer", lambda r: r.payer or ""),
                Column(
                    "Amount", lambda r: f.money(r.amount), lambda r: money_sort_key(r.amount), RIGHT
                ),
            ],
            key=lambda r: r.payment_id,
            parent=self,
        )
        intro = QLabel(
            "Recorded checks and cash not yet deposited. Select the ones going to the bank "
            "(Ctrl+A for all, Shift or Ctrl with the arrows or a click for several).",
            self,
        )
        intro.setWordWrap(True)
        self.layout_.addWidget(intro)
        self.table = make_table(self, self.model, "Checks and cash to deposit", stretch=5)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.layout_.addWidget(self.table, 3)

        self.date = ReceivedDate(desk.today(), self)
        self.date.setDisplayFormat(f.date_format())
        self.date.setAccessibleName("Deposit date")
        self.account = QLineEdit(DEFAULT_BANK_ACCOUNT, self)
        self.account.setAccessibleName("Bank account")
        self.selected = QLabel(self)
        self.selected.setAccessibleName("Selected for the deposit")
        font = self.selected.font()
        font.setBold(True)
        self.selected.setFont(font)
        self.deposit_button = QPushButton(self)
        self.deposit_button.setDefault(True)
        bar = QHBoxLayout()
        for text, widget in (("Deposit &date:", self.date), ("Bank &account:", self.account)):
            caption = QLabel(text, self)
            caption.setBuddy(widget)
            bar.addWidget(caption)
            bar.addWidget(widget)
        bar.addStretch(1)
        bar.addWidget(self.selected)
        bar.addWidget(self.deposit_button)
        self.layout_.addLayout(bar)

        self.made: RowsModel[DepositRow] = RowsModel(
            [
                Column("Deposit", lambda r: str(r.deposit_id), lambda r: r.deposit_id, RIGHT),
                Column("Date", lambda r: f.date(r.deposit_date), lambda r: r.deposit_date),
                Column("Account", lambda r: r.bank_account),
                Column("Items", lambda r: f.count(r.items), lambda r: r.items, RIGHT),
                Column(
                    "Total", lambda r: f.money(r.total), lambda r: money_sort_key(r.total), RIGHT
                ),
                Column("Made by", lambda r: r.made_by),
                Column("Standing", lambda r: r.standing, emphasis=lambda r: r.returned > 0),
            ],
            key=lambda r: r.deposit_id,
            parent=self,
        )
        made_caption = QLabel("Deposits made, newest first (Enter or double-click opens the slip):")
        self.layout_.addWidget(made_caption)
        self.made_table = make_table(
            self, self.made, "Deposits made", stretch=6, sort=(1, Qt.SortOrder.DescendingOrder)
        )
        self.made_table.activated.connect(lambda _: self.open_slip())
        self.layout_.addWidget(self.made_table, 2)

        self.table.selectionModel().selectionChanged.connect(lambda *_: self._count())
        self.deposit_button.clicked.connect(self.deposit)
        self.deposit_action = self.action(
            "&Deposit the selected…",
            self.deposit,
            shortcut="Ctrl+Shift+D",
            tip="Make one deposit of the selected checks and cash and open its slip.",
        )
        self.refresh_action = self.action(
            "Re&fresh", self.refresh, shortcut=QKeySequence.StandardKey.Refresh
        )
        self.history_action = self.action(
            "&History",
            self._history,
            shortcut="Ctrl+Shift+H",
            tip="Everything recorded about the selected deposit made, in the Audit view.",
        )
        self.date.refused.connect(lambda text: self.message_bar.show_message(text, WARNING))
        # Slips are written where the preview reads them and go when the view does; a copy is
        # kept with "Save a copy".
        self._slips = tempfile.mkdtemp(prefix="billing-desk-slips-")
        slips = self._slips
        self.destroyed.connect(lambda: shutil.rmtree(slips, ignore_errors=True))
        self._busy = False
        self._wanted_deposit: int | None = None
        self._count()

    def menu_actions(self) -> list[QAction]:
        return [self.deposit_action, self.history_action, self.refresh_action]

    def _history(self) -> None:
        chosen = selected_row(self.made_table, self.made)
        if chosen is not None:
            self.open_history("deposit", str(chosen.deposit_id))

    def refresh(self) -> None:
        self.desk.query(self, ready_to_deposit, self._arrived, key="deposits-ready")
        self.desk.query(self, recent_deposits, self._made_arrived, key="deposits-made")

    def open_deposit(self, deposit_id: int) -> None:
        """Select the deposit `deposit_id` among those made (from elsewhere in the application:
        a reconciliation's finding)."""
        self._wanted_deposit = deposit_id
        self.refresh()

    def _made_arrived(self, deposits: list[DepositRow]) -> None:
        self.made.set_rows(deposits)
        fit_columns(self.made_table)
        wanted, self._wanted_deposit = self._wanted_deposit, None
        if wanted is None:
            return
        if self.made.row_of(wanted) is not None:
            select_key(self.made_table, self.made, wanted)
            self.made_table.setFocus()
        else:
            self.message_bar.show_message(
                f"Deposit {wanted} is older than the deposits listed here; History "
                "(Ctrl+Shift+H) on a newer one, or the Audit view, shows its trail.",
                WARNING,
            )

    def open_slip(self) -> None:
        """The selected deposit's slip, written again and opened in the preview."""
        chosen = selected_row(self.made_table, self.made)
        if chosen is None:
            return
        number, folder = chosen.deposit_id, Path(self._slips)
        self.desk.query(
            self,
            lambda ws: slip_of(ws, number, folder),
            lambda pdf: SlipDialog(pdf, f"Deposit slip {number}", self).open(),
            key="deposit-slip",
        )

    def _arrived(self, payments: list[PaymentDetail]) -> None:
        self.model.set_rows(payments)
        fit_columns(self.table)
        self._count()

    def chosen(self) -> list[PaymentDetail]:
        rows = sorted({i.row() for i in self.table.selectionModel().selectedRows()})
        return [r for r in (self.model.row_at(row) for row in rows) if r is not None]

    def _count(self) -> None:
        chosen = self.chosen()
        self.selected.setText(totals_text(self.desk, [p.amount for p in chosen]))
        n = len(chosen)
        label = f"&Deposit {n} item{'s' if n != 1 else ''}" if n else "&Deposit"
        self.deposit_button.setText(label)
        self.deposit_button.setEnabled(bool(n) and not self._busy)
        self.deposit_action.setEnabled(bool(n) and not self._busy)

    def deposit(self) -> None:
        chosen = self.chosen()
        if not chosen or self._busy:
            return
        ids = [p.payment_id for p in chosen]
        day = pydate(self.date.date())
        account = self.account.text()
        folder = Path(self._slips)
        self._busy = True
        self._count()

        def done(made: MadeDeposit) -> None:
            self._busy = False
            self._count()
            f = self.desk.formats
            again = " (made already by an earlier press; nothing new was written)"
            self.message_bar.show_message(
                f"Deposit {made.slip.deposit_id}: {len(made.slip.items)} items, "
                f"{f.money(made.slip.total)} to {made.slip.bank_account} on "
                f"{f.date(made.slip.deposit_date)}{again if made.slip.replayed else ''}."
            )
            SlipDialog(made.pdf, f"Deposit slip {made.slip.deposit_id}", self).open()

        def refused(error: BaseException) -> None:
            self._busy = False
            self._count()
            self.desk.presenter.present(self, error, self.deposit)

        self.desk.change(
            self,
            lambda ws: make_deposit(ws, ids, day, account, folder),
            done,
            changes("payments", "deposits"),
            failure=refused,
        )

    def save_state(self) -> None:
        self.save_header(self.table)

    def restore_state(self) -> None:
        self.restore_header(self.table)


class SlipDialog(QDialog):
    """A printed report in the preview, to print or to keep a copy of."""

    printed = Signal(int)

    def __init__(self, pdf: Path, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.pdf = pdf
        self.preview = PdfPreview(self)
        self.preview.open(pdf)
        buttons = QDialogButtonBox(self)
        self.print_button = buttons.addButton("&Print…", QDialogButtonBox.ButtonRole.ActionRole)
        self.save_button = buttons.addButton(
            "&Save a copy…", QDialogButtonBox.ButtonRole.ActionRole
        )
        close = buttons.addButton(QDialogButtonBox.StandardButton.Close)
        make_primary(buttons, self.print_button)
        self.print_button.clicked.connect(
            lambda: self.printed.emit(self.preview.print_with_dialog())
        )
        self.save_button.clicked.connect(self.save_copy)
        close.clicked.connect(self.accept)
        layout = QVBoxLayout(self)
        layout.addWidget(self.preview, 1)
        layout.addWidget(buttons)
        self.resize(900, 760)

    def save_copy(self) -> None:
        target, _ = QFileDialog.getSaveFileName(
            self, "Save a copy of the slip", self.pdf.name, "PDF (*.pdf)"
        )
        if target:
            Path(target).write_bytes(self.pdf.read_bytes())
