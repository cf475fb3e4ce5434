"""The crontab lines that run dkmonitor on this host, and installing them safely.

``cron_lines`` is pure: the hourly quick run and the nightly full run, with the
absolute path of the executable and the settings file in use. The minute is
derived from the hostname, so many hosts sharing one central database do not
all connect at the same second, and so the lines are the same every time
they are generated on a host.

``install`` only ever appends: a line already present for the same kind of
run and the same settings file is left as it is (also if an administrator
changed its schedule), every other line of the crontab is kept verbatim. The
crontab is either a file (``path``, used by tests or for a cron.d-style copy)
or the invoking user's own, read with ``crontab -l`` and written with
``crontab -``.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from dkmonitor.errors import DkmError


@dataclass(frozen=True)
class CronLine:
    kind: str  # quick | full | report | check (check --notify)
    config: str | None
    text: str


@dataclass(frozen=True)
class Schedule:
    """When this host runs: quick at ``minute`` past every hour, full at ``full_hour:full_minute``.

    Derived from the hostname, so hosts sharing one database do not all
    connect at the same second, and the same on every call (cron and systemd
    timers agree).
    """

    minute: int
    full_hour: int  # between 01:00 and 04:59
    full_minute: int


def host_schedule(hostname: str) -> Schedule:
    splay = int.from_bytes(hashlib.sha256(hostname.encode()).digest()[:4], "big")
    minute = splay % 60
    return Schedule(minute, 1 + (splay // 60) % 4, (minute + 30) % 60)


def _cron_quote(word: str) -> str:
    """Quote for sh, and escape '%' which cron turns into a newline."""
    return shlex.quote(word).replace("%", "\\%")


def cron_lines(
    executable: list[str], config: str | None, hostname: str, *, check_notify: bool = False
) -> list[CronLine]:
    """The crontab lines for this host: hourly quick run, nightly full run, and on
    request an hourly ``check --notify`` (mail the administrators on a change).

    ``executable`` is the command that starts dkmonitor, as argv words
    (``["/usr/bin/dkmonitor"]`` or ``["/usr/bin/python3", "-m", "dkmonitor"]``).
    """
    when = host_schedule(hostname)
    command = executable + (["--config", config] if config else [])
    prefix = " ".join(_cron_quote(word) for word in command)
    lines = [
        CronLine("quick", config, f"{when.minute} * * * * {prefix} run quick"),
        CronLine("full", config, f"{when.full_minute} {when.full_hour} * * * {prefix} run full"),
    ]
    if check_notify:  # after the quick run has reported, and not at the same time
        check_minute = (when.minute + 15) % 60
        lines.append(CronLine("check", config, f"{check_minute} * * * * {prefix} check --notify"))
    return lines


def report_line(executable: list[str], config: str | None, hostname: str, output: str) -> CronLine:
    """The nightly ``report --output DIR`` line: two hours after the nightly full run.

    Kept apart from ``cron_lines``: it is offered only on request (``cron --report DIR``).
    """
    when = host_schedule(hostname)
    hour = (when.full_hour + 2) % 24
    minute = when.full_minute
    command = executable + (["--config", config] if config else [])
    words = " ".join(_cron_quote(word) for word in [*command, "report", "--output", output])
    return CronLine("report", config, f"{minute} {hour} * * * {words}")


def _parse_entry(line: str) -> tuple[str, str | None] | None:
    """(kind, config) of a crontab line that runs `dkmonitor ... run quick|full`, else None."""
    stripped = line.strip()
    if not stripped or stripped.startswith("#") or "=" in stripped.split(None, 1)[0]:
        return None
    fields = stripped.split(None, 5)
    if stripped.startswith("@"):
        fields = stripped.split(None, 1)
        command = fields[1] if len(fields) > 1 else ""
    else:
        if len(fields) < 6:
            return None
        command = fields[5]
    try:
        words = shlex.split(command.replace("\\%", "%"), comments=True)
    except ValueError:
        return None
    runs_dkmonitor = any(os.path.basename(word) == "dkmonitor" for word in words)
    if runs_dkmonitor and "check" in words and "--notify" in words:
        kind = "check"
    elif runs_dkmonitor and "report" in words and "run" not in words:
        kind = "report"
    elif not runs_dkmonitor or "run" not in words:
        return None
    else:
        after = words[words.index("run") + 1 :]
        if not after or after[0] not in ("quick", "full"):
            return None
        kind = after[0]
    config = None
    for index, word in enumerate(words):
        if word == "--config" and index + 1 < len(words):
            config = words[index + 1]
        elif word.startswith("--config="):
            config = word.split("=", 1)[1]
    return kind, config


@dataclass(frozen=True)
class InstallResult:
    added: tuple[str, ...]
    present: tuple[str, ...]  # the existing lines that already do the job


def merge(existing: str, lines: list[CronLine]) -> tuple[str, InstallResult]:
    """The new crontab text: ``existing`` plus whichever of ``lines`` it lacks."""
    entries: dict[tuple[str, str | None], str] = {}
    for text_line in existing.splitlines():
        parsed = _parse_entry(text_line)
        if parsed is not None:
            entries.setdefault(parsed, text_line)
    added: list[str] = []
    present: list[str] = []
    for line in lines:
        found = entries.get((line.kind, line.config))
        if found is None:
            added.append(line.text)
        else:
            present.append(found)
    text = existing
    if added:
        if text and not text.endswith("\n"):
            text += "\n"
        text += "\n".join(added) + "\n"
    return text, InstallResult(tuple(added), tuple(present))


# ---------------------------------------------------------------- reading/writing


def read_crontab(path: Path | None) -> str:
    if path is not None:
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return ""
        except OSError as exc:
            raise DkmError(f"{path}: cannot read crontab: {exc.strerror}") from None
    result = _crontab(["-l"])
    if result.returncode != 0:
        if "no crontab" in result.stderr.lower():
            return ""
        raise DkmError(f"crontab -l failed: {result.stderr.strip() or result.returncode}")
    return result.stdout


def write_crontab(path: Path | None, text: str) -> None:
    if path is not None:
        temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            mode = path.stat().st_mode & 0o7777 if path.exists() else 0o600
            temp.write_text(text, encoding="utf-8")
            os.chmod(temp, mode)
            os.replace(temp, path)
        except OSError as exc:
            temp.unlink(missing_ok=True)
            raise DkmError(f"{path}: cannot write crontab: {exc.strerror}") from None
        return
    result = _crontab(["-"], text)
    if result.returncode != 0:
        raise DkmError(f"crontab - failed: {result.stderr.strip() or result.returncode}")


def _crontab(args: list[str], text: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["crontab", *args], input=text, capture_output=True, text=True, timeout=60
        )
    except FileNotFoundError:
        raise DkmError(
            "the crontab command is not installed (Debian: apt-get install cron); "
            "add the lines printed by `dkmonitor cron` to your scheduler instead"
        ) from None


def install(path: Path | None, lines: list[CronLine]) -> InstallResult:
    """Add the missing lines to the crontab (file ``path``, or the user's own)."""
    current = read_crontab(path)
    text, result = merge(current, lines)
    if result.added:
        write_crontab(path, text)
    return result
