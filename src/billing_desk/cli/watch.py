"""`billing-desk watch`: payments, statement imports and alerts as other clients commit them."""

from __future__ import annotations

import json

import typer

from billing_desk.cli.output import echo, jsonable
from billing_desk.cli.state import state
from billing_desk.services.live import (
    KINDS,
    ConnectionLost,
    LiveEvent,
    LiveUpdate,
    Reconnected,
    parse_kinds,
    subscribe,
)


def watch(
    ctx: typer.Context,
    kinds: str = typer.Option(
        ",".join(KINDS), "--kinds", help="Which events, separated by commas: " + ", ".join(KINDS)
    ),
    count: int | None = typer.Option(
        None, "--count", min=1, help="Stop after this many events (default: until Ctrl-C)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per line."),
) -> None:
    """Print each event as it commits, until Ctrl-C (PostgreSQL only); after a lost connection,
    say so and print what was missed."""
    wanted = parse_kinds(kinds)
    workspace = state(ctx).workspace()
    subscription = subscribe(workspace, wanted)
    echo(
        f"Watching {', '.join(k for k in KINDS if k in wanted)} events at "
        f"{workspace.location.describe()}; Ctrl-C stops.",
        err=True,
    )
    seen = 0
    try:
        with subscription:
            for update in subscription:
                echo(_json_line(update) if as_json else _line(update))
                if isinstance(update, LiveEvent):
                    seen += 1
                    if count is not None and seen >= count:
                        break
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a watch ends


def _line(update: LiveUpdate) -> str:
    if isinstance(update, ConnectionLost):
        return f"{update.at:%Y-%m-%d %H:%M:%S}  connection lost ({update.reason}); reconnecting"
    if isinstance(update, Reconnected):
        events = (
            "1 event follows"
            if update.missed_count == 1
            else f"{update.missed_count} events follow"
        )
        return f"reconnected; {events}, committed since {update.since:%Y-%m-%d %H:%M:%S}"
    where = update.facility or "-"
    missed = "  (missed)" if update.missed else ""
    return (
        f"{update.recorded_at:%Y-%m-%d %H:%M:%S}  {update.kind:<9} {where:<10} "
        f"{update.kind} {update.entity_id}  by {update.recorded_by}  "
        f"(audit entry {update.entry_id}){missed}"
    )


def _json_line(update: LiveUpdate) -> str:
    event = {
        LiveEvent: "event",
        ConnectionLost: "connection_lost",
        Reconnected: "reconnected",
    }[type(update)]
    return json.dumps({"type": event, **jsonable(update)}, ensure_ascii=False)
