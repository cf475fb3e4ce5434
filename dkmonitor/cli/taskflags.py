"""The task flags shared by `task create`, `task edit`, `run path` and the prompts.

One table, ``FLAGS``, says for each TaskSpec field the flag a user types, its
help, whether `task create` requires it and how `task create --interactive`
asks for it; the click options, `task show` and the prompts are all read from
it, so a new task field is one row here.

Every flag defaults to None so that `task edit` can tell "not given" from a
value; ``spec_changes`` turns the given ones into TaskSpec field changes. A
field that may be empty has a word that empties it (``--emergency none``,
``--final-notice-days default``): the flag's ``clear`` word, read as CLEAR.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar, cast, overload

import click

from dkmonitor.enums import AGE_BASES


class _Clear:
    """The value of a flag given its clear word: set the field back to None."""

    def __repr__(self) -> str:
        return "CLEAR"


CLEAR = _Clear()


def number_or(word: str) -> Callable[[str], float | _Clear]:
    """A click type: a number, or ``word`` (``none``, ``default``) that empties the field."""

    def convert(value: str) -> float | _Clear:
        if str(value).strip().lower() == word:
            return CLEAR
        try:
            return float(value)
        except ValueError:
            raise click.BadParameter(f"{value!r} is not a number (nor {word!r})") from None

    return convert


class Flag(NamedTuple):
    """One task field as the command line and the prompts show it.

    A NamedTuple: every command line builds this module's flags, and a frozen
    dataclass costs about five times as much to define.
    """

    key: str  # the TaskSpec field
    flag: str  # what a user types: "--warning", "--email-warnings/--no-email-warnings"
    help: str
    metavar: str | None = None
    number: bool = False  # a float value
    switch: bool = False  # an on/off flag (``--delete``) or a --x/--no-x pair
    choices: tuple[str, ...] = ()
    required: bool = False  # `task create` cannot do without it
    prompt: str | None = None  # the interactive question (None: asked specially or never)
    default: str | None = None  # the interactive default answer
    clear: str | None = None  # with number: the word that empties the field ("none")

    @property
    def name(self) -> str:
        """The flag as `task show` prints it (the "on" spelling of a pair)."""
        return self.flag.split("/", 1)[0]

    def option(self, mark_required: bool = False) -> Callable[[Any], Any]:
        help_text = self.help + (" [required]" if mark_required and self.required else "")
        if self.switch:  # a --x/--no-x pair is a boolean flag by its spelling
            single: dict[str, Any] = {} if "/" in self.flag else {"is_flag": True}
            return click.option(self.flag, self.key, default=None, help=help_text, **single)
        kind: Any = click.Choice(self.choices) if self.choices else (float if self.number else None)
        if self.number and self.clear:
            kind = number_or(self.clear)
        return click.option(self.flag, self.key, type=kind, metavar=self.metavar, help=help_text)


FLAGS: tuple[Flag, ...] = (
    Flag("target_path", "--target", "Directory to audit.", "DIR", required=True,
         prompt="Target directory"),
    Flag("hostname", "--host", "Host that runs it (default: this one).", "H",
         prompt="Host that runs it"),
    Flag("usage_warning_threshold", "--warning", "Disk use percent above which users are warned.",
         "PCT", number=True, required=True, prompt="Warning threshold (% disk use)"),
    Flag("usage_critical_threshold", "--critical",
         "Disk use percent above which old files are moved or deleted.", "PCT", number=True,
         required=True, prompt="Critical threshold (% disk use)"),
    Flag("old_file_threshold", "--old-days", "Files unused for longer than this are old.",
         "DAYS", number=True, required=True, prompt="Files unused for how many days are old"),
    Flag("age_basis", "--age-basis",
         "What a file's age is measured from (default: used = newer of atime/mtime).",
         choices=AGE_BASES, prompt=f"Age measured from ({'/'.join(AGE_BASES)})", default="used"),
    Flag("relocation_path", "--move-to", "Move old files here when critical (mirrors the tree).",
         "DIR"),
    Flag("delete_old_files", "--delete", "Delete old files when critical.", switch=True),
    Flag("delete_when_full", "--delete-when-full",
         "With --move-to: delete the remaining old files once it is full.", switch=True),
    Flag("email_usage_warnings", "--email-warnings/--no-email-warnings",
         "Mail users over the warning threshold (default: off).", switch=True,
         prompt="Mail users over the warning threshold (yes/no)", default="no"),
    Flag("email_data_alterations", "--email-alterations/--no-email-alterations",
         "Mail users whose files are moved/deleted (default: on).", switch=True),
    Flag("email_top_percent", "--top-percent",
         "Share of users flagged as top users (default 25).", "PCT", number=True,
         prompt="Share of users flagged as top users (%)", default="25"),
    Flag("purge_target_percent", "--purge-target",
         "Stop cleaning once disk use is back under this ('none': no such stop).", "PCT",
         number=True, clear="none"),
    Flag("notice_days", "--notice-days",
         "Announce old files to their owners this many days before cleaning them "
         "(decimals allowed; default 0: no notice, clean at once).", "DAYS", number=True,
         prompt="Announce old files how many days before cleaning them (0: no notice)",
         default="0"),
    Flag("final_notice_days", "--final-notice-days",
         "Send the final reminder this many days before the purge date (0: none; "
         "'default': 3, or half of --notice-days when shorter).", "DAYS", number=True,
         clear="default"),
    Flag("clean_always", "--clean-always/--no-clean-always",
         "Clean old files at every full run, whatever the disk use (default: off).",
         switch=True),
    Flag("emergency_percent", "--emergency",
         "Above this disk use, also clean old files that were never announced "
         "('none' clears it).", "PCT", number=True, clear="none"),
)

BY_KEY = {flag.key: flag for flag in FLAGS}


F = TypeVar("F", bound=Callable[..., Any])


@overload
def task_flags(func: F) -> F: ...


@overload
def task_flags(
    *, without: tuple[str, ...] = (), mark_required: bool = False
) -> Callable[[F], F]: ...


def task_flags(
    func: F | None = None,
    *,
    without: tuple[str, ...] = (),
    mark_required: bool = False,
) -> F | Callable[[F], F]:
    """Add the task flags to a command.

    ``without`` names fields that do not apply to it; ``mark_required`` says
    "[required]" in the help of the flags `task create` needs. Usable bare
    (``@task_flags``) or with arguments (``@task_flags(without=...)``).
    """

    def decorate(command: F) -> F:
        wrapped: Any = command
        for flag in reversed(FLAGS):
            if flag.key not in without:
                wrapped = flag.option(mark_required)(wrapped)
        return cast(F, wrapped)

    return decorate if func is None else decorate(func)


def required_flags() -> tuple[Flag, ...]:
    return tuple(flag for flag in FLAGS if flag.required)


def spec_changes(given: dict[str, Any]) -> dict[str, Any]:
    """Only the flags that were given, with move/delete made exclusive by the last word."""
    changes = {
        key: None if value is CLEAR else value
        for key, value in given.items()
        if value is not None
    }
    if changes.get("relocation_path") is not None and "delete_old_files" not in changes:
        changes["delete_old_files"] = False
    if changes.get("delete_old_files") and "relocation_path" not in changes:
        changes["relocation_path"] = None
    return changes


def shown_value(value: Any, flag: Flag | None = None) -> str:
    """A field's value as a user would type it after its flag (``flag``: its clear word)."""
    if value is None:
        return flag.clear if flag is not None and flag.clear else "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
