"""Issue 10 items 5, 11-14 and issue 12 item 4: bad settings and bad databases.

Each case runs the real command: one line on stderr naming the file and key,
exit 2, never a traceback and never the database password; a database that
cannot be used (down, corrupted) spools the scan instead of losing it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from dkmonitor.config import settings_from_mapping
from dkmonitor.db.backends import BACKENDS, SUPPORTED_DRIVERS, error_line, is_unavailable
from dkmonitor.dburl import mask_password, parse_url
from dkmonitor.errors import ConfigError

SECRET = "Sup3rS3cretPw"


def one_line_error(done: subprocess.CompletedProcess[str], *needles: str) -> str:
    """stderr is exactly one 'dkmonitor: error:' line holding every needle, no secret."""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("dkmonitor: error: "), lines[0]
    assert "Traceback" not in done.stderr
    assert SECRET not in done.stderr + done.stdout
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def with_url(dkm, url: str) -> None:
    text = dkm.config.read_text()
    start = text.index("url = ")
    end = text.index("\n", start)
    dkm.write_config(text[:start] + f"url = {url}" + text[end:])


# ------------------------------------------------------------------ item 5


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://dkm:{SECRET}@db.example.edu",  # names no database
        f"postgresql://dkm:{SECRET}@db.example.edu/",
        f"postgresql://dkm:{SECRET}@db.example.edu:notaport/dkm",  # does not parse
        f"mysql://dkm:{SECRET}@db.example.edu/dkm",
    ],
)
def test_config_errors_never_show_the_password(dkm_sqlite, url):
    with_url(dkm_sqlite, url)
    done = dkm_sqlite("task", "list")
    assert done.returncode == 2
    one_line_error(done, str(dkm_sqlite.config), "[database] url", "***")


@pytest.mark.parametrize(
    "command",
    [("task", "list"), ("view", "users"), ("database", "status"), ("check",), ("run", "quick")],
)
def test_connection_errors_and_logs_never_show_the_password(dkm_sqlite, command):
    with_url(dkm_sqlite, f"postgresql://dkm:{SECRET}@127.0.0.1:1/dkm")
    done = dkm_sqlite(*command)
    assert done.returncode in (1, 3), done.stderr  # check: 3 UNKNOWN
    assert SECRET not in done.stdout + done.stderr
    assert "dkm:***@127.0.0.1:1/dkm" in done.stdout + done.stderr
    log = dkm_sqlite.state_dir / "log" / "dkmonitor.log"
    assert not log.exists() or SECRET not in log.read_text()


def test_password_is_masked_in_every_rendering_of_the_value():
    url = parse_url(f"postgresql://dkm:{SECRET}@db/dkm")
    assert SECRET not in str(url) and SECRET not in repr(url) and SECRET not in f"{url}"
    assert SECRET not in str(settings_from_mapping({"database": {"url": str(url)}}, None, {}))
    assert url.render(hide_password=False) == f"postgresql://dkm:{SECRET}@db/dkm"
    assert url.scrub(f"FATAL: bad password {SECRET!r}") == "FATAL: bad password '***'"
    assert SECRET not in mask_password(f"postgresql://dkm:{SECRET}@db:x/dkm")


def test_driver_messages_are_scrubbed(pg_url):
    """psycopg2 echoes a bad option value; the password must not come through it."""
    import psycopg2

    url = parse_url(make_url(pg_url).set(password=SECRET).render_as_string(False))
    try:
        psycopg2.connect(f"{url.render(hide_password=False)}?sslmode={SECRET}")
    except psycopg2.Error as exc:
        assert SECRET not in error_line(exc, url)
    else:  # pragma: no cover - libpq always refuses that sslmode
        pytest.fail("libpq accepted a bogus sslmode")


# ------------------------------------------------------------------ items 11-13


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("email", "notify_interval_hours", "inf"),
        ("email", "notify_interval_hours", "1e308"),
        ("email", "smtp_timeout", "inf"),
        ("email", "smtp_timeout", "nan"),
        ("database", "purge_after_days", "99999999999999"),
        ("clean", "max_bytes_per_run", "1" + "0" * 40),
    ],
)
def test_unbounded_numbers_are_refused_with_file_and_key(dkm_sqlite, section, key, value):
    text = dkm_sqlite.config.read_text()
    if f"[{section}]\n" in text:
        text = text.replace(f"[{section}]\n", f"[{section}]\n{key} = {value}\n")
    else:
        text += f"\n[{section}]\n{key} = {value}\n"
    dkm_sqlite.write_config(text)
    done = dkm_sqlite("run", "quick")
    assert done.returncode == 2
    one_line_error(done, str(dkm_sqlite.config), f"[{section}] {key}")


def test_sqlite_url_with_a_host_names_file_and_key(dkm_sqlite):
    with_url(dkm_sqlite, "sqlite://tmp/x.db")
    done = dkm_sqlite("task", "list")
    assert done.returncode == 2
    one_line_error(done, str(dkm_sqlite.config), "[database] url", "sqlite:////")


def test_sqlite_url_in_a_missing_directory_is_refused_not_created(dkm_sqlite, tmp_path):
    missing = tmp_path / "no" / "such" / "dir"
    with_url(dkm_sqlite, f"sqlite:///{missing / 'x.db'}")
    done = dkm_sqlite("task", "list")
    assert done.returncode == 2
    one_line_error(done, str(dkm_sqlite.config), "[database] url", str(missing))
    assert not (tmp_path / "no").exists()


def test_default_state_dir_database_is_still_created(dkm_factory, tmp_path):
    dkm = dkm_factory()
    state = tmp_path / "fresh-state"
    dkm.write_config(f"[general]\nstate_dir = {state}\n")
    done = dkm("task", "list")
    assert done.returncode == 0, done.stderr
    assert (state / "dkmonitor.db").is_file()


def test_state_dir_that_is_a_file(dkm_sqlite, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    dkm_sqlite.write_config(f"[general]\nstate_dir = {afile}\n")
    done = dkm_sqlite("run", "quick")
    assert done.returncode == 2
    one_line_error(done, str(dkm_sqlite.config), "[general] state_dir", "not a directory")


@pytest.fixture
def readonly_dir(tmp_path):
    mount = tmp_path / "ro"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_state_dir_on_a_read_only_file_system(dkm_sqlite, readonly_dir, tmp_path):
    db = tmp_path / "db.sqlite"
    dkm_sqlite.write_config(
        f"[general]\nstate_dir = {readonly_dir}\n[database]\nurl = sqlite:///{db}\n"
    )
    done = dkm_sqlite("run", "quick", env={"DKM_LOG": str(tmp_path / "logs")})
    assert done.returncode == 2
    one_line_error(done, str(dkm_sqlite.config), "[general] state_dir", "ead-only file system")


def test_history_is_a_bounded_number(dkm_sqlite):
    done = dkm_sqlite("view", "system", "h", "--history", "99999999999999999999")
    assert done.returncode == 2
    one_line_error(done, "--history")


# ------------------------------------------------------------------ item 14


def test_corrupted_sqlite_database_spools_the_scan(dkm_sqlite, tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    (target / "f").write_text("data" * 100)
    created = dkm_sqlite(
        "task", "create", "t1", "--target", str(target),
        "--warning", "99.8", "--critical", "99.9", "--old-days", "30",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    first = dkm_sqlite("run", "full")
    assert first.returncode == 0, first.stderr
    db = dkm_sqlite.state_dir / "dkmonitor.db"
    for extra in ("-wal", "-shm"):
        Path(f"{db}{extra}").unlink(missing_ok=True)
    db.write_bytes(os.urandom(db.stat().st_size))
    done = dkm_sqlite("run", "full")
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "file is not a database" in done.stderr
    assert "spooled" in done.stderr
    assert len(list((dkm_sqlite.state_dir / "spool").glob("*.json"))) == 1


# ------------------------------------------------------------------ issue 12 item 4, issue 11


def test_postgres_scheme_is_postgresql(dkm_factory, pg_url):
    assert pg_url.startswith("postgresql://")
    dkm = dkm_factory("postgres://" + pg_url.removeprefix("postgresql://"))
    done = dkm("task", "list")
    assert done.returncode == 0, done.stderr
    assert parse_url("postgres://u@h/d").drivername == "postgresql"
    assert parse_url("postgres+psycopg2://u@h/d").drivername == "postgresql+psycopg2"


def test_backends_table_covers_every_supported_driver():
    for name in SUPPORTED_DRIVERS:
        assert parse_url(f"{name}://u@h/d").backend in BACKENDS
    with pytest.raises(ConfigError, match="unsupported database"):
        settings_from_mapping({"database": {"url": "oracle://u@h/d"}}, None, {})


def test_sqlite_corruption_counts_as_unavailable_but_a_constraint_does_not():
    import sqlite3

    assert is_unavailable(sqlite3.DatabaseError("file is not a database"))
    assert is_unavailable(sqlite3.OperationalError("database is locked"))
    assert not is_unavailable(sqlite3.IntegrityError("UNIQUE constraint failed"))


def test_db_package_does_not_import_config_or_sqlalchemy():
    script = (
        "import sys\n"
        "import dkmonitor.db, dkmonitor.db.backends, dkmonitor.db.readonly\n"
        "assert 'sqlalchemy' not in sys.modules\n"
        "assert 'dkmonitor.config' not in sys.modules\n"
    )
    done = subprocess.run(
        [os.sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
