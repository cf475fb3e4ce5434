"""Types of the compiled per-directory loop (_dirscan.c); see its docstring."""

from collections.abc import Callable
from typing import Any

def scan_dir(
    fd: int,
    parent: Any,
    stack: list[Any],
    by_uid: dict[int, list[int]],
    linked: dict[tuple[int, int], Any],
    hist: list[int],
    dir_key: str,
    root_dev: int,
    one_fs: bool,
    basis: int,
    now_ns: int,
    now: float,
    old_limit: float,
    excluded: Callable[[str], bool] | None,
    cands: bytearray | None = None,
    cand_dir: bytes | None = None,
) -> tuple[int, list[tuple[str, int]], int, int, int, int]: ...

BASES: tuple[str, ...]
SIZE_EDGES: tuple[int, ...]
AGE_EDGES_NS: tuple[int, ...]
