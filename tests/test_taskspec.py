"""Task rules (DESIGN.md "Tasks"): each violation names the field."""

from __future__ import annotations

import os

import pytest

from dkmonitor.errors import TaskError
from dkmonitor.taskspec import TaskSpec, relocation_conflict, validate


def spec(**changes):
    base = dict(
        name="scratch",
        hostname="h",
        target_path="/scratch",
        usage_warning_threshold=80,
        usage_critical_threshold=90,
        old_file_threshold=30,
    )
    base.update(changes)
    return TaskSpec(**base)


def test_valid_spec_is_normalised():
    result = validate(spec(target_path="/scratch/../scratch/", relocation_path="/archive/"))
    assert result.target_path == "/scratch"
    assert result.relocation_path == "/archive"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"usage_warning_threshold": 0}, "--warning"),
        ({"usage_warning_threshold": 90}, "--warning"),
        ({"usage_critical_threshold": 100.5}, "--critical"),
        ({"old_file_threshold": 0}, "--old-days"),
        ({"relocation_path": "/archive", "delete_old_files": True}, "--move-to and --delete"),
        ({"relocation_path": "/scratch/old"}, "--move-to"),
        ({"relocation_path": "/scratch"}, "--move-to"),
        ({"relocation_path": "relative"}, "--move-to"),
        ({"target_path": "relative"}, "--target"),
        ({"email_top_percent": 0}, "--top-percent"),
        ({"age_basis": "birth"}, "--age-basis"),
        ({"delete_when_full": True}, "--delete-when-full"),
        ({"name": "has space"}, "task name"),
        ({"purge_target_percent": 95}, "--purge-target"),
    ],
)
def test_violations_name_the_field(changes, field):
    with pytest.raises(TaskError, match=field):
        validate(spec(**changes))


def test_decimal_thresholds_are_fine():
    assert validate(spec(usage_warning_threshold=79.5, usage_critical_threshold=79.75))


def test_relocation_symlink_into_target_is_refused(tmp_path):
    target = tmp_path / "target"
    (target / "sub").mkdir(parents=True)
    link = tmp_path / "archive"
    os.symlink(target / "sub", link)
    assert relocation_conflict(str(target), str(link)) is not None
    assert relocation_conflict(str(target), str(tmp_path / "elsewhere")) is None
    # '..' is resolved before comparing too
    assert relocation_conflict(str(target), str(tmp_path / "x" / ".." / "target" / "y"))
    with pytest.raises(TaskError, match="inside the target"):
        validate(spec(target_path=str(target), relocation_path=str(link)))
