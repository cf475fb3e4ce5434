"""Database URLs read and written without SQLAlchemy.

Every command validates ``[database] url`` while loading the settings, and
``dkmonitor view`` connects from it directly; importing SQLAlchemy just to
split a URL costs about a quarter of a second per process. This module
parses the same syntax as SQLAlchemy's ``make_url`` (same pattern, same
unquoting) and renders it back the same way, so masked URLs in messages and
logs read exactly as before; ``tests/test_dburl.py`` compares the two.

A ``DatabaseURL`` is parsed once, when the settings are loaded, and handed
around as a value. Its ``str()`` and ``repr()`` mask the password, so a URL
that ends up in a message or a log line by accident never shows the secret;
only ``render(hide_password=False)`` (for the driver) spells it out.
``postgres://`` (which libpq accepts) is read as ``postgresql://``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, quote_plus, unquote

from dkmonitor.records import FrozenRecord

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

# Spellings libpq and other tools accept for the same backend.
_ALIASES = {"postgres": "postgresql"}

# The password of something shaped like a URL with credentials, for text that
# does not parse (``scheme://user:secret@...``): masked all the same.
_CREDENTIALS = re.compile(r"(?P<head>[\w+.-]+://[^:/@\s]*:)(?P<secret>\S*)@")


@dataclass(frozen=True, repr=False, eq=False)  # repr, ==, hash: dkmonitor.records
class DatabaseURL(FrozenRecord):
    """The parts of a database URL; ``query`` keeps repeated keys, in order."""

    drivername: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
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

    def __str__(self) -> str:
        return self.render(hide_password=True)

    def __repr__(self) -> str:
        return f"DatabaseURL({self.render(hide_password=True)!r})"

    def scrub(self, text: str) -> str:
        """``text`` (a driver's message, say) with this URL's password masked anywhere in it."""
        if not self.password:
            return text
        for secret in {self.password, quote(self.password, safe=" +"), quote_plus(self.password)}:
            text = text.replace(secret, "***")
        return text

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
    name = parts["name"]
    backend, plus, driver = name.partition("+")
    return DatabaseURL(
        drivername=_ALIASES.get(backend, backend) + plus + driver,
        username=_unquoted(parts["username"]),
        password=_unquoted(parts["password"]),
        host=parts["ipv4host"] or parts["ipv6host"],
        port=port,
        database=_unquoted(parts["database"]),
        query=query,
    )


def _unquoted(value: str | None) -> str | None:
    return None if value is None else unquote(value)


def as_url(value: str | DatabaseURL) -> DatabaseURL:
    """A DatabaseURL from either a URL's text or an already parsed value."""
    return value if isinstance(value, DatabaseURL) else parse_url(value)


def mask_password(url: str | DatabaseURL) -> str:
    """``url`` with any password shown as ``***``, even when it does not parse."""
    if isinstance(url, DatabaseURL):
        return str(url)
    try:
        return str(parse_url(url))
    except ValueError:
        return _CREDENTIALS.sub(r"\g<head>***@", url)
