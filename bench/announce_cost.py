#!/usr/bin/env python3
"""What announcing costs: a full run with --notice-days against the same run without (issue 13).

Builds (or reuses) a tree with bench/make_tree.py, creates two tasks on it in
a throw-away state directory — ``plain`` (deletes, no notices) and ``notice``
(the same with ``--notice-days 30``) — both with a tiny ``--old-days`` so that
every file is a candidate, and a warning threshold any disk is over, a
critical one no disk is over (so nothing is deleted: the announcing run walks,
records, publishes every user's list and summary). One warm-up of each, then
the two commands alternate ``--runs`` times; it prints every pair, the medians,
the median of the pairwise ratios notice/plain, and each command's peak RSS.
The announcing runs after the first are the steady state of a site (most files
were announced before and keep their date: the record and the lists are not
written again). ``--first`` measures the other end: the task's record and the
users' lists are removed before every announcing run, so each one announces
every file for the first time and writes the record and every list whole.
``--changed-owners PCT`` measures nights in between: before every announcing
run, one old file of PCT% of the owners is given another (still old) mtime, so
that those owners are sorted and merged again (and re-announce that file)
while the others are carried over unchanged.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

from checkout import dkmonitor_python
from scan_vs_find import Measurement, ensure_tree, run_timed

SETTINGS = """[general]
state_dir = {state}

[logging]
log_dir = {state}/log

[announce]
notice_dir = {notices}
"""


def dkmonitor(config: Path, *args: str) -> list[str]:
    return [dkmonitor_python(), "-m", "dkmonitor", "--config", str(config), "-q", *args]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/dkm-bench"))
    parser.add_argument("--first", action="store_true",
                        help="every announcing run is a first announcement (worst case)")
    parser.add_argument("--changed-owners", type=float, default=0.0, metavar="PCT",
                        help="before each announcing run, change one file of PCT%% of owners")
    args = parser.parse_args(argv)
    root = ensure_tree(args.work_dir, args.files)
    touched = _one_file_per_owner(root) if args.changed_owners else {}
    changed = sorted(touched)[:round(len(touched) * args.changed_owners / 100)]
    with tempfile.TemporaryDirectory(prefix="dkm-announce-") as scratch:
        state, notices = Path(scratch) / "state", Path(scratch) / "notices"
        config = Path(scratch) / "settings.cfg"
        config.write_text(SETTINGS.format(state=state, notices=notices))
        config.chmod(0o600)
        common = ("--target", str(root), "--warning", "0.001", "--critical", "100",
                  "--old-days", "0.0001", "--delete")
        for name, extra in (("plain", ()), ("notice", ("--notice-days", "30"))):
            subprocess.run(dkmonitor(config, "task", "create", name, *common, *extra),
                           check=True, stdout=subprocess.DEVNULL)
        plain = dkmonitor(config, "run", "full", "plain")
        notice = dkmonitor(config, "run", "full", "notice")
        kind = ("first announcements" if args.first
                else f"{len(changed)} of {len(touched)} owners changed each run" if changed
                else "steady state")
        print(f"load {os.getloadavg()[0]:.2f}; {args.files} files, all candidates, {kind}; "
              "warm-up", flush=True)
        run_timed(plain, cold=False)
        run_timed(notice, cold=False)
        pairs: list[tuple[Measurement, Measurement]] = []
        for number in range(args.runs):
            a = run_timed(plain, cold=False)
            if args.first:
                shutil.rmtree(state / "announce", ignore_errors=True)
                shutil.rmtree(notices, ignore_errors=True)
            for uid in changed:  # another mtime, still old: the owner is merged again
                os.utime(touched[uid], ns=(0, 1_000_000_000 * (number + 1)))
            b = run_timed(notice, cold=False)
            pairs.append((a, b))
            print(f"run {number + 1}: plain {a.seconds:.2f} s ({a.cpu_seconds:.2f} cpu), "
                  f"notice {b.seconds:.2f} s ({b.cpu_seconds:.2f} cpu), "
                  f"ratio {b.seconds / a.seconds:.2f}", flush=True)
        ratios = [b.seconds / a.seconds for a, b in pairs]
        print(f"median plain {statistics.median(a.seconds for a, _ in pairs):.2f} s, "
              f"notice {statistics.median(b.seconds for _, b in pairs):.2f} s; "
              f"ratio notice/plain median {statistics.median(ratios):.2f} "
              f"(min {min(ratios):.2f}, max {max(ratios):.2f})")
        cpu = [b.cpu_seconds / a.cpu_seconds for a, b in pairs]  # what load cannot hide
        print(f"CPU (user + system, workers included) notice/plain median "
              f"{statistics.median(cpu):.2f} (min {min(cpu):.2f}, max {max(cpu):.2f})")
        print(f"peak RSS plain {max(a.max_rss_kib for a, _ in pairs) / 1024:.1f} MiB, "
              f"notice {max(b.max_rss_kib for _, b in pairs) / 1024:.1f} MiB; "
              f"load {os.getloadavg()[0]:.2f}")


def _one_file_per_owner(root: Path) -> dict[int, Path]:
    """A regular file of each owner in the tree (the first met, walking it)."""
    found: dict[int, Path] = {}
    for directory, _dirs, names in os.walk(root):
        for name in names:
            path = Path(directory) / name
            st = path.lstat()
            if path.is_file() and not path.is_symlink() and st.st_nlink == 1:
                found.setdefault(st.st_uid, path)
    return found


if __name__ == "__main__":
    main()
