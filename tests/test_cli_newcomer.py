"""A new administrator's first hour (issue 11), through the real command.

Each test is one rough edge seen on a fresh machine; "on a terminal" tests run
dkmonitor on pseudo-terminals (``Dkm.on_terminal``), as a person at a shell.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.fixtures.cli import DKMONITOR

TASK_FLAGS = ("--warning", "80", "--critical", "99.9", "--old-days", "30")


def create(dkm, name, target, *extra):
    result = dkm("task", "create", name, "--target", str(target), *TASK_FLAGS, *extra)
    assert result.returncode == 0, result.stderr
    return result


def lines(text: str) -> list[str]:
    return text.strip().splitlines()


# ---------------------------------------------------------------- help and usage


def test_bare_dkmonitor_shows_the_help_and_exits_0():
    result = subprocess.run([DKMONITOR], capture_output=True, text=True, timeout=120,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: dkmonitor")
    assert "Commands:" in result.stdout and "systemd" in result.stdout
    assert result.stderr == ""


@pytest.mark.parametrize("args", [("run",), ("task",), ("database",), ("-v",)])
def test_a_group_without_its_command_prints_one_usage_line(dkm_sqlite, args):
    result = dkm_sqlite(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = lines(result.stderr)
    assert line.startswith("Usage: dkmonitor")
    assert "-h' for help" in line


_EVERY_HELP = """
import json, click
from dkmonitor.cli import cli

def walk(command, path, parent):
    ctx = click.Context(command, info_name=path[-1] if path else "dkmonitor", parent=parent)
    yield " ".join(path), command.get_help(ctx)
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            yield from walk(command.get_command(ctx, name), [*path, name], ctx)

print(json.dumps(dict(walk(cli, [], None))))
"""


def test_no_help_text_shows_a_literal_percent_pair():
    """Every command's help, rendered by click in one process (one start-up, not forty)."""
    done = subprocess.run([sys.executable, "-c", _EVERY_HELP], capture_output=True, text=True,
                          timeout=300, check=True)
    helps = json.loads(done.stdout)
    assert {"run path", "task create", "systemd", "database clean"} <= set(helps)
    assert len(helps) > 20
    assert [path for path, text in helps.items() if "%%" in text] == []
    flowed = " ".join(helps["task create"].split())
    assert "Disk use percent above which users are warned" in flowed


def test_run_path_takes_only_the_flags_that_apply(dkm_sqlite, tmp_path):
    text = dkm_sqlite("run", "path", "--help").stdout
    assert "--target" not in text and "--host " not in text
    assert "--old-days" in text and "--dry-run" in text
    result = dkm_sqlite("run", "path", "--target", str(tmp_path), str(tmp_path))
    assert result.returncode == 2
    (line,) = lines(result.stderr)
    assert "No such option" in line and "--target" in line


def test_task_create_marks_its_required_flags(dkm_sqlite):
    create_help = dkm_sqlite("task", "create", "--help").stdout.split("Options:", 1)[1]
    for flag in ("--target", "--warning", "--critical", "--old-days"):
        option = create_help.split(flag, 1)[1].split("\n  --", 1)[0]
        assert "[required]" in option, flag
    assert create_help.count("[required]") == 4
    assert "[required]" not in dkm_sqlite("task", "edit", "--help").stdout


def test_task_create_errors_have_one_prefix_and_one_message(dkm_sqlite, tmp_path):
    result = dkm_sqlite("task", "create", "bad1", "--target", str(tmp_path), "--warning", "80")
    assert result.returncode == 2
    (line,) = lines(result.stderr)
    assert line.startswith("dkmonitor: error: task create: missing --critical, --old-days")
    assert line.count("dkmonitor") == 1 and line.count("task create") == 1
    assert "(required: --target, --warning, --critical, --old-days)" in line


# ---------------------------------------------------------------- run path and errors


def test_run_path_on_a_missing_directory_or_a_file_is_a_usage_error(dkm_sqlite, tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for where, why in ((tmp_path / "nonexistent", "does not exist"), (a_file, "is a file")):
        result = dkm_sqlite("run", "path", str(where))
        assert result.returncode == 2, result.stderr
        (line,) = lines(result.stderr)
        assert str(where) in line and why in line
        assert result.stdout == ""
        on_terminal = dkm_sqlite.on_terminal("run", "path", str(where))
        assert on_terminal.returncode == 2
        assert (on_terminal.stdout + on_terminal.stderr).count(why) == 1


def test_on_a_terminal_an_error_is_shown_once_and_not_on_the_progress_line(
    dkm_sqlite, tmp_path
):
    good = tmp_path / "a-good"
    good.mkdir()
    for index in range(50):
        (good / f"f{index}").write_text("x")
    create(dkm_sqlite, "a-good", good)
    create(dkm_sqlite, "bad8", tmp_path / "gone")
    result = dkm_sqlite.on_terminal("run", "full")
    assert result.returncode == 1
    everything = result.stdout + result.stderr
    assert everything.count(f"target {tmp_path / 'gone'} does not exist") == 1
    assert "scanning" in result.stderr  # the progress line was drawn for the good task
    for segment in result.stderr.replace("\r\x1b[K", "\n").splitlines():
        assert not ("scanning" in segment and "dkmonitor: error" in segment), segment
    assert "task bad8: FAILED\n" in result.stdout


def test_quick_and_full_word_a_missing_target_alike(dkm_sqlite, tmp_path):
    create(dkm_sqlite, "gone", tmp_path / "gone")
    said = set()
    for kind in ("quick", "full"):
        result = dkm_sqlite("run", kind)
        assert result.returncode == 1
        (line,) = lines(result.stderr)
        said.add(line)
    assert said == {f"dkmonitor: error: task gone: target {tmp_path / 'gone'} does not exist"}


@pytest.mark.parametrize("kind", ["quick", "full"])
def test_no_task_for_this_host_is_said_on_a_terminal_and_with_v(dkm_sqlite, kind):
    quiet = dkm_sqlite("run", kind)  # as under cron
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
    verbose = dkm_sqlite("-v", "run", kind)
    assert verbose.returncode == 0
    assert "no enabled task for this host" in verbose.stdout
    on_terminal = dkm_sqlite.on_terminal("run", kind)
    assert on_terminal.returncode == 0
    assert "no enabled task for this host" in on_terminal.stdout


# ---------------------------------------------------------------- tasks


def test_task_show_prints_the_flags_a_user_types(dkm_sqlite, tmp_path):
    create(dkm_sqlite, "scratch", tmp_path, "--move-to", "/archive", "--email-warnings")
    shown = dkm_sqlite("task", "show", "scratch")
    assert shown.returncode == 0, shown.stderr
    rows = dict(line.split(None, 1) for line in lines(shown.stdout)[1:])
    assert lines(shown.stdout)[0] == "task scratch"
    assert rows["--target"] == str(tmp_path)
    assert (rows["--warning"], rows["--critical"], rows["--old-days"]) == ("80", "99.9", "30")
    assert (rows["--move-to"], rows["--delete"]) == ("/archive", "no")
    assert (rows["--email-warnings"], rows["--email-alterations"]) == ("yes", "yes")
    assert rows["--disabled"] == "no"
    assert "usage_warning_threshold" not in shown.stdout and "False" not in shown.stdout


def test_interactive_create_can_go_back_to_the_warning(dkm_sqlite, tmp_path):
    answers = [
        "scratch",
        str(tmp_path),  # target
        "",  # host: this one
        "99.95",  # warning: leaves almost no room
        "99.9",  # refused: not above the warning
        "back",  # to the warning
        "80",  # warning again
        "90",  # critical
        "45",  # old days
        "",  # basis
        "keep",
        "",  # email warnings (no)
        "",  # top percent (25)
        "",  # notice days (0: no announcements)
    ]
    result = dkm_sqlite("task", "create", "--interactive", input="\n".join(answers) + "\n")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "'back' to change the warning threshold" in result.stderr
    shown = json.loads(dkm_sqlite("task", "show", "scratch", "--format", "json").stdout)
    assert (shown["usage_warning_threshold"], shown["usage_critical_threshold"]) == (80, 90)
    assert shown["old_file_threshold"] == 45 and shown["relocation_path"] is None


# ---------------------------------------------------------------- database clean


def test_database_clean_asks_on_a_terminal_and_says_what_it_removes(dkm_sqlite, tmp_path):
    target = tmp_path / "t"
    target.mkdir()
    (target / "f").write_text("x")
    assert dkm_sqlite("run", "path", str(target)).returncode == 0

    refused = dkm_sqlite.on_terminal("database", "clean", "0", input="n\n")
    assert refused.returncode == 1
    assert "EVERY row of: scans (with their per-user rows)" in refused.stdout
    assert "Remove them?" in refused.stdout + refused.stderr
    assert json.loads(dkm_sqlite("view", "systems", "--format", "json").stdout) != []

    agreed = dkm_sqlite.on_terminal("database", "clean", "0", input="y\n")
    assert agreed.returncode == 0, agreed.stderr
    assert json.loads(dkm_sqlite("view", "systems", "--format", "json").stdout) == []

    assert dkm_sqlite("run", "path", str(target)).returncode == 0
    unasked = dkm_sqlite.on_terminal("database", "clean", "0", "--yes")
    assert unasked.returncode == 0 and "Remove them?" not in unasked.stdout + unasked.stderr
    assert json.loads(dkm_sqlite("view", "systems", "--format", "json").stdout) == []


def test_counts_are_singular_for_one():
    from dkmonitor.units import counted

    assert (counted(1, "file"), counted(2, "file"), counted(0, "old file")) == (
        "1 file", "2 files", "0 old files")
    assert counted(1234, "user") == "1,234 users"


def test_the_share_column_counts_allocated_space_not_sparse_sizes(dkm_sqlite, tmp_path):
    target = tmp_path / "sparse"
    target.mkdir()
    with open(target / "huge.img", "wb") as handle:
        handle.truncate(1 << 42)  # 4 TiB apparent, nothing allocated
    (target / "real.dat").write_bytes(b"x" * 8192)
    result = dkm_sqlite("run", "path", str(target))
    assert result.returncode == 0, result.stderr
    header = next(line for line in lines(result.stdout) if line.startswith("user"))
    assert header.split()[-1] == "share"
    total = next(line for line in lines(result.stdout) if line.startswith("TOTAL"))
    assert "4.00 TiB" in total
    assert total.split()[-1] == "0.00%"  # apparent bytes would make it hundreds of percent


def test_shell_completion_comes_from_click(dkm_sqlite):
    """The README's completion lines: the script, and the answers it asks dkmonitor for."""
    source = subprocess.run([DKMONITOR], env={**os.environ, "_DKMONITOR_COMPLETE": "bash_source"},
                            capture_output=True, text=True, timeout=120)
    assert source.returncode == 0 and "_dkmonitor_completion" in source.stdout
    asked = {**os.environ, "_DKMONITOR_COMPLETE": "bash_complete",
             "COMP_WORDS": "dkmonitor task create x --ta", "COMP_CWORD": "4"}
    answer = subprocess.run([DKMONITOR], env=asked, capture_output=True, text=True, timeout=120)
    assert answer.stdout.split() == ["plain,--target"]


def test_check_help_says_how_a_task_that_never_ran_is_judged(dkm_sqlite):
    text = " ".join(dkm_sqlite("check", "--help").stdout.split())
    assert "A task that never ran is judged from its creation" in text
