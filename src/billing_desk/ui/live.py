"""Live updates in the window (shared PostgreSQL): a subscription listens on a thread of its own
and each event another person committed becomes a change the views refresh for (another clerk's
payment appears without a refresh); the status bar shows whether the feed is connected."""

from __future__ import annotations

import logging
import threading

from PySide6.QtCore import QObject, Qt, Signal

from billing_desk.services.live import (
    ConnectionLost,
    LiveEvent,
    LiveUpdate,
    Reconnected,
    Subscription,
    subscribe,
)
from billing_desk.ui.desk import Desk
from billing_desk.ui.operations import Changes, changes

log = logging.getLogger(__name__)

# What each kind of event touches, for the views to refresh.
TOUCHES: dict[str, Changes] = {
    "payment": changes("payments", "invoices", "deposits"),
    "statement": changes("statements"),
    "alert": changes("alerts"),
}


class LiveFeed(QObject):
    """Started once the shared database is open; stopped when it closes."""

    # Emitted from the listening thread; delivered on the GUI thread (queued connections).
    heard = Signal(object)
    state = Signal(str)

    def __init__(self, desk: Desk) -> None:
        super().__init__(desk)
        self.desk = desk
        self._subscription: Subscription | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.heard.connect(self._deliver, Qt.ConnectionType.QueuedConnection)

    def start(self) -> None:
        # However the database comes to close (the window closed first, or the application),
        # the feed stops before the workspace's engine is disposed: a feed still setting up
        # would otherwise hand its connection back to a disposed pool.
        self.desk.workspace.before_close.append(self.stop)
        self._thread = threading.Thread(target=self._listen, name="live-updates", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        subscription = self._subscription
        if subscription is not None:
            subscription.close()
        if self._thread is not None:
            # Wait as long as closing waits for any other work (Desk.close): a feed still
            # starting (connecting, or setting its trigger up behind another transaction's lock)
            # must finish with its connections before the workspace's engine is disposed, or
            # they are handed back to a disposed pool and left to the garbage collector.
            self._thread.join(timeout=30)

    def _listen(self) -> None:
        try:
            subscription = subscribe(self.desk.workspace)
        except Exception as err:  # the window works on without it, and says so
            log.warning("live updates could not start", exc_info=True)
            self.state.emit(f"Live updates off: {getattr(err, 'message', err)}")
            return
        self._subscription = subscription
        if self._stopping.is_set():
            subscription.close()
            return
        self.state.emit("Live")
        try:
            for update in subscription:
                self.heard.emit(update)
        except Exception:
            log.warning("live updates stopped", exc_info=True)
            self.state.emit("Live updates stopped; refresh by hand (F5)")
        finally:
            subscription.close()

    def _deliver(self, update: LiveUpdate) -> None:
        if isinstance(update, LiveEvent):
            self.desk.ops.notify(TOUCHES.get(update.kind, changes()))
        elif isinstance(update, ConnectionLost):
            self.state.emit("Reconnecting…")
        elif isinstance(update, Reconnected):
            self.state.emit("Live")
