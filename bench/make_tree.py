#!/usr/bin/env python3
"""Build a synthetic "scratch disk" tree and a manifest of what a scan must report.

The benchmarks and the scanner tests need a large, realistic, reproducible
tree; this script is self-contained (standard library only, so it runs under
any ``python3``) and deterministic for a given ``--seed`` and ``--now``:

* one top-level directory per uid (``--uid-base`` .. ``--uid-base + --users - 1``,
  no passwd entries needed), with a Zipf-like share of the files, and nested
  project directories grown by random attachment (depth capped);
* ~8% of the files in a user's tree belong to another uid;
* sizes log-normal (median ~16 KiB, capped at ``--max-size``) with ~4% empty
  files; files are sparse (``ftruncate``), so ``st_size`` is real while the
  disk holds only inodes;
* atime and mtime spread over ``--span-days`` with mtime <= atime, so
  "last use" is the atime; ~30% of files are older than ``--old-days``;
* ``--link-percent`` of the files get a second name (a hard link) in another
  directory of the same tree: a correct scan counts them once.

Each directory has its own random stream, so the result does not depend on
``--jobs``. The manifest (``ROOT.manifest.json``, beside the tree, outside
what is walked) holds per uid: files, bytes, old_files, old_bytes and the sum
of atimes in ns (for the mean age), plus the directory and hard-link counts.

    python3 bench/make_tree.py /tmp/tree --files 20000 --users 8 --seed 7
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass
from multiprocessing import Pool
from typing import Any

DAY = 86400
STEMS = ["data", "run", "out", "frame", "chunk", "part", "log", "result",
         "sample", "img", "tmp", "ckpt", "notes", "input", "model", "cache"]
EXTS = [".dat", ".h5", ".nc", ".txt", ".log", ".csv", ".npy", ".bin", ".png", ".json", ""]
DIRNAMES = ["proj", "src", "data", "runs", "analysis", "results", "scratch",
            "sim", "build", "raw", "processed", "exp", "batch"]
LINK_DIR = "links"  # where each user's extra hard links live: u<uid>/links


@dataclass(frozen=True)
class Directory:
    index: int
    rel: str
    files: int
    owner: int
    depth: int


def build_plan(args: argparse.Namespace) -> list[Directory]:
    """Every directory with its file count and owner, from ``args.seed`` alone."""
    rng = random.Random(args.seed)
    users = [args.uid_base + i for i in range(args.users)]
    weights = [1.0 / (i + 1) ** 0.8 for i in range(args.users)]
    rng.shuffle(weights)
    budgets = [int(args.files * w / sum(weights)) for w in weights]
    budgets[0] += args.files - sum(budgets)
    plan: list[Directory] = []
    for uid, budget in zip(users, budgets, strict=True):
        top = f"u{uid}"
        parents = [(top, 0)]
        first = min(budget, rng.randint(args.min_per_dir, args.min_per_dir * 2))
        plan.append(Directory(len(plan), top, first, uid, 0))
        remaining = budget - first
        counter = 0
        while remaining > 0:
            parent, depth = top, 0
            if rng.random() >= 0.05:  # 5%: a new top-level project
                for _ in range(8):
                    parent, depth = parents[rng.randrange(len(parents))]
                    if depth < args.max_depth:
                        break
                else:
                    parent, depth = top, 0
            counter += 1
            rel = f"{parent}/{rng.choice(DIRNAMES)}_{counter:04d}"
            share = rng.random()
            count = args.min_per_dir + int((args.max_per_dir - args.min_per_dir) * share * share)
            count = min(count, remaining)
            plan.append(Directory(len(plan), rel, count, uid, depth + 1))
            parents.append((rel, depth + 1))
            remaining -= count
        plan.append(Directory(len(plan), f"{top}/{LINK_DIR}", 0, uid, 1))
    return plan


def _one_file(rng: random.Random, now: float, owner: int, users: list[int],
              cfg: dict[str, Any], p_old: float) -> tuple[int, int, int, int]:
    """(uid, size, atime_ns, mtime_ns) of the next file of a directory."""
    uid = users[rng.randrange(len(users))] if rng.random() < cfg["foreign_frac"] else owner
    size = 0 if rng.random() < 0.04 else min(
        int(rng.lognormvariate(cfg["size_mu"], cfg["size_sigma"])), cfg["max_size"])
    old_seconds = cfg["old_days"] * DAY
    span = cfg["span_days"] * DAY
    if rng.random() < p_old:  # an hour clear of the boundary, either side
        age = old_seconds + 3600 + rng.random() * (span - old_seconds - 3600)
    else:
        age = (rng.random() ** 1.5) * (old_seconds - 3600)
    modified_age = min(age + rng.expovariate(1.0 / (30 * DAY)), span)
    return uid, size, int((now - age) * 1e9), int((now - modified_age) * 1e9)


def make_files(task: tuple[str, list[Directory], int, float, list[int], dict[str, Any]]
               ) -> dict[int, list[int]]:
    """Worker: create the files of a batch of directories; per-uid aggregates back."""
    root, batch, seed, now, users, cfg = task
    totals: dict[int, list[int]] = {}
    old_cut_ns = int((now - cfg["old_days"] * DAY) * 1e9)
    for directory in batch:
        rng = random.Random((seed << 32) ^ (directory.index * 2654435761))
        stale = rng.random() < cfg["stale_frac"]
        p_old = cfg["p_old_stale"] if stale else cfg["p_old_active"]
        for number in range(directory.files):
            uid, size, atime_ns, mtime_ns = _one_file(rng, now, directory.owner, users, cfg, p_old)
            name = f"{STEMS[rng.randrange(len(STEMS))]}_{number:05d}{rng.choice(EXTS)}"
            path = os.path.join(root, directory.rel, name)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                if size:
                    os.ftruncate(fd, size)
                os.fchown(fd, uid, uid)
                os.utime(fd, ns=(atime_ns, mtime_ns))
            finally:
                os.close(fd)
            if rng.random() * 100 < cfg["link_percent"]:
                link = os.path.join(root, f"u{directory.owner}", LINK_DIR,
                                    f"{directory.index}_{number}_{name}")
                os.link(path, link)
                totals.setdefault(-1, [0])[0] += 1  # -1: the hard-link count
            row = totals.setdefault(uid, [0, 0, 0, 0, 0])
            row[0] += 1
            row[1] += size
            if atime_ns < old_cut_ns:
                row[2] += 1
                row[3] += size
            row[4] += atime_ns
    return totals


def _batches(plan: list[Directory], per_batch: int = 5000) -> list[list[Directory]]:
    batches: list[list[Directory]] = [[]]
    count = 0
    for directory in plan:
        if count >= per_batch:
            batches.append([])
            count = 0
        batches[-1].append(directory)
        count += directory.files
    return batches


def build(args: argparse.Namespace) -> dict[str, Any]:
    """Create the tree under ``args.root``; the manifest's contents."""
    root = os.path.abspath(args.root)
    now = args.now if args.now is not None else float(int(time.time()))
    started = time.monotonic()
    plan = build_plan(args)
    users = sorted({d.owner for d in plan})
    os.makedirs(root)
    for directory in plan:
        os.mkdir(os.path.join(root, directory.rel))
    cfg = dict(old_days=args.old_days, span_days=args.span_days, stale_frac=0.25,
               p_old_stale=0.95, p_old_active=0.08, foreign_frac=0.08,
               size_mu=math.log(16384), size_sigma=2.5, max_size=args.max_size,
               link_percent=args.link_percent)
    tasks = [(root, batch, args.seed, now, users, cfg) for batch in _batches(plan)]
    total: dict[int, list[int]] = {}
    if args.jobs > 1:
        with Pool(args.jobs) as pool:
            results = list(pool.imap_unordered(make_files, tasks))
    else:
        results = [make_files(task) for task in tasks]
    for part in results:
        for uid, row in part.items():
            into = total.setdefault(uid, [0] * len(row))
            for k, value in enumerate(row):
                into[k] += value
    links = total.pop(-1, [0])[0]
    for directory in plan:  # after the files, whose creation bumped the mtimes
        path = os.path.join(root, directory.rel)
        os.chown(path, directory.owner, directory.owner)
        os.utime(path, ns=(int(now * 1e9), int((now - DAY) * 1e9)))
    os.utime(root, ns=(int(now * 1e9), int((now - DAY) * 1e9)))
    return {
        "root": root, "seed": args.seed, "now": now, "old_days": args.old_days,
        "files": sum(row[0] for row in total.values()), "dirs": len(plan) + 1,
        "hard_links": links, "max_depth": max(d.depth for d in plan),
        "per_uid": {str(uid): {"files": row[0], "bytes": row[1], "old_files": row[2],
                               "old_bytes": row[3], "sum_atime_ns": row[4]}
                    for uid, row in sorted(total.items())},
        "seconds": round(time.monotonic() - started, 1),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root")
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=20, help="owner uids (one top dir each)")
    parser.add_argument("--uid-base", type=int, default=1001)
    parser.add_argument("--min-per-dir", type=int, default=20)
    parser.add_argument("--max-per-dir", type=int, default=200)
    parser.add_argument("--max-depth", type=int, default=7)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--now", type=float, default=None,
                        help="reference epoch for ages (default: now, whole seconds)")
    parser.add_argument("--old-days", type=int, default=90)
    parser.add_argument("--span-days", type=int, default=730)
    parser.add_argument("--max-size", type=int, default=64 << 30)
    parser.add_argument("--link-percent", type=float, default=1.0,
                        help="share of files given a second name (hard link)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--clean", action="store_true", help="remove ROOT first if it exists")
    args = parser.parse_args(argv)
    if args.files < 1 or args.users < 1 or args.min_per_dir < 1:
        parser.error("--files, --users and --min-per-dir must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    root = os.path.abspath(args.root)
    if os.path.lexists(root):
        if not args.clean:
            sys.exit(f"make_tree.py: {root} exists; add --clean to replace it")
        shutil.rmtree(root)
    manifest = build(args)
    with open(root.rstrip("/") + ".manifest.json", "w") as handle:
        json.dump(manifest, handle, indent=1)
    files = manifest["files"]
    old = sum(row["old_files"] for row in manifest["per_uid"].values())
    print(f"created {files} files ({manifest['hard_links']} with a second link) in "
          f"{manifest['dirs']} dirs in {manifest['seconds']:.1f}s; "
          f"old (>{args.old_days}d) {old / files:.1%}")


if __name__ == "__main__":
    main()
