"""`dkmonitor cron [--install]` and `dkmonitor systemd [--install]`: this host's schedule."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import click

from dkmonitor import systemd as units
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
    config = _config_in_use(app)
    hostname = app.settings.hostname
    lines = cron_lines(_executable(), config, hostname, check_notify=check_notify)
    if report_dir is not None:
        output = os.path.abspath(report_dir)  # cron starts in the home directory
        lines.append(report_line(_executable(), config, hostname, output))
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


def _config_in_use(app: AppContext) -> str | None:
    source = app.settings.source
    return str(source.resolve()) if source is not None else None


def _default_unit_dir() -> tuple[Path, list[str]]:
    """Where units go and how systemctl is called: the system's as root, else the user's."""
    if os.geteuid() == 0:
        return units.SYSTEM_UNIT_DIR, ["systemctl"]
    return Path.home() / ".config" / "systemd" / "user", ["systemctl", "--user"]


@click.command("systemd")
@click.option(
    "--install",
    "do_install",
    is_flag=True,
    help="Write the missing units and enable the timers (existing units are left alone).",
)
@click.option(
    "--unit-dir",
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    help="Write the units here and do not call systemctl "
    "(default: /etc/systemd/system as root, else ~/.config/systemd/user).",
)
@click.option(
    "--report",
    "report_dir",
    metavar="DIR",
    help="Also a nightly `dkmonitor report --output DIR` service and timer.",
)
@pass_app
def systemd(
    app: AppContext, do_install: bool, unit_dir: Path | None, report_dir: str | None
) -> None:
    """Print the systemd units for this host: quick hourly, full nightly.

    A .service and a .timer for each run, an alternative to `dkmonitor cron`
    (use one or the other). The timers fire at the same minutes as the crontab
    lines would, and catch up after downtime (Persistent=true). With --install
    the units are written and `systemctl enable --now` starts both timers.
    """
    settings = app.settings
    report = os.path.abspath(report_dir) if report_dir is not None else None
    made = units.unit_files(_executable(), _config_in_use(app), settings.hostname, report)
    directory, systemctl = _default_unit_dir()
    if not do_install:
        for unit in made:
            click.echo(f"# {(unit_dir or directory) / unit.name}\n{unit.text}")
        return
    result = units.install(unit_dir or directory, made)
    for path in result.added:
        click.echo(f"written: {path}")
    for path in result.present:
        click.echo(f"already there: {path}")
    for path in result.differing:
        click.echo(f"left as it is (it differs from what dkmonitor would write): {path}")
    enable = [*systemctl, "enable", "--now", *units.timer_names(made)]
    if unit_dir is not None or shutil.which("systemctl") is None:
        click.echo(f"then run: {' '.join(systemctl)} daemon-reload && {' '.join(enable)}")
        return
    for command in ([*systemctl, "daemon-reload"], enable):
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            reason = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[0]
            click.echo(f"dkmonitor: error: {' '.join(command)}: {reason}", err=True)
            raise SystemExit(1)
    click.echo(f"enabled and started: {', '.join(units.timer_names(made))}")
