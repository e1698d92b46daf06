"""The `billing-desk` command: root options, command groups, and the one place errors become
exit codes.

Exit codes: 0 done; 1 findings; 2 bad usage or bad input; 3 refused by a business rule;
4 environment (database unreachable or locked); 70 internal error (a bug, logged with its
traceback).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer

from billing_desk.cli import (
    admin,
    alerts,
    audit,
    credit,
    db,
    deposit,
    facility,
    invoice,
    maintenance,
    mapping,
    monitor,
    payment,
    provider,
    reconcile,
    report,
    statement,
    trip,
    user,
)
from billing_desk.cli.demo import demo
from billing_desk.cli.health import compliance, health
from billing_desk.cli.login import login, logout
from billing_desk.cli.output import echo
from billing_desk.cli.state import CliState, state
from billing_desk.cli.watch import watch
from billing_desk.domain.errors import BillingError
from billing_desk.services.credentials import NO_KEYRING, keyring_available, use_saved_passwords
from billing_desk.services.overview import overview

EXIT_BAD_INPUT = 2
EXIT_INTERNAL_ERROR = 70

app = typer.Typer(
    name="billing-desk",
    help="Back-office billing for a facility transportation service.",
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(db.app, name="db")
app.add_typer(facility.app, name="facility")
app.add_typer(trip.app, name="trip")
app.add_typer(invoice.app, name="invoice")
app.add_typer(user.app, name="user")
app.add_typer(payment.app, name="payment")
app.add_typer(deposit.app, name="deposit")
app.add_typer(credit.app, name="credit")
app.add_typer(maintenance.app, name="maintenance")
app.add_typer(audit.app, name="audit")
app.add_typer(admin.app, name="admin")
app.add_typer(statement.app, name="import")
app.add_typer(reconcile.app, name="reconcile")
app.add_typer(mapping.app, name="mapping")
app.add_typer(provider.app, name="provider")
report.register(app)
app.command("login")(login)
app.command("logout")(logout)
app.command("demo")(demo)
app.command("watch")(watch)
app.add_typer(monitor.app, name="monitor")
app.add_typer(alerts.app, name="alerts")
app.command("health")(health)
app.command("compliance")(compliance)


@app.callback(invoke_without_command=True)
def root(
    ctx: typer.Context,
    db_option: str | None = typer.Option(
        None,
        "--db",
        envvar="BILLING_DESK_DB",
        help="Database: a path to an SQLite file or a postgresql:// URL "
        "(default: billing-desk.sqlite3 in your data folder).",
    ),
    user_option: str | None = typer.Option(
        None,
        "--user",
        envvar="BILLING_DESK_USER",
        help="Acting local user in embedded mode (default: your login name).",
    ),
    report_db_option: str | None = typer.Option(
        None,
        "--report-db",
        envvar="BILLING_DESK_REPORT_DB",
        help="A read replica of a shared --db: verification, exports and the audit log read "
        "from it (what they record still goes to --db).",
    ),
) -> None:
    use_saved_passwords(_ask_password)
    ctx.obj = CliState(db_option, user_option, report_db_option)
    ctx.call_on_close(ctx.obj.close)
    if ctx.invoked_subcommand is None:
        summary = overview(state(ctx).workspace())
        echo(ctx.get_help())
        echo("")
        echo(f"Database: {summary.database}")
        if summary.is_empty:
            echo(
                "It is empty. Load demo data with `billing-desk demo`, then try "
                "`billing-desk --user clerk invoice list`."
            )
        else:
            echo(
                f"{summary.facilities} facilities, {summary.trips} trips, "
                f"{summary.invoices} invoices, {summary.users} users."
            )


def _ask_password(account: str) -> str | None:
    """Asked when the keyring holds no password for `account`: only at a terminal."""
    if not sys.stdin.isatty():
        return None
    if not keyring_available():
        echo(NO_KEYRING, err=True)
    return str(typer.prompt(f"Password for {account}", hide_input=True))


def _log_file() -> Path:
    import platformdirs

    folder = Path(platformdirs.user_log_dir("billing-desk", appauthor=False))
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "billing-desk.log"


def run(argv: list[str] | None = None) -> int:
    """Run one command line and return its exit code; refusals print their one sentence."""
    for argument in argv if argv is not None else sys.argv[1:]:
        if any("\ud800" <= char <= "\udfff" for char in argument):
            # Bytes that are not UTF-8 arrive as lone surrogates: bad input, not a bug.
            echo(
                "An argument is not valid UTF-8 text; retype it (or set the terminal to UTF-8).",
                err=True,
            )
            return EXIT_BAD_INPUT
    try:
        app(args=argv, prog_name="billing-desk", standalone_mode=True)
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except BillingError as err:
        echo(err.message, err=True)
        return err.exit_code
    except Exception:
        path = _log_file()
        logging.basicConfig(
            filename=path,
            level=logging.ERROR,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        logging.getLogger("billing_desk").exception("internal error running %s", argv)
        echo(
            "Sorry: billing-desk hit an internal error and stopped; nothing was half-written. "
            f"The details are in {path}; please report them.",
            err=True,
        )
        return EXIT_INTERNAL_ERROR
    return 0


def main() -> None:
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
