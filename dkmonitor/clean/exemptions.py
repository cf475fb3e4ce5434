"""Which old files an administrator has exempted from cleaning, as a plain value.

Built once per run from the task's active exemptions (see
``dkmonitor.db.exemptions``) and asked for every candidate: a file is exempt
when its owner is an exempted uid, or when its path below the target lies at
or under an exempted path. Paths are compared component by component, as the
cleaner walks them (symlinks are never followed), so ``/scratch/ab`` does not
cover ``/scratch/abc``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ExemptRules:
    uids: frozenset[int] = frozenset()
    subtrees: frozenset[tuple[str, ...]] = frozenset()  # path parts below the target

    def __bool__(self) -> bool:
        return bool(self.uids or self.subtrees)

    def covers(self, uid: int, parts: tuple[str, ...]) -> bool:
        """True when a file owned by ``uid`` at ``parts`` below the target is exempt."""
        if uid in self.uids:
            return True
        return any(parts[: len(tree)] == tree for tree in self.subtrees)


def relative_parts(target: str, path: str) -> tuple[str, ...] | None:
    """``path`` as components below ``target`` (both normalized), None when outside it."""
    target_parts = tuple(p for p in target.split("/") if p)
    path_parts = tuple(p for p in path.split("/") if p)
    if path_parts[: len(target_parts)] != target_parts:
        return None
    return path_parts[len(target_parts) :]
