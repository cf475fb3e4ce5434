"""`dkmonitor task ...`: define, inspect and change scan tasks."""

from __future__ import annotations

from typing import Any

import click

from dkmonitor.cli.context import AppContext, pass_app
from dkmonitor.cli.output import emit_json, output_options
from dkmonitor.cli.render import table
from dkmonitor.cli.taskflags import (
    FLAGS,
    required_flags,
    shown_value,
    spec_changes,
    task_flags,
)
from dkmonitor.db.tasks import create_task, delete_task, get_task, list_tasks, update_task
from dkmonitor.errors import TaskError
from dkmonitor.taskspec import TaskSpec, validate


@click.group()
def task() -> None:
    """Define, inspect and change scan tasks."""


def _cleaning(spec: TaskSpec) -> str:
    if spec.relocation_path:
        extra = ", delete when full" if spec.delete_when_full else ""
        return f"move to {spec.relocation_path}{extra}"
    return "delete" if spec.delete_old_files else "none"


@task.command("create")
@click.argument("name", required=False)
@task_flags(mark_required=True)
@click.option("--disabled", is_flag=True, help="Create the task disabled.")
@click.option(
    "--interactive", is_flag=True, help="Prompt for each field (then no other flag is needed)."
)
@pass_app
def create(
    app: AppContext, /, name: str | None, disabled: bool, interactive: bool, **flags: Any
) -> None:
    """Create task NAME (or use --interactive).

    --target, --warning, --critical and --old-days are required.
    """
    settings = app.settings
    if interactive:
        from dkmonitor.cli.task_prompts import prompt_task

        spec = prompt_task(name, settings.hostname)
    else:
        if not name:
            raise click.UsageError("needs a task NAME (or --interactive)")
        changes = spec_changes(flags)
        missing = [flag.flag for flag in required_flags() if flag.key not in changes]
        if missing:
            needed = ", ".join(flag.flag for flag in required_flags())
            raise click.UsageError(f"missing {', '.join(missing)} (required: {needed})")
        changes.setdefault("hostname", settings.hostname)
        spec = TaskSpec(name=name, enabled=not disabled, **changes)
    spec = validate(spec)
    with app.database().session() as session:
        spec = create_task(session, spec)
    click.echo(f"created task {spec.name} on {spec.hostname}: {spec.target_path}")


@task.command("list")
@output_options("table", "json")
@pass_app
def list_(app: AppContext, fmt: str) -> None:
    """List every task (all hosts)."""
    with app.database().session() as session:
        tasks = list_tasks(session)
    if fmt == "json":
        emit_json([t.as_dict() for t in tasks])
        return
    if not tasks:
        click.echo("no tasks yet: dkmonitor task create NAME --target DIR ...")
        return
    rows = [
        [
            t.name,
            t.hostname,
            t.target_path,
            f"{t.usage_warning_threshold:g}%",
            f"{t.usage_critical_threshold:g}%",
            f"{t.old_file_threshold:g}",
            _cleaning(t),
            "yes" if t.enabled else "no",
        ]
        for t in tasks
    ]
    headers = ["task", "host", "target", "warn", "crit", "old days", "cleaning", "enabled"]
    click.echo(table(headers, rows, right={3, 4, 5}))


@task.command("show")
@click.argument("name")
@output_options("table", "json")
@pass_app
def show(app: AppContext, name: str, fmt: str) -> None:
    """Show task NAME as the flags that would create it (json: the stored fields)."""
    with app.database().session() as session:
        spec = get_task(session, name)
    if fmt == "json":
        emit_json(spec.as_dict())
        return
    click.echo("\n".join(show_lines(spec)))


def show_lines(spec: TaskSpec) -> list[str]:
    """``task NAME`` and one ``--flag value`` line per field, aligned."""
    data = spec.as_dict()
    rows = [(flag.name, shown_value(data[flag.key], flag)) for flag in FLAGS]
    rows.append(("--disabled", shown_value(not spec.enabled)))
    width = max(len(flag) for flag, _value in rows)
    return [f"task {spec.name}"] + [f"  {flag:<{width}}  {value}" for flag, value in rows]


@task.command("edit")
@click.argument("name")
@click.option("--rename", "new_name", metavar="NEW", help="Give the task a new name.")
@task_flags
@click.option(
    "--no-cleaning", is_flag=True,
    help="Stop moving or deleting old files (also drops --clean-always and --emergency).",
)
@pass_app
def edit(
    app: AppContext, /, name: str, new_name: str | None, no_cleaning: bool, **flags: Any
) -> None:
    """Change some fields of task NAME."""
    changes = spec_changes(flags)
    if new_name:
        changes["name"] = new_name
    if no_cleaning:
        if "relocation_path" in changes or flags.get("delete_old_files"):
            raise click.UsageError("--no-cleaning cannot be combined with --move-to or --delete")
        changes.update(relocation_path=None, delete_old_files=False, delete_when_full=False)
        # options that only make sense for a cleaning task go too, unless given here
        changes.setdefault("clean_always", False)
        changes.setdefault("emergency_percent", None)
    if not changes:
        raise click.UsageError(f"nothing to change for task {name} (give some task flags)")
    with app.database().session() as session:
        spec = update_task(session, name, changes)
    click.echo(f"updated task {spec.name}")


@task.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def delete(app: AppContext, name: str, yes: bool) -> None:
    """Delete task NAME (its scan history is kept)."""
    with app.database().session() as session:
        get_task(session, name)  # unknown name: exit 2 before asking
        if not yes and not click.confirm(f"Delete task {name}?", default=False):
            raise click.Abort()
        delete_task(session, name)
    click.echo(f"deleted task {name}")


def _set_enabled(app: AppContext, name: str, enabled: bool) -> None:
    with app.database().session() as session:
        update_task(session, name, {"enabled": enabled})
    click.echo(f"{'enabled' if enabled else 'disabled'} task {name}")


@task.command("enable")
@click.argument("name")
@pass_app
def enable(app: AppContext, name: str) -> None:
    """Let cron runs include task NAME."""
    _set_enabled(app, name, True)


@task.command("disable")
@click.argument("name")
@pass_app
def disable(app: AppContext, name: str) -> None:
    """Keep task NAME out of cron runs."""
    _set_enabled(app, name, False)


__all__ = ["task", "TaskError"]
