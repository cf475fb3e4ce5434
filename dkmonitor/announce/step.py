"""The announce step of a run (--notice-days): list each user's candidates, publish, decide mail.

Runs after the clean step (files acted on are gone, so they leave the lists)
and before delivery (the mail channel reads the AnnounceSummary). Order of one
run, all inside the record's transaction so that a run killed at any point
leaves the previous announcement whole:

1. this run's candidates -- spooled by the scan itself (announce/spool.py),
   or, when the scan could not (a list from a site scanner, MPI ranks), from a
   walk with the cleaner's own selection -- become the record's next
   generation, less exempt files and files the clean step just took; an
   unchanged file keeps the date it was first announced;
2. files announced before and not listed now leave the record; those still
   there, unchanged but young again by their atime alone, are counted for the
   administrators (users who only read their files to dodge the purge);
3. per user, the list file and the summary ``dkmonitor me`` reads are
   published; whether a notice or the final reminder is due is decided;
4. commit (a dry run rolls back and publishes nothing).
"""

from __future__ import annotations

import logging
import os
import pwd
import stat
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from itertools import chain
from typing import TYPE_CHECKING

from dkmonitor.announce.lists import list_chunks, list_header, summary_json
from dkmonitor.announce.publish import NoticeDir, NoticeDirError, task_file
from dkmonitor.announce.record import AnnounceRecord, Entry, Filters, NoticeState, UserRange
from dkmonitor.announce.recordfile import Built, mix
from dkmonitor.announce.spool import close_spools, dir_record, file_record
from dkmonitor.clean.exemptions import ExemptRules
from dkmonitor.config import Settings
from dkmonitor.records import FrozenRecord
from dkmonitor.safefs import write_all
from dkmonitor.scan.age import DAY, is_old
from dkmonitor.scan.users import username_for
from dkmonitor.taskrun import AnnounceSummary, TaskRun, UserNotice
from dkmonitor.units import epoch_minute_utc

if TYPE_CHECKING:  # the cleaner's modules load only where a run needs them
    from dkmonitor.clean.select import Candidate, SelectOptions

log = logging.getLogger(__name__)

# The administrators hear of a user whose announced files became young again
# through their atime alone when at least this many did, and at least this
# share of what that user had been told.
REFRESH_ALERT_FILES = 10
REFRESH_ALERT_SHARE = 0.2


@dataclass(frozen=True, repr=False, eq=False)
class AnnounceContext(FrozenRecord):
    """What the step needs besides the run: the open record and the rules in force."""

    settings: Settings
    record: AnnounceRecord
    exempt: ExemptRules
    exemption_rows: tuple[dict[str, object], ...] = ()  # for the users' summaries
    spools: tuple[int, ...] = ()  # the scan's candidates; none: walk for them
    spool_error: str = ""  # why the scan could not spool them all: nothing is announced


def spool_walk(root_fd: int, options: SelectOptions, spool_fd: int) -> None:
    """Spool a walk's candidates (when the scan did not), in the scan's format."""
    from dkmonitor.clean.select import iter_old_files

    encode = os.fsencode
    parent: tuple[str, ...] | None = None
    out = bytearray()
    for c in iter_old_files(root_fd, options):
        if c.parent is not parent:  # siblings share their parent tuple
            parent = c.parent
            out += dir_record(c.parent_dev, c.parent_ino, encode("/".join(c.parent)))
        out += file_record(encode(c.name), c.uid, c.gid, c.ino, c.size, c.mtime_ns, c.used)
        if len(out) >= 1 << 20:
            write_all(spool_fd, out)
            del out[:]
    write_all(spool_fd, out)


def exempt_filters(exempt: ExemptRules) -> Filters:
    """Exemptions as the record's build takes them: uids, and subtrees as raw paths."""
    return Filters(exempt.uids,
                   tuple(sorted(os.fsencode("/".join(parts)) for parts in exempt.subtrees)))


def candidate_of(entry: Entry, now: float) -> Candidate:
    """An announced file as the cleaner's candidate (re-checked before any action)."""
    from dkmonitor.clean.select import Candidate

    *parent, name = os.fsdecode(entry.path).split("/")
    return Candidate(
        parent=tuple(parent), name=name, parent_dev=entry.dev, parent_ino=entry.parent_ino,
        dev=entry.dev, ino=entry.ino, size=entry.size, mtime_ns=entry.mtime_ns,
        uid=entry.uid, gid=entry.gid, nlink=1,
        score=float(entry.size) * max(0.0, now - entry.used), used=entry.used,
    )


def announce_step(run: TaskRun, context: AnnounceContext) -> AnnounceSummary:
    """List, publish and decide the notices of one announcing task run."""
    task = run.task
    record = context.record
    summary = AnnounceSummary(dry_run=run.dry_run)
    if context.spool_error:  # an incomplete list must not be announced, nor replace one
        summary.error = (f"task {task.name}: nothing announced: {context.spool_error} "
                         "(make room there; the lists already published stand)")
        return summary
    root_fd = os.open(task.target_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    spools = context.spools
    try:
        if not spools:  # the scan could not spool them (docs/lists.md)
            from dkmonitor.clean.select import SelectOptions

            log.info("task %s: walking %s for the files to announce (the scan could not "
                     "spool them)", task.name, task.target_path)
            spools = (record.scratch_file(),)
            with record.failures_named():
                spool_walk(root_fd, SelectOptions(
                    target=task.target_path, old_days=task.old_file_threshold, now=run.now,
                    age_basis=task.age_basis, exclude=context.settings.scan.exclude,
                    exempt=context.exempt), spools[0])
        built = record.update(spools, os.fstat(root_fd).st_dev, run.now,
                              exempt_filters(context.exempt))
        refreshed = _refreshed_by_atime(record.dropped(), root_fd, run)
    finally:
        os.close(root_fd)
        if spools is not context.spools:
            close_spools(spools)
    totals = built.users
    summary.refreshed = _refresh_lines(task.name, refreshed, built.told)
    states = record.notice_states()
    notice_dir = _open_notice_dir(context.settings, summary) if not run.dry_run else None
    try:
        for uid, user in sorted(totals.items()):
            notice = _user_notice(run, uid, user, states.get(uid), context.settings)
            if notice_dir is not None:
                notice = _publish_list(notice_dir, run, notice, context, summary, built,
                                       states.get(uid))
            summary.users[uid] = notice
        if notice_dir is not None:
            _publish_summaries(notice_dir, run, summary, context)
    finally:
        if notice_dir is not None:
            notice_dir.close()
    record.forget_users(totals)
    record.commit()
    _log(run, summary)
    return summary


def _refreshed_by_atime(dropped: Iterator[Entry], root_fd: int, run: TaskRun) -> Counter[int]:
    """uid -> dropped files still there, unchanged, and young again only by their atime."""
    task = run.task
    counts: Counter[int] = Counter()
    if task.age_basis not in ("used", "atime"):
        return counts
    first = next(dropped, None)
    if first is None:
        return counts
    from dkmonitor.clean.fsops import Unsafe, lstat_at, open_chain  # only when files left

    root_dev = os.fstat(root_fd).st_dev
    for entry in chain((first,), dropped):
        *parent, name = os.fsdecode(entry.path).split("/")
        try:  # component by component, as the cleaner does: no symlink on the way is followed
            dir_fd, _dirs = open_chain(root_fd, parent, root_dev)
        except (Unsafe, OSError):
            continue  # gone, moved by the cleaner, or its directory is: not a refresh
        try:
            st = lstat_at(dir_fd, name)
        except OSError:
            continue
        finally:
            os.close(dir_fd)
        same = (
            stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) == (entry.dev, entry.ino)
            and st.st_size == entry.size and st.st_mtime_ns == entry.mtime_ns
            and st.st_uid == entry.uid
        )
        if same and not is_old(st, run.now, task.old_file_threshold, task.age_basis) and (
            st.st_atime > entry.used
        ):
            counts[entry.uid] += 1
    return counts


def _refresh_lines(task_name: str, refreshed: Counter[int], told: dict[int, int]) -> list[str]:
    lines = []
    for uid, count in sorted(refreshed.items()):
        of = told.get(uid, 0)
        if of and count >= REFRESH_ALERT_FILES and count >= REFRESH_ALERT_SHARE * of:
            lines.append(
                f"task {task_name}: {username_for(uid)}: {count} of {of} announced files were "
                "only read (atime) since the notice, which took them off the purge list"
            )
    return lines


def _user_notice(
    run: TaskRun, uid: int, user: UserRange, state: NoticeState | None, settings: Settings
) -> UserNotice:
    """The user's announcement and which mail, if any, is due now."""
    task = run.task
    purge_at = user.first_at + task.notice_days * DAY
    final_from = purge_at - task.final_notice_period * DAY
    interval = settings.email.notify_interval_hours * 3600.0
    mail: str | None = None
    if state is None or state.last_notice_at is None:
        mail = "purge-notice"
    elif (task.final_notice_period > 0 and run.now >= final_from
          and state.final_for != purge_at):
        mail = "purge-final-notice"
    elif user.new_files and run.now - state.last_notice_at >= interval:
        mail = "purge-notice"
    return UserNotice(
        uid=uid, username=username_for(uid), files=user.files, bytes=user.bytes,
        new_files=user.new_files, first_at=user.first_at, purge_at=purge_at, list_path=None,
        mail=mail,
    )


def remember_notices(record: AnnounceRecord, run: TaskRun, summary: AnnounceSummary) -> None:
    """Record the notices as sent, once the mail step has sent them (or queued their retry).

    Called after delivery, not when deciding: a run killed in between leaves
    them due, so the next run sends them (at least once, never zero times).
    """
    for notice in summary.users.values():
        if notice.mail is not None:
            record.noticed(notice.uid, run.now)
        if notice.mail == "purge-final-notice":
            record.final_sent(notice.uid, notice.purge_at, run.now)
    record.commit()


def _open_notice_dir(settings: Settings, summary: AnnounceSummary) -> NoticeDir | None:
    try:
        return NoticeDir.open(settings.announce.notice_dir)
    except (NoticeDirError, OSError) as exc:
        summary.error = f"cannot publish the purge lists: {exc}"
        log.error("%s", summary.error)
        return None


def _primary_gid(uid: int) -> int:
    try:
        return pwd.getpwuid(uid).pw_gid
    except KeyError:
        return 0  # no passwd entry: root's group (the file is 0400 anyway)


def _publish_list(
    notice_dir: NoticeDir, run: TaskRun, notice: UserNotice, context: AnnounceContext,
    summary: AnnounceSummary, built: Built, state: NoticeState | None,
) -> UserNotice:
    """Write the user's list, unless the one published is exactly what it would hold.

    Rewriting a million unchanged lines every night was most of an announcing
    run's cost. The record keeps a digest of what was published and the
    published file's inode, size and ctime (which its owner cannot set): a
    list edited, replaced or removed by its owner is written again.
    """
    name = task_file(run.task.name, "list")
    record = context.record
    digest = _list_digest(run, notice, built)
    if state is not None and state.list_digest and state.list_digest == _published_as(
            notice_dir, notice.uid, name, digest):
        return replace(notice, list_path=str(notice_dir.user_dir(notice.uid) / name))
    target = run.task.target_path.rstrip("/").encode("utf-8", "surrogateescape") + b"/"
    lines = record.user_lines(notice.uid, run.task.notice_days * DAY, target)
    try:
        path = notice_dir.write(notice.uid, _primary_gid(notice.uid), name,
                                list_chunks(run, notice, lines))
        published = _published_as(notice_dir, notice.uid, name, digest)
    except (NoticeDirError, OSError) as exc:
        line = f"task {run.task.name}: list of {notice.username} not published: {exc}"
        summary.error = summary.error or line
        log.error("%s", line)
        return notice
    if published is not None:
        record.listed(notice.uid, published)
    return replace(notice, list_path=path)


def _list_digest(run: TaskRun, notice: UserNotice, built: Built) -> str:
    """What the user's list holds: its entries' digest, its header (less its time)."""
    user = built.users[notice.uid]
    text = f"{user.digest}\n{run.task.notice_days!r}\n{run.task.target_path}\n"
    text += list_header(run, notice)
    return f"{mix(0, text.encode('utf-8', 'surrogateescape')):016x}"


def _published_as(notice_dir: NoticeDir, uid: int, name: str, digest: str) -> str | None:
    """The token for the list now published under ``digest``, or None when there is none."""
    st = notice_dir.settled(uid, name)
    if st is None or not stat.S_ISREG(st.st_mode) or st.st_uid != uid:
        return None
    return f"{digest}:{st.st_ino}:{st.st_size}:{st.st_ctime_ns}"


def _publish_summaries(
    notice_dir: NoticeDir, run: TaskRun, summary: AnnounceSummary,
    context: AnnounceContext,
) -> None:
    """Every owner's `dkmonitor me` summary; a user with nothing announced loses the list."""
    states = context.record.notice_states()
    for user in run.users:
        notice = summary.users.get(user.uid)
        try:
            if notice is None:
                notice_dir.remove(user.uid, task_file(run.task.name, "list"))
            payload = summary_json(run, user, notice, context.exemption_rows,
                                   states.get(user.uid))
            notice_dir.write(user.uid, _primary_gid(user.uid), task_file(run.task.name, "json"),
                             [payload], durable=False)
        except (NoticeDirError, OSError) as exc:
            line = f"task {run.task.name}: summary of {user.username} not published: {exc}"
            summary.error = summary.error or line
            log.error("%s", line)


def _log(run: TaskRun, summary: AnnounceSummary) -> None:
    verb = "would announce" if run.dry_run else "announced"
    for notice in summary.users.values():
        log.info(
            "%s: %s %d files (%d bytes, %d new) of %s; earliest purge %s%s", run.task.name,
            verb, notice.files, notice.bytes, notice.new_files, notice.username,
            epoch_minute_utc(notice.purge_at),
            f"; {notice.mail}" if notice.mail else "",
        )
    for line in summary.refreshed:
        log.warning("%s", line)
