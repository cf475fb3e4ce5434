"""The task flags shared by `task create`, `task edit` and `run path`.

Every flag defaults to None so that `task edit` can tell "not given" from a
value; ``spec_changes`` turns the given ones into TaskSpec field changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from dkmonitor.scan.age import AGE_BASES

_FLAGS: list[Callable[[Any], Any]] = [
    click.option("--target", "target_path", metavar="DIR", help="Directory to audit."),
    click.option("--host", "hostname", metavar="H", help="Host that runs it (default: this one)."),
    click.option(
        "--warning",
        "usage_warning_threshold",
        type=float,
        metavar="PCT",
        help="Disk use %% above which users are warned.",
    ),
    click.option(
        "--critical",
        "usage_critical_threshold",
        type=float,
        metavar="PCT",
        help="Disk use %% above which old files are moved or deleted.",
    ),
    click.option(
        "--old-days",
        "old_file_threshold",
        type=float,
        metavar="DAYS",
        help="Files unused for longer than this are old.",
    ),
    click.option(
        "--move-to",
        "relocation_path",
        metavar="DIR",
        help="Move old files here when critical (mirrors the tree).",
    ),
    click.option(
        "--delete",
        "delete_old_files",
        is_flag=True,
        default=None,
        help="Delete old files when critical.",
    ),
    click.option(
        "--delete-when-full",
        "delete_when_full",
        is_flag=True,
        default=None,
        help="With --move-to: delete the remaining old files once it is full.",
    ),
    click.option(
        "--email-warnings/--no-email-warnings",
        "email_usage_warnings",
        default=None,
        help="Mail users over the warning threshold (default: off).",
    ),
    click.option(
        "--email-alterations/--no-email-alterations",
        "email_data_alterations",
        default=None,
        help="Mail users whose files are moved/deleted (default: on).",
    ),
    click.option(
        "--top-percent",
        "email_top_percent",
        type=float,
        metavar="PCT",
        help="Share of users flagged as top users (default 25).",
    ),
    click.option(
        "--age-basis",
        "age_basis",
        type=click.Choice(AGE_BASES),
        help="What a file's age is measured from (default: used = newer of atime/mtime).",
    ),
    click.option(
        "--purge-target",
        "purge_target_percent",
        type=float,
        metavar="PCT",
        help="Stop cleaning once disk use is back under this.",
    ),
]


def task_flags(func: Callable[..., Any]) -> Callable[..., Any]:
    for flag in reversed(_FLAGS):
        func = flag(func)
    return func


def spec_changes(given: dict[str, Any]) -> dict[str, Any]:
    """Only the flags that were given, with move/delete made exclusive by the last word."""
    changes = {key: value for key, value in given.items() if value is not None}
    if changes.get("relocation_path") is not None and "delete_old_files" not in changes:
        changes["delete_old_files"] = False
    if changes.get("delete_old_files") and "relocation_path" not in changes:
        changes["relocation_path"] = None
    return changes
