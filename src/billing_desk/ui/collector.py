"""Python's cycle collector, run on the GUI thread only.

The collector runs on whichever thread happens to allocate when a threshold is crossed. When
that is a background operation's thread and the garbage holds Qt objects made on the GUI thread,
their destruction takes Qt's locks there; the GUI thread, holding the interpreter lock while it
waits for one of them (connecting a signal), then deadlocks with it. So while the window runs,
automatic collection is off and a timer collects on the GUI thread, generation by generation as
the usual thresholds say (the approach Anki and Calibre take).
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer


class GuiThreadCollector(QObject):
    """Turns automatic collection off until `stop()`; collects what is due every interval."""

    def __init__(self, parent: QObject | None = None, *, interval_ms: int = 500) -> None:
        super().__init__(parent)
        self._was_enabled = gc.isenabled()
        self._thresholds = gc.get_threshold()
        gc.disable()
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.collect_due)
        self._timer.start()

    def collect_due(self) -> None:
        """Collect the generations whose counts passed their thresholds, youngest first."""
        counts = gc.get_count()
        for generation in range(3):
            if counts[generation] <= self._thresholds[generation]:
                break
            gc.collect(generation)

    def stop(self) -> None:
        self._timer.stop()
        self.collect_due()
        if self._was_enabled:
            gc.enable()
