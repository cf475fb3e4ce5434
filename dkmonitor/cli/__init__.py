"""The ``dkmonitor`` command: parse, call the core, render. No business logic here."""

from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import TYPE_CHECKING

import click

from dkmonitor import __version__
from dkmonitor.errors import DatabaseUnavailable, DkmError
from dkmonitor.launch import launch_from

if TYPE_CHECKING:
    from dkmonitor.scan.mpi import ScanPool

log = logging.getLogger(__name__)


def _terminal_columns() -> int:
    """shutil.get_terminal_size().columns: $COLUMNS, else the terminal's, else 80."""
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    if columns > 0:
        return columns
    stdout = sys.__stdout__
    if stdout is None:
        return 80
    try:
        return os.get_terminal_size(stdout.fileno()).columns or 80
    except (AttributeError, ValueError, OSError):
        return 80


class _HelpContext(click.Context):
    """The top-level context: its help is laid out as click's, without importing shutil.

    click sizes the help with shutil.get_terminal_size(), and importing shutil
    (bz2, lzma, fnmatch) was a twentieth of `dkmonitor --help`.
    """

    def make_formatter(self) -> click.HelpFormatter:
        from click import formatting

        width = self.terminal_width or formatting.FORCED_WIDTH
        if width is None:  # click's own rule for the width
            width = max(min(_terminal_columns(), self.max_content_width or 80) - 2, 50)
        return self.formatter_class(width=width, max_width=self.max_content_width)


class LazyGroup(click.Group):
    """Imports a subcommand's module only when that subcommand runs.

    cron starts dkmonitor every hour on every host and `check` is polled by
    monitoring: start-up time matters, and `view` need not import the scanner,
    the mailer or alembic.
    """

    # name -> (module, the line `dkmonitor --help` shows). The help lines are
    # here, not read from the modules, so that --help imports none of them;
    # tests/test_cli_startup.py checks they say what the commands' own do.
    COMMANDS = {
        "run": ("dkmonitor.cli.run", "Scan tasks: quick (hourly), full (nightly) or a path."),
        "view": ("dkmonitor.cli.view", "Show stored usage per user or per system."),
        "task": ("dkmonitor.cli.task", "Define, inspect and change scan tasks."),
        "database": ("dkmonitor.cli.database", "Inspect and maintain the history database."),
        "restore": ("dkmonitor.cli.restore", "Move the files TASK moved back where they were."),
        "check": ("dkmonitor.cli.check", "Health for Nagios-style monitoring."),
        "cron": ("dkmonitor.cli.cron", "Print the crontab lines for this host."),
        "report": ("dkmonitor.cli.report", "Write a self-contained HTML report."),
        "systemd": ("dkmonitor.cli.cron", "Print the systemd units for this host."),
        "exempt": ("dkmonitor.cli.exempt", "Spare a user or a path from cleaning, until a date."),
        "me": ("dkmonitor.cli.me", "Show your own usage, announced files and exemptions."),
    }

    context_class = _HelpContext

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self.COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = self.COMMANDS.get(cmd_name)
        if entry is None:
            return None
        command = getattr(importlib.import_module(entry[0]), cmd_name)
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of --help, from the table: no command module imported."""
        rows = [(name, self.COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


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
    # Imported here, not at the top: `--help` never calls this, and the settings
    # loader it brings in was a fifth of --help's time.
    from dkmonitor.cli.context import AppContext

    # main() passes the MPI ranks (or None) in as the initial context object
    app = AppContext(config_path=config_path, verbosity=-1 if quiet else (1 if verbose else 0),
                     scan_pool=ctx.obj)
    ctx.obj = app
    ctx.call_on_close(app.close)


def _show_version(ctx: click.Context, wanted: bool) -> None:
    """Version, and which compiled loops were built (they decide scan speed)."""
    if not wanted or ctx.resilient_parsing:
        return
    from dkmonitor.scan import compiled_parts

    click.echo(f"dkmonitor, version {__version__}")
    for part, kind in compiled_parts():
        click.echo(f"{part}: {kind}")
    ctx.exit()


def _database_error(exc: Exception) -> str | None:
    """The first line of a database error's message; None when ``exc`` is something else.

    dkmonitor.db.backends knows each backend's error classes and asks only the
    drivers already imported (``view`` runs without SQLAlchemy).
    """
    from dkmonitor.db.backends import error_line, is_database_error

    return error_line(exc) if is_database_error(exc) else None


def _click_message(exc: click.ClickException) -> str:
    """The command (once, without the program name) and click's message on one line."""
    message = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)
    where = ctx.command_path.split(" ", 1)[1] if ctx and " " in ctx.command_path else ""
    return f"{where}: {message}" if where else message


def _missing_command(ctx: click.Context | None, usage_only: bool = False) -> int:
    """Bare ``dkmonitor``: the help, exit 0. A group without its command: a usage line, exit 2."""
    if ctx is None:
        click.echo("Usage: dkmonitor COMMAND [ARGS]...  ('dkmonitor -h' for help)", err=True)
        return 2
    if ctx.parent is None and not usage_only:
        click.echo(ctx.get_help())
        return 0
    group = ctx.command
    names = ", ".join(group.list_commands(ctx)) if isinstance(group, click.Group) else ""
    click.echo(
        f"Usage: {ctx.command_path} COMMAND [ARGS]...  (COMMAND: {names}; "
        f"'{ctx.command_path} -h' for help)",
        err=True,
    )
    return 2


def main(argv: list[str] | None = None) -> None:
    """Entry point: one process, or every rank of an MPI job (``mpirun``, ``srun``).

    Under MPI only rank 0 runs the command; the other ranks serve its scans
    (see ``dkmonitor.scan.mpi``) and exit 0 when it is done. Rank 0's exit
    status is the job's.
    """
    launch = launch_from(os.environ)
    if launch.size <= 1:
        _run(argv, None)
    try:
        import mpi4py  # noqa: F401  (the optional extra: dkmonitor[mpi])
    except ImportError:
        if launch.rank == 0:
            click.echo(f"dkmonitor: error: started as {launch.size} MPI ranks but mpi4py is "
                       "not installed: pip install 'dkmonitor[mpi]'", err=True)
        sys.exit(2)
    from dkmonitor.scan.mpi import mpi_world

    status = 0
    with mpi_world() as pool:
        if pool is not None:
            try:
                _run(argv, pool)
            except SystemExit as exc:
                status = exc.code if isinstance(exc.code, int) else 1
    sys.exit(status)


def _run(argv: list[str] | None, pool: ScanPool | None) -> None:
    """Run the command line; one line on stderr and the DESIGN.md exit status on any error."""
    try:
        status = cli.main(args=argv, prog_name="dkmonitor", standalone_mode=False, obj=pool)
    except click.exceptions.Abort:
        click.echo("dkmonitor: aborted", err=True)
        sys.exit(1)
    except click.exceptions.NoArgsIsHelpError as exc:
        sys.exit(_missing_command(exc.ctx))
    except click.UsageError as exc:
        if exc.message == "Missing command.":  # `dkmonitor -v`: options but no command
            sys.exit(_missing_command(exc.ctx, usage_only=True))
        click.echo(f"dkmonitor: error: {_click_message(exc)}", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(f"dkmonitor: error: {_click_message(exc)}", err=True)
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
