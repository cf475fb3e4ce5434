"""`task create --interactive`: one prompt per field, each checked as it is answered.

The questions come from the task flag table (``taskflags.FLAGS``), in its
order; only the checks that tie one answer to another live here. Answering
``back`` returns to the previous question, so a warning threshold that leaves
no room for a critical one can be changed. The finished task goes through the
same ``validate`` as the flags, so a prompt can never accept what the flags
would refuse.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click

from dkmonitor.cli.taskflags import FLAGS, Flag
from dkmonitor.errors import TaskError
from dkmonitor.taskspec import MAX_NOTICE_DAYS, TaskSpec, relocation_conflict, validate

BACK = "back"  # what a person types to return to the previous question
_GO_BACK = object()
Answers = dict[str, Any]
Check = Callable[[Any, Answers], str | None]


@dataclass(frozen=True)
class Question:
    key: str  # the TaskSpec field, or "action" (keep/move/delete)
    text: str
    convert: Callable[[str], Any]
    check: Check
    default: str | None = None
    applies: Callable[[Answers], bool] = lambda answers: True


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


def _number_or(word: str) -> Callable[[str], float | None]:
    """A number, or ``word`` (any case) for None: "default", "none"."""

    def convert(raw: str) -> float | None:
        return None if raw.lower() == word else _number(raw)

    return convert


def _task_name(value: str, _answers: Answers) -> str | None:
    try:
        validate(TaskSpec(value, "host", "/", 1, 2, 1))
    except TaskError as exc:
        return str(exc)
    return None


def _existing_dir(value: str, _answers: Answers) -> str | None:
    if not os.path.isabs(value):
        return "give an absolute path"
    if not os.path.isdir(value):
        return f"{value} is not an existing directory"
    return None


def _critical(value: float, answers: Answers) -> str | None:
    warning = answers["usage_warning_threshold"]
    if warning < value <= 100:
        return None
    return f"must be > {warning:g} and <= 100 (or '{BACK}' to change the warning threshold)"


def _relocation(value: str, answers: Answers) -> str | None:
    if not os.path.isabs(value):
        return "give an absolute path"
    conflict = relocation_conflict(answers["target_path"], value)
    return f"{value} {conflict}" if conflict else None


def _in(low: float, high: float, high_ok: bool) -> Check:
    def check(value: float, _answers: Answers) -> str | None:
        if low < value < high or (high_ok and value == high):
            return None
        return f"must be > {low:g} and {'<=' if high_ok else '<'} {high:g}"

    return check


def _notice(value: float, _answers: Answers) -> str | None:
    if 0 <= value <= MAX_NOTICE_DAYS:
        return None
    return f"must be >= 0 and <= {MAX_NOTICE_DAYS:g}"


def _final_notice(value: float | None, answers: Answers) -> str | None:
    notice = answers["notice_days"]
    if value is None or 0 <= value < notice:
        return None
    return f"must be >= 0 and < {notice:g} (the notice period), or 'default'"


def _emergency(value: float | None, answers: Answers) -> str | None:
    critical = answers["usage_critical_threshold"]
    if value is None or critical < value <= 100:
        return None
    return f"must be > {critical:g} (the critical threshold) and <= 100, or 'none'"


def _announces_and_cleans(answers: Answers) -> bool:
    return answers.get("notice_days", 0) > 0 and answers.get("action") != "keep"


CHECKS: dict[str, Check] = {
    "target_path": _existing_dir,
    "hostname": lambda value, _answers: None if value else "give a host name",
    "usage_warning_threshold": _in(0, 100, high_ok=False),
    "usage_critical_threshold": _critical,
    "old_file_threshold": lambda value, _answers: None if value > 0 else "must be greater than 0",
    "email_top_percent": _in(0, 100, high_ok=True),
    "relocation_path": _relocation,
    "notice_days": _notice,
    "final_notice_days": _final_notice,
    "emergency_percent": _emergency,
}
# Asked only when the answer to "action" makes them matter.
WHEN: dict[str, Callable[[Answers], bool]] = {
    "relocation_path": lambda answers: answers.get("action") == "move",
    "delete_when_full": lambda answers: answers.get("action") == "move",
    "email_data_alterations": lambda answers: answers.get("action") != "keep",
    "final_notice_days": lambda answers: answers.get("notice_days", 0) > 0,
    "clean_always": lambda answers: answers.get("action") != "keep",
    "emergency_percent": _announces_and_cleans,
}
EXTRA_PROMPTS: dict[str, tuple[str, str | None]] = {  # fields without a question in FLAGS
    "relocation_path": ("Move old files to (absolute path)", None),
    "delete_when_full": ("Delete the rest when that fills up (yes/no)", "no"),
    "email_data_alterations": ("Mail users whose files are moved/deleted (yes/no)", "yes"),
    "final_notice_days": (
        "Final reminder how many days before the purge date "
        "(0: none; 'default': 3, or half the notice period)", "default"),
    "clean_always": ("Clean old files at every full run, whatever the disk use (yes/no)", "no"),
    "emergency_percent": (
        "Above what disk use may never-announced old files be cleaned too (% or 'none')",
        "none"),
}
ACTION = Question(
    "action",
    "When critical: keep, move or delete old files",
    str.lower,
    lambda value, _answers: None if value in ("keep", "move", "delete") else "keep, move or delete",
    default="keep",
)


def _one_of(options: tuple[str, ...]) -> Check:
    def check(value: str, _answers: Answers) -> str | None:
        return None if value in options else f"one of {', '.join(options)}"

    return check


def _question(flag: Flag, hostname: str) -> Question | None:
    if flag.prompt:
        text, default = flag.prompt, flag.default
    elif flag.key in EXTRA_PROMPTS:
        text, default = EXTRA_PROMPTS[flag.key]
    else:
        return None
    if flag.switch:
        convert: Callable[[str], Any] = _yes_no
    elif flag.number and flag.clear:
        convert = _number_or(flag.clear)
    elif flag.number:
        convert = _number
    elif flag.key in ("target_path", "relocation_path"):
        convert = os.path.normpath
    else:
        convert = str
    check = CHECKS.get(flag.key, lambda value, _answers: None)
    if flag.choices:
        check = _one_of(flag.choices)
    return Question(
        flag.key,
        text,
        convert,
        check,
        default=hostname if flag.key == "hostname" else default,
        applies=WHEN.get(flag.key, lambda answers: True),
    )


def questions(name: str | None, hostname: str) -> list[Question]:
    """Every question, in the order of the flag table; the cleaning choice before --move-to."""
    asked = [] if name else [Question("name", "Task name", str, _task_name)]
    for flag in FLAGS:
        if flag.key == "relocation_path":
            asked.append(ACTION)
        question = _question(flag, hostname)
        if question is not None:
            asked.append(question)
    return asked


def _ask(question: Question, answers: Answers) -> Any:
    """The converted, checked answer; _GO_BACK when the person wants the previous question."""
    while True:
        raw = str(
            click.prompt(question.text, default=question.default,
                         show_default=question.default is not None)
        ).strip()
        if raw.lower() == BACK:
            return _GO_BACK
        try:
            value = question.convert(raw)
        except ValueError as exc:
            click.echo(f"  {exc}", err=True)
            continue
        problem = question.check(value, answers)
        if problem is None:
            return value
        click.echo(f"  {problem}", err=True)


def ask_all(asked: list[Question]) -> Answers:
    """Ask each question that applies; ``back`` reopens the previous one."""
    answers: Answers = {}
    done: list[int] = []  # indexes of the questions answered, in order
    index = 0
    while index < len(asked):
        question = asked[index]
        if not question.applies(answers):
            index += 1
            continue
        value = _ask(question, answers)
        if value is _GO_BACK:
            if not done:
                click.echo("  this is the first question", err=True)
                continue
            index = done.pop()
            answers.pop(asked[index].key, None)
            continue
        answers[question.key] = value
        done.append(index)
        index += 1
    return answers


def prompt_task(name: str | None, hostname: str) -> TaskSpec:
    click.echo(f"Answer each question ('{BACK}' returns to the previous one).", err=True)
    answers = ask_all(questions(name, hostname))
    action = answers.pop("action")
    answers["delete_old_files"] = action == "delete"
    answers.setdefault("relocation_path", None)
    if action != "move":
        answers["relocation_path"] = None
        answers["delete_when_full"] = False
    if action == "keep":
        answers["email_data_alterations"] = True
    task_name = answers.pop("name", name)
    return validate(TaskSpec(name=task_name, **answers))
