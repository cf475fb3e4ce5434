"""`dkmonitor report --output DIR`: the static HTML report.

matplotlib and Jinja2 come with the optional ``report`` extra and are
imported here, inside the command, only when it runs: every other command
(cron starts one every hour) stays as quick to start as before.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from dkmonitor.cli.context import AppContext, pass_app
from dkmonitor.errors import DkmError

INSTALL_HINT = (
    "report: matplotlib and Jinja2 are not installed; "
    "install them with: pip install 'dkmonitor[report]' (scripts/install.sh includes them)"
)


@click.command("report")
@click.option(
    "--output",
    "-o",
    required=True,
    metavar="DIR",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for index.html and one page per host and target (created if missing).",
)
@click.option(
    "--window-days",
    type=click.IntRange(min=2, max=3650),
    default=30,
    show_default=True,
    help="Forecasts fit a straight line through this many recent days of disk-use readings.",
)
@click.option(
    "--history-days",
    type=click.IntRange(min=1, max=36500),
    default=365,
    show_default=True,
    help="Days of disk use drawn in the charts (at least the forecast window).",
)
@pass_app
def report(app: AppContext, output: Path, window_days: int, history_days: int) -> None:
    """Write a self-contained HTML report (charts inline, nothing loaded from anywhere).

    One page per host and target: disk use over time and when it will reach
    the critical threshold and 100 %, top users, top growers over 1, 7 and
    30 days, and every user. Open DIR/index.html in any browser, offline.
    """
    try:
        from dkmonitor.report.render import write_report
    except ImportError as exc:
        if exc.name not in ("matplotlib", "jinja2") and not str(exc.name).startswith(
            ("matplotlib.", "jinja2.")
        ):
            raise
        raise DkmError(INSTALL_HINT) from None
    from dkmonitor.report.data import load

    if output.exists() and not output.is_dir():
        raise DkmError(f"report: --output {output} exists and is not a directory")
    began = time.monotonic()
    with app.reader() as reader:
        data = load(reader, max(history_days, window_days))  # the fit needs its whole window
    try:
        written = write_report(data, output, window_days)
    except OSError as exc:
        where = exc.filename or output
        raise DkmError(f"report: cannot write {where}: {exc.strerror}; check --output") from None
    if app.interactive or app.verbosity > 0:
        took = time.monotonic() - began
        click.echo(f"wrote {written.index} and {written.pages} page(s) in {took:.1f} s")
