"""Start-up cost: `dkmonitor --help` imports no command module (cron and monitoring
start dkmonitor often), the help lines it shows say what each command's own does,
and `run quick` (hourly, from cron) imports no scanner."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import click
import pytest

from dkmonitor.cli import LazyGroup, cli


def test_help_imports_no_command_module_and_no_database_library():
    code = ("import sys; from dkmonitor.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith(('dkmonitor.cli.', "
            "'sqlalchemy', 'psycopg2', 'alembic', 'dkmonitor.scan', 'dkmonitor.notify', "
            "'dkmonitor.config', 'dataclasses', 'shutil', 'logging.handlers'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.splitlines()[-1]
    assert out == "[]"


@pytest.mark.parametrize("columns", ["", "40", "60", "79", "100", "300", "junk"])
def test_the_help_is_as_wide_as_clicks_own(monkeypatch, columns):
    """The top-level help sizes itself without shutil, by click's rule."""
    monkeypatch.setenv("COLUMNS", columns)
    ctx = cli.make_context("dkmonitor", ["--help"], resilient_parsing=True)
    assert ctx.make_formatter().width == click.HelpFormatter().width


def test_the_help_table_matches_each_commands_own_help():
    ctx = click.Context(cli)
    for name, (module, line) in LazyGroup.COMMANDS.items():
        command = getattr(importlib.import_module(module), name)
        own = " ".join((command.help or "").split("\n\n")[0].split())
        words = line.rstrip(".").split()
        # the table's line is the command's first sentence, or a shortening of it
        assert own.startswith(" ".join(words[:3])), (name, line, own)
        assert cli.get_command(ctx, name) is command


def _imported_by(dkm, *args: str) -> set[str]:
    """The modules a real ``dkmonitor`` process imports (``-X importtime`` lines)."""
    env = {**os.environ, **dkm.env}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "dkmonitor", "--config", str(dkm.config),
         "-q", *args], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines()
            if line.startswith("import time:") and "|" in line}


SCANNER = ("dkmonitor.scan.walker", "dkmonitor.scan.parallel", "dkmonitor.scan._dirscan",
           "multiprocessing", "ctypes")


def _quick_run_modules(dkm, tmp_path):
    """The modules a quick run of a task below its warning threshold imports."""
    target = tmp_path / "target"
    target.mkdir()
    made = dkm("task", "create", "q1", "--target", str(target), "--warning", "99",
               "--critical", "100", "--old-days", "90")
    assert made.returncode == 0, made.stderr
    modules = _imported_by(dkm, "run", "quick", "q1")
    return modules


def test_run_quick_imports_no_walker_and_no_worker_pool(dkm, tmp_path):
    modules = _quick_run_modules(dkm, tmp_path)
    assert "dkmonitor.runner" in modules and "dkmonitor.scan.disk" in modules  # parsed
    assert sorted(m for m in modules if m.startswith(SCANNER)) == []


# What a quick run below its warning threshold does not need: a full run's steps and
# types (each dataclass costs to define), the table renderer, and the standard modules
# that logging.handlers (socket, pickle, queue) and tempfile (shutil, bz2, lzma) bring
# (socket itself is not listed: the PostgreSQL driver needs it).
FULL_RUN_ONLY = ("dkmonitor.taskrun", "dkmonitor.scan.stats", "dkmonitor.scan.age",
                 "dkmonitor.purge", "dkmonitor.scanstep", "dkmonitor.cli.render", "termcolor",
                 "logging.handlers", "tempfile", "pickle", "shutil")


def test_run_quick_imports_no_full_run_step_and_no_heavy_standard_module(dkm, tmp_path):
    modules = _quick_run_modules(dkm, tmp_path)
    assert "dkmonitor.runner" in modules and "dkmonitor.cli.logsetup" in modules  # parsed
    assert sorted(m for m in modules if m in FULL_RUN_ONLY) == []
    # (that it still stores its row: tests/test_plain_write.py)


def test_run_path_imports_the_walker_when_it_walks(dkm, tmp_path):
    (tmp_path / "target").mkdir()
    (tmp_path / "target" / "f").write_bytes(b"x")
    modules = _imported_by(dkm, "run", "path", str(tmp_path / "target"), "--old-days", "9")
    assert "dkmonitor.scan.walker" in modules


def test_the_worker_error_is_still_the_packages_name():
    from dkmonitor.scan import ScanWorkerError
    from dkmonitor.scan.parallel import ScanWorkerError as defined

    assert ScanWorkerError is defined and issubclass(ScanWorkerError, OSError)
