"""`dkmonitor task ...` through the real command, on SQLite and PostgreSQL."""

from __future__ import annotations

import json


def create(dkm, name, target, *extra):
    return dkm(
        "task",
        "create",
        name,
        "--target",
        str(target),
        "--warning",
        "80",
        "--critical",
        "90",
        "--old-days",
        "30",
        *extra,
    )


def test_create_list_show_edit_enable_delete(dkm, tmp_path):
    result = create(dkm, "scratch", tmp_path, "--move-to", "/archive", "--email-warnings")
    assert result.returncode == 0, result.stderr
    shown = json.loads(dkm("task", "show", "scratch", "--format", "json").stdout)
    assert shown["target_path"] == str(tmp_path)
    assert shown["relocation_path"] == "/archive"
    assert shown["email_usage_warnings"] is True
    assert shown["email_data_alterations"] is True  # default on
    assert shown["email_top_percent"] == 25  # default
    assert shown["enabled"] is True
    assert shown["age_basis"] == "used"

    assert dkm("task", "edit", "scratch", "--delete", "--critical", "95.5").returncode == 0
    shown = json.loads(dkm("task", "show", "scratch", "--format", "json").stdout)
    assert shown["delete_old_files"] is True
    assert shown["relocation_path"] is None  # --delete replaced the move
    assert shown["usage_critical_threshold"] == 95.5

    assert dkm("task", "disable", "scratch").returncode == 0
    listed = json.loads(dkm("task", "list", "--format", "json").stdout)
    assert [t["enabled"] for t in listed] == [False]
    assert "scratch" in dkm("task", "list").stdout
    assert dkm("task", "enable", "scratch").returncode == 0

    refused = dkm("task", "delete", "scratch", input="n\n")
    assert refused.returncode != 0
    assert json.loads(dkm("task", "list", "--format", "json").stdout) != []
    assert dkm("task", "delete", "scratch", "--yes").returncode == 0
    assert json.loads(dkm("task", "list", "--format", "json").stdout) == []


def test_bad_task_input_exits_2_with_one_line(dkm_sqlite, tmp_path):
    dkm = dkm_sqlite
    cases = [
        (("--warning", "95", "--critical", "90"), "--warning"),
        (("--old-days", "0"), "--old-days"),
        (("--move-to", str(tmp_path / "inside")), "--move-to"),
        (("--move-to", "/archive", "--delete"), "--delete"),
    ]
    for extra, field in cases:
        base = [
            "--target",
            str(tmp_path),
            "--warning",
            "80",
            "--critical",
            "90",
            "--old-days",
            "30",
        ]
        result = dkm("task", "create", "t1", *base, *extra)
        assert result.returncode == 2, (extra, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and field in lines[0], result.stderr
        assert "Traceback" not in result.stderr
    assert create(dkm, "t1", tmp_path).returncode == 0
    duplicate = create(dkm, "t1", tmp_path)
    assert duplicate.returncode == 2 and "already exists" in duplicate.stderr
    for args in (
        ("task", "show", "nosuch"),
        ("task", "edit", "nosuch", "--old-days", "3"),
        ("task", "delete", "nosuch", "--yes"),
        ("run", "full", "nosuch"),
    ):
        result = dkm(*args)
        assert result.returncode == 2, args
        assert "nosuch" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_interactive_create_reprompts_bad_answers(dkm_sqlite, tmp_path):
    answers = (
        "\n".join(
            [
                "scratch",  # name
                "relative/path",  # refused: not absolute
                str(tmp_path),  # target
                "",  # host: default
                "120",  # refused
                "80",  # warning
                "70",  # refused: not above warning
                "90",  # critical
                "0",  # refused
                "45",  # old days
                "",  # basis: used
                "move",
                str(tmp_path / "x"),  # refused: inside target
                "/archive",
                "no",  # delete when full
                "yes",  # email warnings
                "",  # email alterations (yes)
                "",  # top percent (25)
                "",  # notice days (0: no announcements)
                "",  # clean always (no)
            ]
        )
        + "\n"
    )
    result = dkm_sqlite("task", "create", "--interactive", input=answers)
    assert result.returncode == 0, result.stdout + result.stderr
    shown = json.loads(dkm_sqlite("task", "show", "scratch", "--format", "json").stdout)
    assert shown["usage_warning_threshold"] == 80
    assert shown["usage_critical_threshold"] == 90
    assert shown["old_file_threshold"] == 45
    assert shown["relocation_path"] == "/archive"
    assert shown["email_usage_warnings"] is True
    assert "inside the target" in result.stderr


def test_bad_settings_exit_2_naming_file_and_key(dkm_sqlite):
    dkm_sqlite.config.write_text(dkm_sqlite.config.read_text() + "\n[scan]\nworkers = lots\n")
    result = dkm_sqlite("task", "list")
    assert result.returncode == 2
    assert str(dkm_sqlite.config) in result.stderr and "workers" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1

    missing = dkm_sqlite("--config", "/nonexistent/settings.cfg", "task", "list")
    assert missing.returncode == 2 and "/nonexistent/settings.cfg" in missing.stderr


def test_unknown_format_is_a_usage_error(dkm_sqlite):
    result = dkm_sqlite("view", "users", "--format", "xml")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
