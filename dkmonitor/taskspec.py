"""A task as plain values, and the rules a task must satisfy.

The CLI builds a TaskSpec from flags or prompts, the database stores it, the
runner reads it back; ``validate`` is the one place the rules of DESIGN.md
live, so creation, editing and run time all refuse the same things.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from dkmonitor.enums import AGE_BASES
from dkmonitor.errors import TaskError
from dkmonitor.records import FrozenRecord

MAX_NOTICE_DAYS = 3650.0  # ten years: anything longer is a typo
DEFAULT_FINAL_NOTICE_DAYS = 3.0


@dataclass(frozen=True, repr=False, eq=False)
class TaskSpec(FrozenRecord):
    name: str
    hostname: str
    target_path: str
    usage_warning_threshold: float
    usage_critical_threshold: float
    old_file_threshold: float
    relocation_path: str | None = None
    delete_old_files: bool = False
    delete_when_full: bool = False
    email_usage_warnings: bool = False
    email_data_alterations: bool = True
    email_top_percent: float = 25.0
    enabled: bool = True
    age_basis: str = "used"
    purge_target_percent: float | None = None
    notice_days: float = 0.0
    final_notice_days: float | None = None
    clean_always: bool = False
    emergency_percent: float | None = None

    @property
    def cleans(self) -> bool:
        """Whether this task ever moves or deletes files."""
        return bool(self.relocation_path) or self.delete_old_files

    @property
    def announces(self) -> bool:
        """Whether files are announced to their owners before they are cleaned."""
        return self.notice_days > 0

    @property
    def final_notice_period(self) -> float:
        """Days before the purge date that the final reminder goes out; 0 for none.

        ``final_notice_days`` None means the default: 3 days, or half the
        notice period when that is shorter, so a short trial period still
        gets its reminder between the notice and the purge.
        """
        if not self.announces:
            return 0.0
        if self.final_notice_days is not None:
            return self.final_notice_days
        return min(DEFAULT_FINAL_NOTICE_DAYS, self.notice_days / 2)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_changes(self, **changes: Any) -> TaskSpec:
        return replace(self, **changes)


TASK_FIELDS = tuple(f.name for f in fields(TaskSpec))


def target_problem(path: str) -> str | None:
    """Why a task's target cannot be scanned ("does not exist", "is not a directory"), or None.

    The one wording for a missing target, used by quick and full runs alike.
    """
    if os.path.isdir(path):
        return None
    return "does not exist" if not os.path.lexists(path) else "is not a directory"


def relocation_conflict(target: str, relocation: str) -> str | None:
    """Why ``relocation`` may not receive files moved out of ``target``, or None.

    Both paths are resolved (symlinks, ``..``) before comparing: a relocation
    path that is a symlink into the target would otherwise have the cleaner
    move files into the tree it is cleaning, forever.
    """
    real_target = os.path.realpath(target)
    real_relocation = os.path.realpath(relocation)
    if real_relocation == real_target:
        return "is the target itself"
    if real_relocation.startswith(real_target.rstrip("/") + "/"):
        return f"lies inside the target ({real_relocation} is under {real_target})"
    if real_target.startswith(real_relocation.rstrip("/") + "/"):
        return f"contains the target ({real_target} is under {real_relocation})"
    return None


def _check_announce_options(spec: TaskSpec) -> None:
    """The rules of --notice-days, --final-notice-days, --clean-always and --emergency."""
    notice = spec.notice_days
    if not 0 <= notice <= MAX_NOTICE_DAYS:
        raise TaskError(f"--notice-days {notice:g}: must be between 0 and {MAX_NOTICE_DAYS:g}")
    final = spec.final_notice_days
    if final is not None:
        if not spec.announces:
            raise TaskError(
                f"--final-notice-days {final:g}: only with --notice-days > 0 "
                "(reset it with --final-notice-days default)"
            )
        if not 0 <= final < notice:
            raise TaskError(
                f"--final-notice-days {final:g}: must be >= 0 and less than "
                f"--notice-days ({notice:g})"
            )
    if spec.clean_always and not spec.cleans:
        raise TaskError("--clean-always: only with --move-to or --delete")
    emergency = spec.emergency_percent
    if emergency is not None:
        if not spec.announces or not spec.cleans:
            raise TaskError(
                f"--emergency {emergency:g}: only with --notice-days > 0 and "
                "--move-to or --delete (clear it with --emergency none)"
            )
        critical = spec.usage_critical_threshold
        if not critical < emergency <= 100:
            raise TaskError(
                f"--emergency {emergency:g}: must be above the critical threshold "
                f"({critical:g}) and at most 100"
            )


def validate(spec: TaskSpec) -> TaskSpec:
    """Return a normalised spec or raise TaskError naming the offending field."""
    if not spec.name or not spec.name.strip():
        raise TaskError("task name: must not be empty")
    if any(ch.isspace() for ch in spec.name) or "/" in spec.name:
        raise TaskError(f"task name {spec.name!r}: use letters, digits, '-', '_' or '.' only")
    if spec.name.startswith("path:"):
        raise TaskError(f"task name {spec.name!r}: 'path:' is reserved for `run path`")
    if not spec.target_path or not os.path.isabs(spec.target_path):
        raise TaskError(f"--target {spec.target_path!r}: must be an absolute path")
    warning, critical = spec.usage_warning_threshold, spec.usage_critical_threshold
    if not 0 < warning < critical <= 100:
        raise TaskError(
            f"--warning {warning:g} / --critical {critical:g}: need 0 < warning < critical <= 100"
        )
    if not spec.old_file_threshold > 0:
        raise TaskError(f"--old-days {spec.old_file_threshold:g}: must be greater than 0")
    if not 0 < spec.email_top_percent <= 100:
        raise TaskError(f"--top-percent {spec.email_top_percent:g}: must be in (0, 100]")
    if spec.age_basis not in AGE_BASES:
        raise TaskError(f"--age-basis {spec.age_basis!r}: use one of {', '.join(AGE_BASES)}")
    if spec.purge_target_percent is not None and not 0 < spec.purge_target_percent < critical:
        raise TaskError(
            f"--purge-target {spec.purge_target_percent:g}: "
            f"must be between 0 and the critical threshold ({critical:g})"
        )
    _check_announce_options(spec)
    relocation = spec.relocation_path or None
    if relocation and spec.delete_old_files:
        raise TaskError("--move-to and --delete: a task either moves or deletes old files")
    if spec.delete_when_full and not relocation:
        raise TaskError("--delete-when-full: only makes sense with --move-to")
    if relocation:
        if not os.path.isabs(relocation):
            raise TaskError(f"--move-to {relocation!r}: must be an absolute path")
        conflict = relocation_conflict(spec.target_path, relocation)
        if conflict:
            raise TaskError(f"--move-to {relocation}: {conflict}")
    return replace(
        spec,
        target_path=os.path.normpath(spec.target_path),
        relocation_path=os.path.normpath(relocation) if relocation else None,
    )
