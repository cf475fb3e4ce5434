"""`dkmonitor check`: the health verdict for Nagios-style monitoring, from plain facts.

No database here: ``dkmonitor.db.healthdata`` gathers ``TaskFacts`` and
``evaluate`` turns them into a verdict, so every rule is testable with plain
values. The rules, worst first:

- CRITICAL: a task's latest disk reading is over its critical threshold; a
  task's last run failed; a host with enabled tasks stopped reporting (no scan
  of any kind for longer than max_age — cron broken, host down, or its runs
  cannot reach the central database);
- WARNING: a latest disk reading over the warning threshold; a task whose
  last successful full scan is older than max_age (or that never had one);
- UNKNOWN: no tasks, or no scan at all (nothing to judge) — and, decided by
  the command, an unreachable database or a usage error;
- OK otherwise.

A task or host younger than max_age (task created recently) is not stale yet.
Disabled tasks are ignored. Over a threshold means strictly greater.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from dkmonitor.units import iso_utc

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
STATE_NAMES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}
DEFAULT_MAX_AGE_HOURS = 26.0  # a nightly full run, plus slack for a slow night


@dataclass(frozen=True)
class TaskFacts:
    """What the database knows about one enabled task."""

    name: str
    hostname: str
    warning: float
    critical: float
    created_at: datetime
    disk_use_percent: float | None = None  # latest reading of any ok scan
    disk_read_at: datetime | None = None
    last_full_ok: datetime | None = None
    last_status: str | None = None  # status of the latest scan of any kind
    last_message: str | None = None


@dataclass(frozen=True)
class Problem:
    state: int
    kind: str  # disk | failed | stale-task | stale-host | no-data
    message: str
    task: str | None = None
    hostname: str | None = None


@dataclass(frozen=True)
class Perf:
    label: str
    value: float
    uom: str = ""
    warn: float | None = None
    crit: float | None = None
    min: float | None = None
    max: float | None = None

    def render(self) -> str:
        label = self.label
        if re.search(r"[\s'=]", label):
            label = "'" + label.replace("'", "''") + "'"
        parts = [f"{_num(self.value)}{self.uom}"]
        parts += ["" if v is None else _num(v) for v in (self.warn, self.crit, self.min, self.max)]
        return f"{label}=" + ";".join(parts).rstrip(";")


@dataclass(frozen=True)
class Verdict:
    state: int
    summary: str
    problems: tuple[Problem, ...] = ()
    perfdata: tuple[Perf, ...] = ()
    checked_at: datetime | None = None

    @property
    def state_name(self) -> str:
        return STATE_NAMES[self.state]

    def status_line(self) -> str:
        """``DKMONITOR STATE - summary | perfdata`` (the first line Nagios reads)."""
        line = f"DKMONITOR {self.state_name} - {self.summary}"
        if self.perfdata:
            line += " | " + " ".join(perf.render() for perf in self.perfdata)
        return line

    def as_json(self) -> dict[str, object]:
        return {
            "status": self.state_name,
            "exit_code": self.state,
            "summary": self.summary,
            "checked_at": iso_utc(self.checked_at)
            if self.checked_at
            else None,
            "problems": [
                {
                    "status": STATE_NAMES[p.state],
                    "kind": p.kind,
                    "task": p.task,
                    "hostname": p.hostname,
                    "message": p.message,
                }
                for p in self.problems
            ],
            "perfdata": [
                {
                    "label": p.label,
                    "value": p.value,
                    "uom": p.uom,
                    "warn": p.warn,
                    "crit": p.crit,
                    "min": p.min,
                    "max": p.max,
                }
                for p in self.perfdata
            ],
        }


def _num(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))


def _hours(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 3600:.1f} h"


def unknown(reason: str, now: datetime | None = None) -> Verdict:
    """The verdict when nothing can be judged (no database, bad usage, no data)."""
    return Verdict(UNKNOWN, reason, (Problem(UNKNOWN, "no-data", reason),), checked_at=now)


def evaluate(
    tasks: list[TaskFacts],
    host_last_seen: dict[str, datetime],
    now: datetime,
    max_age_hours: float = DEFAULT_MAX_AGE_HOURS,
) -> Verdict:
    """The verdict for these enabled tasks; ``host_last_seen``: newest scan per host."""
    if not tasks:
        return unknown("no enabled tasks in the database (dkmonitor task create ...)", now)
    if not host_last_seen and all(t.last_status is None for t in tasks):
        return unknown(f"no scans stored yet for {len(tasks)} task(s)", now)
    hosts = _host_ages(tasks)
    problems = _stale_hosts(hosts, host_last_seen, now, max_age_hours)
    stale_hosts = {p.hostname for p in problems}
    perf: list[Perf] = []
    for task in tasks:
        problems += _task_problems(task)
        if task.disk_use_percent is not None:
            perf.append(_disk_perf(task, task.disk_use_percent))
        if task.hostname not in stale_hosts:  # a silent host is already reported once
            problems += _stale_task(task, now, max_age_hours)
    return _verdict(tasks, hosts, problems, perf, len(stale_hosts), now)


def _host_ages(tasks: list[TaskFacts]) -> dict[str, datetime]:
    """Each host with the creation time of its oldest enabled task (a host is as old as that)."""
    hosts: dict[str, datetime] = {}
    for task in tasks:
        hosts[task.hostname] = min(hosts.get(task.hostname, task.created_at), task.created_at)
    return hosts


def _stale_hosts(
    hosts: dict[str, datetime],
    host_last_seen: dict[str, datetime],
    now: datetime,
    max_age_hours: float,
) -> list[Problem]:
    """CRITICAL for each host silent for longer than max_age (or never heard from)."""
    max_age = timedelta(hours=max_age_hours)
    problems = []
    for host, first_task in sorted(hosts.items()):
        seen = host_last_seen.get(host)
        if seen is None and now - first_task > max_age:
            message = f"host {host}: never reported"
        elif seen is not None and now - seen > max_age:
            message = f"host {host}: no scan for {_hours(now - seen)} (max {max_age_hours:g} h)"
        else:
            continue
        problems.append(Problem(CRITICAL, "stale-host", message, hostname=host))
    return problems


def _task_problems(task: TaskFacts) -> list[Problem]:
    """A failed last run (CRITICAL) and a disk over a threshold (CRITICAL or WARNING)."""
    where = f"task {task.name} on {task.hostname}"
    problems = []
    if task.last_status == "failed":
        reason = f": {task.last_message}" if task.last_message else ""
        problems.append(
            Problem(CRITICAL, "failed", f"{where}: last run failed{reason}", task.name,
                    task.hostname)
        )
    use = task.disk_use_percent
    if use is not None and use > task.critical:
        problems.append(
            Problem(CRITICAL, "disk", f"{where}: disk {use:.1f}% > critical {task.critical:g}%",
                    task.name, task.hostname)
        )
    elif use is not None and use > task.warning:
        problems.append(
            Problem(WARNING, "disk", f"{where}: disk {use:.1f}% > warning {task.warning:g}%",
                    task.name, task.hostname)
        )
    return problems


def _disk_perf(task: TaskFacts, use: float) -> Perf:
    return Perf(f"{task.name}@{task.hostname}", round(use, 2), "%", task.warning, task.critical,
                0, 100)


def _stale_task(task: TaskFacts, now: datetime, max_age_hours: float) -> list[Problem]:
    """WARNING when the last successful full scan is older than max_age.

    A task that never had one is judged from its creation: it is not stale
    until max_age has passed since it was created (the first nightly run
    has not happened yet).
    """
    max_age = timedelta(hours=max_age_hours)
    where = f"task {task.name} on {task.hostname}"
    if task.last_full_ok is None and now - task.created_at > max_age:
        message = f"{where}: never had a successful full scan"
    elif task.last_full_ok is not None and now - task.last_full_ok > max_age:
        message = (
            f"{where}: last successful full scan {_hours(now - task.last_full_ok)} "
            f"ago (max {max_age_hours:g} h)"
        )
    else:
        return []
    return [Problem(WARNING, "stale-task", message, task.name, task.hostname)]


def _verdict(
    tasks: list[TaskFacts],
    hosts: dict[str, datetime],
    problems: list[Problem],
    perf: list[Perf],
    stale_hosts: int,
    now: datetime,
) -> Verdict:
    """The worst state, a summary naming the first three problems, and the counters."""
    critical = sum(1 for p in problems if p.state == CRITICAL)
    warning = sum(1 for p in problems if p.state == WARNING)
    perf = perf + [
        Perf("tasks", len(tasks), min=0),
        Perf("critical", critical, min=0),
        Perf("warning", warning, min=0),
        Perf("stale_hosts", stale_hosts, min=0),
    ]
    problems = sorted(problems, key=lambda p: -p.state)
    if not problems:
        summary = f"{len(tasks)} task(s) on {len(hosts)} host(s) fine"
        return Verdict(OK, summary, (), tuple(perf), now)
    counts = ", ".join(
        text
        for text in (
            f"{critical} critical" if critical else "",
            f"{warning} warning" if warning else "",
        )
        if text
    )
    summary = f"{counts}: " + "; ".join(p.message for p in problems[:3])
    if len(problems) > 3:
        summary += f"; and {len(problems) - 3} more"
    return Verdict(problems[0].state, summary, tuple(problems), tuple(perf), now)
