"""systemd units that run dkmonitor on this host: a .service and .timer per schedule.

An alternative to ``dkmonitor cron`` on hosts where systemd runs the
schedules: ``dkmonitor-quick.timer`` starts the quick run every hour and
``dkmonitor-full.timer`` the full run every night, at the same host-derived
minutes as the crontab lines (``crontab.host_schedule``). ``Persistent=`` makes
a run missed while the machine was off happen at the next boot.

``unit_files`` is pure; ``install`` writes only files that are missing, never
through a symlink, and leaves a unit an administrator changed as it is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dkmonitor.crontab import host_schedule
from dkmonitor.errors import DkmError

SYSTEM_UNIT_DIR = Path("/etc/systemd/system")
KINDS = {
    "quick": "hourly: disk use of each task of this host; over warning, a full scan",
    "full": "nightly: scan, store, mail and clean when critical",
}


@dataclass(frozen=True)
class UnitFile:
    name: str  # dkmonitor-quick.service
    text: str


def _quote(word: str) -> str:
    """One ExecStart word: quoted when needed, '%' doubled (systemd's specifier sign)."""
    word = word.replace("%", "%%")
    if word and not any(ch.isspace() or ch in "\"'\\;$" for ch in word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"').replace("$", "$$") + '"'


def unit_files(
    executable: list[str], config: str | None, hostname: str, report_dir: str | None = None
) -> list[UnitFile]:
    """dkmonitor-{quick,full}.{service,timer} for this host; with ``report_dir`` also
    dkmonitor-report.{service,timer}, two hours after the full run (as `cron --report`)."""
    when = host_schedule(hostname)
    schedules = [
        ("quick", KINDS["quick"], "run quick", f"*-*-* *:{when.minute:02d}:00"),
        ("full", KINDS["full"], "run full",
         f"*-*-* {when.full_hour:02d}:{when.full_minute:02d}:00"),
    ]
    if report_dir is not None:
        schedules.append(("report", "nightly: the HTML report",
                          f"report --output {_quote(report_dir)}",
                          f"*-*-* {(when.full_hour + 2) % 24:02d}:{when.full_minute:02d}:00"))
    command = " ".join(_quote(w) for w in [*executable, *(["--config", config] if config else [])])
    units = []
    for kind, what, args, calendar in schedules:
        service = (
            "[Unit]\n"
            f"Description=dkmonitor {args.split(' --', 1)[0]} ({what})\n"
            "Wants=network-online.target\n"
            "After=network-online.target\n"
            "\n[Service]\n"
            "Type=oneshot\n"
            f"ExecStart={command} {args}\n"
            "Nice=10\n"
            "IOSchedulingClass=idle\n"
        )
        timer = (
            "[Unit]\n"
            f"Description=dkmonitor {args.split(' --', 1)[0]}, {what.split(':', 1)[0]}\n"
            "\n[Timer]\n"
            f"OnCalendar={calendar}\n"
            "Persistent=true\n"
            "\n[Install]\n"
            "WantedBy=timers.target\n"
        )
        units += [
            UnitFile(f"dkmonitor-{kind}.service", service),
            UnitFile(f"dkmonitor-{kind}.timer", timer),
        ]
    return units


def timer_names(units: list[UnitFile]) -> list[str]:
    return [unit.name for unit in units if unit.name.endswith(".timer")]


@dataclass(frozen=True)
class InstallResult:
    added: tuple[Path, ...]
    present: tuple[Path, ...]  # already there with the same text
    differing: tuple[Path, ...]  # already there, changed by someone: left alone


def install(directory: Path, units: list[UnitFile]) -> InstallResult:
    """Write the units missing from ``directory`` (mode 0644, never through a symlink)."""
    added: list[Path] = []
    present: list[Path] = []
    differing: list[Path] = []
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DkmError(f"{directory}: cannot create the unit directory: {exc.strerror}") from None
    for unit in units:
        path = directory / unit.name
        if os.path.lexists(path):
            try:
                same = not path.is_symlink() and path.read_text(encoding="utf-8") == unit.text
            except OSError:
                same = False
            (present if same else differing).append(path)
            continue
        _write_new(path, unit.text)
        added.append(path)
    return InstallResult(tuple(added), tuple(present), tuple(differing))


def _write_new(path: Path, text: str) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(path, 0o644)  # whatever the umask
    except OSError as exc:
        raise DkmError(f"{path}: cannot write the unit: {exc.strerror}") from None
