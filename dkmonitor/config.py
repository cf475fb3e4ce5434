"""settings.cfg: where it is looked for, what it may hold, typed result.

Every key dkmonitor knows is declared once in ``SCHEMA`` with its parser and
default; anything else in the file is an error naming the file and key, so a
typo (``smtp_hots``) fails loudly instead of being silently ignored.
With no file at all, the defaults give an embedded SQLite database in the
state directory and no mail.
"""

from __future__ import annotations

import configparser
import os
import socket
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dkmonitor.dburl import parse_url
from dkmonitor.errors import ConfigError

SYSTEM_CONFIG = Path("/etc/dkmonitor/settings.cfg")
SUPPORTED_DRIVERS = ("sqlite", "sqlite+pysqlite", "postgresql", "postgresql+psycopg2")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def default_state_dir() -> Path:
    """/var/lib/dkmonitor for root, ~/.dkmonitor for everybody else."""
    if os.geteuid() == 0:
        return Path("/var/lib/dkmonitor")
    return Path.home() / ".dkmonitor"


# ---------------------------------------------------------------- value parsers
# Each takes the raw string and returns the typed value or raises ValueError
# with a short explanation of what is expected.


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "yes", "true", "on"):
        return True
    if value in ("0", "no", "false", "off"):
        return False
    raise ValueError("expected yes or no")


def _int_at_least(low: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError("expected a whole number") from None
        if value < low:
            raise ValueError(f"expected a whole number >= {low}")
        return value

    return parse


def _positive_float(raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ValueError("expected a number") from None
    if not value > 0:
        raise ValueError("expected a number > 0")
    return value


def _seconds_up_to(limit: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        value = _positive_float(raw)
        if not value <= limit:
            raise ValueError(f"expected a number of seconds > 0 and <= {limit:g}")
        return value

    return parse


def _percent(raw: str) -> float:
    value = _positive_float(raw)
    if value > 100:
        raise ValueError("expected a percentage between 0 and 100")
    return value


def _port(raw: str) -> int:
    value = _int_at_least(1)(raw)
    if value > 65535:
        raise ValueError("expected a port number 1-65535")
    return value


def _text(raw: str) -> str:
    return raw.strip()


def _optional_path(raw: str) -> str | None:
    value = raw.strip()
    return os.path.expanduser(value) if value else None


def _optional_file(raw: str) -> str | None:
    """A path that must name a readable file now (a CA bundle): say so at load time,
    not at 3 a.m. when the first mail of a run fails."""
    path = _optional_path(raw)
    if path is not None and not os.access(path, os.R_OK):
        raise ValueError(f"{path}: not a readable file")
    if path is not None and not os.path.isfile(path):
        raise ValueError(f"{path}: not a file")
    return path


def _address_list(raw: str) -> tuple[str, ...]:
    items = [item.strip() for item in raw.replace("\n", ",").split(",")]
    return tuple(item for item in items if item)


def _lines(raw: str) -> tuple[str, ...]:
    return tuple(line.strip() for line in raw.splitlines() if line.strip())


def _workers(raw: str) -> int:
    value = raw.strip().lower()
    if value in ("", "auto"):
        return os.cpu_count() or 1
    parsed = _int_at_least(1)(value)
    if parsed > 256:
        raise ValueError("expected auto or a number of workers 1-256")
    return parsed


def _level(raw: str) -> str:
    value = raw.strip().upper()
    if value not in LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}")
    return value


def _database_url(raw: str) -> str:
    value = raw.strip()
    if not value:
        return ""  # the embedded SQLite default, filled in once the state dir is known
    try:
        url = parse_url(value)
    except ValueError:
        raise ValueError(
            "not a database URL; use sqlite:////path/to/file.db or "
            "postgresql://user:password@host/dbname"
        ) from None
    if url.drivername not in SUPPORTED_DRIVERS:
        raise ValueError(f"unsupported database {url.drivername!r}; use sqlite or postgresql")
    if url.drivername.startswith("postgresql") and not url.database:
        raise ValueError("the postgresql URL names no database (…/dbname)")
    return value


# section -> key -> (parser, default raw value). Defaults go through the parser
# too, so they are checked the same way as the file's values.
SCHEMA: dict[str, dict[str, tuple[Callable[[str], Any], str]]] = {
    "general": {
        "state_dir": (_optional_path, ""),
        "hostname": (_text, ""),
    },
    "database": {
        "url": (_database_url, ""),
        "purge_after_days": (_int_at_least(0), "0"),
    },
    "email": {
        "enabled": (_bool, "no"),
        "smtp_host": (_text, "localhost"),
        "smtp_port": (_port, "25"),
        "smtp_starttls": (_bool, "no"),
        "smtp_ssl": (_bool, "no"),
        "smtp_ca_file": (_optional_file, ""),
        "smtp_timeout": (_positive_float, "30"),
        "smtp_deadline": (_seconds_up_to(3600), "120"),
        "smtp_username": (_text, ""),
        "smtp_password": (_text, ""),
        "from_address": (_text, "dkmonitor@localhost"),
        "user_postfix": (_text, ""),
        "admin_addresses": (_address_list, ""),
        "outbox_dir": (_optional_path, ""),
        "notify_interval_hours": (_positive_float, "24"),
        "template_dir": (_optional_path, ""),
        "address_map": (_optional_path, ""),
    },
    "scan": {
        "workers": (_workers, "auto"),
        "one_file_system": (_bool, "yes"),
        "exclude": (_lines, ""),
    },
    "clean": {
        "max_files_per_run": (_int_at_least(0), "0"),
        "max_bytes_per_run": (_int_at_least(0), "0"),
        "max_failure_percent": (_percent, "10"),
        "min_actions_before_breaker": (_int_at_least(1), "20"),
    },
    "metrics": {"textfile": (_optional_path, "")},
    "logging": {
        "log_dir": (_optional_path, ""),
        "level": (_level, "INFO"),
        "max_bytes": (_int_at_least(1024), "10485760"),
        "backup_count": (_int_at_least(0), "5"),
    },
}


@dataclass(frozen=True)
class DatabaseSettings:
    url: str
    purge_after_days: int

    @property
    def safe_url(self) -> str:
        """The URL with any password masked, for display and logs."""
        return mask_password(self.url)


@dataclass(frozen=True)
class EmailSettings:
    enabled: bool
    smtp_host: str
    smtp_port: int
    smtp_starttls: bool
    smtp_ssl: bool
    smtp_ca_file: str | None
    smtp_timeout: float
    smtp_deadline: float  # overall seconds per message, so a slow server cannot hang a run
    smtp_username: str
    smtp_password: str
    from_address: str
    user_postfix: str
    admin_addresses: tuple[str, ...]
    outbox_dir: str | None
    notify_interval_hours: float
    template_dir: str | None
    address_map: str | None


@dataclass(frozen=True)
class ScanSettings:
    workers: int
    one_file_system: bool
    exclude: tuple[str, ...]


@dataclass(frozen=True)
class CleanSettings:
    """Bounds on one run's cleaning (0 = no bound) and the error breaker."""

    max_files_per_run: int
    max_bytes_per_run: int
    max_failure_percent: float
    min_actions_before_breaker: int


@dataclass(frozen=True)
class LoggingSettings:
    log_dir: str
    level: str
    max_bytes: int
    backup_count: int


@dataclass(frozen=True)
class MetricsSettings:
    textfile: str | None = None  # node_exporter textfile written after each run


@dataclass(frozen=True)
class Settings:
    source: Path | None  # the file read, None when running on defaults
    state_dir: Path
    hostname: str
    database: DatabaseSettings
    email: EmailSettings
    scan: ScanSettings
    clean: CleanSettings
    logging: LoggingSettings
    warnings: tuple[str, ...] = field(default=())  # for the CLI to show once
    metrics: MetricsSettings = field(default=MetricsSettings())


def mask_password(url: str) -> str:
    """``url`` with its password shown as ``***``; unchanged when it does not parse."""
    try:
        return parse_url(url).render(hide_password=True)
    except ValueError:
        return url


def find_config_file(explicit: str | None, environ: Mapping[str, str]) -> Path | None:
    """The search order of DESIGN.md; an explicitly named file must exist."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"{path}: no such settings file (given with --config)")
        return path
    env = environ.get("DKM_CONF")
    if env:
        path = Path(env).expanduser()
        if path.is_dir():
            path = path / "settings.cfg"
        if not path.is_file():
            raise ConfigError(f"{path}: no such settings file (named by $DKM_CONF)")
        return path
    for candidate in (SYSTEM_CONFIG, Path.home() / ".dkmonitor" / "settings.cfg"):
        if candidate.is_file():
            return candidate
    return None


def load_settings(
    explicit: str | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Find, read and validate the settings; raise ConfigError naming file and key."""
    environ = os.environ if environ is None else environ
    path = find_config_file(explicit, environ)
    raw: dict[str, dict[str, str]] = {}
    if path is not None:
        raw = _read_ini(path)
    return settings_from_mapping(raw, path, environ)


def _read_ini(path: Path) -> dict[str, dict[str, str]]:
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=("#", ";"))
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except (configparser.Error, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0]
        raise ConfigError(f"{path}: cannot parse settings file: {first}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read settings file: {exc.strerror}") from None
    return {section: dict(parser.items(section, raw=True)) for section in parser.sections()}


def settings_from_mapping(
    raw: Mapping[str, Mapping[str, str]],
    source: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Validate a {section: {key: value}} mapping into Settings (pure, testable)."""
    environ = os.environ if environ is None else environ
    where = str(source) if source else "settings"
    values: dict[str, dict[str, Any]] = {}
    for section, keys in raw.items():
        if section not in SCHEMA:
            known = ", ".join(f"[{name}]" for name in SCHEMA)
            raise ConfigError(f"{where}: unknown section [{section}]; known sections: {known}")
        for key in keys:
            if key not in SCHEMA[section]:
                raise ConfigError(
                    f"{where}: unknown key '{key}' in [{section}]; "
                    f"known keys: {', '.join(SCHEMA[section])}"
                )
    for section, keys in SCHEMA.items():
        values[section] = {}
        for key, (parse, default) in keys.items():
            text = raw.get(section, {}).get(key, default)
            try:
                values[section][key] = parse(text)
            except ValueError as exc:
                raise ConfigError(f"{where}: [{section}] {key} = {text.strip()!r}: {exc}") from None

    general = values["general"]
    state_dir = Path(general["state_dir"]) if general["state_dir"] else default_state_dir()
    db = values["database"]
    if not db["url"]:
        db["url"] = f"sqlite:///{state_dir / 'dkmonitor.db'}"
    log = values["logging"]
    log["log_dir"] = environ.get("DKM_LOG") or log["log_dir"] or str(state_dir / "log")
    email = values["email"]
    if email["smtp_ssl"] and email["smtp_starttls"]:
        raise ConfigError(f"{where}: [email] smtp_ssl and smtp_starttls are exclusive; pick one")

    warnings: list[str] = []
    if source is not None and (email["smtp_password"] or parse_url(db["url"]).password):
        warning = _secret_file_warning(source)
        if warning:
            warnings.append(warning)

    return Settings(
        source=source,
        state_dir=state_dir,
        hostname=general["hostname"] or socket.gethostname(),
        database=DatabaseSettings(**db),
        email=EmailSettings(**email),
        scan=ScanSettings(**values["scan"]),
        clean=CleanSettings(**values["clean"]),
        logging=LoggingSettings(**log),
        warnings=tuple(warnings),
        metrics=MetricsSettings(**values["metrics"]),
    )


def _secret_file_warning(source: Path) -> str | None:
    try:
        mode = source.stat().st_mode
    except OSError:
        return None
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        return (
            f"dkmonitor: warning: {source} holds a password and is readable by other users; "
            f"run: chmod 600 {source}"
        )
    return None
