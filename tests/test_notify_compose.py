"""The pure parts of notify: sizes, who is flagged, templates, addresses, headers."""

from __future__ import annotations

from pathlib import Path

import pytest

from dkmonitor.errors import ConfigError
from dkmonitor.notify.addresses import address_for, is_valid_address, load_address_map
from dkmonitor.notify.compose import top_count, warning_drafts, warning_sections
from dkmonitor.notify.message import HeaderError, build_message, clean_text
from dkmonitor.notify.templates import (
    PLACEHOLDERS,
    TEMPLATE_FILES,
    Values,
    load_templates,
)
from dkmonitor.taskrun import UserUsageRow
from tests.fixtures.notify import GiB, make_run, make_task

DOCS = Path(__file__).resolve().parent.parent / "docs" / "mail.md"


def row(uid: int, bytes_: int, old_files: int = 0, old_bytes: int = 0) -> UserUsageRow:
    return UserUsageRow(uid, f"user{uid}", 10, bytes_, bytes_, old_files, old_bytes, 1.0)


def test_top_count_is_the_ceiling():
    assert [top_count(n, 25) for n in (0, 1, 4, 5, 8, 9)] == [0, 1, 1, 2, 2, 3]
    assert top_count(3, 100) == 3


def test_sections_per_user():
    users = (
        row(1, 900 * GiB),  # top by bytes
        row(2, 100 * GiB, old_files=5, old_bytes=90 * GiB),  # top by old bytes
        row(3, 50 * GiB, old_files=2, old_bytes=GiB),  # general
        row(4, 40 * GiB),  # nothing
        row(5, 0, old_files=3, old_bytes=0),  # empty old files: general
        row(6, 30 * GiB),
        row(7, 20 * GiB),
        row(8, 10 * GiB),
    )
    # 8 users, 25%: the top two by bytes (1, 2) and by old bytes (2, 3)
    sections = warning_sections(make_run(make_task(email_top_percent=25), users))
    assert sections == {
        1: ("top_space",),
        2: ("top_space", "top_old_files", "move_warning"),
        3: ("top_old_files", "move_warning"),
        5: ("general_warning", "move_warning"),
    }
    # 12.5%: only the first of each
    sections = warning_sections(make_run(make_task(email_top_percent=12.5), users))
    assert sections == {
        1: ("top_space",),
        2: ("top_old_files", "move_warning"),
        3: ("general_warning", "move_warning"),
        5: ("general_warning", "move_warning"),
    }


def test_no_top_by_old_bytes_without_old_bytes():
    users = (row(1, GiB), row(2, GiB))
    sections = warning_sections(make_run(make_task(email_top_percent=100), users))
    assert sections == {1: ("top_space",), 2: ("top_space",)}


def test_no_alteration_warning_for_tasks_that_do_not_clean():
    task = make_task(relocation_path=None)
    users = (row(1, GiB, old_files=1, old_bytes=GiB),)
    assert warning_sections(make_run(task, users)) == {1: ("top_space", "top_old_files")}


def test_empty_override_section_is_left_out(tmp_path):
    (tmp_path / "general_warning.txt").write_text("")
    templates = load_templates(str(tmp_path))
    users = tuple(row(uid, (10 - uid) * GiB) for uid in range(1, 9)) + (
        row(9, GiB, old_files=1, old_bytes=0),
    )
    drafts = {d.uid: d for d in warning_drafts(make_run(make_task(), users), templates)}
    body = drafts[9].body
    assert "\n\n\n" not in body and "MOVED" in body


# ------------------------------------------------------------------ templates


def test_shipped_templates_are_all_there_and_valid():
    templates = load_templates()
    assert set(templates.texts) == set(TEMPLATE_FILES)
    assert all(text.strip() for text in templates.texts.values())


def test_values_refuse_unknown_names():
    with pytest.raises(KeyError, match="unknown placeholder"):
        "{nope}".format_map(Values({"username": "x"}))


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("Dear {usernmae}", "unknown placeholder {usernmae}"),
        ("Dear {}", "positional placeholder"),
        ("Dear {0}", "positional placeholder"),
        ("Dear {username", "malformed template"),
        ("Dear {username.__class__}", "unknown placeholder {username.__class__}"),
        ("{username:{hostname}}", "nested placeholder"),
        ("{disk_use_percent:.1f}", "cannot be filled in"),
    ],
)
def test_bad_override_is_refused_with_file_and_reason(tmp_path, text, complaint):
    (tmp_path / "header.txt").write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_templates(str(tmp_path))
    assert str(tmp_path / "header.txt") in str(caught.value)
    assert complaint in str(caught.value)


def test_literal_braces_are_allowed(tmp_path):
    (tmp_path / "header.txt").write_text("Dear {username}, see {{this}}.\n")
    templates = load_templates(str(tmp_path))
    assert templates.render("header", {"username": "ann"}) == "Dear ann, see {this}."


def test_misnamed_override_is_refused(tmp_path):
    (tmp_path / "heder.txt").write_text("Dear {username}\n")
    with pytest.raises(ConfigError, match="heder.txt: not a dkmonitor template name"):
        load_templates(str(tmp_path))


def test_template_dir_must_exist(tmp_path):
    with pytest.raises(ConfigError, match="template_dir"):
        load_templates(str(tmp_path / "missing"))


def test_override_must_be_utf8(tmp_path):
    (tmp_path / "header.txt").write_bytes(b"Dear \xff{username}\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_templates(str(tmp_path))


def test_docs_list_every_template_and_placeholder():
    text = DOCS.read_text(encoding="utf-8")
    for name in TEMPLATE_FILES.values():
        assert name in text, name
    for name in PLACEHOLDERS:
        assert f"{{{name}}}" in text, name


# ------------------------------------------------------------------ addresses


@pytest.mark.parametrize(
    "address", ["ann@example.edu", "a.b+c@x-y.example.org", "ann", "o'neil@example.edu"]
)
def test_valid_addresses(address):
    assert is_valid_address(address)


@pytest.mark.parametrize(
    "address",
    [
        "",
        "ann@example.edu\r\nBcc: x@y.z",
        "ann\n@example.edu",
        "ann smith@example.edu",
        "<ann@example.edu>",
        "ann@example.edu, bob@example.edu",
        "ann@@example.edu",
        "ann@-bad.edu",
        ".ann@example.edu",
        "ann@example.edu\x00",
    ],
)
def test_unsafe_addresses(address):
    assert not is_valid_address(address)


def test_address_map(tmp_path):
    path = tmp_path / "map"
    path.write_text("# who\nann ann.smith@lab.org  # PI\n\nbob -\n")
    mapping = load_address_map(str(path))
    assert address_for("ann", "example.edu", mapping) == "ann.smith@lab.org"
    assert address_for("bob", "example.edu", mapping) is None
    assert address_for("cy", "example.edu", mapping) == "cy@example.edu"
    assert address_for("cy", "", mapping) == "cy"


def test_address_map_errors_name_file_and_line(tmp_path):
    path = tmp_path / "map"
    path.write_text("ann ann@x.org\nbob bob@x.org extra\n")
    with pytest.raises(ConfigError, match=f"{path}:2: expected 'username address'"):
        load_address_map(str(path))
    path.write_text("ann not\nan-address\n")
    with pytest.raises(ConfigError, match=f"{path}:2"):
        load_address_map(str(path))
    path.write_text("ann ann@x.org\nbob bob@@x.org\n")
    with pytest.raises(ConfigError, match="not a valid mail address"):
        load_address_map(str(path))
    with pytest.raises(ConfigError, match="address_map"):
        load_address_map(str(tmp_path / "missing"))


# ------------------------------------------------------------------ messages


def test_clean_text_removes_controls_and_undecodable_bytes():
    assert clean_text("a\r\nb\tc\x1b[31m") == "a??b?c?[31m"
    assert clean_text("caf\udce9") == "caf\ufffd"
    assert clean_text("naïve ✓") == "naïve ✓"


def test_message_headers():
    message = build_message(
        sender="dkm@example.edu", recipients=["ann@example.edu"],
        subject="warning\r\nBcc: x@y.z", body="héllo",
    )
    assert message["Subject"] == "warning??Bcc: x@y.z"
    assert message["Bcc"] is None
    assert message["Message-ID"].endswith("@example.edu>")
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Date"]
    assert message.get_content() == "héllo\n"
    assert b"\nBcc:" not in message.as_bytes()


@pytest.mark.parametrize(
    ("sender", "recipients"),
    [
        ("dkm@example.edu", ["ann@example.edu\r\nBcc: x@y.z"]),
        ("dkm@example.edu\nBcc: x@y.z", ["ann@example.edu"]),
        ("dkm@example.edu", []),
    ],
)
def test_message_refuses_unsafe_addresses(sender, recipients):
    with pytest.raises(HeaderError):
        build_message(sender=sender, recipients=recipients, subject="s", body="b")
