"""`dkmonitor run quick|full|path`: thin wrappers around dkmonitor.runner.

Errors and warnings reach stderr through logging (so cron mails them); the
tables go to stdout only when a person is watching, or for `run path` and
dry runs, which are always asked for by a person.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import click

from dkmonitor.cli.context import AppContext, pass_app
from dkmonitor.cli.render import percent, table
from dkmonitor.cli.taskflags import spec_changes, task_flags
from dkmonitor.metrics import share_percent
from dkmonitor.runner import Progress, RunReport, TaskOutcome, run_path, run_tasks
from dkmonitor.taskspec import TaskSpec, validate
from dkmonitor.units import human_bytes, human_count


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
    _finish(
        ctx,
        app,
        run_tasks(app.settings, "quick", tasks, dry_run=dry_run, progress=_progress_factory(app)),
        always=dry_run,
    )


@run.command("full")
@click.argument("tasks", nargs=-1, metavar="[TASK]...")
@dry_run_option
@pass_app
@click.pass_context
def full(ctx: click.Context, app: AppContext, tasks: tuple[str, ...], dry_run: bool) -> None:
    """Scan, store, mail and (when critical) clean each task of this host."""
    _finish(
        ctx,
        app,
        run_tasks(app.settings, "full", tasks, dry_run=dry_run, progress=_progress_factory(app)),
        always=dry_run,
    )


@run.command("path")
@click.argument("directory", type=click.Path(file_okay=False, path_type=str))
@task_flags
@dry_run_option
@pass_app
@click.pass_context
def path(ctx: click.Context, app: AppContext, directory: str, dry_run: bool, **flags: Any) -> None:
    """One-off full run of an unsaved task on DIRECTORY (stored as task path:DIR).

    Defaults: --warning 85, --critical 95, --old-days 90; no mail, no cleaning
    unless asked for with the task flags.
    """
    settings = app.settings
    target = os.path.abspath(directory)
    changes = spec_changes(flags)
    changes.pop("target_path", None)
    changes.setdefault("usage_warning_threshold", 85.0)
    changes.setdefault("usage_critical_threshold", 95.0)
    changes.setdefault("old_file_threshold", 90.0)
    changes.setdefault("hostname", settings.hostname)
    spec = TaskSpec(name="one-off", target_path=target, **changes)
    spec = validate(spec).with_changes(name=f"path:{target}")
    report = run_path(settings, spec, dry_run=dry_run, progress=_progress_factory(app))
    _finish(ctx, app, report, always=True)


def _progress_factory(app: AppContext) -> Any:
    """A progress line on stderr, only on a terminal (never under cron)."""
    if app.verbosity < 0 or not sys.stderr.isatty():
        return None

    def factory(task: TaskSpec) -> Progress:
        started = time.monotonic()

        def show(files: int, size: int) -> None:
            elapsed = max(time.monotonic() - started, 1e-6)
            sys.stderr.write(
                f"\r\x1b[K  scanning {task.target_path}: {human_count(files)} files, "
                f"{human_bytes(size)}, {files / elapsed:,.0f} files/s"
            )
            sys.stderr.flush()

        return show

    return factory


def _finish(ctx: click.Context, app: AppContext, report: RunReport, always: bool) -> None:
    if sys.stderr.isatty() and app.verbosity >= 0:
        sys.stderr.write("\r\x1b[K")
    show = app.verbosity >= 0 and (always or app.interactive or app.verbosity > 0)
    if show:
        for line in report.messages:
            click.echo(line)
        for outcome in report.outcomes:
            click.echo(render_outcome(outcome), color=True)
    ctx.exit(report.exit_code)


def _share(allocated: int, filesystem: int) -> str:
    """The share column: allocated bytes over the file system's size (metrics.share_percent)."""
    share = share_percent(allocated, filesystem)
    return "-" if share is None else f"{share:.2f}%"


def render_outcome(outcome: TaskOutcome) -> str:
    task = outcome.task
    if outcome.status == "failed":
        return f"task {task.name}: FAILED: {outcome.message}"
    if outcome.status == "skipped":
        return outcome.message or f"task {task.name}: skipped"
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
            lines.append(f"{run.result.errors} unreadable or vanished entries (see the log)")
    lines += _clean_lines(outcome)
    if outcome.notify is not None:
        lines += list(getattr(outcome.notify, "would_send", []) or [])
        if outcome.notify.sent:
            lines.append(f"mailed {outcome.notify.sent} user(s)")
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
        lines.append(f"{verb}{done} {human_count(files)} old files ({human_bytes(size)}):")
        names = {u.uid: u.username for u in outcome.run.users} if outcome.run else {}
        for uid, altered in sorted(per_user.items(), key=lambda item: -item[1].bytes):
            lines.append(
                f"  {names.get(uid, str(uid))}: {human_count(altered.files)} files, "
                f"{human_bytes(altered.bytes)}"
            )
    if summary.skipped or summary.failed:
        lines.append(f"{summary.skipped} skipped, {summary.failed} failed (see the journal)")
    if summary.stopped:
        lines.append(f"cleaning stopped: {summary.stopped}")
    return lines
