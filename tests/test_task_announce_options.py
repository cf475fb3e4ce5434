"""The announced-purge task options through the real command: create, edit, show, prompts.

--notice-days, --final-notice-days, --clean-always and --emergency (issue 13,
item 1): stored, shown back as the flags a user types, refused with one line
naming the flag, asked by `task create --interactive` only when they apply,
accepted by `run path`, and added to existing tasks by migration 0008.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from dkmonitor.taskspec import TaskSpec


def base(target) -> list[str]:
    return ["--target", str(target), "--warning", "80", "--critical", "90", "--old-days", "30"]


def create(dkm, name, target, *extra):
    return dkm("task", "create", name, *base(target), *extra)


def shown_json(dkm, name) -> dict:
    result = dkm("task", "show", name, "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def shown_flags(dkm, name) -> dict[str, str]:
    result = dkm("task", "show", name)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == f"task {name}"
    return dict(line.split(None, 1) for line in lines[1:])


def one_line_error(result, flag: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and flag in lines[0], result.stderr
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------- the spec itself


@pytest.mark.parametrize(
    ("notice", "final", "period"),
    [
        (0.0, None, 0.0),  # no announcements: no reminder
        (14.0, None, 3.0),  # the default: 3 days ...
        (4.0, None, 2.0),  # ... or half the notice period when that is shorter
        (0.02, None, 0.01),
        (14.0, 5.5, 5.5),  # explicit
        (14.0, 0.0, 0.0),  # explicit: no final reminder
    ],
)
def test_final_notice_period(notice, final, period):
    spec = TaskSpec("t", "h", "/s", 80, 90, 30, delete_old_files=True,
                    notice_days=notice, final_notice_days=final)
    assert spec.final_notice_period == pytest.approx(period)
    assert spec.announces is (notice > 0)


def test_existing_tasks_keep_todays_behaviour():
    spec = TaskSpec("t", "h", "/s", 80, 90, 30)
    assert (spec.notice_days, spec.final_notice_days) == (0.0, None)
    assert (spec.clean_always, spec.emergency_percent) == (False, None)
    assert not spec.announces and spec.final_notice_period == 0.0


# ---------------------------------------------------------------- create, show, edit


def test_create_with_each_flag_and_show_it_back(dkm, tmp_path):
    result = create(dkm, "scratch", tmp_path, "--delete", "--notice-days", "14",
                    "--final-notice-days", "2.5", "--clean-always", "--emergency", "97.5")
    assert result.returncode == 0, result.stderr
    stored = shown_json(dkm, "scratch")
    assert stored["notice_days"] == 14
    assert stored["final_notice_days"] == 2.5
    assert stored["clean_always"] is True
    assert stored["emergency_percent"] == 97.5
    rows = shown_flags(dkm, "scratch")
    assert rows["--notice-days"] == "14"
    assert rows["--final-notice-days"] == "2.5"
    assert rows["--clean-always"] == "yes"
    assert rows["--emergency"] == "97.5"

    # a task created without them shows the defaults, as flags a user could type
    assert create(dkm, "plain", tmp_path).returncode == 0
    stored = shown_json(dkm, "plain")
    assert (stored["notice_days"], stored["final_notice_days"]) == (0, None)
    assert (stored["clean_always"], stored["emergency_percent"]) == (False, None)
    rows = shown_flags(dkm, "plain")
    assert rows["--notice-days"] == "0"
    assert rows["--final-notice-days"] == "default"
    assert rows["--clean-always"] == "no"
    assert rows["--emergency"] == "none"


def test_fractional_days_are_kept(dkm_sqlite, tmp_path):
    result = create(dkm_sqlite, "trial", tmp_path, "--move-to", "/archive",
                    "--notice-days", "0.01", "--final-notice-days", "0.004")
    assert result.returncode == 0, result.stderr
    stored = shown_json(dkm_sqlite, "trial")
    assert (stored["notice_days"], stored["final_notice_days"]) == (0.01, 0.004)


def test_edit_each_flag_and_clear_them(dkm, tmp_path):
    assert create(dkm, "scratch", tmp_path, "--delete").returncode == 0
    edits = [
        (("--notice-days", "7"), "notice_days", 7),
        (("--final-notice-days", "1"), "final_notice_days", 1),
        (("--clean-always",), "clean_always", True),
        (("--emergency", "99"), "emergency_percent", 99),
        (("--emergency", "none"), "emergency_percent", None),
        (("--final-notice-days", "default"), "final_notice_days", None),
        (("--no-clean-always",), "clean_always", False),
        (("--emergency", "98", "--clean-always"), "emergency_percent", 98),
    ]
    for args, key, value in edits:
        result = dkm("task", "edit", "scratch", *args)
        assert result.returncode == 0, (args, result.stderr)
        assert shown_json(dkm, "scratch")[key] == value, args
    # --no-cleaning takes the options that only a cleaning task may have with it
    assert dkm("task", "edit", "scratch", "--no-cleaning").returncode == 0
    stored = shown_json(dkm, "scratch")
    assert (stored["clean_always"], stored["emergency_percent"]) == (False, None)
    assert stored["notice_days"] == 7  # announcing is not cleaning: kept
    # back to today's behaviour: the final notice must be reset first, as the error says
    assert dkm("task", "edit", "scratch", "--final-notice-days", "2").returncode == 0
    one_line_error(dkm("task", "edit", "scratch", "--notice-days", "0"), "--final-notice-days")
    result = dkm("task", "edit", "scratch", "--notice-days", "0", "--final-notice-days", "default")
    assert result.returncode == 0, result.stderr
    assert shown_json(dkm, "scratch")["notice_days"] == 0


def test_purge_target_can_be_cleared_the_same_way(dkm_sqlite, tmp_path):
    result = create(dkm_sqlite, "scratch", tmp_path, "--delete", "--purge-target", "70")
    assert result.returncode == 0, result.stderr
    assert shown_json(dkm_sqlite, "scratch")["purge_target_percent"] == 70
    assert dkm_sqlite("task", "edit", "scratch", "--purge-target", "none").returncode == 0
    assert shown_json(dkm_sqlite, "scratch")["purge_target_percent"] is None


BAD = [
    (("--notice-days", "-1"), "--notice-days"),
    (("--notice-days", "3651"), "--notice-days"),
    (("--notice-days", "nan"), "--notice-days"),
    (("--notice-days", "inf"), "--notice-days"),
    (("--notice-days", "soon"), "--notice-days"),  # not a number: click's usage error
    (("--final-notice-days", "1"), "--final-notice-days"),  # without --notice-days
    (("--notice-days", "2", "--final-notice-days", "2"), "--final-notice-days"),  # not < notice
    (("--notice-days", "2", "--final-notice-days", "-0.5"), "--final-notice-days"),
    (("--notice-days", "2", "--final-notice-days", "nan"), "--final-notice-days"),
    (("--notice-days", "2", "--final-notice-days", "later"), "--final-notice-days"),
    (("--clean-always",), "--clean-always"),  # not a cleaning task
    (("--notice-days", "5", "--emergency", "98"), "--emergency"),  # not a cleaning task
    (("--delete", "--emergency", "98"), "--emergency"),  # without --notice-days
    (("--delete", "--notice-days", "5", "--emergency", "90"), "--emergency"),  # = critical
    (("--delete", "--notice-days", "5", "--emergency", "85"), "--emergency"),  # < critical
    (("--delete", "--notice-days", "5", "--emergency", "100.5"), "--emergency"),
    (("--delete", "--notice-days", "5", "--emergency", "nan"), "--emergency"),
    (("--delete", "--notice-days", "5", "--emergency", "high"), "--emergency"),
]


def test_every_bad_value_exits_2_with_one_line_naming_the_flag(dkm_sqlite, tmp_path):
    for extra, flag in BAD:
        one_line_error(create(dkm_sqlite, "t1", tmp_path, *extra), flag)
    assert dkm_sqlite("task", "list", "--format", "json").stdout.strip() == "[]"
    # the same rules on edit, and a refused edit changes nothing
    assert create(dkm_sqlite, "t1", tmp_path, "--delete", "--notice-days", "5").returncode == 0
    before = shown_json(dkm_sqlite, "t1")
    for extra, flag in [
        (("--emergency", "90"), "--emergency"),
        (("--final-notice-days", "5"), "--final-notice-days"),
        (("--notice-days", "-2"), "--notice-days"),
        (("--no-cleaning", "--clean-always"), "--clean-always"),
    ]:
        one_line_error(dkm_sqlite("task", "edit", "t1", *extra), flag)
    assert shown_json(dkm_sqlite, "t1") == before


# ---------------------------------------------------------------- interactive


def _interactive_answers(tmp_path, action: list[str], announce: list[str]) -> str:
    answers = [
        "scratch",
        str(tmp_path),  # target
        "",  # host: this one
        "80",  # warning
        "90",  # critical
        "45",  # old days
        "",  # basis
        *action,
        "",  # email warnings (no)
        "",  # top percent (25)
        *announce,
    ]
    return "\n".join(answers) + "\n"


def test_interactive_create_asks_the_announce_options(dkm_sqlite, tmp_path):
    answers = _interactive_answers(
        tmp_path,
        ["delete", ""],  # delete; email alterations (yes)
        [
            "-3",  # notice days: refused
            "10",
            "10",  # final notice: refused, not below the notice period
            "2",
            "yes",  # clean always
            "85",  # emergency: refused, not above critical
            "97",
        ],
    )
    result = dkm_sqlite("task", "create", "--interactive", input=answers)
    assert result.returncode == 0, result.stdout + result.stderr
    stored = shown_json(dkm_sqlite, "scratch")
    assert stored["delete_old_files"] is True
    assert (stored["notice_days"], stored["final_notice_days"]) == (10, 2)
    assert (stored["clean_always"], stored["emergency_percent"]) == (True, 97)
    assert "must be >= 0" in result.stderr
    assert "less than" in result.stderr or "< 10" in result.stderr
    assert "critical threshold" in result.stderr


def test_interactive_defaults_store_the_defaults(dkm_sqlite, tmp_path):
    answers = _interactive_answers(
        tmp_path, ["move", "/archive", "", ""],  # move; delete when full; alterations
        ["0.5", "", "", ""],  # notice; final (default); clean always (no); emergency (none)
    )
    result = dkm_sqlite("task", "create", "--interactive", input=answers)
    assert result.returncode == 0, result.stdout + result.stderr
    stored = shown_json(dkm_sqlite, "scratch")
    assert (stored["notice_days"], stored["final_notice_days"]) == (0.5, None)
    assert (stored["clean_always"], stored["emergency_percent"]) == (False, None)


def test_interactive_keep_asks_only_the_notice_period(dkm_sqlite, tmp_path):
    """A task that never cleans is asked neither --clean-always nor --emergency."""
    answers = _interactive_answers(tmp_path, ["keep"], ["", ])  # notice days: 0
    result = dkm_sqlite("task", "create", "--interactive", input=answers)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout + result.stderr
    assert "Announce old files" in out
    assert "whatever the disk use" not in out and "never-announced" not in out
    assert "Final reminder" not in out
    stored = shown_json(dkm_sqlite, "scratch")
    assert (stored["notice_days"], stored["clean_always"]) == (0, False)


# ---------------------------------------------------------------- run path


def test_run_path_takes_the_options(dkm_sqlite, tmp_path):
    helped = dkm_sqlite("run", "path", "--help")
    for flag in ("--notice-days", "--final-notice-days", "--clean-always", "--emergency"):
        assert flag in helped.stdout, flag
    target = tmp_path / "t"
    target.mkdir()
    (target / "f").write_text("x")
    result = dkm_sqlite("run", "path", str(target), "--notice-days", "0.5", "--delete",
                        "--final-notice-days", "0.1", "--clean-always", "--emergency", "99",
                        "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (target / "f").exists()
    one_line_error(
        dkm_sqlite("run", "path", str(target), "--emergency", "99", "--dry-run"), "--emergency"
    )


# ---------------------------------------------------------------- migration 0008


def test_task_of_an_0007_database_upgrades_with_the_defaults(dkm_factory, db_url, tmp_path):
    from alembic import command

    from dkmonitor.db.engine import make_engine
    from dkmonitor.db.migrate import _config, current_revision, head_revision

    engine = make_engine(db_url)
    with engine.connect() as connection:
        command.upgrade(_config(connection), "0007")
        connection.execute(
            text(
                "INSERT INTO tasks (name, hostname, target_path, delete_old_files, "
                "delete_when_full, usage_warning_threshold, usage_critical_threshold, "
                "old_file_threshold, email_usage_warnings, email_data_alterations, "
                "email_top_percent, enabled, age_basis, created_at, updated_at) VALUES "
                "('old', 'h', :target, :yes, :no, 80, 90, 30, :no, :yes, 25, :yes, 'used', "
                "'2025-01-01 00:00:00', '2025-01-01 00:00:00')"
            ),
            {"target": str(tmp_path), "yes": True, "no": False},
        )
        connection.commit()
        assert current_revision(connection) == "0007"
    engine.dispose()

    dkm = dkm_factory(db_url)
    stored = shown_json(dkm, "old")  # opening the database upgrades it
    assert stored["delete_old_files"] is True and stored["usage_critical_threshold"] == 90
    assert (stored["notice_days"], stored["final_notice_days"]) == (0, None)
    assert (stored["clean_always"], stored["emergency_percent"]) == (False, None)
    engine = make_engine(db_url)
    with engine.connect() as connection:
        assert current_revision(connection) == head_revision()
        row = connection.execute(
            text("SELECT notice_days, final_notice_days, clean_always, emergency_percent "
                 "FROM tasks")
        ).one()
    engine.dispose()
    assert (row[0], row[1], bool(row[2]), row[3]) == (0, None, False, None)
    # and the upgraded task takes the new options
    result = dkm("task", "edit", "old", "--notice-days", "3")
    assert result.returncode == 0, result.stderr
    assert shown_json(dkm, "old")["notice_days"] == 3
