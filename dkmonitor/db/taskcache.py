"""A local copy of this host's tasks, so a run can go on while the database is down.

Written 0600 through dkmonitor.safefs: task targets name private paths.
"""

from __future__ import annotations

import json
from contextlib import suppress
from pathlib import Path

from dkmonitor.safefs import write_private_file
from dkmonitor.taskspec import TaskSpec


def cache_path(state_dir: Path) -> Path:
    return state_dir / "tasks.json"


def save_tasks(state_dir: Path, tasks: list[TaskSpec]) -> None:
    """Write the copy when it changed (every run reads the tasks; few change them)."""
    path = cache_path(state_dir)
    data = json.dumps([task.as_dict() for task in tasks], indent=1).encode("utf-8")
    with suppress(OSError):  # absent or unreadable: written anew
        if path.read_bytes() == data:
            return
    write_private_file(path.parent, path.name, data)


def load_tasks(state_dir: Path) -> list[TaskSpec] | None:
    """The cached tasks, or None when there is no usable cache."""
    try:
        data = json.loads(cache_path(state_dir).read_text(encoding="utf-8"))
        return [TaskSpec(**item) for item in data]
    except (OSError, ValueError, TypeError):
        return None
