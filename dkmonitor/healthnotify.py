"""`check --notify`: mail the administrators when the health state changes.

The check runs often (cron, every hour or so); the administrators want a mail
when something changes, not one per check. What counts as "the state" is the
verdict's status and *which* problems it has (status, kind, host, task; not
the messages, whose numbers change with every reading): a disk crossing a
threshold, a failed run, a host that stopped reporting and each recovery
change it. A mail goes out when the state differs from the last one mailed
(or, on the very first check, when it is not OK), and an unchanged state
that is not OK is mailed again at most once a day, as a reminder.

The last state mailed is kept in ``{state_dir}/health-notify.json`` (0600,
written to a temporary file and renamed, never through a symlink). It is
written only after the mail went out, so a failed mail is tried again by the
next check.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from dkmonitor.config import Settings
from dkmonitor.errors import ConfigError
from dkmonitor.health import OK, STATE_NAMES, Verdict
from dkmonitor.notify.mailer import DeliveryError, Mailer, open_mailer
from dkmonitor.notify.message import HeaderError, build_message, clean_text

log = logging.getLogger(__name__)

STATE_FILE = "health-notify.json"
REMIND_AFTER = timedelta(days=1)


@dataclass(frozen=True)
class Mailed:
    """The state last mailed (or, for a first OK check, recorded without a mail)."""

    state: int
    problems: tuple[str, ...]
    at: datetime


def signature(verdict: Verdict) -> tuple[str, ...]:
    """Which problems the verdict has, in a form that compares across checks."""
    return tuple(sorted({
        " ".join(part for part in (STATE_NAMES[p.state], p.kind, p.hostname, p.task) if part)
        for p in verdict.problems
    }))


def load(state_dir: Path) -> Mailed | None:
    """The last state mailed; None when there is none (or it is unreadable: start over)."""
    try:
        with open(state_dir / STATE_FILE, encoding="utf-8") as handle:
            data = json.load(handle)
        return Mailed(int(data["state"]), tuple(str(p) for p in data["problems"]),
                      datetime.fromisoformat(data["at"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        if not isinstance(exc, FileNotFoundError):
            log.warning("%s: unreadable, starting over: %s", state_dir / STATE_FILE, exc)
        return None


def save(state_dir: Path, mailed: Mailed) -> None:
    """Replace the state file (mkstemp: 0600, O_EXCL, so no planted symlink is followed)."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    data = {"state": mailed.state, "problems": list(mailed.problems), "at": mailed.at.isoformat()}
    handle, temp = tempfile.mkstemp(dir=state_dir, prefix=".health-notify-", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(data, out)
        os.replace(temp, state_dir / STATE_FILE)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def due(previous: Mailed | None, verdict: Verdict, now: datetime) -> str | None:
    """Why this verdict is to be mailed ("new", "changed", "reminder"), or None."""
    problems = signature(verdict)
    if previous is None:
        return "new" if verdict.state != OK else None
    if (verdict.state, problems) != (previous.state, previous.problems):
        return "changed"
    if verdict.state != OK and now - previous.at >= REMIND_AFTER:
        return "reminder"
    return None


def compose(previous: Mailed | None, verdict: Verdict, why: str) -> tuple[str, str]:
    """Subject and body of the mail."""
    name = verdict.state_name
    was = STATE_NAMES[previous.state] if previous is not None else None
    if why == "reminder":
        subject = f"[dkmonitor] health still {name}"
    elif verdict.state == OK:
        subject = f"[dkmonitor] health OK again (was {was})"
    else:
        subject = f"[dkmonitor] health {name}" + (f" (was {was})" if was else "")
    lines = [verdict.status_line(), ""]
    lines += [f"* {clean_text(problem.message)}" for problem in verdict.problems]
    if previous is not None:
        cleared = sorted(set(previous.problems) - set(signature(verdict)))
        if cleared:
            lines += ["", "Cleared since the last mail:"] + [f"* {item}" for item in cleared]
    lines += ["", "`dkmonitor check` and `dkmonitor view systems` show the details."]
    return subject, "\n".join(lines) + "\n"


def require_mail(settings: Settings) -> None:
    """`check --notify` needs mail on and somebody to mail: say so, naming the keys."""
    if not settings.email.enabled or not settings.email.admin_addresses:
        raise ConfigError(
            "check --notify mails [email] admin_addresses: set [email] enabled = yes "
            "and admin_addresses in the settings file"
        )


def notify_health(
    settings: Settings, verdict: Verdict, now: datetime, *, mailer: Mailer | None = None
) -> str | None:
    """Mail the administrators if the state calls for it; the error line if that failed."""
    email = settings.email
    previous = load(settings.state_dir)
    why = due(previous, verdict, now)
    current = Mailed(verdict.state, signature(verdict), now)
    if why is None:
        if previous is None:  # a first check that is OK: remember it, for the next change
            save(settings.state_dir, current)
        return None
    subject, body = compose(previous, verdict, why)
    recipients = list(email.admin_addresses)
    try:
        message = build_message(sender=email.from_address, recipients=recipients,
                                subject=subject, body=body)
        with mailer or open_mailer(email, settings.hostname) as active:
            active.send(message)
    except (HeaderError, DeliveryError) as exc:
        reason = exc.reason if isinstance(exc, DeliveryError) else str(exc)
        return f"health mail to {', '.join(recipients)} not delivered: {reason}"
    save(settings.state_dir, current)
    log.info("mailed the administrators: %s", subject)
    return None
