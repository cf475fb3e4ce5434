"""Database URLs read and written without SQLAlchemy.

Every command validates ``[database] url`` while loading the settings, and
``dkmonitor view`` connects from it directly; importing SQLAlchemy just to
split a URL costs about a quarter of a second per process. This module
parses the same syntax as SQLAlchemy's ``make_url`` (same pattern, same
unquoting) and renders it back the same way, so masked URLs in messages and
logs read exactly as before; ``tests/test_dburl.py`` compares the two.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, quote_plus, unquote

# SQLAlchemy's URL pattern (sqlalchemy.engine.url._parse_url), unchanged.
_PATTERN = re.compile(
    r"""
        (?P<name>[\w\+]+)://
        (?:
            (?P<username>[^:/]*)
            (?::(?P<password>[^@]*))?
        @)?
        (?:
            (?:
                \[(?P<ipv6host>[^/\?]+)\] |
                (?P<ipv4host>[^/:\?]+)
            )?
            (?::(?P<port>[^/\?]*))?
        )?
        (?:/(?P<database>[^\?]*))?
        (?:\?(?P<query>.*))?
    """,
    re.X,
)


@dataclass(frozen=True)
class DatabaseURL:
    """The parts of a database URL; ``query`` keeps repeated keys, in order."""

    drivername: str
    username: str | None = None
    password: str | None = None
    host: str | None = None
    port: int | None = None
    database: str | None = None
    query: tuple[tuple[str, str], ...] = ()

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``, whatever driver follows the ``+``."""
        return self.drivername.split("+", 1)[0]

    def sqlite_file(self) -> str | None:
        """The absolute path of a file-backed SQLite database, else None."""
        if self.backend != "sqlite" or not self.database or self.database == ":memory:":
            return None
        return os.path.abspath(self.database)

    def render(self, hide_password: bool = True) -> str:
        """The URL as SQLAlchemy's ``render_as_string`` writes it (password as ``***``)."""
        text = self.drivername + "://"
        if self.username is not None:
            text += quote(self.username, safe=" +")
            if self.password is not None:
                text += ":" + ("***" if hide_password else quote(self.password, safe=" +"))
            text += "@"
        if self.host is not None:
            text += f"[{self.host}]" if ":" in self.host else self.host
        if self.port is not None:
            text += f":{self.port}"
        if self.database is not None:
            text += "/" + quote(self.database, safe=" +/")
        if self.query:
            pairs = sorted(self.query, key=lambda pair: pair[0])  # stable: values keep their order
            text += "?" + "&".join(f"{quote_plus(k)}={quote_plus(v)}" for k, v in pairs)
        return text


def parse_url(text: str) -> DatabaseURL:
    """Split ``text`` as SQLAlchemy would; ValueError when it is not a URL at all."""
    match = _PATTERN.match(text)
    if match is None:
        raise ValueError(f"not a database URL: {text!r}")
    parts = match.groupdict()
    port: int | None = None
    if parts["port"] is not None:
        if not parts["port"].isdigit():
            raise ValueError(f"not a port number: {parts['port']!r}")
        port = int(parts["port"])
    query = tuple(parse_qsl(parts["query"])) if parts["query"] is not None else ()
    return DatabaseURL(
        drivername=parts["name"],
        username=_unquoted(parts["username"]),
        password=_unquoted(parts["password"]),
        host=parts["ipv4host"] or parts["ipv6host"],
        port=port,
        database=_unquoted(parts["database"]),
        query=query,
    )


def _unquoted(value: str | None) -> str | None:
    return None if value is None else unquote(value)
