"""Unattended runs: the log file, silence under cron, -v/-q, and secrets kept secret."""

from __future__ import annotations

import subprocess
import sys

import pytest
from sqlalchemy.engine import make_url

from dkmonitor.lock import task_lock

PASSWORD = "p@ss:w/rd"


def with_host(dkm, host: str):
    dkm.config.write_text(
        dkm.config.read_text().replace("[general]\n", f"[general]\nhostname = {host}\n", 1)
    )
    return dkm


def make_task(dkm, tmp_path, name="scratch"):
    target = tmp_path / f"target-{name}"
    target.mkdir()
    (target / "f").write_text("x")
    created = dkm(
        "task", "create", name, "--target", str(target),
        "--warning", "99.8", "--critical", "99.9", "--old-days", "30",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    return target


def test_run_logs_a_line_naming_task_and_host_in_dkm_log(dkm_sqlite, tmp_path):
    dkm = with_host(dkm_sqlite, "loghost")
    make_task(dkm, tmp_path)
    log_dir = tmp_path / "elsewhere"
    result = dkm("run", "full", env={"DKM_LOG": str(log_dir)})
    assert result.returncode == 0, result.stderr
    lines = (log_dir / "dkmonitor.log").read_text().splitlines()
    scans = [line for line in lines if "task scratch on loghost:" in line]
    assert len(scans) == 1
    assert " loghost INFO " in scans[0]  # the host field of every line
    assert (
        not (dkm.state_dir / "log" / "dkmonitor.log").exists()
        or "task scratch on" not in (dkm.state_dir / "log" / "dkmonitor.log").read_text()
    )


def test_configured_log_dir_without_dkm_log(dkm_sqlite, tmp_path):
    make_task(dkm_sqlite, tmp_path)
    result = dkm_sqlite("run", "full", env={"DKM_LOG": ""})
    assert result.returncode == 0, result.stderr
    assert "task scratch on" in (dkm_sqlite.state_dir / "log" / "dkmonitor.log").read_text()


def test_successful_run_under_cron_prints_nothing(dkm, tmp_path):
    make_task(dkm, tmp_path)
    for kind in ("full", "quick"):
        result = dkm("run", kind)
        assert result.returncode == 0, result.stderr
        assert (result.stdout, result.stderr) == ("", "")


def test_verbose_and_quiet(dkm_sqlite, tmp_path):
    make_task(dkm_sqlite, tmp_path)
    verbose = dkm_sqlite("-v", "run", "full")
    assert verbose.returncode == 0
    assert "dkmonitor: info: task scratch on" in verbose.stderr
    with task_lock(dkm_sqlite.state_dir, "scratch"):
        normal = dkm_sqlite("run", "full")
        quiet = dkm_sqlite("-q", "run", "full")
    assert "already running" in normal.stderr
    assert quiet.returncode == 0 and (quiet.stdout, quiet.stderr) == ("", "")


def test_world_readable_settings_with_a_password_warn_once(dkm_sqlite):
    config = dkm_sqlite.config
    config.write_text(config.read_text() + "[email]\nsmtp_password = hunter2\n")
    config.chmod(0o644)
    result = dkm_sqlite("database", "status")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("readable by other users") == 1
    assert str(config) in result.stderr and "chmod 600" in result.stderr
    assert "hunter2" not in result.stdout + result.stderr
    config.chmod(0o600)
    assert dkm_sqlite("database", "status").stderr == ""


@pytest.mark.postgres
def test_password_never_shown_with_a_wrong_port(dkm_factory, pg_url, tmp_path):
    good = make_url(pg_url).set(password=PASSWORD)
    dkm = dkm_factory(pg_url)
    make_task(dkm, tmp_path)
    assert dkm("run", "full").returncode == 0  # fills the task cache
    secret_url = good.set(port=1).render_as_string(hide_password=False)
    assert "%40" in secret_url  # the password really is URL-encoded in the file
    dkm.config.write_text(dkm.config.read_text().replace(pg_url, secret_url))

    outputs = []
    for args in (
        ("database", "status"),
        ("database", "list"),
        ("database", "upgrade"),
        ("database", "flush-spool"),
        ("task", "list"),
        ("run", "full"),
        ("check",),
        ("-v", "run", "quick"),
    ):
        result = dkm(*args)
        assert result.returncode in (1, 3), (args, result)
        assert "Traceback" not in result.stderr
        assert "127.0.0.1:1" in result.stdout + result.stderr  # the URL is named...
        outputs.append(result.stdout + result.stderr)
    text = "\n".join(outputs)
    text += "\n".join(p.read_text() for p in (dkm.state_dir / "log").glob("dkmonitor.log*"))
    text += "\n".join(p.read_text() for p in (dkm.state_dir / "spool").glob("*"))
    for form in (PASSWORD, "p%40ss", "p@ss", "w/rd", "w%2Frd"):
        assert form not in text  # ...its password never
    assert "***" in text


_LOG_WRITER = """
import logging, sys
from dkmonitor.cli.logsetup import SharedRotatingFileHandler
handler = SharedRotatingFileHandler(sys.argv[1], max_bytes=4000, backup_count=10000)
handler.setFormatter(logging.Formatter("%(message)s"))
log = logging.getLogger("writer")
log.addHandler(handler)
log.setLevel(logging.INFO)
for index in range(int(sys.argv[3])):
    log.info("%s %06d %s", sys.argv[2], index, "x" * 40)
"""


def test_processes_sharing_the_log_lose_no_line_when_it_rotates(tmp_path):
    """Four processes (think: quick runs overlapping a long full run) writing one
    small log: every line ends up in exactly one file, in each writer's order."""
    log_file = tmp_path / "dkmonitor.log"
    writers, lines_each = 4, 1500
    processes = [
        subprocess.Popen([sys.executable, "-c", _LOG_WRITER, str(log_file), f"w{n}",
                          str(lines_each)])
        for n in range(writers)
    ]
    assert [process.wait(timeout=120) for process in processes] == [0] * writers
    files = [p for p in tmp_path.glob("dkmonitor.log*") if not p.name.endswith(".lock")]
    assert len(files) > 20  # it did rotate, many times, with everyone writing
    # oldest first: dkmonitor.log.N ... dkmonitor.log.1, dkmonitor.log
    files.sort(key=lambda p: -int(p.suffix[1:]) if p.suffix[1:].isdigit() else 0)
    lines = [line for path in files for line in path.read_text().splitlines()]
    expected = {f"w{n} {index:06d} {'x' * 40}" for n in range(writers)
                for index in range(lines_each)}
    assert len(lines) == len(expected) and set(lines) == expected
    for n in range(writers):  # each writer's lines stay in order across the files
        own = [line for line in lines if line.startswith(f"w{n} ")]
        assert own == sorted(own)
    assert all(path.stat().st_size <= 4000 for path in files)
