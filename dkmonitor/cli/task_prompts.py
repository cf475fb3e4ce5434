"""`task create --interactive`: one prompt per field, each checked as it is answered.

Each answer is checked by building the task so far and running the same
``validate`` the flags go through, so a prompt can never accept what the
flags would refuse; a bad answer is explained and asked again.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import click

from dkmonitor.errors import TaskError
from dkmonitor.scan.age import AGE_BASES
from dkmonitor.taskspec import TaskSpec, relocation_conflict, validate

T = TypeVar("T")


def _ask(
    text: str, convert: Callable[[str], T], check: Callable[[T], str | None], default: Any = None
) -> T:
    while True:
        raw = click.prompt(text, default=default, show_default=default is not None)
        try:
            value = convert(str(raw).strip())
        except ValueError as exc:
            click.echo(f"  {exc}", err=True)
            continue
        problem = check(value)
        if problem is None:
            return value
        click.echo(f"  {problem}", err=True)


def _number(raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{raw!r} is not a number") from None


def _yes_no(raw: str) -> bool:
    if raw.lower() in ("y", "yes"):
        return True
    if raw.lower() in ("n", "no"):
        return False
    raise ValueError("answer yes or no")


def prompt_task(name: str | None, hostname: str) -> TaskSpec:
    def nonempty_name(value: str) -> str | None:
        try:
            validate(TaskSpec(value, hostname, "/", 1, 2, 1))
        except TaskError as exc:
            return str(exc)
        return None

    def absolute_dir(value: str) -> str | None:
        if not os.path.isabs(value):
            return "give an absolute path"
        if not os.path.isdir(value):
            return f"{value} is not an existing directory"
        return None

    name = name or _ask("Task name", str, nonempty_name)
    target = _ask("Target directory", os.path.normpath, absolute_dir)
    host = _ask(
        "Host that runs it", str, lambda v: None if v else "give a host name", default=hostname
    )
    warning = _ask(
        "Warning threshold (% disk use)",
        _number,
        lambda v: None if 0 < v < 100 else "must be between 0 and 100",
    )
    critical = _ask(
        "Critical threshold (% disk use)",
        _number,
        lambda v: None if warning < v <= 100 else f"must be > {warning:g} and <= 100",
    )
    old_days = _ask(
        "Files unused for how many days are old",
        _number,
        lambda v: None if v > 0 else "must be greater than 0",
    )
    basis = _ask(
        f"Age measured from ({'/'.join(AGE_BASES)})",
        str,
        lambda v: None if v in AGE_BASES else f"one of {', '.join(AGE_BASES)}",
        default="used",
    )
    action = _ask(
        "When critical: keep, move or delete old files",
        str.lower,
        lambda v: None if v in ("keep", "move", "delete") else "keep, move or delete",
        default="keep",
    )
    relocation = None
    delete_when_full = False
    if action == "move":
        relocation = _ask(
            "Move old files to (absolute path)",
            os.path.normpath,
            lambda v: (
                "give an absolute path"
                if not os.path.isabs(v)
                else (
                    f"{v} {relocation_conflict(target, v)}"
                    if relocation_conflict(target, v)
                    else None
                )
            ),
        )
        delete_when_full = _ask(
            "Delete the rest when that fills up (yes/no)", _yes_no, lambda v: None, default="no"
        )
    email_warnings = _ask(
        "Mail users over the warning threshold (yes/no)", _yes_no, lambda v: None, default="no"
    )
    email_alterations = True
    if action != "keep":
        email_alterations = _ask(
            "Mail users whose files are moved/deleted (yes/no)",
            _yes_no,
            lambda v: None,
            default="yes",
        )
    top = _ask(
        "Share of users flagged as top users (%)",
        _number,
        lambda v: None if 0 < v <= 100 else "must be in (0, 100]",
        default="25",
    )
    return validate(
        TaskSpec(
            name=name,
            hostname=host,
            target_path=target,
            usage_warning_threshold=warning,
            usage_critical_threshold=critical,
            old_file_threshold=old_days,
            relocation_path=relocation,
            delete_old_files=action == "delete",
            delete_when_full=delete_when_full,
            email_usage_warnings=email_warnings,
            email_data_alterations=email_alterations,
            email_top_percent=top,
            age_basis=basis,
        )
    )
