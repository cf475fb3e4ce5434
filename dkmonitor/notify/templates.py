"""The mail templates: the shipped ones, an administrator's overrides, their checks.

Each section of a mail is one plain-text file in ``dkmonitor/templates/``.
``[email] template_dir`` may hold files of the same names that replace the
shipped ones one by one. Templates are checked up front (``load_templates``
raises ConfigError naming the file and the placeholder) so that a typo in an
override stops the run before any mail goes out, instead of failing halfway
through the users - or, worse, mailing them a literal ``{usernmae}``.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from dkmonitor.errors import ConfigError

# section -> file name, in the order a warning mail is assembled.
TEMPLATE_FILES: dict[str, str] = {
    "header": "header.txt",
    "top_space": "top_space.txt",
    "top_old_files": "top_old_files.txt",
    "general_warning": "general_warning.txt",
    "move_warning": "move_warning.txt",
    "deletion_warning": "deletion_warning.txt",
    "move_notice": "move_notice.txt",
    "deletion_notice": "deletion_notice.txt",
    "purge_notice": "purge_notice.txt",
    "purge_final_notice": "purge_final_notice.txt",
}

# Every placeholder a template may use, with what it holds (docs/mail.md lists
# the same). The first eleven are the original dkmonitor's; the rest are new.
PLACEHOLDERS: dict[str, str] = {
    "username": "the user's login name",
    "target_path": "the task's target directory",
    "hostname": "the host the task runs on",
    "usage_warning_threshold": "warning threshold, percent",
    "usage_critical_threshold": "critical threshold, percent (cleaning starts above it)",
    "old_file_threshold": "days without use after which a file is old",
    "relocation_path": "where old files are moved to (empty for delete tasks)",
    "number_of_old_files": "the user's old files",
    "total_old_file_size": "their size, human units",
    "total_file_size": "size of all the user's files, human units",
    "disk_use_percent": "disk use of the target's filesystem, percent",
    "task_name": "the task's name",
    "number_of_files": "all of the user's files",
    "disk_share_percent": "the user's allocated bytes over the filesystem's size, percent",
    "top_percent": "the task's email_top_percent",
    "moved_to": "the directory the user's moved files now live under",
    "number_of_moved_files": "files of the user moved by this run (notices)",
    "total_moved_file_size": "their size, human units (notices)",
    "number_of_deleted_files": "files of the user deleted by this run (notices)",
    "total_deleted_file_size": "their size, human units (notices)",
    "number_of_announced_files": "the user's files announced for purging (purge notices)",
    "total_announced_file_size": "their size, human units (purge notices)",
    "earliest_purge_date": "the first date any of them may go, UTC (purge notices)",
    "notice_days": "the task's --notice-days (purge notices)",
    "purge_action": "\"deleted\" or \"moved to\" the relocation path (purge notices)",
    "list_path": "the user's list of announced files (purge notices)",
}

SAMPLE_VALUES: dict[str, str] = {name: "1" for name in PLACEHOLDERS}

_FORMATTER = string.Formatter()


class Values(dict[str, str]):
    """A placeholder mapping for ``str.format_map`` that refuses unknown names.

    A plain dict already raises KeyError; this one says which placeholder and
    that it is not one dkmonitor knows, for the rare template that slipped
    past ``check`` (none should: ``load_templates`` checks them all).
    """

    def __missing__(self, key: str) -> str:
        raise KeyError(f"unknown placeholder {{{key}}}")


@dataclass(frozen=True)
class Templates:
    """The texts, and where each came from (for error messages)."""

    texts: Mapping[str, str]
    sources: Mapping[str, str]

    def render(self, section: str, values: Mapping[str, str]) -> str:
        """The section with its placeholders filled in, trailing blank lines trimmed."""
        return self.texts[section].format_map(Values(values)).rstrip()


def placeholders_in(text: str) -> list[str]:
    """The placeholder names used in ``text``; ValueError when it is malformed."""
    names: list[str] = []
    for _literal, field, spec, _conversion in _FORMATTER.parse(text):
        if field is None:
            continue
        if field == "" or field.isdigit():
            raise ValueError("positional placeholder {} (name it, e.g. {username})")
        names.append(field)
        if spec and "{" in spec:
            raise ValueError(f"nested placeholder in {{{field}:{spec}}}")
    return names


def check_template(text: str, source: str) -> None:
    """Raise ConfigError naming ``source`` and the first bad placeholder."""
    try:
        names = placeholders_in(text)
    except ValueError as exc:
        raise ConfigError(f"{source}: malformed template: {exc} (write {{{{ and }}}} "
                          "for literal braces)") from None
    for name in names:
        if name not in PLACEHOLDERS:
            raise ConfigError(
                f"{source}: unknown placeholder {{{name}}}; known placeholders: "
                + ", ".join(PLACEHOLDERS)
            )
    try:  # format specs such as {username:>{x}} or {disk_use_percent:.1f} fail only here
        text.format_map(Values(SAMPLE_VALUES))
    except (ValueError, KeyError, IndexError) as exc:
        raise ConfigError(f"{source}: template cannot be filled in: {exc}") from None


def _shipped(name: str) -> tuple[str, str]:
    resource = resources.files("dkmonitor.templates").joinpath(name)
    return resource.read_text(encoding="utf-8"), str(resource)


def _read_override(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: template is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read template: {exc.strerror}") from None


def load_templates(template_dir: str | None = None) -> Templates:
    """Shipped templates, replaced file by file from ``template_dir``, all checked.

    A ``*.txt`` file in the override directory that is not one of the shipped
    names is an error too: ``heder.txt`` would otherwise be silently ignored.
    """
    texts: dict[str, str] = {}
    sources: dict[str, str] = {}
    for section, name in TEMPLATE_FILES.items():
        texts[section], sources[section] = _shipped(name)
    if template_dir:
        directory = Path(template_dir)
        if not directory.is_dir():
            raise ConfigError(f"[email] template_dir = {template_dir}: not a directory")
        known = set(TEMPLATE_FILES.values())
        for path in sorted(directory.glob("*.txt")):
            if path.name not in known:
                raise ConfigError(
                    f"{path}: not a dkmonitor template name; overrides must be one of "
                    + ", ".join(TEMPLATE_FILES.values())
                )
        for section, name in TEMPLATE_FILES.items():
            path = directory / name
            if path.is_file():
                texts[section], sources[section] = _read_override(path), str(path)
    for section, text in texts.items():
        check_template(text, sources[section])
    return Templates(texts=texts, sources=sources)
