"""Types of the compiled record builder (_recordio.c); see its docstring."""

_Buffer = bytes | bytearray | memoryview
# uid, files, bytes, new files, first announced_at, start, end, digest
_User = tuple[int, int, int, int, float, int, int, int]

def build(
    spool_fds: list[int],
    prev_fd: int,
    out_fd: int,
    dropped_fd: int,
    tmp_dir_fd: int,
    root_dev: int,
    now: float,
    exempt_uids: list[int],
    exempt_paths: list[bytes],
    acted: _Buffer,
    told_since: dict[int, float | None],
    chunk_bytes: int,
    share_from: int = ...,
    fan_in: int = ...,
    known: dict[int, int] = ...,
    set_key: bytes = ...,
    prev_sets: dict[int, tuple[int, int]] = ...,
) -> tuple[list[_User], dict[int, int], int, int, bool, dict[int, tuple[int, int]]]: ...
def format_lines(
    data: _Buffer, notice_seconds: float, prefix: _Buffer, limit: int
) -> tuple[bytes, int]: ...
