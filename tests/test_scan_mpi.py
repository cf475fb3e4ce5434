"""`dkmonitor run` under a real `mpirun`: the numbers of one process, and a clean failure.

Every rank runs the real command; rank 0 stores, the others only walk. The
trees have several owners, hard links across directories walked by different
ranks, a wide directory and a deep chain, so that the work is really split.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures.cli import DKMONITOR

MPIRUN = shutil.which("mpirun")
UIDS = (0, 1, 2, 40_001, 40_002)  # several owners, two of them with no passwd entry


def _need_mpi() -> None:
    missing = []
    if MPIRUN is None:
        missing.append("mpirun (Debian: openmpi-bin)")
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        missing.append("mpi4py (pip install 'dkmonitor[mpi]')")
    if missing:
        message = "MPI tests need " + " and ".join(missing) + ": run them with scripts/test.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


pytestmark = pytest.mark.root


def make_tree(root: Path) -> int:
    """Wide, deep, several owners, hard links across subtrees; returns the file count."""
    files = 0
    for top in range(4):
        for sub in range(60):  # wide: 240 directories at depth 2
            directory = root / f"wide{top}" / f"d{sub}"
            directory.mkdir(parents=True)
            for index in range(5):
                path = directory / f"f{index}.dat"
                path.write_bytes(b"x" * (top * 1000 + sub * 7 + index))
                os.chown(path, UIDS[(sub + index) % len(UIDS)], 0)
                old = time.time() - (200 + sub) * 86400 if index % 2 else time.time()
                os.utime(path, (old, old))
                files += 1
    deep = root / "deep"
    for level in range(150):  # a chain no split can shorten
        deep = deep / f"l{level}"
    deep.mkdir(parents=True)
    chain = root / "deep"
    for level in range(150):
        chain = chain / f"l{level}"
        (chain / "here.dat").write_bytes(b"y" * level)
        os.chown(chain / "here.dat", UIDS[level % len(UIDS)], 0)
        files += 1
    for top in range(1, 4):  # the same inode under every wide subtree
        os.link(root / "wide0" / "d0" / "f0.dat", root / f"wide{top}" / "d59" / "link.dat")
    os.symlink("/etc", root / "wide1" / "to-etc")
    return files


def mpirun(ranks: int, *args: str, timeout: float = 300,
           kill_timeout: int = 1, wrapper: tuple[str, ...] = (),
           extra_env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    assert MPIRUN is not None
    env = {**os.environ, **(extra_env or {}),
           "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMPI_MCA_odls_base_sigkill_timeout": str(kill_timeout),
           "OMPI_MCA_rmaps_base_oversubscribe": "1"}
    return subprocess.Popen([MPIRUN, "-n", str(ranks), *wrapper, DKMONITOR, *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)


def debug_logging(dkm):
    """The scan's "MPI rank(s)" line is a debug line of the log file."""
    text = dkm.config.read_text()
    dkm.config.write_text(text.replace("[logging]\n", "[logging]\nlevel = DEBUG\n"))
    return dkm


def stored(dkm, target: Path) -> list[dict[str, object]]:
    """The latest scan of ``target``: the whole-target record and every user's."""
    records = []
    for what in ("systems", "users"):
        result = dkm("view", what, "--format", "json")
        assert result.returncode == 0, result.stderr
        records += [r for r in json.loads(result.stdout) if r["target_path"] == str(target)]
    for record in records:
        del record["scanned_at"], record["disk_use_percent"]  # the moment, the whole disk
    return sorted(records, key=lambda r: (r["username"] or "", r["uid"] or -1))


@pytest.mark.parametrize("ranks", [2, 4])
def test_mpi_scan_gives_the_numbers_of_one_process(dkm_factory, tmp_path, ranks):
    _need_mpi()
    target = tmp_path / "scratch"
    files = make_tree(target)
    single = dkm_factory(extra="[scan]\nworkers = 1\n")
    started = time.monotonic()
    assert single("run", "path", str(target)).returncode == 0
    expected = stored(single, target)
    [whole] = [r for r in expected if r["username"] is None]
    assert whole["files"] == files  # the three extra hard links count once
    assert len(expected) == 1 + len(UIDS)

    parallel = debug_logging(dkm_factory())
    job = mpirun(ranks, "--config", str(parallel.config), "run", "path", str(target))
    out, err = job.communicate(timeout=300)
    assert job.returncode == 0, err
    elapsed_days = (time.monotonic() - started) / 86400
    got = stored(parallel, target)
    # ages run from "now", which moved on between the two runs: by at most elapsed_days
    for mine, theirs in zip(got, expected, strict=True):
        assert 0 <= mine.pop("average_age_days") - theirs.pop("average_age_days") <= elapsed_days
    assert got == expected
    log = (parallel.state_dir / "log" / "dkmonitor.log").read_text()
    assert f"{ranks - 1} MPI rank(s)" in log


_OTHER_HOST = """#!/bin/sh
# Ranks other than 0 see the target as another host does: the same filesystem
# (same inodes) under another device number. An overlay of the target mounted
# over it, in a mount namespace of their own, is exactly that.
if [ "$OMPI_COMM_WORLD_RANK" != 0 ]; then
    exec unshare -m sh -c 'mount -t overlay overlay -o "lowerdir=$0:$1" "$0" && shift &&
        exec "$@"' "$TARGET" "$EMPTY" "$@"
fi
exec "$@"
"""


def test_ranks_on_hosts_that_number_the_filesystem_otherwise_count_every_file(
        dkm_factory, tmp_path):
    """Every host numbers a mounted NFS, Lustre or GPFS filesystem its own way.
    Directories handed to a rank on another host looked replaced and were skipped
    (38,550 files of 100,000 counted; here, this test failed so), and a hard link
    walked there would have counted twice."""
    _need_mpi()
    target = tmp_path / "scratch"
    files = make_tree(target)
    for top in range(100):  # enough directories that rank 0's walker hands many out
        for sub in range(20):
            directory = target / "bulk" / f"b{top}" / f"s{sub}"
            directory.mkdir(parents=True)
            for index in range(20):
                os.close(os.open(directory / f"e{index}", os.O_CREAT | os.O_WRONLY, 0o644))
    files += 40_000
    empty = tmp_path / "empty"
    empty.mkdir()
    probe = subprocess.run(["unshare", "-m", "mount", "-t", "overlay", "overlay", "-o",
                            f"lowerdir={target}:{empty}", str(target)], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"no overlay mount here: {probe.stderr.decode().strip()}")
    wrapper = tmp_path / "other-host.sh"
    wrapper.write_text(_OTHER_HOST)
    wrapper.chmod(0o755)
    single = dkm_factory(extra="[scan]\nworkers = 1\n")
    assert single("run", "path", str(target)).returncode == 0
    expected = stored(single, target)
    parallel = dkm_factory()
    job = mpirun(4, "--config", str(parallel.config), "run", "path", str(target),
                 wrapper=(str(wrapper),), extra_env={"TARGET": str(target), "EMPTY": str(empty)})
    _out, err = job.communicate(timeout=300)
    assert job.returncode == 0, err
    assert "replaced" not in err
    got = stored(parallel, target)
    [whole] = [r for r in got if r["username"] is None]
    assert whole["files"] == files
    for record in got + expected:
        del record["average_age_days"]  # "now" moved on between the runs
    assert got == expected


def _announced(dkm) -> list[tuple[object, ...]]:
    """The files of the record an announcing run wrote (state/announce/*.files)."""
    from dkmonitor.announce import recordfile

    [record] = (dkm.state_dir / "announce").glob("*.files")
    fd = os.open(record, os.O_RDONLY)
    try:
        return [(e.uid, e.ino, e.path, e.size, e.mtime_ns) for e in recordfile.iter_entries(fd)]
    finally:
        os.close(fd)


def test_an_announcing_mpi_run_lists_what_one_process_does_without_a_second_walk(
        dkm_factory, tmp_path):
    """The ranks send their old files to rank 0 with their totals; rank 0 spools
    them. It walked the whole target again, alone, before."""
    _need_mpi()
    target = tmp_path / "scratch"
    make_tree(target)
    announcing = ("run", "path", str(target), "--warning", "0.001", "--old-days", "30",
                  "--notice-days", "30", "--delete")
    settings = f"[announce]\nnotice_dir = {tmp_path / 'notices'}\n"
    single = dkm_factory(extra="[scan]\nworkers = 1\n" + settings)
    done = single(*announcing)
    assert done.returncode == 0, done.stderr
    expected = _announced(single)
    assert len(expected) > 100
    parallel = debug_logging(dkm_factory(extra=settings))
    job = mpirun(4, "--config", str(parallel.config), *announcing)
    _out, err = job.communicate(timeout=300)
    assert job.returncode == 0, err
    assert _announced(parallel) == expected
    log = (parallel.state_dir / "log" / "dkmonitor.log").read_text()
    assert "3 MPI rank(s)" in log
    assert "for the files to announce" not in log


def test_missing_mpi4py_is_one_line_from_rank_zero_only(tmp_path):
    _need_mpi()
    env = {**os.environ, "OMPI_COMM_WORLD_SIZE": "3", "OMPI_COMM_WORLD_RANK": "0",
           "PYTHONPATH": str(tmp_path)}
    (tmp_path / "mpi4py").mkdir()  # a package that fails to import, in front of the real one
    (tmp_path / "mpi4py" / "__init__.py").write_text("raise ImportError('no MPI here')\n")
    result = subprocess.run([sys.executable, "-m", "dkmonitor", "--help"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "dkmonitor: error: started as 3 MPI ranks but mpi4py is not installed: "
        "pip install 'dkmonitor[mpi]'")
    env["OMPI_COMM_WORLD_RANK"] = "1"
    other = subprocess.run([sys.executable, "-m", "dkmonitor", "--help"], env=env,
                           capture_output=True, text=True, timeout=60)
    assert other.returncode == 2 and other.stderr == ""


def _rank_pids(config: Path, rank: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if str(config).encode() in cmdline and f"OMPI_COMM_WORLD_RANK={rank}\0".encode() in environ:
            found.append(int(entry.name))
    return found


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _rank_zero_walker(config: Path) -> list[int]:
    """Rank 0's own walker: the rank-0 process whose parent is rank 0."""
    rank_zero = _rank_pids(config, 0)
    return [pid for pid in rank_zero if _parent(pid) in rank_zero]


def _kill_mid_walk(dkm, tmp_path: Path, find_victims) -> tuple[Path, subprocess.Popen[str]]:
    target = tmp_path / "scratch"
    for top in range(150):  # 15,000 directories: seconds of walking, not milliseconds
        for sub in range(100):
            (target / f"t{top}" / f"s{sub}").mkdir(parents=True)
    log = dkm.state_dir / "log" / "dkmonitor.log"
    job = mpirun(3, "--config", str(dkm.config), "run", "path", str(target), kill_timeout=30)
    deadline = time.monotonic() + 240
    while "MPI rank(s)" not in (log.read_text() if log.exists() else ""):
        assert job.poll() is None, job.communicate()
        assert time.monotonic() < deadline, "the MPI scan never started"
        time.sleep(0.01)
    victims = find_victims(dkm.config)
    assert victims, "no process to kill found"
    for pid in victims:
        os.kill(pid, 9)
    job.communicate(timeout=240)
    return target, job


def _mailing(dkm_factory, smtp_server):
    return debug_logging(dkm_factory(extra=(
        f"[email]\nenabled = yes\nsmtp_host = 127.0.0.1\nsmtp_port = {smtp_server.port}\n"
        "from_address = dkm@example.edu\nuser_postfix = example.edu\n"
        "admin_addresses = admins@example.edu\n")))


def test_a_rank_killed_mid_walk_fails_the_run_cleanly(dkm_factory, tmp_path, smtp_server):
    _need_mpi()
    dkm = _mailing(dkm_factory, smtp_server)
    target, job = _kill_mid_walk(dkm, tmp_path, lambda config: _rank_pids(config, 1))

    assert job.returncode != 0
    assert stored(dkm, target) == []  # nothing of the scan stored
    [mail] = [m for m in smtp_server.received if "admins@example.edu" in m.rcpt_tos]
    body = mail.message.get_content()
    assert "MPI job is being stopped" in body and str(target) in body
    # the lock was released and the next run works (one process this time)
    again = dkm("run", "path", str(target))
    assert again.returncode == 0, again.stderr
    assert len(stored(dkm, target)) == 1


def test_rank_zero_walker_killed_mid_walk_fails_the_run_cleanly(dkm_factory, tmp_path,
                                                                smtp_server):
    """Rank 0 walks too, in a process of its own: its death fails the task, not the job."""
    _need_mpi()
    dkm = _mailing(dkm_factory, smtp_server)
    target, job = _kill_mid_walk(dkm, tmp_path, _rank_zero_walker)

    assert job.returncode == 1
    assert stored(dkm, target) == []
    [mail] = [m for m in smtp_server.received if "admins@example.edu" in m.rcpt_tos]
    body = mail.message.get_content()
    assert "rank 0's walker process" in body and str(target) in body
    again = dkm("run", "path", str(target))
    assert again.returncode == 0, again.stderr
    assert len(stored(dkm, target)) == 1
