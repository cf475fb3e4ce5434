"""`dkmonitor cron [--install]`: the crontab lines for this host."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from dkmonitor.cli.context import AppContext, pass_app
from dkmonitor.crontab import cron_lines, install, report_line


def _executable() -> list[str]:
    """Absolute path of the dkmonitor being run (what cron should run again)."""
    argv0 = sys.argv[0] if sys.argv else ""
    if os.path.basename(argv0) == "dkmonitor" and os.access(argv0, os.X_OK):
        return [os.path.abspath(argv0)]
    beside = Path(sys.executable).parent / "dkmonitor"
    if os.access(beside, os.X_OK):
        return [str(beside)]
    return [os.path.abspath(sys.executable), "-m", "dkmonitor"]


@click.command("cron")
@click.option(
    "--install",
    "do_install",
    is_flag=True,
    help="Add the lines to your crontab (only those missing; nothing else is changed).",
)
@click.option(
    "--crontab-file",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Read and change this crontab file instead of your crontab (crontab -l / -).",
)
@click.option(
    "--report",
    "report_dir",
    metavar="DIR",
    help="Also a nightly `dkmonitor report --output DIR` line (the HTML report).",
)
@click.option(
    "--check-notify",
    is_flag=True,
    help="Add an hourly `check --notify`: mail the administrators when the health changes.",
)
@pass_app
def cron(
    app: AppContext,
    do_install: bool,
    crontab_file: Path | None,
    report_dir: str | None,
    check_notify: bool,
) -> None:
    """Print the crontab lines for this host: quick hourly, full nightly.

    The lines name the absolute path of this dkmonitor and, when one is in use,
    the settings file (--config), since cron's environment has neither PATH
    nor $DKM_CONF. With --install they are added to the crontab unless a line
    running the same kind of run with the same settings file is already there
    (its schedule is then left as the administrator set it).
    """
    settings = app.settings
    config = str(settings.source.resolve()) if settings.source is not None else None
    lines = cron_lines(_executable(), config, settings.hostname, check_notify=check_notify)
    if report_dir is not None:
        output = os.path.abspath(report_dir)  # cron starts in the home directory
        lines.append(report_line(_executable(), config, settings.hostname, output))
    if not do_install:
        for line in lines:
            click.echo(line.text)
        return
    result = install(crontab_file, lines)
    where = str(crontab_file) if crontab_file else "your crontab"
    for text in result.added:
        click.echo(f"added to {where}: {text}")
    for text in result.present:
        click.echo(f"already in {where}: {text}")
