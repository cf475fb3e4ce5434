"""The metrics channel: a node_exporter textfile, rewritten after each run.

On when ``[metrics] textfile = PATH`` is set. The numbers come from the
database, not from the run alone: the file always describes every task of
this host (a quick run does not drop the per-user series of the last full
scan), and a host whose scans stop shows it in
``dkmonitor_target_last_success_timestamp_seconds``, which is what a
staleness alert watches. When the database is down the file is left as it
was, for the same reason.

The file is written with prometheus_client (``pip install
'dkmonitor[metrics]'``) to a temporary file created in the same directory
(O_EXCL: a planted symlink is never followed), then renamed over PATH
(rename replaces a symlink at PATH, it does not write through it).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from dkmonitor.channels.base import Channel, Delivery
from dkmonitor.config import Settings
from dkmonitor.records import FrozenRecord

# SQLAlchemy and the models are imported in the functions that read through
# them: only a run with [metrics] textfile set needs them, and importing them
# at start-up cost every quick run a third of a second.
if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from dkmonitor.db.models import Scan, UserStat
    from dkmonitor.runner import RunReport

log = logging.getLogger(__name__)

# name (after dkmonitor_), help; per user: labels host, target, user
USER_METRICS = (
    ("user_bytes", "Bytes of the user's files (apparent size) at the last full scan.", "bytes"),
    ("user_allocated_bytes", "Bytes allocated on disk to the user's files.", "allocated_bytes"),
    ("user_files", "Regular files owned by the user.", "files"),
    ("user_old_bytes", "Bytes of the user's files older than the task's old-file age.",
     "old_bytes"),
    ("user_inodes", "Entries of any type below the target owned by the user (files, "
     "directories, symlinks, ...), each inode once.", "inodes"),
)


@dataclass(frozen=True, repr=False, eq=False)  # repr, ==, hash: dkmonitor.records
class TargetSample(FrozenRecord):
    host: str
    target: str
    used_ratio: float | None  # latest scan of any kind
    last_success: float | None  # epoch seconds, end of the latest good full scan
    duration: float | None
    errors: int | None
    users: tuple[tuple[str, dict[str, float]], ...]  # (user, metric -> value)


def _epoch(value: datetime) -> float:
    """Stored times are naive UTC (timezone-aware on some backends): seconds since the epoch."""
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def _latest(session: Session, task: str, host: str, full: bool) -> Scan | None:
    from sqlalchemy import select

    from dkmonitor.db.models import Scan

    query = select(Scan).where(
        Scan.task_name == task, Scan.hostname == host, Scan.status == "ok"
    )
    if full:
        query = query.where(Scan.kind == "full")
    return session.scalars(query.order_by(Scan.started_at.desc(), Scan.id.desc()).limit(1)).first()


def _user_values(row: UserStat) -> dict[str, float]:
    """The USER_METRICS columns of one user row (a row stored before migration 0006 says
    0 inodes: the column's default)."""
    return {
        "bytes": float(row.bytes),
        "allocated_bytes": float(row.allocated_bytes),
        "files": float(row.files),
        "old_bytes": float(row.old_bytes),
        "inodes": float(row.inodes),
    }


def collect(session: Session, host: str) -> list[TargetSample]:
    """One sample per target of this host's tasks (the newest, when tasks share a target)."""
    from sqlalchemy import select

    from dkmonitor.db.models import UserStat
    from dkmonitor.db.tasks import list_tasks

    samples: dict[str, tuple[float, TargetSample]] = {}
    for task in list_tasks(session, host):
        any_kind = _latest(session, task.name, host, full=False)
        full = _latest(session, task.name, host, full=True)
        if any_kind is None:
            continue
        users: tuple[tuple[str, dict[str, float]], ...] = ()
        if full is not None:
            rows = session.scalars(select(UserStat).where(UserStat.scan_id == full.id))
            users = tuple(sorted((row.username, _user_values(row)) for row in rows))
        finished = full.finished_at if full is not None else None
        percent = any_kind.disk_use_percent
        sample = TargetSample(
            host=host,
            target=task.target_path,
            used_ratio=percent / 100 if percent is not None else None,
            last_success=_epoch(finished) if finished is not None else None,
            duration=(finished - full.started_at).total_seconds()
            if full is not None and finished is not None else None,
            errors=full.errors if full is not None else None,
            users=users,
        )
        when = _epoch(any_kind.started_at)
        if task.target_path not in samples or samples[task.target_path][0] < when:
            samples[task.target_path] = (when, sample)
    return [sample for _, sample in sorted(samples.values(), key=lambda item: item[1].target)]


class _Collector:
    """prometheus_client's collector interface over the samples."""

    def __init__(self, samples: list[TargetSample]) -> None:
        self.samples = samples

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        target = ("host", "target")
        families = {
            "used_ratio": GaugeMetricFamily(
                "dkmonitor_target_used_ratio", "Used fraction of the target's file system.",
                labels=target),
            "last_success": GaugeMetricFamily(
                "dkmonitor_target_last_success_timestamp_seconds",
                "When the target's last successful full scan finished (Unix time).",
                labels=target),
            "duration": GaugeMetricFamily(
                "dkmonitor_target_scan_duration_seconds",
                "How long the target's last successful full scan took.", labels=target),
            "errors": GaugeMetricFamily(
                "dkmonitor_target_scan_errors",
                "Entries the last successful full scan could not read.", labels=target),
        }
        per_user = {
            key: GaugeMetricFamily(f"dkmonitor_{name}", text, labels=("host", "target", "user"))
            for name, text, key in USER_METRICS
        }
        for sample in self.samples:
            where = [sample.host, sample.target]
            for key, family in families.items():
                value = getattr(sample, key)
                if value is not None:
                    family.add_metric(where, float(value))
            for user, values in sample.users:
                for key, family in per_user.items():
                    family.add_metric([*where, user], values[key])
        yield from families.values()
        yield from per_user.values()


def render(samples: list[TargetSample]) -> bytes:
    """The textfile's content, in the Prometheus text format."""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(samples))
    return generate_latest(registry)


def write_atomically(path: str, content: bytes) -> None:
    """Replace ``path`` with ``content``: a reader sees the old file or the new one."""
    import tempfile  # here: every run imports this module, few write the textfile

    directory = os.path.dirname(os.path.abspath(path))
    handle, temp = tempfile.mkstemp(dir=directory, prefix=".dkmonitor-", suffix=".prom.tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            os.fchmod(out.fileno(), 0o644)  # node_exporter runs as its own user
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise


class MetricsChannel(Channel):
    name = "metrics"

    def enabled(self, settings: Settings) -> bool:
        return settings.metrics.textfile is not None

    def check(self, settings: Settings) -> None:
        from dkmonitor.errors import ConfigError

        try:
            import prometheus_client  # noqa: F401
        except ImportError:
            raise ConfigError(
                "[metrics] textfile is set but prometheus_client is not installed; "
                "pip install 'dkmonitor[metrics]'"
            ) from None

    def after_run(self, delivery: Delivery, report: RunReport) -> list[str]:
        path = delivery.settings.metrics.textfile
        if path is None:
            return []
        if delivery.database is None:  # left as it was: its timestamps show the scans stopped
            log.warning("[metrics] textfile %s not rewritten: the database is unreachable", path)
            return []
        from sqlalchemy.exc import SQLAlchemyError  # only a run that writes the file needs it

        try:
            with delivery.database.session() as session:
                samples = collect(session, delivery.settings.hostname)
            write_atomically(path, render(samples))
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            return [f"[metrics] textfile {path}: database unreadable: {reason}"]
        except OSError as exc:
            return [f"[metrics] textfile {path}: not written: {exc.strerror or exc}"]
        log.info("metrics written to %s (%d targets)", path, len(samples))
        return []


CHANNEL = MetricsChannel()
