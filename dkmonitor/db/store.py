"""Writing one run's results: the scan row and its per-user rows, together.

``ScanRecord`` is the plain, JSON-serialisable form of a run's results. The
runner builds it once; it is either stored here in one transaction or, when
the database cannot be reached, written to the spool and stored later. The
``run_id`` makes storing idempotent: a record already stored is skipped.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from dkmonitor.metrics import Totals

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from dkmonitor.taskrun import HistogramBucket, TopDirectory, UserUsageRow


@dataclass(frozen=True, repr=False, eq=False)  # repr, ==, hash: dkmonitor.records
class ScanRecord(Totals):
    """One run's results; the whole target's metrics come from ``Totals``."""

    run_id: str
    task_name: str
    hostname: str
    target_path: str
    kind: str  # quick | full
    status: str  # ok | failed
    started_at: datetime
    finished_at: datetime | None
    disk_total: int | None = None
    disk_used: int | None = None
    disk_available: int | None = None
    disk_use_percent: float | None = None
    errors: int = 0
    message: str | None = None
    users: tuple[UserUsageRow, ...] = field(default=())
    histograms: tuple[HistogramBucket, ...] = field(default=())
    top_directories: tuple[TopDirectory, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("started_at", "finished_at"):
            if data[key] is not None:
                data[key] = data[key].isoformat()
        for key in _ROWS:
            data[key] = [asdict(row) for row in getattr(self, key)]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ScanRecord:
        data = dict(data)
        for key in ("started_at", "finished_at"):
            if data.get(key) is not None:
                data[key] = datetime.fromisoformat(data[key])
        for key, row_type in _row_types().items():  # one spooled by an older version lacks some
            data[key] = tuple(row_type(**row) for row in data.get(key, ()))
        return cls(**data)


# The row tuples of a ScanRecord, and their types (for the spool's JSON).
_ROWS = ("users", "histograms", "top_directories")


def _row_types() -> dict[str, Any]:
    # imported here: a quick run (hourly) builds a ScanRecord without rows
    from dkmonitor.taskrun import HistogramBucket, TopDirectory, UserUsageRow

    return dict(zip(_ROWS, (UserUsageRow, HistogramBucket, TopDirectory), strict=True))


def store_scan(session: Session, record: ScanRecord) -> int:
    """Add the scan and its users to the session; returns the scan id.

    If a scan with the same run_id is already stored (a spooled run replayed
    twice), nothing is added and the existing id is returned.
    """
    # Imported here: ScanRecord is built by every run, SQLAlchemy is needed only
    # here (a run against a database at head stores through db.plainwrite).
    from sqlalchemy import select

    from dkmonitor.db.models import Scan, ScanHistogram, ScanTopDirectory, UserStat

    existing = session.scalar(select(Scan.id).where(Scan.run_id == record.run_id))
    if existing is not None:
        return existing
    columns = {k: v for k, v in asdict(record).items() if k not in _ROWS}
    scan = Scan(**columns)
    scan.users = [UserStat(**asdict(user)) for user in record.users]
    scan.histograms = [ScanHistogram(**asdict(row)) for row in record.histograms]
    scan.top_directories = [ScanTopDirectory(**asdict(row)) for row in record.top_directories]
    session.add(scan)
    session.flush()
    return scan.id
