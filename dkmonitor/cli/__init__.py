"""The ``dkmonitor`` command: parse, call the core, render. No business logic here."""

from __future__ import annotations

import logging
import sys

import click
from sqlalchemy.exc import SQLAlchemyError

from dkmonitor import __version__
from dkmonitor.cli.context import AppContext
from dkmonitor.errors import DatabaseUnavailable, DkmError

log = logging.getLogger(__name__)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    metavar="FILE",
    help="Settings file (default: $DKM_CONF, /etc/dkmonitor/settings.cfg, "
    "~/.dkmonitor/settings.cfg, else built-in defaults).",
)
@click.option("-v", "--verbose", is_flag=True, help="Say more (progress and INFO on stderr).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors.")
@click.version_option(__version__, prog_name="dkmonitor")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, verbose: bool, quiet: bool) -> None:
    """Audit shared storage: per-user usage history, mail, safe cleaning."""
    app = AppContext(config_path=config_path, verbosity=-1 if quiet else (1 if verbose else 0))
    ctx.obj = app
    ctx.call_on_close(app.close)


def _register() -> None:
    from dkmonitor.cli.database import database
    from dkmonitor.cli.run import run
    from dkmonitor.cli.task import task
    from dkmonitor.cli.view import view

    for command in (run, view, task, database):
        cli.add_command(command)
    try:  # built by the cleaning work; absent until then
        from dkmonitor.cli.restore import restore
    except ImportError:
        pass
    else:
        cli.add_command(restore)
    for module, name in (("dkmonitor.cli.check", "check"), ("dkmonitor.cli.cron", "cron")):
        try:
            command = getattr(__import__(module, fromlist=[name]), name)
        except ImportError:
            continue
        cli.add_command(command)


_register()


def main(argv: list[str] | None = None) -> None:
    """Entry point: one line on stderr and the DESIGN.md exit status on any error."""
    try:
        status = cli.main(args=argv, prog_name="dkmonitor", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("dkmonitor: aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
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
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        click.echo(f"dkmonitor: error: database: {reason}", err=True)
        sys.exit(1)
    except Exception as exc:  # a bug: one line for the person, the traceback for the log
        log.exception("internal error")
        click.echo(f"dkmonitor: internal error: {type(exc).__name__}: {exc}", err=True)
        sys.exit(1)
    sys.exit(status if isinstance(status, int) else 0)
