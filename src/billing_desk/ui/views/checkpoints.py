"""Signed checkpoints in the window. A manager signs the audit chain's head with their key (from
the OS keyring, or from a key file when the machine has no keyring) and saves the note where they
choose; an auditor lists the notes to hold the chain to and the verifier keys they trust, kept
in their own settings (never read from the database being checked)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from billing_desk.domain.errors import BadInput, EnvironmentFault, Refused
from billing_desk.services.checkpoints import (
    CheckpointNote,
    KeyInfo,
    TrustedKey,
    claims_of_notes,
    list_keys,
    sign_checkpoint,
    usable_keyring,
)
from billing_desk.services.verification import CheckpointClaim
from billing_desk.ui.desk import Desk
from billing_desk.ui.operations import Operation, background, changes

TRUSTED_KEYS_SETTING = "checkpoints/trusted_keys"
NOTE_FILES = "Checkpoint notes (*.note *.txt);;All files (*)"
KEY_FILES = "Signing key files (*.key *.skey);;All files (*)"


def file_dialog(
    parent: QWidget,
    title: str,
    filters: str,
    chosen: Callable[[list[Path]], None],
    *,
    save: bool = False,
    many: bool = False,
    suggested: str | None = None,
) -> QFileDialog:
    """A file dialog that does not block (opened, not exec'd); `chosen` gets the paths."""
    dialog = QFileDialog(parent, title, str(Path.home()), filters)
    dialog.setObjectName("chooseFile")
    dialog.setOption(QFileDialog.Option.DontUseNativeDialog, True)
    if save:
        dialog.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)
        dialog.setFileMode(QFileDialog.FileMode.AnyFile)
    else:
        mode = QFileDialog.FileMode.ExistingFiles if many else QFileDialog.FileMode.ExistingFile
        dialog.setFileMode(mode)
    if suggested:
        dialog.selectFile(suggested)
    dialog.filesSelected.connect(lambda names: chosen([Path(n) for n in names]))
    dialog.finished.connect(lambda _result: dialog.deleteLater())
    dialog.open()
    return dialog


def trusted_keys(desk: Desk) -> list[str]:
    """The verifier keys this person trusts, from their own settings."""
    value = desk.settings.value(TRUSTED_KEYS_SETTING, [])
    keys = value if isinstance(value, list) else [value]
    return [str(k) for k in keys if k]


def write_note(path: Path, note: str) -> None:
    """Save a note to a new file; an existing file is never overwritten."""
    try:
        with path.open("x", encoding="utf-8") as handle:
            handle.write(note)
    except FileExistsError:
        raise BadInput(f"{path} already exists; save the note under a new name.") from None
    except OSError as err:
        raise BadInput(f"Cannot save the note to {path} ({err.strerror}).") from None


@dataclass(frozen=True)
class SignedNote:
    note: CheckpointNote
    saved_to: Path


class SignCheckpointDialog(QDialog):
    """Sign the chain's head now: which key, and where the note goes."""

    signed = Signal(object)  # SignedNote

    def __init__(self, desk: Desk, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.desk = desk
        self.setWindowTitle("Sign a checkpoint")
        intro = QLabel(
            "A checkpoint pins the audit chain as it is now, signed with your key. Keep the "
            "note outside this database (give it to the auditors): whoever later rewrites, "
            "cuts or rolls back the history is caught by it.",
            self,
        )
        intro.setWordWrap(True)
        self.use_keyring = QRadioButton("My key in the OS &keyring:", self)
        self.use_file = QRadioButton("A key &file:", self)
        group = QButtonGroup(self)
        group.addButton(self.use_keyring)
        group.addButton(self.use_file)
        self.key_name = QComboBox(self)
        self.key_name.setAccessibleName("Key name")
        self.key_file = QLineEdit(self)
        self.key_file.setAccessibleName("Key file")
        self.key_file.setPlaceholderText("a file only you can read")
        browse_key = QPushButton("&Browse…", self)
        browse_key.clicked.connect(self._browse_key)
        self.note_file = QLineEdit(self)
        self.note_file.setAccessibleName("Save the note as")
        self.note_file.setText(str(Path.home() / f"checkpoint-{desk.today().isoformat()}.note"))
        browse_note = QPushButton("Bro&wse…", self)
        browse_note.clicked.connect(self._browse_note)
        self.keyring_state = QLabel("Looking for your OS keyring…", self)
        self.keyring_state.setWordWrap(True)
        self.keyring_state.setAccessibleName("Keyring")
        self.problem = QLabel(self)
        self.problem.setWordWrap(True)
        self.problem.setAccessibleName("Problem")
        self.problem.hide()
        grid = QGridLayout()
        grid.addWidget(self.use_keyring, 0, 0)
        grid.addWidget(self.key_name, 0, 1, 1, 2)
        grid.addWidget(self.keyring_state, 1, 0, 1, 3)
        grid.addWidget(self.use_file, 2, 0)
        grid.addWidget(self.key_file, 2, 1)
        grid.addWidget(browse_key, 2, 2)
        note_caption = QLabel("Save the &note as:", self)
        note_caption.setBuddy(self.note_file)
        grid.addWidget(note_caption, 3, 0)
        grid.addWidget(self.note_file, 3, 1)
        grid.addWidget(browse_note, 3, 2)
        grid.setColumnStretch(1, 1)
        self.buttons = QDialogButtonBox(self)
        self.sign_button = self.buttons.addButton("&Sign", QDialogButtonBox.ButtonRole.AcceptRole)
        self.buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.sign)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(grid)
        layout.addWidget(self.problem)
        layout.addWidget(self.buttons)
        self.use_keyring.setChecked(True)
        self.use_keyring.toggled.connect(self._mode)
        self._mode()
        self.resize(620, self.sizeHint().height())
        self.keyring_ready = False
        desk.query(self, list_keys, self._keys, key="checkpoint-keys")
        background(self, usable_keyring, lambda _backend: self._keyring(None), self._keyring)

    def _keys(self, keys: list[KeyInfo]) -> None:
        mine = [k.name for k in keys if k.owner == self.desk.person.name]
        self.key_name.clear()
        self.key_name.addItems(mine)
        if not mine:
            self.key_name.setPlaceholderText("no key of yours is registered")

    def _keyring(self, error: BaseException | None) -> None:
        self.keyring_ready = True
        if error is None:
            self.keyring_state.setText("Your OS keyring is available.")
            return
        # A headless machine has no keyring: say so, and sign with a key file instead.
        self.use_keyring.setEnabled(False)
        self.use_file.setChecked(True)
        self.keyring_state.setText(
            "No OS keyring is available on this machine, so sign with a key file: one made "
            "with `billing-desk audit key generate NAME --key-file PATH` and registered here."
            if isinstance(error, EnvironmentFault)
            else f"The OS keyring cannot be used ({error}); sign with a key file."
        )
        self._fit()

    def _fit(self) -> None:
        """Tall enough for what the labels now say (never cut)."""
        layout = self.layout()
        if layout is not None:
            layout.activate()
        self.resize(self.width(), max(self.height(), self.sizeHint().height()))

    def _mode(self) -> None:
        from_keyring = self.use_keyring.isChecked()
        self.key_name.setEnabled(from_keyring)
        self.key_file.setEnabled(not from_keyring)

    def _browse_key(self) -> None:
        file_dialog(
            self, "Your signing key file", KEY_FILES, lambda p: self.key_file.setText(str(p[0]))
        )

    def _browse_note(self) -> None:
        file_dialog(
            self,
            "Save the checkpoint note as",
            NOTE_FILES,
            lambda p: self.note_file.setText(str(p[0])),
            save=True,
            suggested=self.note_file.text(),
        )

    def show_problem(self, text: str) -> None:
        self.problem.setText(text)
        self.problem.show()
        self._fit()

    def sign(self) -> None:
        note_text = self.note_file.text().strip()
        if not note_text:
            self.show_problem("Choose where the note is saved.")
            self.note_file.setFocus()
            return
        note_path = Path(note_text).expanduser()
        if note_path.exists():
            self.show_problem(f"{note_path} already exists; save the note under a new name.")
            self.note_file.setFocus()
            return
        key_file: Path | None = None
        key_name: str | None = None
        if self.use_file.isChecked():
            if not self.key_file.text().strip():
                self.show_problem("Choose your key file.")
                self.key_file.setFocus()
                return
            key_file = Path(self.key_file.text().strip()).expanduser()
        else:
            key_name = self.key_name.currentText() or None

        def work(ws: Any) -> SignedNote:
            note = sign_checkpoint(ws, key_name, key_file=key_file)
            write_note(note_path, note.note_text)
            return SignedNote(note, note_path)

        self.sign_button.setEnabled(False)
        self.desk.run(
            Operation(self, work, success=self._signed, failure=self._failed, changes=changes())
        )

    def _signed(self, signed: SignedNote) -> None:
        self.signed.emit(signed)
        self.accept()

    def _failed(self, error: BaseException) -> None:
        self.sign_button.setEnabled(True)
        if isinstance(error, (BadInput, EnvironmentFault, Refused)):
            self.show_problem(str(error))  # said in words, next to the choices
        else:
            self.desk.presenter.present(self, error, None)


class CheckpointsDialog(QDialog):
    """The notes to hold the chain to and the keys trusted to have signed them. The keys are
    this person's own (their settings); the notes are files they keep."""

    verify_wanted = Signal(object)  # list[Path]: the notes

    def __init__(self, desk: Desk, notes: list[Path], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.desk = desk
        self.setWindowTitle("Verify against checkpoints")
        intro = QLabel(
            "Verification holds the chain to each signed checkpoint note below, checked with "
            "the verifier keys you trust. Your trusted keys are kept in your own settings, "
            "never taken from the database being checked.",
            self,
        )
        intro.setWordWrap(True)
        self.notes = QListWidget(self)
        self.notes.setAccessibleName("Checkpoint notes")
        for note in notes:
            self.notes.addItem(str(note))
        add_notes = QPushButton("Add &notes…", self)
        add_notes.clicked.connect(self._browse_notes)
        remove_note = QPushButton("&Remove the note", self)
        remove_note.clicked.connect(lambda: self._remove(self.notes))
        self.keys = QListWidget(self)
        self.keys.setAccessibleName("Trusted keys")
        for key in trusted_keys(desk):
            self.keys.addItem(key)
        self.new_key = QLineEdit(self)
        self.new_key.setAccessibleName("A verifier key to trust")
        self.new_key.setPlaceholderText("paste a verifier key (name+id+key) and press Enter")
        self.new_key.returnPressed.connect(self.trust_typed)
        add_key = QPushButton("&Trust this key", self)
        add_key.setAutoDefault(False)
        add_key.clicked.connect(self.trust_typed)
        key_file = QPushButton("Trust keys from a &file…", self)
        key_file.clicked.connect(self._browse_keys)
        remove_key = QPushButton("&Stop trusting", self)
        remove_key.clicked.connect(lambda: self._remove(self.keys, save=True))
        self.problem = QLabel(self)
        self.problem.setWordWrap(True)
        self.problem.setAccessibleName("Problem")
        self.problem.hide()
        note_buttons = QHBoxLayout()
        note_buttons.addWidget(add_notes)
        note_buttons.addWidget(remove_note)
        note_buttons.addStretch(1)
        key_line = QHBoxLayout()
        key_line.addWidget(self.new_key, 1)
        key_line.addWidget(add_key)
        key_buttons = QHBoxLayout()
        key_buttons.addWidget(key_file)
        key_buttons.addWidget(remove_key)
        key_buttons.addStretch(1)
        self.buttons = QDialogButtonBox(self)
        # Not an accept button: the button box would make it the default, and Enter in the key
        # line would then start a verification instead of trusting the key typed.
        self.verify_button = self.buttons.addButton(
            "&Verify against these", QDialogButtonBox.ButtonRole.ActionRole
        )
        self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
        self.verify_button.clicked.connect(self._verify)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        notes_caption = QLabel("Checkpoint &notes:", self)
        notes_caption.setBuddy(self.notes)
        layout.addWidget(notes_caption)
        layout.addWidget(self.notes, 1)
        layout.addLayout(note_buttons)
        keys_caption = QLabel("&Keys you trust:", self)
        keys_caption.setBuddy(self.keys)
        layout.addWidget(keys_caption)
        layout.addWidget(self.keys, 1)
        layout.addLayout(key_line)
        layout.addLayout(key_buttons)
        layout.addWidget(self.problem)
        layout.addWidget(self.buttons)
        for button in self.findChildren(QPushButton):
            button.setAutoDefault(False)
        self.resize(680, 460)

    def note_paths(self) -> list[Path]:
        return [Path(self.notes.item(i).text()) for i in range(self.notes.count())]

    def add_notes(self, paths: list[Path]) -> None:
        known = {str(p) for p in self.note_paths()}
        for path in paths:
            if str(path) not in known:
                self.notes.addItem(str(path))

    def trust(self, text: str, source: str = "") -> bool:
        """Trust the verifier key `text`; False (with the reason shown) when it is not one."""
        clean = text.strip()
        try:
            TrustedKey.from_vkey(clean, source)
        except BadInput as err:
            self.show_problem(f"Not a verifier key: {err}")
            return False
        present = {self.keys.item(i).text() for i in range(self.keys.count())}
        if clean not in present:
            self.keys.addItem(clean)
            self._save_keys()
        self.problem.hide()
        return True

    def trust_typed(self) -> None:
        if self.trust(self.new_key.text()):
            self.new_key.clear()

    def show_problem(self, text: str) -> None:
        self.problem.setText(text)
        self.problem.show()

    def _save_keys(self) -> None:
        keys = [self.keys.item(i).text() for i in range(self.keys.count())]
        self.desk.settings.setValue(TRUSTED_KEYS_SETTING, keys)

    def _remove(self, listing: QListWidget, *, save: bool = False) -> None:
        row = listing.currentRow()
        if row >= 0:
            listing.takeItem(row)
            if save:
                self._save_keys()

    def _browse_notes(self) -> None:
        file_dialog(self, "Checkpoint notes", NOTE_FILES, self.add_notes, many=True)

    def _browse_keys(self) -> None:
        file_dialog(self, "Verifier keys to trust", "All files (*)", self._keys_from)

    def _keys_from(self, paths: list[Path]) -> None:
        for path in paths:
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as err:
                self.show_problem(f"Cannot read {path} ({err}).")
                return
            for line in lines:
                if line.strip() and not line.strip().startswith("#"):
                    self.trust(line, str(path))

    def _verify(self) -> None:
        if self.notes.count() and not self.keys.count():
            self.show_problem(
                "Trust at least one verifier key: a note is only as good as the key that signed "
                "it, and the keys are never taken from the database being checked."
            )
            return
        self.verify_wanted.emit(self.note_paths())
        self.accept()


def checkpoint_claims(workspace: Any, notes: list[Path], keys: list[str]) -> list[CheckpointClaim]:
    """The claims of the notes, each checked against the trusted keys (on a worker thread)."""
    trusted = [TrustedKey.from_vkey(k, "your settings") for k in keys]
    return claims_of_notes(workspace, notes, trusted, label=lambda path: path.name)


__all__ = [
    "CheckpointsDialog",
    "SignCheckpointDialog",
    "SignedNote",
    "checkpoint_claims",
    "file_dialog",
    "trusted_keys",
]
