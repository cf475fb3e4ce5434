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
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dkmonitor.db.engine import Database

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExemptRules:
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


def load_rules(database: Database | None, task_name: str, target: str,
               now: datetime) -> ExemptRules:
    """The task's exemptions in force at ``now``; none without a database (a dry run
    of ``run path`` opens none, and a real clean refuses to start without one)."""
    if database is None:
        return ExemptRules()
    from dkmonitor.db.exemptions import active_rules

    with database.session() as session:
        rules = active_rules(session, task_name, target, now)
    if rules:
        log.info("task %s: %d user and %d path exemption(s) in force", task_name,
                 len(rules.uids), len(rules.subtrees))
    return rules
