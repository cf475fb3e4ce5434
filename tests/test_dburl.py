"""dkmonitor.dburl reads and masks URLs exactly as SQLAlchemy does, without importing it."""

from __future__ import annotations

import subprocess
import sys

import pytest
from sqlalchemy.engine import make_url

from dkmonitor.config import mask_password
from dkmonitor.dburl import parse_url

URLS = [
    "sqlite:////var/lib/dkmonitor/dkmonitor.db",
    "sqlite:///relative/dkmonitor.db",
    "sqlite:///:memory:",
    "sqlite://",
    "sqlite+pysqlite:////tmp/a b/c.db",
    "postgresql://dkm:s3cr%40t@db.example.edu/dkm",
    "postgresql://dkm:p%2Fw%3Ad@db.example.edu:6543/dkm",
    "postgresql+psycopg2://dkm@db.example.edu/dkm?sslmode=require&application_name=dkm",
    "postgresql://dkm:@[::1]:5432/dkm",
    "postgresql://%40odd%20user:pw@h/my%20db",
    "postgresql:///dkm?host=/var/run/postgresql&b=2&a=1&b=1",
    "postgresql://u:pw@h/dkm?sslmode=",
]


@pytest.mark.parametrize("url", URLS)
def test_parts_and_rendering_match_sqlalchemy(url):
    ours, theirs = parse_url(url), make_url(url)
    assert ours.drivername == theirs.drivername
    assert ours.backend == theirs.get_backend_name()
    assert (ours.username, ours.password) == (theirs.username, theirs.password)
    assert (ours.host, ours.port, ours.database) == (theirs.host, theirs.port, theirs.database)
    grouped: dict[str, list[str]] = {}
    for key, value in ours.query:
        grouped.setdefault(key, []).append(value)
    assert grouped == {k: list(v) if isinstance(v, tuple) else [v] for k, v in theirs.query.items()}
    for hide in (True, False):
        assert ours.render(hide_password=hide) == theirs.render_as_string(hide_password=hide)
    assert mask_password(url) == theirs.render_as_string(hide_password=True)


@pytest.mark.parametrize("text", ["not a url", "", "://nohost", "postgresql://h:port/db"])
def test_what_is_no_url_is_a_value_error(text):
    with pytest.raises(ValueError):
        parse_url(text)
    assert mask_password(text) == text


def test_loading_settings_does_not_import_sqlalchemy(tmp_path):
    """Every command loads the settings; `view` must not pay for SQLAlchemy there."""
    config = tmp_path / "settings.cfg"
    config.write_text("[database]\nurl = postgresql://dkm:pw@db.example.edu/dkm\n")
    config.chmod(0o600)
    script = (
        "import sys\n"
        "from dkmonitor.config import load_settings\n"
        f"settings = load_settings({str(config)!r}, environ={{}})\n"
        "assert settings.database.safe_url == 'postgresql://dkm:***@db.example.edu/dkm'\n"
        "assert 'sqlalchemy' not in sys.modules, 'sqlalchemy imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
