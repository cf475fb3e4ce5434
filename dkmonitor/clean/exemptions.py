"""Which old files an administrator has exempted from cleaning, as a plain value.

Built once per run from the task's active exemptions (see
``dkmonitor.db.exemptions``) and asked for every candidate: a file is exempt
when its owner is an exempted uid, or when its path below the target lies at
or under an exempted path. Paths are compared component by component, as the
cleaner walks them (symlinks are never followed), so ``/scratch/ab`` does not
cover ``/scratch/abc``.
"""

from __future__ import annotations

import logging
import posixpath
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from dkmonitor.records import FrozenRecord

if TYPE_CHECKING:
    from dkmonitor.db.engine import Database

log = logging.getLogger(__name__)


@dataclass(frozen=True, repr=False, eq=False)
class ExemptRules(FrozenRecord):
    uids: frozenset[int] = frozenset()
    subtrees: frozenset[tuple[str, ...]] = frozenset()  # path parts below the target

    def __bool__(self) -> bool:
        return bool(self.uids or self.subtrees)

    def covers(self, uid: int, parts: tuple[str, ...]) -> bool:
        """True when a file owned by ``uid`` at ``parts`` below the target is exempt."""
        return uid in self.uids or self.covers_path(parts)

    def covers_path(self, parts: tuple[str, ...]) -> bool:
        """True when everything at or below ``parts`` is exempt, whoever owns it."""
        return any(parts[: len(tree)] == tree for tree in self.subtrees)


def relative_parts(target: str, path: str) -> tuple[str, ...] | None:
    """``path`` as components below ``target`` (both normalized), None when outside it."""
    target_parts = tuple(p for p in target.split("/") if p)
    path_parts = tuple(p for p in path.split("/") if p)
    if path_parts[: len(target_parts)] != target_parts:
        return None
    return path_parts[len(target_parts) :]


@dataclass(frozen=True, repr=False, eq=False)
class ExemptionView(FrozenRecord):
    """One exemption as shown by ``exempt list`` (and read by a run)."""

    id: int
    task: str
    user: str | None
    path: str | None
    expires_at: datetime
    reason: str
    created_by: str
    created_at: datetime
    expired: bool
    uid: int | None = None  # of a user exemption


def load_exemptions(database: Database | None, task_name: str, now: datetime
                    ) -> list[ExemptionView]:
    """The task's exemptions, expired ones too: plain SQL when the schema is at
    head (a run that cleans nothing then never imports SQLAlchemy), else the ORM."""
    if database is None:
        return []
    if database.plain is not None:
        from dkmonitor.db.plainwrite import exemptions_plain

        return exemptions_plain(database.plain, task_name, now)
    from dkmonitor.db.exemptions import list_exemptions

    with database.session() as session:
        return list_exemptions(session, task_name, now)


def rules_of(views: list[ExemptionView], target: str) -> ExemptRules:
    """The rules in force among ``views``, as the cleaner asks them."""
    uids: set[int] = set()
    subtrees: set[tuple[str, ...]] = set()
    for view in views:
        if view.expired:
            continue
        if view.uid is not None:
            uids.add(view.uid)
        elif view.path is not None:
            parts = relative_parts(posixpath.normpath(target), view.path)
            if parts is not None:  # the task's target may have been edited since
                subtrees.add(parts)
    return ExemptRules(uids=frozenset(uids), subtrees=frozenset(subtrees))


def load_rules(database: Database | None, task_name: str, target: str,
               now: datetime) -> ExemptRules:
    """The task's exemptions in force at ``now``; none without a database (a dry run
    of ``run path`` opens none, and a real clean refuses to start without one)."""
    return log_rules(task_name, rules_of(load_exemptions(database, task_name, now), target))


def log_rules(task_name: str, rules: ExemptRules) -> ExemptRules:
    if rules:
        log.info("task %s: %d user and %d path exemption(s) in force", task_name,
                 len(rules.uids), len(rules.subtrees))
    return rules
