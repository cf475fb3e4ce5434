"""settings.cfg: where it is looked for, what it may hold, typed result.

Every key dkmonitor knows is declared once in ``SCHEMA`` with its parser and
default; anything else in the file is an error naming the file and key, so a
typo (``smtp_hots``) fails loudly instead of being silently ignored.
With no file at all, the defaults give an embedded SQLite database in the
state directory and no mail.

As root (cron's usual user) the file must be owned by root and writable by
nobody else, and neither ``$HOME`` nor ``~`` decides anything: ``sudo -E``
keeps a user's HOME, and root must not read that user's settings or put its
state there. Root's home comes from the passwd database.
"""

from __future__ import annotations

import configparser
import os
import pwd
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dkmonitor import config_values as v
from dkmonitor.dburl import DatabaseURL, mask_password, parse_url
from dkmonitor.errors import ConfigError
from dkmonitor.records import FrozenRecord
from dkmonitor.safefs import make_private_dir, unsafe_reason

__all__ = ["Settings", "load_settings", "mask_password", "settings_from_mapping"]

SYSTEM_CONFIG = Path("/etc/dkmonitor/settings.cfg")
ROOT_STATE_DIR = Path("/var/lib/dkmonitor")


def _home() -> Path:
    """The user's home; root's own from the passwd database, whatever $HOME says (sudo -E)."""
    if os.geteuid() == 0:
        return Path(pwd.getpwuid(0).pw_dir)
    return Path.home()


def default_state_dir() -> Path:
    """/var/lib/dkmonitor for root, ~/.dkmonitor for everybody else."""
    if os.geteuid() == 0:
        return ROOT_STATE_DIR
    return _home() / ".dkmonitor"


# section -> key -> (parser, default raw value). Defaults go through the parser
# too, so they are checked the same way as the file's values.
SCHEMA: dict[str, dict[str, tuple[Callable[[str], Any], str]]] = {
    "general": {
        "state_dir": (v.optional_path, ""),
        "hostname": (v.text, ""),
    },
    "database": {
        "url": (v.database_url, ""),
        "purge_after_days": (v.int_between(0, 36500), "0"),
    },
    "email": {
        "enabled": (v.parse_bool, "no"),
        "smtp_host": (v.text, "localhost"),
        "smtp_port": (v.port, "25"),
        "smtp_starttls": (v.parse_bool, "no"),
        "smtp_ssl": (v.parse_bool, "no"),
        "smtp_ca_file": (v.optional_file, ""),
        "smtp_timeout": (v.float_up_to(3600), "30"),
        "smtp_deadline": (v.float_up_to(3600), "120"),
        "smtp_username": (v.text, ""),
        "smtp_password": (v.text, ""),
        "from_address": (v.text, "dkmonitor@localhost"),
        "user_postfix": (v.text, ""),
        "admin_addresses": (v.address_list, ""),
        "outbox_dir": (v.optional_path, ""),
        "notify_interval_hours": (v.float_up_to(24 * 366 * 10), "24"),
        "template_dir": (v.optional_path, ""),
        "address_map": (v.optional_path, ""),
    },
    "scan": {
        "workers": (v.workers, "auto"),
        "threads_per_rank": (v.int_between(1, 32), "4"),  # MPI scans (scan/threaded.py)
        "one_file_system": (v.parse_bool, "yes"),
        "exclude": (v.lines, ""),
    },
    "clean": {
        "max_files_per_run": (v.int_between(0, 10**12), "0"),
        "max_bytes_per_run": (v.int_between(0, 10**18), "0"),
        "max_failure_percent": (v.percent, "10"),
        "min_actions_before_breaker": (v.int_between(1, 10**9), "20"),
    },
    "metrics": {"textfile": (v.optional_path, "")},
    "announce": {"notice_dir": (v.optional_path, "")},
    "logging": {
        "log_dir": (v.optional_path, ""),
        "level": (v.level, "INFO"),
        "max_bytes": (v.int_between(1024, 2**40), "10485760"),
        "backup_count": (v.int_between(0, 1000), "5"),
    },
}


@dataclass(frozen=True, repr=False, eq=False)
class DatabaseSettings(FrozenRecord):
    url: DatabaseURL  # parsed once; str() masks the password
    purge_after_days: int

    @property
    def safe_url(self) -> str:
        """The URL with any password masked, for display and logs."""
        return str(self.url)


@dataclass(frozen=True, repr=False, eq=False)
class EmailSettings(FrozenRecord):
    enabled: bool
    smtp_host: str
    smtp_port: int
    smtp_starttls: bool
    smtp_ssl: bool
    smtp_ca_file: str | None
    smtp_timeout: float
    smtp_deadline: float  # overall seconds per message, so a slow server cannot hang a run
    smtp_username: str
    smtp_password: str = field(repr=False)
    from_address: str
    user_postfix: str
    admin_addresses: tuple[str, ...]
    outbox_dir: str | None
    notify_interval_hours: float
    template_dir: str | None
    address_map: str | None


@dataclass(frozen=True, repr=False, eq=False)
class ScanSettings(FrozenRecord):
    workers: int
    threads_per_rank: int
    one_file_system: bool
    exclude: tuple[str, ...]


@dataclass(frozen=True, repr=False, eq=False)
class CleanSettings(FrozenRecord):
    """Bounds on one run's cleaning (0 = no bound) and the error breaker."""

    max_files_per_run: int
    max_bytes_per_run: int
    max_failure_percent: float
    min_actions_before_breaker: int


@dataclass(frozen=True, repr=False, eq=False)
class LoggingSettings(FrozenRecord):
    log_dir: str
    level: str
    max_bytes: int
    backup_count: int


@dataclass(frozen=True, repr=False, eq=False)
class MetricsSettings(FrozenRecord):
    textfile: str | None = None  # node_exporter textfile written after each run


@dataclass(frozen=True, repr=False, eq=False)
class AnnounceSettings(FrozenRecord):
    """Where full runs publish each user's notices (dkmonitor.announce.publish)."""

    notice_dir: Path


def default_notice_dir(state_dir: Path, as_root: bool) -> Path:
    """Root's beside its 0700 state dir (users must reach it: /var/lib/dkmonitor-notices)."""
    return state_dir.with_name(state_dir.name + "-notices") if as_root else state_dir / "notices"


@dataclass(frozen=True, repr=False, eq=False)
class Settings(FrozenRecord):
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
    announce: AnnounceSettings = field(
        default=AnnounceSettings(default_notice_dir(ROOT_STATE_DIR, as_root=True))
    )


def find_config_file(explicit: str | None, environ: Mapping[str, str]) -> Path | None:
    """The search order of DESIGN.md; an explicitly named file must exist."""
    if explicit:
        path = Path(v.expand_user(explicit))
        if not path.is_file():
            raise ConfigError(f"{path}: no such settings file (given with --config)")
        return path
    env = environ.get("DKM_CONF")
    if env:
        path = Path(v.expand_user(env))
        if path.is_dir():
            path = path / "settings.cfg"
        if not path.is_file():
            raise ConfigError(f"{path}: no such settings file (named by $DKM_CONF)")
        return path
    for candidate in (SYSTEM_CONFIG, _home() / ".dkmonitor" / "settings.cfg"):
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
            _check_owner(path, os.fstat(handle.fileno()))
            parser.read_file(handle)
    except (configparser.Error, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0]
        raise ConfigError(f"{path}: cannot parse settings file: {first}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read settings file: {exc.strerror}") from None
    return {section: dict(parser.items(section, raw=True)) for section in parser.sections()}


def _check_owner(path: Path, info: os.stat_result) -> None:
    """As root, only a file that root owns and nobody else can change is obeyed.

    It names the database, the mail server, where logs and mail are written:
    whoever can edit it steers what root does. Checked on the open file, so a
    swapped path cannot slip past.
    """
    if os.geteuid() != 0:
        return
    if info.st_uid != 0:
        raise ConfigError(
            f"{path}: settings file not owned by root (uid {info.st_uid}); refusing it "
            f"when running as root: chown root {path}"
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigError(
            f"{path}: settings file writable by group or others; refusing it when running "
            f"as root: chmod go-w {path}"
        )


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
    for section, declared in SCHEMA.items():
        values[section] = {}
        for key, (parse, default) in declared.items():
            text = raw.get(section, {}).get(key, default)
            try:
                values[section][key] = parse(text)
            except ValueError as exc:
                shown = "***" if "password" in key else mask_password(text.strip())
                raise ConfigError(f"{where}: [{section}] {key} = {shown!r}: {exc}") from None

    general = values["general"]
    state_dir = Path(general["state_dir"]) if general["state_dir"] else default_state_dir()
    if state_dir.exists() and not state_dir.is_dir():
        raise ConfigError(
            f"{where}: [general] state_dir = {state_dir}: not a directory; "
            "name a directory (it is created when missing)"
        )
    db = values["database"]
    if db["url"] is None:
        db["url"] = parse_url(f"sqlite:///{state_dir / 'dkmonitor.db'}")
    else:
        _check_sqlite_dir(db["url"], state_dir, where)
    log = values["logging"]
    log["log_dir"] = environ.get("DKM_LOG") or log["log_dir"] or str(state_dir / "log")
    email = values["email"]
    if email["smtp_ssl"] and email["smtp_starttls"]:
        raise ConfigError(f"{where}: [email] smtp_ssl and smtp_starttls are exclusive; pick one")

    warnings: list[str] = []
    if source is not None and (email["smtp_password"] or db["url"].password):
        warning = _secret_file_warning(source)
        if warning:
            warnings.append(warning)

    return Settings(
        source=source,
        state_dir=state_dir,
        hostname=general["hostname"] or os.uname().nodename,  # gethostname(2), without socket
        database=DatabaseSettings(**db),
        email=EmailSettings(**email),
        scan=ScanSettings(**values["scan"]),
        clean=CleanSettings(**values["clean"]),
        logging=LoggingSettings(**log),
        warnings=tuple(warnings),
        metrics=MetricsSettings(**values["metrics"]),
        announce=AnnounceSettings(_notice_dir(values["announce"]["notice_dir"], state_dir, where)),
    )


def _notice_dir(configured: str | None, state_dir: Path, where: str) -> Path:
    """[announce] notice_dir (absolute: users are told it), else by the state directory."""
    as_root = os.geteuid() == 0
    path = Path(configured) if configured else default_notice_dir(state_dir.absolute(), as_root)
    # os.path: False, not PermissionError, inside a state dir the caller cannot enter
    if not path.is_absolute() or (os.path.exists(path) and not os.path.isdir(path)):
        raise ConfigError(f"{where}: [announce] notice_dir = {path}: not an absolute path to "
                          "a directory; name one from / (it is created when missing)")
    return path


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


def _check_sqlite_dir(url: DatabaseURL, state_dir: Path, where: str) -> None:
    """A SQLite file's directory must exist: a typo must not create a tree somewhere.

    The state directory is the exception: dkmonitor creates it (0700).
    """
    path = url.sqlite_file()
    if path is None:
        return
    directory = Path(path).parent
    if directory == Path(os.path.abspath(state_dir)) or directory.is_dir():
        return
    raise ConfigError(
        f"{where}: [database] url = {str(url)!r}: directory {directory} does not exist; "
        "create it, or fix the path (sqlite:////absolute/path/file.db)"
    )


def prepare_state_dir(settings: Settings) -> Path:
    """Create the state directory (0700, tightened if we own it) before a run uses it.

    A directory that cannot be created or written (a read-only file system,
    no permission), or as root one that others could change, is a
    configuration error naming the key, found before any task starts rather
    than as a crash halfway through one.
    """
    path = settings.state_dir
    where = f"{settings.source}: [general] state_dir" if settings.source else "state directory"
    try:
        make_private_dir(path, tighten=True)
    except OSError as exc:
        raise ConfigError(f"{where} = {path}: cannot create it: {exc.strerror or exc}") from None
    reason = unsafe_reason(path)
    if reason is not None:  # as root: locks and spool must be root's alone
        raise ConfigError(f"{where} = {path}: unsafe directory: {reason}")
    if not os.access(path, os.W_OK | os.X_OK):
        readonly = bool(os.statvfs(path).f_flag & os.ST_RDONLY)
        reason = "read-only file system" if readonly else "not writable by this user"
        raise ConfigError(f"{where} = {path}: {reason}; name a writable directory")
    return path
