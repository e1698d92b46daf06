"""One running billing-desk per embedded database file: a lock file beside the database, and a
local socket through which a second start asks the first window to come forward."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QLockFile, QObject
from PySide6.QtNetwork import QLocalServer, QLocalSocket

RAISE = b"raise\n"
CONNECT_MS = 500


class InstanceLock(QObject):
    """Held while a window has the database open."""

    def __init__(self, database: Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.database = database
        self.path = database.with_name(database.name + ".lock")
        self._lock = QLockFile(str(self.path))
        # A lock left by a process that died is taken over (QLockFile checks the process).
        self._lock.setStaleLockTime(0)
        digest = hashlib.sha256(str(database.resolve()).encode()).hexdigest()[:16]
        self.server_name = f"billing-desk-{digest}"
        self._server: QLocalServer | None = None

    def acquire(self) -> bool:
        """True when this process now holds the database; False when another one does."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self._lock.tryLock(100):
            return True
        if self._lock.removeStaleLockFile():
            return self._lock.tryLock(100)
        return False

    def holder(self) -> str:
        """Who holds the lock, in words: "process 4242 (billing-desk) on host"."""
        info = self._lock.getLockInfo()
        if not info:
            return "another billing-desk"
        pid, host, app = info
        return f"process {pid} ({app or 'billing-desk'}) on {host or 'this machine'}"

    def ask_holder_to_come_forward(self) -> bool:
        """Tell the window holding the database to come to the front; True when it heard."""
        socket = QLocalSocket()
        socket.connectToServer(self.server_name)
        if not socket.waitForConnected(CONNECT_MS):
            return False
        socket.write(RAISE)
        socket.flush()
        socket.waitForBytesWritten(CONNECT_MS)
        socket.disconnectFromServer()
        return True

    def listen(self, come_forward: Callable[[], None]) -> None:
        """Answer later starts: each one that connects makes `come_forward` run."""
        QLocalServer.removeServer(self.server_name)
        server = QLocalServer(self)
        if not server.listen(self.server_name):
            return

        def connected() -> None:
            while server.hasPendingConnections():
                socket = server.nextPendingConnection()
                if socket is None:
                    break
                socket.readyRead.connect(lambda s=socket: _heard(s, come_forward))
                socket.disconnected.connect(socket.deleteLater)

        server.newConnection.connect(connected)
        self._server = server

    def release(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._lock.isLocked():
            self._lock.unlock()


def _heard(socket: QLocalSocket, come_forward: Callable[[], None]) -> None:
    if bytes(socket.readAll().data()).startswith(RAISE.strip()):
        come_forward()
