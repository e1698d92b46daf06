"""What the root options chose: which database, acting as whom."""

from __future__ import annotations

from dataclasses import dataclass, field

import typer

from billing_desk.services.monitoring import settle, watch
from billing_desk.services.unit_of_work import Workspace, open_workspace

# How long a command waits, after its answer, for the anomaly rules of what it recorded.
RULES_GRACE_SECONDS = 120.0


@dataclass
class CliState:
    db: str | None
    user: str | None
    report_db: str | None = None
    _workspace: Workspace | None = field(default=None, repr=False)

    def workspace(self) -> Workspace:
        if self._workspace is None:
            self._workspace = open_workspace(self.db, self.user, report_db=self.report_db)
            # The anomaly rules run after each payment this command records or moves, on a
            # worker thread: the command's answer is printed at once, and the process waits
            # for the rules only when it closes.
            watch(self._workspace, background=True)
        return self._workspace

    def close(self) -> None:
        if self._workspace is not None:
            settle(self._workspace, RULES_GRACE_SECONDS)
            self._workspace.close()


def state(ctx: typer.Context) -> CliState:
    found = ctx.find_object(CliState)
    if found is None:
        raise RuntimeError("the root command did not set up its state")
    return found
