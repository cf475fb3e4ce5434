"""settings.cfg: search order, defaults, and one clear error per bad value."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dkmonitor.config import find_config_file, load_settings, settings_from_mapping
from dkmonitor.errors import ConfigError


def test_no_file_gives_embedded_sqlite_and_no_mail(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("DKM_CONF", raising=False)
    settings = settings_from_mapping({}, None, environ={})
    assert str(settings.database.url).startswith("sqlite:///")
    assert settings.database.url.sqlite_file() == str(settings.state_dir / "dkmonitor.db")
    expected_state = Path("/var/lib/dkmonitor") if os.geteuid() == 0 else tmp_path / ".dkmonitor"
    assert settings.state_dir == expected_state
    assert settings.email.enabled is False
    assert settings.scan.workers >= 1


def test_search_order_explicit_then_env_file_then_env_dir(tmp_path):
    explicit = tmp_path / "explicit.cfg"
    explicit.write_text("")
    env_dir = tmp_path / "conf"
    env_dir.mkdir()
    (env_dir / "settings.cfg").write_text("")
    assert find_config_file(str(explicit), {"DKM_CONF": str(env_dir)}) == explicit
    assert find_config_file(None, {"DKM_CONF": str(env_dir)}) == env_dir / "settings.cfg"
    assert find_config_file(None, {"DKM_CONF": str(explicit)}) == explicit


def test_missing_explicit_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="no such settings file"):
        find_config_file(str(tmp_path / "nope.cfg"), {})


def test_dkm_log_overrides_log_dir(tmp_path):
    settings = settings_from_mapping(
        {"logging": {"log_dir": "/somewhere"}}, None, environ={"DKM_LOG": str(tmp_path)}
    )
    assert settings.logging.log_dir == str(tmp_path)


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("database", "url", "mysql://x/y", "unsupported database"),
        ("database", "url", "not a url", "not a database URL"),
        ("database", "purge_after_days", "soon", "whole number"),
        ("email", "smtp_port", "99999", "port"),
        ("email", "enabled", "perhaps", "yes or no"),
        ("email", "notify_interval_hours", "-1", "> 0"),
        ("email", "notify_interval_hours", "inf", "at most"),
        ("email", "notify_interval_hours", "1e308", "at most"),
        ("email", "notify_interval_hours", "nan", "> 0"),
        ("email", "smtp_timeout", "inf", "at most"),
        ("email", "smtp_timeout", "-inf", "> 0"),
        ("database", "purge_after_days", "99999999999999", "from 0 to"),
        ("database", "url", "sqlite://tmp/x.db", "four slashes"),
        ("database", "url", "sqlite://user@/x.db", "four slashes"),
        ("clean", "max_files_per_run", "1" + "0" * 30, "from 0 to"),
        ("clean", "max_bytes_per_run", "-1", "from 0 to"),
        ("clean", "max_failure_percent", "nan", "percentage"),
        ("clean", "min_actions_before_breaker", "1e3", "whole number"),
        ("logging", "max_bytes", "9" * 5000, "whole number"),
        ("logging", "backup_count", "100000", "from 0 to"),
        ("scan", "workers", "many", "whole number"),
        ("logging", "level", "LOUD", "one of"),
    ],
)
def test_bad_values_name_file_section_and_key(tmp_path, section, key, value, expected):
    path = tmp_path / "settings.cfg"
    path.write_text(f"[{section}]\n{key} = {value}\n")
    with pytest.raises(ConfigError) as info:
        load_settings(str(path), environ={})
    message = str(info.value)
    assert str(path) in message
    assert f"[{section}] {key}" in message
    assert expected in message


def test_unknown_key_and_section(tmp_path):
    path = tmp_path / "settings.cfg"
    path.write_text("[email]\nsmtp_hots = x\n")
    with pytest.raises(ConfigError, match=r"unknown key 'smtp_hots' in \[email\]"):
        load_settings(str(path), environ={})
    path.write_text("[mail]\nx = 1\n")
    with pytest.raises(ConfigError, match=r"unknown section \[mail\]"):
        load_settings(str(path), environ={})


def test_unparseable_file(tmp_path):
    path = tmp_path / "settings.cfg"
    path.write_text("url = before any section\n")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_settings(str(path), environ={})


def test_password_in_world_readable_file_warns_without_showing_it(tmp_path):
    path = tmp_path / "settings.cfg"
    path.write_text("[database]\nurl = postgresql://dkm:s3cr%40t@db.example.edu/dkm\n")
    path.chmod(0o644)
    settings = load_settings(str(path), environ={})
    assert len(settings.warnings) == 1
    assert "chmod 600" in settings.warnings[0]
    assert "s3cr" not in settings.warnings[0]
    assert "s3cr" not in settings.database.safe_url
    path.chmod(0o600)
    assert load_settings(str(path), environ={}).warnings == ()


def test_sample_file_is_valid_and_complete(tmp_path):
    sample = Path(__file__).resolve().parent.parent / "settings.cfg.sample"
    # a copy as an administrator installs it (root's, 0600): the checkout's own modes
    # depend on the umask it was unpacked with, and root refuses a group-writable file
    installed = tmp_path / "settings.cfg"
    installed.write_text(sample.read_text())
    installed.chmod(0o600)
    settings = load_settings(str(installed), environ={})
    assert settings.email.notify_interval_hours == 24
    from dkmonitor.config import SCHEMA

    text = sample.read_text()
    for section, keys in SCHEMA.items():
        assert f"[{section}]" in text
        for key in keys:
            assert f"\n{key} =" in text, f"{key} is not documented in settings.cfg.sample"
