"""Parsers for the values of settings.cfg: raw text in, typed value out.

Each parser raises ValueError with a short explanation of what is expected;
``dkmonitor.config`` adds the file, section and key. Every number has an
upper bound and must be finite: a value such as ``notify_interval_hours =
1e308`` or ``inf`` would otherwise be accepted here and crash every run later
with an OverflowError (a timedelta, a socket timeout).
"""

from __future__ import annotations

import math
import os
import pwd
from collections.abc import Callable

from dkmonitor.db.backends import SUPPORTED_DRIVERS, backend_for
from dkmonitor.dburl import DatabaseURL, parse_url

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def expand_user(path: str) -> str:
    """``~`` expanded; as root from the passwd database, never from $HOME.

    ``sudo -E`` keeps a user's HOME: root must not let it decide where its
    files go.
    """
    if os.geteuid() == 0 and (path == "~" or path.startswith("~/")):
        return pwd.getpwuid(0).pw_dir + path[1:]
    return os.path.expanduser(path)


def parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "yes", "true", "on"):
        return True
    if value in ("0", "no", "false", "off"):
        return False
    raise ValueError("expected yes or no")


def int_between(low: int, high: int) -> Callable[[str], int]:
    """Whole numbers from ``low`` to ``high``."""

    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"expected a whole number from {low} to {high}") from None
        if not low <= value <= high:
            raise ValueError(f"expected a whole number from {low} to {high}")
        return value

    return parse


def float_up_to(high: float) -> Callable[[str], float]:
    """Finite numbers above 0 and at most ``high`` (decimals allowed)."""

    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError("expected a number") from None
        if not math.isfinite(value) or not 0 < value <= high:
            raise ValueError(f"expected a number > 0 and at most {high:g}")
        return value

    return parse


def percent(raw: str) -> float:
    try:
        return float_up_to(100)(raw)
    except ValueError:
        raise ValueError("expected a percentage > 0 and at most 100") from None


def port(raw: str) -> int:
    try:
        return int_between(1, 65535)(raw)
    except ValueError:
        raise ValueError("expected a port number 1-65535") from None


def text(raw: str) -> str:
    return raw.strip()


def optional_path(raw: str) -> str | None:
    value = raw.strip()
    return expand_user(value) if value else None


def optional_file(raw: str) -> str | None:
    """A path that must name a readable file now (a CA bundle): say so at load time,
    not at 3 a.m. when the first mail of a run fails."""
    path = optional_path(raw)
    if path is not None and not os.access(path, os.R_OK):
        raise ValueError(f"{path}: not a readable file")
    if path is not None and not os.path.isfile(path):
        raise ValueError(f"{path}: not a file")
    return path


def address_list(raw: str) -> tuple[str, ...]:
    items = [item.strip() for item in raw.replace("\n", ",").split(",")]
    return tuple(item for item in items if item)


def lines(raw: str) -> tuple[str, ...]:
    return tuple(line.strip() for line in raw.splitlines() if line.strip())


def workers(raw: str) -> int:
    value = raw.strip().lower()
    if value in ("", "auto"):
        return os.cpu_count() or 1
    try:
        return int_between(1, 256)(value)
    except ValueError:
        raise ValueError("expected auto or a whole number of workers 1-256") from None


def level(raw: str) -> str:
    value = raw.strip().upper()
    if value not in LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}")
    return value


def database_url(raw: str) -> DatabaseURL | None:
    """A parsed database URL; None for the embedded default (set once state_dir is known)."""
    value = raw.strip()
    if not value:
        return None
    try:
        url = parse_url(value)
    except ValueError:
        raise ValueError(
            "not a database URL; use sqlite:////path/to/file.db or "
            "postgresql://user:password@host/dbname"
        ) from None
    if url.drivername not in SUPPORTED_DRIVERS:
        raise ValueError(f"unsupported database {url.drivername!r}; use sqlite or postgresql")
    backend = backend_for(url)
    if not backend.url_has_host and (url.host or url.username or url.port):
        raise ValueError(
            f"a {backend.name} URL names a file, not a host ({url.host or url.username!r} "
            f"here); use {backend.name}:////absolute/path/file.db (four slashes)"
        )
    if backend.name == "postgresql" and not url.database:
        raise ValueError("the postgresql URL names no database (…/dbname)")
    return url
