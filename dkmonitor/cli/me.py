"""``dkmonitor me``: a user's own usage, announced files and exemptions, without privileges.

Root's database, state directory and logs are closed to users. Root's full
runs publish instead, for every user, files that only that user (and root)
can read (``dkmonitor.announce.publish``). This command reads them: only the
calling user's own directory ``{notice_dir}/{uid}``. It never lists
notice_dir and never opens the database, so it cannot show anything about
another user.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from datetime import datetime
from pathlib import Path

import click

from dkmonitor.announce.summary import Exemption, Summary, read_summaries
from dkmonitor.cli.context import AppContext, pass_app
from dkmonitor.cli.output import emit_json, output_options
from dkmonitor.cli.render import table
from dkmonitor.config import ROOT_STATE_DIR, default_notice_dir, default_state_dir, load_settings
from dkmonitor.errors import ConfigError, DkmError
from dkmonitor.units import counted, human_bytes

AGE_BASIS = {
    "used": "last use",
    "atime": "last access",
    "mtime": "last change",
    "ctime": "last status change",
}


@click.command()
@click.option("--task", "task_name", metavar="NAME", help="Only this task.")
@click.option("--files", "show_files", is_flag=True,
              help="Print the files announced for you (the published lists) instead.")
@click.option("--notice-dir", "notice_dir", metavar="DIR",
              help="Where the runs publish (default: [announce] notice_dir of the settings "
              "file if you can read it, else /var/lib/dkmonitor-notices).")
@output_options("table", "json")
@pass_app
def me(app: AppContext, task_name: str | None, show_files: bool, notice_dir: str | None,
       fmt: str) -> None:
    """Show your own usage, old files, what is announced for you and your exemptions.

    Read from what the last full runs published for you (your uid only);
    needs no privileges and no database.
    """
    if show_files and fmt == "json":
        raise click.UsageError("--files prints the lists as they are: drop --format json")
    uid = os.getuid()
    candidates, note = notice_dirs(app.config_path, notice_dir)
    if note and app.verbosity > 0:
        click.echo(note, err=True)
    mine = own_directory(candidates, uid)
    problems: list[str] = []
    try:
        summaries = read_summaries(mine, problems)
    except FileNotFoundError:
        summaries = []
    except OSError as exc:
        raise DkmError(f"{mine}: cannot read what was published for you: "
                       f"{exc.strerror or exc}; {mine.parent} should be mode 0711 and {mine} "
                       "yours, mode 0500: ask the administrators") from None
    for problem in problems:
        click.echo(f"dkmonitor: warning: {problem}", err=True)
    if task_name is not None:
        summaries = [s for s in summaries if s["task"] == task_name]
    if not summaries:
        which = f" for task {task_name}" if task_name is not None else ""
        click.echo(f"nothing published for you (uid {uid}){which} in {mine.parent}: no full "
                   "run of an announcing task has looked at your files yet")
        return
    if show_files:
        if not stream_lists(mine, summaries):
            sys.exit(1)
    elif fmt == "json":
        emit_json(summaries)
    else:
        click.echo(render(summaries, mine))


def notice_dirs(config_path: str | None, explicit: str | None) -> tuple[list[Path], str | None]:
    """Where to look, in order, and a note for -v when the settings could not be read.

    The settings file may well be root's 0600 (it can hold passwords): then
    the defaults apply, silently. Root's runs publish beside root's state
    directory; the user's own runs (not root's) in their own.
    """
    if explicit:
        return [Path(os.path.abspath(explicit))], None
    root_default = default_notice_dir(ROOT_STATE_DIR, as_root=True)
    try:
        settings = load_settings(config_path)
    except (ConfigError, OSError) as exc:  # OSError: an unreadable $HOME on the way
        reason = exc if isinstance(exc, ConfigError) else f"{exc.filename}: {exc.strerror}"
        note = f"dkmonitor: note: settings not used ({reason}); looking in {root_default}"
        own = default_notice_dir(default_state_dir(), as_root=os.geteuid() == 0)
        return _unique([root_default, own]), note
    configured = settings.announce.notice_dir
    as_root_would = default_notice_dir(settings.state_dir.absolute(), as_root=True)
    return _unique([configured, as_root_would, root_default]), None


def _unique(paths: list[Path]) -> list[Path]:
    return list(dict.fromkeys(paths))


def own_directory(candidates: list[Path], uid: int) -> Path:
    """``{dir}/{uid}`` of the first candidate that has one (else of the first candidate)."""
    for directory in candidates:
        if os.path.lexists(directory / str(uid)):
            return directory / str(uid)
    return candidates[0] / str(uid)


def stream_lists(mine: Path, summaries: list[Summary]) -> bool:
    """Each announced list, as published, after a comment line naming its task.

    Streamed in blocks: a list can hold millions of lines. False when a list
    named by a summary is missing (said on stderr).
    """
    out = sys.stdout.buffer
    complete = True
    announced = [s for s in summaries if s["announced"] is not None]
    if not announced:
        click.echo("nothing announced for you: none of your files is due to be purged")
        return True
    for summary in announced:
        notice = summary["announced"]
        assert notice is not None
        path = mine / notice["list"]
        header = (f"# task {summary['task']}: {summary['target']} on {summary['hostname']}, "
                  f"{counted(notice['files'], 'file')}, {human_bytes(notice['bytes'])}, "
                  f"may be purged from {_when(notice['earliest_purge_at'])}\n")
        try:
            handle = open(path, "rb")
        except OSError as exc:
            out.flush()
            click.echo(f"dkmonitor: error: {path}: cannot read the list of task "
                       f"{summary['task']}: {exc.strerror or exc}", err=True)
            complete = False
            continue
        with handle:  # a closed pipe (| head) is not a read error: _run exits quietly
            out.write(header.encode("utf-8", "backslashreplace"))
            shutil.copyfileobj(handle, out, 1 << 20)
    out.flush()
    return complete


def render(summaries: list[Summary], mine: Path) -> str:
    """One block per task, then the exemptions that concern you."""
    blocks = [_task_block(summary, mine) for summary in summaries]
    exemptions = _exemption_table(summaries)
    if exemptions:
        blocks.append(exemptions)
    return "\n\n".join(blocks)


def _task_block(summary: Summary, mine: Path) -> str:
    usage = summary["usage"]
    basis = AGE_BASIS.get(summary["age_basis"], summary["age_basis"])
    rows = [
        ("your files", f"{counted(usage['files'], 'file')}, {human_bytes(usage['bytes'])} "
                       f"({human_bytes(usage['allocated_bytes'])} on disk), "
                       f"{usage['share_percent']:.1f}% of the file system"),
        ("old files", f"{counted(usage['old_files'], 'file')}, "
                      f"{human_bytes(usage['old_bytes'])} (by {basis}, older than "
                      f"{summary['old_file_threshold_days']:g} days)"),
    ]
    notice = summary["announced"]
    if notice is None:
        rows.append(("announced", "nothing: none of your files is due to be purged"))
    else:
        final = notice["final_notice_at"]
        rows += [
            ("announced", f"{counted(notice['files'], 'file')}, "
                          f"{human_bytes(notice['bytes'])}, first notice "
                          f"{_when(notice['first_notice_at'])}"),
            ("purge from", _when(notice["earliest_purge_at"])),
            ("final reminder", f"sent {_when(final)}" if final else "not sent yet"),
            ("list", f"{mine / notice['list']}  (dkmonitor me --files "
                     f"--task {shlex.quote(summary['task'])})"),
        ]
    head = (f"task {summary['task']}: {summary['target']} on {summary['hostname']}, "
            f"scanned {_when(summary['scanned_at'])}, disk {summary['disk_percent']:.1f}% "
            "full")
    width = max(len(label) for label, _ in rows)
    return "\n".join([head] + [f"  {label.ljust(width)}  {text}" for label, text in rows])


def _exemption_table(summaries: list[Summary]) -> str:
    seen: dict[tuple[str, int], Exemption] = {}
    for summary in summaries:
        for item in summary["exemptions"]:
            seen[(summary["task"], item["id"])] = item
    if not seen:
        return ""
    rows = [
        [str(item["id"]), task,
         f"user {item['user']}" if item["user"] is not None else f"path {item['path']}",
         _when(item["until"]), "expired" if item["expired"] else "active", item["reason"]]
        for (task, _id), item in sorted(seen.items(), key=lambda pair: pair[0])
    ]
    return "your exemptions\n" + table(["id", "task", "exempt", "until", "state", "reason"],
                                       rows, right={0})


def _when(iso: str | None) -> str:
    """A published UTC time in local time, as the other commands show times."""
    if iso is None:
        return "-"
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    return moment.astimezone().strftime("%Y-%m-%d %H:%M %Z").rstrip()
