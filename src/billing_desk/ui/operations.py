"""Background operations: every service call runs on a worker thread, in its own unit of work,
and comes back to the GUI thread with plain data and what it changed (Anki's CollectionOp and
QueryOp are the model; superqt's workers for the threading).

A slot reads as one line:

    desk.run(Operation(self, lambda ws: list_invoices(ws), success=self._show))

Nothing here opens a session: the work function calls a service, and the service runs its own
unit of work on the worker thread. The window is told what changed, in coalesced bursts, so
views refresh only what a change touched.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, TypeVar

import shiboken6
from PySide6.QtCore import QObject, QRunnable, Qt, QThread, QThreadPool, QTimer, Signal, Slot
from PySide6.QtWidgets import QApplication, QProgressDialog, QWidget

from billing_desk.services.unit_of_work import Workspace

log = logging.getLogger(__name__)

T = TypeVar("T")

# Nouns a change may touch; views listen for theirs.
NOUNS = frozenset(
    {
        "payments",
        "invoices",
        "trips",
        "facilities",
        "people",
        "deposits",
        "statements",
        "alerts",
        "audit",
        "settings",
    }
)
# A progress dialog appears only for work that takes longer than this.
PROGRESS_DELAY_MS = 400
# Progress reports reach the GUI thread at most this often (the last one always does).
PROGRESS_INTERVAL_SECONDS = 0.05


@dataclass(frozen=True)
class Changes:
    """What an operation changed, by noun ("payments", "invoices", ...)."""

    nouns: frozenset[str] = frozenset()

    def touches(self, *nouns: str) -> bool:
        return bool(self.nouns.intersection(nouns))

    def __or__(self, other: Changes) -> Changes:
        return Changes(self.nouns | other.nouns)

    def __bool__(self) -> bool:
        return bool(self.nouns)


def changes(*nouns: str) -> Changes:
    unknown = set(nouns) - NOUNS
    if unknown:
        raise ValueError(f"unknown nouns {sorted(unknown)}; known: {sorted(NOUNS)}")
    # Every write is audited: a change to anything is a change to the audit trail too.
    return Changes(frozenset(nouns) | {"audit"})


class Cancelled(Exception):
    """The person pressed Cancel: the service stopped, and its unit of work wrote nothing."""


class Progress:
    """Handed to work that reports progress: call it as the services' progress callback. It
    raises `Cancelled` once Cancel was pressed, which rolls the unit of work back."""

    def __init__(self, report: Callable[[int, int, str], None]) -> None:
        self._report = report
        self._cancel = threading.Event()
        self._last = 0.0

    def __call__(self, done: int, total: int, text: str = "") -> None:
        if self._cancel.is_set():
            raise Cancelled
        now = time.monotonic()
        if done >= total or now - self._last >= PROGRESS_INTERVAL_SECONDS:
            self._last = now
            self._report(done, total, text)

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def cancel(self) -> None:
        self._cancel.set()


class _Relay(QObject):
    """Lives on the GUI thread for the whole process; workers' signals through it are delivered
    there, each tagged with the token of the call it answers. It is never deleted: a worker may
    still be inside `emit` when the GUI thread has already handled the result, and deleting the
    sender then (as one relay per call did) crashed the process under load."""

    finished = Signal(int, object, object)
    progressed = Signal(int, int, int, str)

    def __init__(self) -> None:
        super().__init__()
        self._finishers: dict[int, Callable[[Any, BaseException | None], None]] = {}
        self._reporters: dict[int, Callable[[int, int, str], None]] = {}
        self._tokens = itertools.count(1)
        self.finished.connect(self._finish, Qt.ConnectionType.QueuedConnection)
        self.progressed.connect(self._report, Qt.ConnectionType.QueuedConnection)

    def expect(
        self,
        finished: Callable[[Any, BaseException | None], None],
        progressed: Callable[[int, int, str], None] | None = None,
    ) -> int:
        """A token for one call: its result goes to `finished`, its progress to `progressed`,
        both on the GUI thread."""
        token = next(self._tokens)
        self._finishers[token] = finished
        if progressed is not None:
            self._reporters[token] = progressed
        return token

    def _finish(self, token: int, result: Any, error: BaseException | None) -> None:
        self._reporters.pop(token, None)
        finished = self._finishers.pop(token, None)
        if finished is not None and _alive(getattr(finished, "func", finished)):
            finished(result, error)

    def _report(self, token: int, done: int, total: int, text: str) -> None:
        reporter = self._reporters.get(token)
        if reporter is not None and _alive(getattr(reporter, "func", reporter)):
            reporter(done, total, text)


_RELAY: _Relay | None = None


def relay() -> _Relay:
    """The process's relay, made on the GUI thread the first time it is needed."""
    global _RELAY
    if _RELAY is None:
        if QThread.currentThread() is not QApplication.instance().thread():  # type: ignore[union-attr]
            raise RuntimeError("the relay must be made on the GUI thread")
        _RELAY = _Relay()
    return _RELAY


class _Job(QRunnable):
    def __init__(self, run: Callable[[], Any], token: int) -> None:
        super().__init__()
        self._run = run
        self._token = token
        self._relay = relay()

    def run(self) -> None:
        try:
            result = self._run()
        except BaseException as err:  # every failure goes back to the GUI thread
            self._relay.finished.emit(self._token, None, err)
        else:
            self._relay.finished.emit(self._token, result, None)


class Operation(Generic[T]):
    """One service call in the background. `work` takes the workspace (and, with
    `progress_label`, a `Progress` as its second argument) and returns plain data; `success`
    receives it on the GUI thread; `failure` receives an error (by default the desk's error
    presenter shows it, with Retry where trying again may help). `changes` says what a
    successful run changed. With `key`, a newer operation of the same key supersedes this one:
    its result, when it arrives, is dropped (a list refilled while the person types)."""

    def __init__(
        self,
        parent: QWidget | None,
        work: Callable[..., T],
        *,
        success: Callable[[T], None] | None = None,
        failure: Callable[[BaseException], None] | None = None,
        changes: Changes = Changes(),
        progress_label: str | None = None,
        on_progress: Callable[[int, int, str], None] | None = None,
        key: str | None = None,
    ) -> None:
        self.parent = parent
        self.work = work
        self.success = success
        self.failure = failure
        self.changes = changes
        self.progress_label = progress_label
        self.on_progress = on_progress
        self.key = key
        self.progress: Progress | None = None
        self.dialog: QProgressDialog | None = None
        self.done = False

    def cancel(self) -> None:
        if self.progress is not None:
            self.progress.cancel()


class Operations(QObject):
    """Runs operations on a pool of worker threads against one workspace, and tells the window
    what changed. The pool is small: SQLite takes one writer at a time anyway, and the views'
    queries are short."""

    changed = Signal(object)  # Changes, once per burst
    busy = Signal(bool)

    def __init__(
        self,
        workspace: Workspace,
        present_error: Callable[[QWidget | None, BaseException, Callable[[], None] | None], None],
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.workspace = workspace
        self._present_error = present_error
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(3)
        self._running: set[Operation[Any]] = set()
        self._latest: dict[str, Operation[Any]] = {}
        self._pending = Changes()
        self._burst = QTimer(self)
        self._burst.setSingleShot(True)
        self._burst.setInterval(30)
        self._burst.timeout.connect(self._flush_changes)

    # -- running ----------------------------------------------------------------------------

    def run(self, op: Operation[T]) -> Operation[T]:
        """Start `op` on a worker thread; returns it (for `cancel`)."""
        if op.key is not None:
            self._latest[op.key] = op
        dialog = op.dialog = self._progress_dialog(op) if op.progress_label else None
        reporter = None
        if op.progress_label is not None or op.on_progress is not None:
            reporter = partial(self._progressed, op, dialog)
        token = relay().expect(partial(self._finished, op), reporter)
        if reporter is not None:
            shared = relay()
            op.progress = Progress(
                lambda done, total, text: shared.progressed.emit(token, done, total, text)
            )
        workspace = self.workspace
        progress = op.progress

        def call() -> Any:
            if progress is not None and op.progress_label is not None:
                return op.work(workspace, progress)
            return op.work(workspace)

        self._running.add(op)
        if len(self._running) == 1:
            self.busy.emit(True)
        self._pool.start(_Job(call, token))
        return op

    def retry(self, op: Operation[T]) -> None:
        """Run the same work again (the same closure: a payment keeps its idempotency key)."""
        again = Operation(
            op.parent,
            op.work,
            success=op.success,
            failure=op.failure,
            changes=op.changes,
            progress_label=op.progress_label,
            on_progress=op.on_progress,
            key=op.key,
        )
        self.run(again)

    def is_busy(self) -> bool:
        return bool(self._running)

    def wait(self, msecs: int = 30_000) -> bool:
        """Wait for the running work (when the window closes); True when none is left."""
        finished = self._pool.waitForDone(msecs)
        QApplication.processEvents()
        return finished

    # -- back on the GUI thread -------------------------------------------------------------

    def _progress_dialog(self, op: Operation[Any]) -> QProgressDialog:
        dialog = QProgressDialog(op.progress_label or "", "Cancel", 0, 0, op.parent)
        dialog.setWindowTitle("billing-desk")
        dialog.setWindowModality(Qt.WindowModality.WindowModal)
        dialog.setMinimumDuration(PROGRESS_DELAY_MS)
        dialog.setAutoClose(False)
        dialog.setAutoReset(False)
        dialog.canceled.connect(op.cancel)
        dialog.setValue(0)
        return dialog

    def _progressed(
        self,
        op: Operation[Any],
        dialog: QProgressDialog | None,
        done: int,
        total: int,
        text: str,
    ) -> None:
        if op.done:
            return
        if dialog is not None:
            dialog.setMaximum(max(total, 1))
            dialog.setValue(min(done, max(total, 1)))
            if text:
                dialog.setLabelText(f"{op.progress_label}\n{text}")
        if op.on_progress is not None:
            op.on_progress(done, total, text)

    def _finished(self, op: Operation[Any], result: Any, error: BaseException | None) -> None:
        if QThread.currentThread() is not self.thread():
            raise RuntimeError("an operation finished off the GUI thread")
        op.done = True
        self._running.discard(op)
        if op.dialog is not None:
            op.dialog.close()
            op.dialog.deleteLater()
            op.dialog = None
        if not self._running:
            self.busy.emit(False)
        superseded = op.key is not None and self._latest.get(op.key) is not op
        if op.key is not None and not superseded:
            self._latest.pop(op.key, None)
        if error is None and op.changes:
            self._pending = self._pending | op.changes
            self._burst.start()
        if superseded or not _alive(op.parent) or not _alive(op.success) or not _alive(op.failure):
            # Superseded by a newer one, or asked for by a widget that is gone (its view was
            # replaced): nobody is left to show the result to.
            return
        try:
            if error is None:
                if op.success is not None:
                    op.success(result)
            elif isinstance(error, Cancelled):
                if op.failure is not None:
                    op.failure(error)
            elif op.failure is not None:
                op.failure(error)
            else:
                self._present_error(op.parent, error, lambda: self.retry(op))
        except Exception as err:
            # A bug in a view's own slot: logged and apologised for, the window goes on.
            self._present_error(op.parent, err, None)

    @Slot()
    def _flush_changes(self) -> None:
        pending, self._pending = self._pending, Changes()
        if pending:
            self.changed.emit(pending)

    def notify(self, what: Changes) -> None:
        """Tell the views of a change made elsewhere (another person's, by live updates)."""
        self._pending = self._pending | what
        self._burst.start()


def _alive(thing: object) -> bool:
    """Whether a widget (or the object a bound method belongs to) still exists on the Qt side."""
    owner = getattr(thing, "__self__", thing)
    return not isinstance(owner, QObject) or shiboken6.isValid(owner)


def background(
    owner: QObject,
    work: Callable[[], T],
    success: Callable[[T], None],
    failure: Callable[[BaseException], None],
) -> None:
    """Run `work` on a worker thread before any workspace is open (opening a database, checking
    a password); its result or error comes back to the GUI thread, and is dropped when `owner`
    is gone by then."""

    def finished(result: Any, error: BaseException | None) -> None:
        if not (_alive(owner) and _alive(success) and _alive(failure)):
            return
        if error is None:
            success(result)
        else:
            failure(error)

    QThreadPool.globalInstance().start(_Job(work, relay().expect(finished)))
