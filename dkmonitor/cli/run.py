"""`dkmonitor run quick|full|path`: thin wrappers around dkmonitor.runner.

Errors and warnings reach stderr through logging (so cron mails them); the
tables go to stdout only when a person is watching, or for `run path` and
dry runs, which are always asked for by a person.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

import click

from dkmonitor.cli.context import AppContext, pass_app
from dkmonitor.cli.taskflags import spec_changes, task_flags
from dkmonitor.runner import Progress, RunReport, TaskOutcome, run_path, run_tasks
from dkmonitor.taskspec import TaskSpec, validate
from dkmonitor.units import counted, epoch_minute_utc, human_bytes, human_count


@click.group()
def run() -> None:
    """Scan tasks: quick (hourly), full (nightly) or a one-off path."""


dry_run_option = click.option(
    "--dry-run", is_flag=True, help="Scan and report; store nothing, mail nobody, touch no file."
)


@run.command("quick")
@click.argument("tasks", nargs=-1, metavar="[TASK]...")
@dry_run_option
@pass_app
@click.pass_context
def quick(ctx: click.Context, app: AppContext, tasks: tuple[str, ...], dry_run: bool) -> None:
    """Record disk use; a task over its warning threshold gets a full scan."""
    _run_tasks(ctx, app, "quick", tasks, dry_run)


def from_list_options(command: Any) -> Any:
    """--from-list FILE --list-format F: read a site scanner's list instead of walking."""
    command = click.option(
        "--list-format", type=click.Choice(("find", "gpfs", "lfs")),
        help="Format of the --from-list file (docs/lists.md has the command for each).",
    )(command)
    return click.option(
        "--from-list", "from_list", metavar="FILE", type=click.Path(dir_okay=False),
        help="Read this list (plain, .gz or .zst) from a site scanner instead of walking.",
    )(command)


def _list_source(from_list: str | None, list_format: str | None) -> Any:
    """The ListSource for --from-list, checked up front (a bad one: exit 2, one line)."""
    if from_list is None:
        if list_format is not None:
            raise click.UsageError("--list-format goes with --from-list FILE")
        return None
    if list_format is None:
        raise click.UsageError(
            f"--from-list {from_list}: also give --list-format (find, gpfs or lfs; "
            "see docs/lists.md)"
        )
    from dkmonitor.scan.fromlist import ListError, ListSource, check_list

    source = ListSource(os.path.abspath(from_list), list_format)
    try:
        check_list(source)
    except ListError as exc:
        raise click.UsageError(str(exc)) from exc
    return source


@run.command("full")
@click.argument("tasks", nargs=-1, metavar="[TASK]...")
@dry_run_option
@from_list_options
@pass_app
@click.pass_context
def full(
    ctx: click.Context, app: AppContext, tasks: tuple[str, ...], dry_run: bool,
    from_list: str | None, list_format: str | None,
) -> None:
    """Scan, store, mail and (when critical) clean each task of this host."""
    source = _list_source(from_list, list_format)
    if source is not None and len(tasks) != 1:
        raise click.UsageError("--from-list holds one target's files: name exactly one TASK")
    _run_tasks(ctx, app, "full", tasks, dry_run, from_list=source)


def _run_tasks(
    ctx: click.Context, app: AppContext, kind: str, tasks: tuple[str, ...], dry_run: bool,
    from_list: Any = None,
) -> None:
    line = _progress_line(app)
    progress = line.factory if line is not None else None
    report = run_tasks(app.settings, kind, tasks, dry_run=dry_run, progress=progress,
                       from_list=from_list, pool=app.scan_pool)
    _finish(ctx, app, report, line, always=dry_run, asked_for=tasks)


@run.command("path")
@click.argument(
    "directory", type=click.Path(exists=True, file_okay=False, path_type=str), metavar="DIR"
)
@task_flags(without=("target_path", "hostname"))
@dry_run_option
@from_list_options
@pass_app
@click.pass_context
def path(
    ctx: click.Context, app: AppContext, /, directory: str, dry_run: bool,
    from_list: str | None, list_format: str | None, **flags: Any,
) -> None:
    """One-off full run of an unsaved task on DIR (stored as task path:DIR).

    Defaults: --warning 85, --critical 95, --old-days 90; no mail, no cleaning
    unless asked for with the task flags. DIR must be an existing directory
    (anything else is a usage error, exit 2).
    """
    settings = app.settings
    source = _list_source(from_list, list_format)
    target = os.path.abspath(directory)
    changes = spec_changes(flags)
    changes.setdefault("usage_warning_threshold", 85.0)
    changes.setdefault("usage_critical_threshold", 95.0)
    changes.setdefault("old_file_threshold", 90.0)
    spec = TaskSpec(name="one-off", hostname=settings.hostname, target_path=target, **changes)
    spec = validate(spec).with_changes(name=f"path:{target}")
    line = _progress_line(app)
    report = run_path(
        settings, spec, dry_run=dry_run, progress=line.factory if line is not None else None,
        from_list=source, pool=app.scan_pool,
    )
    _finish(ctx, app, report, line, always=True)


class ProgressLine:
    """The progress line on a terminal's stderr, wiped before anything else is written there.

    Log records go to the same stderr: a filter on its handlers wipes the line
    first, so an error never shares the line with the progress.
    """

    def __init__(self) -> None:
        self.drawn = False

    def draw(self, text: str) -> None:
        sys.stderr.write(f"\r\x1b[K{text}")
        sys.stderr.flush()
        self.drawn = True

    def wipe(self) -> None:
        if self.drawn:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
            self.drawn = False

    def filter(self, record: logging.LogRecord) -> bool:  # a logging filter: never drops
        self.wipe()
        return True

    def factory(self, task: TaskSpec) -> Progress:
        """The runner's progress callback for one task."""
        started = time.monotonic()

        def show(files: int, size: int) -> None:
            elapsed = max(time.monotonic() - started, 1e-6)
            self.draw(
                f"  scanning {task.target_path}: {human_count(files)} files, "
                f"{human_bytes(size)}, {files / elapsed:,.0f} files/s"
            )

        return show

    def attach(self) -> None:
        for handler in [*logging.getLogger("dkmonitor").handlers, *logging.getLogger().handlers]:
            if isinstance(handler, logging.StreamHandler) and not isinstance(
                handler, logging.FileHandler
            ):
                handler.addFilter(self)


def _progress_line(app: AppContext) -> ProgressLine | None:
    """A progress line on stderr, only on a terminal (never under cron)."""
    if app.verbosity < 0 or not sys.stderr.isatty():
        return None
    app.settings  # noqa: B018 - loading the settings sets up the stderr log handler first
    line = ProgressLine()
    line.attach()
    return line


def _finish(
    ctx: click.Context,
    app: AppContext,
    report: RunReport,
    line: ProgressLine | None,
    *,
    always: bool,
    asked_for: tuple[str, ...] = (),
) -> None:
    if line is not None:
        line.wipe()
    show = app.verbosity >= 0 and (always or app.interactive or app.verbosity > 0)
    if show:
        for message in report.messages:
            click.echo(message)
        if not report.outcomes and not asked_for:
            click.echo(
                f"no enabled task for this host ({app.settings.hostname}): nothing to run "
                "(see `dkmonitor task list`)"
            )
        for outcome in report.outcomes:
            click.echo(render_outcome(outcome), color=True)
    ctx.exit(report.exit_code)


def _share(allocated: int, filesystem: int) -> str:
    """The share column: allocated bytes over the file system's size (metrics.share_percent)."""
    from dkmonitor.metrics import share_percent

    share = share_percent(allocated, filesystem)
    return "-" if share is None else f"{share:.2f}%"


def render_outcome(outcome: TaskOutcome) -> str:
    from dkmonitor.cli.render import percent, table  # termcolor: only when a table is shown

    task = outcome.task
    # Why a task failed or was skipped is already on stderr (logged, so cron mails it).
    if outcome.status == "failed":
        return f"task {task.name}: FAILED"
    if outcome.status == "skipped":
        return f"task {task.name}: skipped"
    run = outcome.run
    if run is None:
        return f"task {task.name}: {task.target_path}: disk use under the warning threshold"
    disk = run.disk
    lines = [
        f"task {task.name} on {run.hostname}: {task.target_path}  "
        f"disk {percent(disk.percent, task.usage_warning_threshold, task.usage_critical_threshold)}"
        f" used of {human_bytes(disk.total)} "
        f"(warning {task.usage_warning_threshold:g}%, critical {task.usage_critical_threshold:g}%)"
        + ("  [dry run]" if run.dry_run else ""),
    ]
    headers = ["user", "files", "size", "allocated", "old files", "old size", "avg age", "share"]
    rows = [
        [
            user.username,
            human_count(user.files),
            human_bytes(user.bytes),
            human_bytes(user.allocated_bytes),
            human_count(user.old_files),
            human_bytes(user.old_bytes),
            f"{user.average_age_days:.0f} d",
            _share(user.allocated_bytes, disk.total),
        ]
        for user in run.users
    ]
    if run.result is not None:
        total = run.result.total
        rows.append(
            [
                "TOTAL",
                human_count(total.files),
                human_bytes(total.bytes),
                human_bytes(total.allocated_bytes),
                human_count(total.old_files),
                human_bytes(total.old_bytes),
                f"{total.average_age_days:.0f} d",
                _share(total.allocated_bytes, disk.total),
            ]
        )
        lines.append(table(headers, rows))
        if run.result.errors:
            errors = run.result.errors
            lines.append(
                f"{errors:,} unreadable or vanished {'entry' if errors == 1 else 'entries'} "
                "(see the log)"
            )
    lines += _clean_lines(outcome)
    lines += _announce_lines(outcome)
    if outcome.notify is not None:
        lines += list(getattr(outcome.notify, "would_send", []) or [])
        if outcome.notify.sent:
            lines.append(f"mailed {counted(outcome.notify.sent, 'user')}")
    if outcome.status == "spooled" and outcome.message:
        lines.append(outcome.message)
    lines += outcome.warnings
    return "\n".join(lines) + "\n"


def _clean_lines(outcome: TaskOutcome) -> list[str]:
    summary = outcome.clean
    if summary is None:
        return []
    lines = []
    verb = "would " if summary.dry_run else ""
    for label, per_user in (("move", summary.moved), ("delete", summary.deleted)):
        if not per_user:
            continue
        files = sum(a.files for a in per_user.values())
        size = sum(a.bytes for a in per_user.values())
        done = label if summary.dry_run else ("moved" if label == "move" else "deleted")
        lines.append(f"{verb}{done} {counted(files, 'old file')} ({human_bytes(size)}):")
        names = {u.uid: u.username for u in outcome.run.users} if outcome.run else {}
        for uid, altered in sorted(per_user.items(), key=lambda item: -item[1].bytes):
            lines.append(
                f"  {names.get(uid, str(uid))}: {counted(altered.files, 'file')}, "
                f"{human_bytes(altered.bytes)}"
            )
    if summary.skipped or summary.failed:
        lines.append(f"{summary.skipped} skipped, {summary.failed} failed (see the journal)")
    if summary.stopped:
        lines.append(f"cleaning stopped: {summary.stopped}")
    if summary.emergency:
        files = sum(a.files for a in summary.unannounced.values())
        lines.append(f"emergency: {summary.emergency} ({counted(files, 'unannounced file')})")
    return lines


def _announce_lines(outcome: TaskOutcome) -> list[str]:
    """--notice-days: per user, what is (or would be) announced and until when."""
    summary = outcome.announce
    if summary is None:
        return []
    verb = "would announce" if summary.dry_run else "announced"
    if not summary.users:
        return [f"{verb}: no old files"]
    size = sum(user.bytes for user in summary.users.values())
    lines = [f"{verb} {counted(summary.files, 'old file')} ({human_bytes(size)}) to "
             f"{counted(len(summary.users), 'user')}:"]
    for user in sorted(summary.users.values(), key=lambda u: -u.bytes):
        when = epoch_minute_utc(user.purge_at)
        mail = f", {user.mail}" if user.mail else ""
        lines.append(f"  {user.username}: {counted(user.files, 'file')}, "
                     f"{human_bytes(user.bytes)} ({user.new_files} new), earliest purge "
                     f"{when}{mail}")
    lines += summary.refreshed
    return lines
