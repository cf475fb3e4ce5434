"""Who gets which mail, and its text: pure functions of a run and the templates.

No database, no network: the step decides later whether a draft is sent,
suppressed by the interval rule, or only listed (dry run). Keeping this pure
is what lets the tests check every number in every body directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dkmonitor.notify.message import clean_text
from dkmonitor.notify.templates import Templates
from dkmonitor.scan.users import username_for
from dkmonitor.taskrun import (
    AlteredFiles,
    AnnounceSummary,
    CleanSummary,
    TaskRun,
    UserNotice,
    UserUsageRow,
)
from dkmonitor.units import epoch_minute_utc
from dkmonitor.units import human_bytes as human_size

# Notification.kind values.
WARNING = "warning"
MOVE_NOTICE = "move-notice"
DELETE_NOTICE = "delete-notice"
PURGE_NOTICE = "purge-notice"  # --notice-days: the list of files that will go
PURGE_FINAL = "purge-final-notice"  # the final reminder before the first of them goes
NOTICE_KINDS = (MOVE_NOTICE, DELETE_NOTICE, PURGE_NOTICE, PURGE_FINAL)  # resent when they fail


@dataclass(frozen=True)
class Draft:
    """One mail for one user, not yet addressed."""

    uid: int
    username: str
    kind: str
    subject: str
    body: str
    summary: str  # what it says, in a few words, for the dry-run listing and logs
    sections: tuple[str, ...] = ()  # the rendered sections (before the signature)


def top_count(users: int, percent: float) -> int:
    """ceil(users * percent / 100): how many users count as "top"."""
    return math.ceil(users * percent / 100) if users else 0


def warning_sections(run: TaskRun) -> dict[int, tuple[str, ...]]:
    """uid -> the template sections (after the header) that apply to that user.

    Users with nothing to fix are absent. "Top" is among the
    ceil(users * email_top_percent / 100) largest, by bytes and by old bytes,
    and only with a non-zero amount: a user with no old bytes is never "top
    by old bytes" just because there are few users.
    """
    task = run.task
    count = top_count(len(run.users), task.email_top_percent)
    by_bytes = sorted(run.users, key=lambda u: (-u.bytes, u.uid))[:count]
    by_old = sorted(run.users, key=lambda u: (-u.old_bytes, u.uid))[:count]
    top_space = {u.uid for u in by_bytes if u.bytes > 0}
    top_old = {u.uid for u in by_old if u.old_bytes > 0}
    warns_alteration = task.cleans and task.email_data_alterations
    result: dict[int, tuple[str, ...]] = {}
    for user in run.users:
        sections: list[str] = []
        if user.uid in top_space:
            sections.append("top_space")
        if user.uid in top_old:
            sections.append("top_old_files")
        if not sections and user.old_files > 0:
            sections.append("general_warning")
        if user.old_files > 0 and warns_alteration:
            sections.append("move_warning" if task.relocation_path else "deletion_warning")
        if sections:
            result[user.uid] = tuple(sections)
    return result


def moved_to(run: TaskRun) -> str:
    """Where the cleaner mirrors the target: {relocation_path}/{hostname}{target_path}."""
    relocation = run.task.relocation_path
    if not relocation:
        return ""
    return relocation.rstrip("/") + "/" + run.hostname + run.task.target_path


def placeholder_values(
    run: TaskRun,
    user: UserUsageRow | None,
    username: str,
    moved: AlteredFiles | None = None,
    deleted: AlteredFiles | None = None,
) -> dict[str, str]:
    """Every placeholder of templates.PLACEHOLDERS, as display text."""
    task = run.task
    moved = moved or AlteredFiles()
    deleted = deleted or AlteredFiles()
    total = run.disk.total
    share = (user.share_percent(total) or 0.0) if user else 0.0  # allocated bytes / fs size
    values = {
        "username": username,
        "target_path": task.target_path,
        "hostname": run.hostname,
        "usage_warning_threshold": f"{task.usage_warning_threshold:g}",
        "usage_critical_threshold": f"{task.usage_critical_threshold:g}",
        "old_file_threshold": f"{task.old_file_threshold:g}",
        "relocation_path": task.relocation_path or "",
        "number_of_old_files": str(user.old_files if user else 0),
        "total_old_file_size": human_size(user.old_bytes if user else 0),
        "total_file_size": human_size(user.bytes if user else 0),
        "disk_use_percent": f"{run.disk.percent:.1f}",
        "task_name": task.name,
        "number_of_files": str(user.files if user else 0),
        "disk_share_percent": f"{share:.1f}",
        "top_percent": f"{task.email_top_percent:g}",
        "moved_to": moved_to(run),
        "number_of_moved_files": str(moved.files),
        "total_moved_file_size": human_size(moved.bytes),
        "number_of_deleted_files": str(deleted.files),
        "total_deleted_file_size": human_size(deleted.bytes),
    }
    return {key: clean_text(value) for key, value in values.items()}


def signature(run: TaskRun) -> str:
    """The closing lines; "-- " lets mail clients recognise and trim it."""
    host, task = clean_text(run.hostname), clean_text(run.task.name)
    return f"-- \nSent by dkmonitor on {host} for task {task}."


def _mail_text(parts: list[str], run: TaskRun) -> str:
    return "\n\n".join(part for part in parts if part) + "\n\n" + signature(run) + "\n"


def warning_drafts(run: TaskRun, templates: Templates) -> list[Draft]:
    """One usage warning per flagged user: header plus the sections that apply."""
    sections_by_uid = warning_sections(run)
    drafts: list[Draft] = []
    for user in run.users:
        sections = sections_by_uid.get(user.uid)
        if not sections:
            continue
        values = placeholder_values(run, user, user.username)
        parts = [templates.render("header", values)]
        parts += [templates.render(section, values) for section in sections]
        drafts.append(
            Draft(
                uid=user.uid,
                username=user.username,
                kind=WARNING,
                subject=f"[dkmonitor] usage warning: {run.hostname}:{run.task.target_path}",
                body=_mail_text(parts, run),
                summary="usage warning (" + ", ".join(s.replace("_", " ") for s in sections) + ")",
            )
        )
    return drafts


def notice_drafts(run: TaskRun, cleaned: CleanSummary, templates: Templates) -> list[Draft]:
    """A move or deletion notice per user whose files were actually altered."""
    rows = {user.uid: user for user in run.users}
    drafts: list[Draft] = []
    for kind, section, verb, altered in (
        (MOVE_NOTICE, "move_notice", "moved", cleaned.moved),
        (DELETE_NOTICE, "deletion_notice", "deleted", cleaned.deleted),
    ):
        for uid in sorted(altered):
            counts = altered[uid]
            if counts.files <= 0:
                continue
            row = rows.get(uid)
            username = row.username if row else username_for(uid)
            values = placeholder_values(
                run, row, username,
                moved=counts if kind == MOVE_NOTICE else None,
                deleted=counts if kind == DELETE_NOTICE else None,
            )
            summary = f"{verb} {counts.files} files, {human_size(counts.bytes)}"
            sections = (templates.render(section, values),
                        *_emergency_lines(cleaned, uid))
            drafts.append(
                Draft(
                    uid=uid,
                    username=username,
                    kind=kind,
                    subject=(
                        f"[dkmonitor] {counts.files} old file{'s' if counts.files != 1 else ''} "
                        f"{verb}: {run.hostname}:{run.task.target_path}"
                    ),
                    body=_mail_text(list(sections), run),
                    summary=f"{kind} ({summary})",
                    sections=sections,
                )
            )
    return drafts


def _emergency_lines(cleaned: CleanSummary, uid: int) -> tuple[str, ...]:
    """The notice says so when some of the user's files had not been announced."""
    unannounced = cleaned.unannounced.get(uid)
    if unannounced is None or not unannounced.files or not cleaned.emergency:
        return ()
    return (
        clean_text(
            f"{unannounced.files} of these files ({human_size(unannounced.bytes)}) had not been "
            f"announced to you beforehand: {cleaned.emergency}."
        ),
    )


def purge_values(run: TaskRun, notice: UserNotice) -> dict[str, str]:
    """The purge notices' own placeholders."""
    task = run.task
    action = f"moved to {moved_to(run)}" if task.relocation_path else "deleted"
    values = {
        "number_of_announced_files": str(notice.files),
        "total_announced_file_size": human_size(notice.bytes),
        "earliest_purge_date": epoch_minute_utc(notice.purge_at),
        "notice_days": f"{task.notice_days:g}",
        "purge_action": action,
        "list_path": notice.list_path or "(not published: ask your administrators)",
    }
    return {key: clean_text(value) for key, value in values.items()}


def purge_drafts(
    run: TaskRun, announced: AnnounceSummary, templates: Templates, notices: list[Draft]
) -> list[Draft]:
    """The purge notices and final reminders due; each takes over the user's clean notice.

    One mail per user per run: a user whose files were also moved or deleted
    by this run gets that notice's text first, in the same mail.
    """
    rows = {user.uid: user for user in run.users}
    earlier = {draft.uid: draft for draft in notices}
    drafts: list[Draft] = []
    for uid, notice in sorted(announced.users.items()):
        if notice.mail is None:
            continue
        final = notice.mail == PURGE_FINAL
        values = {**placeholder_values(run, rows.get(uid), notice.username),
                  **purge_values(run, notice)}
        section = templates.render("purge_final_notice" if final else "purge_notice", values)
        before = earlier.get(uid)
        sections = (*(before.sections if before else ()), section)
        what = "final reminder" if final else "purge notice"
        drafts.append(Draft(
            uid=uid, username=notice.username, kind=notice.mail,
            subject=(f"[dkmonitor] {what}: {notice.files} old file"
                     f"{'s' if notice.files != 1 else ''} may go from "
                     f"{values['earliest_purge_date']}: {run.hostname}:{run.task.target_path}"),
            body=_mail_text(list(sections), run),
            summary=(f"{notice.mail} ({notice.files} files, {human_size(notice.bytes)}"
                     + (f"; {before.summary}" if before else "") + ")"),
            sections=sections,
        ))
    return drafts
