"""The ``dkmonitor`` command: parse, call the core, render. No business logic here."""

from __future__ import annotations

import importlib
import logging
import sys

import click

from dkmonitor import __version__
from dkmonitor.cli.context import AppContext
from dkmonitor.errors import DatabaseUnavailable, DkmError

log = logging.getLogger(__name__)


class LazyGroup(click.Group):
    """Imports a subcommand's module only when that subcommand runs.

    cron starts dkmonitor every hour on every host and `check` is polled by
    monitoring: start-up time matters, and `view` need not import the scanner,
    the mailer or alembic.
    """

    COMMANDS = {
        "run": "dkmonitor.cli.run",
        "view": "dkmonitor.cli.view",
        "task": "dkmonitor.cli.task",
        "database": "dkmonitor.cli.database",
        "restore": "dkmonitor.cli.restore",
        "check": "dkmonitor.cli.check",
        "cron": "dkmonitor.cli.cron",
        "exempt": "dkmonitor.cli.exempt",
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self.COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = self.COMMANDS.get(cmd_name)
        if module is None:
            return None
        command = getattr(importlib.import_module(module), cmd_name)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    metavar="FILE",
    help="Settings file (default: $DKM_CONF, /etc/dkmonitor/settings.cfg, "
    "~/.dkmonitor/settings.cfg, else built-in defaults).",
)
@click.option("-v", "--verbose", is_flag=True, help="Say more (progress and INFO on stderr).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors.")
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=lambda ctx, _param, value: _show_version(ctx, value),
    help="Show the version and which scanner is built, then exit.",
)
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, verbose: bool, quiet: bool) -> None:
    """Audit shared storage: per-user usage history, mail, safe cleaning."""
    app = AppContext(config_path=config_path, verbosity=-1 if quiet else (1 if verbose else 0))
    ctx.obj = app
    ctx.call_on_close(app.close)


def _show_version(ctx: click.Context, wanted: bool) -> None:
    """Version, and whether the compiled scanner was built (it decides scan speed)."""
    if not wanted or ctx.resilient_parsing:
        return
    from dkmonitor.scan import scanner_kind

    click.echo(f"dkmonitor, version {__version__}\nscanner: {scanner_kind()}")
    ctx.exit()


def _database_error(exc: Exception) -> str | None:
    """The first line of a database error's message; None when ``exc`` is something else.

    Only libraries already imported are asked: an error cannot come from one
    that was never loaded, and ``view`` runs without SQLAlchemy (importing it
    here would cost every command a quarter of a second).
    """
    for module_name, error_name in (
        ("sqlalchemy.exc", "SQLAlchemyError"),
        ("sqlite3", "Error"),
        ("psycopg2", "Error"),
    ):
        module = sys.modules.get(module_name)
        if module is not None and isinstance(exc, getattr(module, error_name)):
            text = str(getattr(exc, "orig", None) or exc).strip()
            return (text.splitlines() or [type(exc).__name__])[0]
    return None


def main(argv: list[str] | None = None) -> None:
    """Entry point: one line on stderr and the DESIGN.md exit status on any error."""
    try:
        status = cli.main(args=argv, prog_name="dkmonitor", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("dkmonitor: aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        message = " ".join(exc.format_message().split())
        where = exc.ctx.command_path if getattr(exc, "ctx", None) else "dkmonitor"
        click.echo(f"dkmonitor: error: {where}: {message}", err=True)
        sys.exit(2 if exc.exit_code not in (0, 1) else exc.exit_code)
    except DkmError as exc:
        click.echo(f"dkmonitor: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except DatabaseUnavailable as exc:
        click.echo(f"dkmonitor: error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("dkmonitor: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(1)
    except Exception as exc:
        reason = _database_error(exc)
        if reason is not None:
            click.echo(f"dkmonitor: error: database: {reason}", err=True)
            sys.exit(1)
        # a bug: one line for the person, the traceback for the log
        log.error("internal error", exc_info=True, extra={"file_only": True})
        click.echo(f"dkmonitor: internal error: {type(exc).__name__}: {exc}", err=True)
        sys.exit(1)
    sys.exit(status if isinstance(status, int) else 0)
