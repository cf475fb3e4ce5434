"""Publishing files for each user from root's runs: ``{notice_dir}/{uid}/{name}``.

Root's state directory, database and logs are root's alone (0700/0600), yet
every user must read what a run announced for them (``dkmonitor me``, the path
in the mail) and nothing about anybody else. So root keeps one directory,
mode 0711 (users pass through it but cannot list it), holding one directory
per uid, owned by that user, mode 0500, with files 0400 owned by the user.

Root writes into directories that users own, so it trusts nothing there:

- notice_dir must be a real directory of the running user (root), writable by
  it alone, with nothing above it that others could change; anything else is
  refused with a message saying how to fix it, never "fixed" by following it;
- after opening it, everything goes through descriptors (``dir_fd``), never
  through a path string that somebody's rename could redirect;
- only root can change the entries of notice_dir itself (0711), so a user's
  directory cannot be swapped for a symlink; if a symlink or a file is found
  there anyway it is removed (unlinkat never follows) and replaced by a fresh
  directory; a directory owned by another user, or on another file system (a
  user's FUSE mount), is refused;
- a user may make their own directory writable and plant names in it, so a
  file is written under a fresh random name created with O_CREAT|O_EXCL|
  O_NOFOLLOW, streamed chunk by chunk, fchmod'ed, fchown'ed and fsync'ed
  through its descriptor, then renamed over the final name (a rename replaces
  a planted symlink, it never follows it). Root never opens an existing file
  there for writing.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

from dkmonitor.errors import DkmError
from dkmonitor.safefs import unsafe_reason

__all__ = ["NoticeDir", "NoticeDirError", "task_file"]

NOTICE_DIR_MODE = 0o711  # users traverse, nobody but root lists
PARENT_MODE = 0o755  # parents created for it
USER_DIR_MODE = 0o500  # the user reads and lists their own, nobody else
FILE_MODE = 0o400
MAX_NAME_BYTES = 200  # NAME_MAX is 255; the temporary names add 22
_TEMP_TRIES = 100
_BUFFER = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class NoticeDirError(DkmError):
    """notice_dir, or a user's directory or file in it, is unsafe or unusable.

    The message is one line: the path, what is wrong, how to fix it.
    """


def task_file(task_name: str, suffix: str) -> str:
    """``{percent-quoted task name}.{suffix}``: one file name for any task name.

    ``run path`` tasks are named ``path:/some/dir``; quoting with no safe
    characters turns every ``/`` into ``%2F``. A leading dot is quoted too, so
    no published name is hidden (temporary names are). A name too long for
    the file system is cut and given a digest of the whole name.
    """
    if not suffix.isascii() or not suffix.isalnum():
        raise ValueError(f"suffix {suffix!r}: letters and digits only")
    quoted = quote(task_name.encode("utf-8", "surrogateescape"), safe="")
    if quoted.startswith("."):
        quoted = "%2E" + quoted[1:]
    if len(quoted) + 1 + len(suffix) > MAX_NAME_BYTES:
        import hashlib  # only for a name too long to keep: not on every run's path

        digest = hashlib.sha256(quoted.encode()).hexdigest()[:16]
        quoted = f"{quoted[: MAX_NAME_BYTES - 2 - len(digest) - len(suffix)]}~{digest}"
    return f"{quoted}.{suffix}"


def _check_name(name: str) -> None:
    """A plain, visible name of this directory (a programming error otherwise)."""
    if (not name or "/" in name or "\0" in name or name.startswith(".")
            or len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES):
        raise ValueError(f"{name!r} is not a plain file name for notice_dir (see task_file)")


def _check_id(value: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32 - 1:
        raise ValueError(f"{what} {value!r} is not a valid id")


class NoticeDir:
    """An open, checked notice_dir; use as a context manager (it holds a descriptor)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd

    @classmethod
    def open(cls, path: Path) -> NoticeDir:
        """Open ``path`` (created 0711, parents 0755, when missing) after checking it."""
        path = Path(os.path.abspath(path))
        _create_missing(path)
        try:
            reason = unsafe_reason(path.parent, leaf_strict=False)
            if reason is not None:
                raise NoticeDirError(f"{path}: unsafe place for notice_dir: {reason}; "
                                     "put it under directories only root can change")
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                raise NoticeDirError(f"{path}: notice_dir is a symlink; refusing to follow "
                                     "it: name the real directory in [announce] notice_dir")
            fd = os.open(path, _DIR_FLAGS)
        except NoticeDirError:
            raise
        except OSError as exc:
            raise NoticeDirError(f"{path}: cannot open notice_dir: {exc.strerror or exc}; "
                                 "name a directory in [announce] notice_dir") from None
        try:
            _check_own_dir(path, fd)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd)

    def __enter__(self) -> NoticeDir:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def user_dir(self, uid: int) -> Path:  # for messages and mails, never opened by path
        return self.path / str(uid)

    def write(self, uid: int, gid: int, name: str, chunks: Iterable[bytes], *,
              durable: bool = True) -> str:
        """Publish ``chunks`` (streamed) as ``{notice_dir}/{uid}/{name}`` (uid:gid, 0400).

        Its path. The previous file is replaced atomically, and stays if anything
        fails. NoticeDirError (naming the path) for an unsafe directory or I/O error.
        ``durable``: synced before the rename (a list, which a notice points to);
        not for a ``me`` summary, rebuilt by every run (one fsync per user was a
        tenth of an announcing run's extra time; ``me`` reports one it cannot read).
        """
        _check_name(name)
        _check_id(uid, "uid")
        _check_id(gid, "gid")
        self._check_may_publish_for(uid)
        target = self.user_dir(uid) / name
        try:
            with self._user_dir(uid, gid, create=True, writable=True) as ufd:
                assert ufd is not None
                _sweep_temps(ufd, name, uid)
                _write_new(ufd, name, uid, gid, chunks, target, durable)
        except OSError as exc:
            raise NoticeDirError(f"{target}: cannot write: {exc.strerror or exc}") from exc
        return str(target)

    def remove(self, uid: int, name: str) -> None:
        """Remove ``{uid}/{name}``; nothing happens when it (or the user's directory) is absent."""
        _check_name(name)
        _check_id(uid, "uid")
        self._check_may_publish_for(uid)
        try:
            with self._user_dir(uid, None, create=False, writable=True) as ufd:
                if ufd is not None:
                    try:
                        os.unlink(name, dir_fd=ufd)
                    except FileNotFoundError:
                        pass
        except OSError as exc:
            raise NoticeDirError(f"{self.user_dir(uid) / name}: cannot remove: "
                                 f"{exc.strerror or exc}") from exc

    def settled(self, uid: int, name: str) -> os.stat_result | None:
        """``lstat`` of ``{uid}/{name}`` (None: absent), our killed runs' temporaries gone."""
        _check_name(name)
        with self._user_dir(uid, None, create=False, writable=True) as ufd:
            if ufd is not None:
                _sweep_temps(ufd, name, uid)
                with suppress(FileNotFoundError):
                    return os.stat(name, dir_fd=ufd, follow_symlinks=False)
        return None

    def names(self, uid: int) -> list[str]:
        """The published names in ``uid``'s directory, sorted (no temporary ones)."""
        _check_id(uid, "uid")
        try:
            with self._user_dir(uid, None, create=False, writable=False) as ufd:
                if ufd is None:
                    return []
                return sorted(name for name in os.listdir(ufd) if not name.startswith("."))
        except OSError as exc:
            raise NoticeDirError(f"{self.user_dir(uid)}: cannot list: "
                                 f"{exc.strerror or exc}") from exc

    def uids(self) -> list[int]:
        """The uids that have a directory here (root's view: users cannot list it)."""
        try:
            names = os.listdir(self._fd)
        except OSError as exc:
            raise NoticeDirError(f"{self.path}: cannot list: {exc.strerror or exc}") from exc
        return sorted(int(name) for name in names if name.isascii() and name.isdigit())

    def _check_may_publish_for(self, uid: int) -> None:
        euid = os.geteuid()
        if euid != 0 and uid != euid:
            raise NoticeDirError(f"{self.path}: only root can publish for another user "
                                 f"(uid {uid}; running as uid {euid})")

    @contextmanager
    def _user_dir(self, uid: int, gid: int | None, *, create: bool,
                  writable: bool) -> Iterator[int | None]:
        """A descriptor of ``uid``'s directory (None when absent and not ``create``).

        Not as root, the user's own directory is made writable (0700) while
        it is changed and set back to 0500 afterwards.
        """
        fd = self._open_user_dir(uid, gid, create)
        if fd is None:
            yield None
            return
        toggle = writable and os.geteuid() != 0
        try:
            if toggle:
                os.fchmod(fd, 0o700)
            try:
                yield fd
            finally:
                if toggle:
                    os.fchmod(fd, USER_DIR_MODE)
        finally:
            os.close(fd)

    def _open_user_dir(self, uid: int, gid: int | None, create: bool) -> int | None:
        entry = str(uid)
        where = self.user_dir(uid)
        try:
            info: os.stat_result | None = os.stat(entry, dir_fd=self._fd, follow_symlinks=False)
        except FileNotFoundError:
            info = None
        if info is not None and not stat.S_ISDIR(info.st_mode):
            if not create:
                return None
            # only root can have put a symlink or a file here (notice_dir is root's
            # 0711): remove that entry itself, whatever it points to, and start afresh
            os.unlink(entry, dir_fd=self._fd)
            info = None
        if info is None:
            if not create:
                return None
            os.mkdir(entry, 0o700, dir_fd=self._fd)
        fd = os.open(entry, _DIR_FLAGS, dir_fd=self._fd)
        try:
            _check_user_dir(where, fd, uid, os.fstat(self._fd).st_dev)
            if create:
                assert gid is not None
                _adopt(fd, uid, gid)
        except BaseException:
            os.close(fd)
            raise
        return fd


def _create_missing(path: Path) -> None:
    """Create notice_dir (0700 until checked, then 0711) and its parents (0755). The
    nearest existing ancestor is checked first: a user must not have redirected it."""
    if os.path.lexists(path):
        return
    existing = path
    missing: list[Path] = []
    while not os.path.lexists(existing):
        missing.append(existing)
        existing = existing.parent
    reason = unsafe_reason(existing, leaf_strict=False)
    if reason is not None:
        raise NoticeDirError(f"{path}: cannot create notice_dir there: {reason}; "
                             "put it under directories only root can change")
    try:
        for directory in reversed(missing):
            mode = 0o700 if directory == path else PARENT_MODE
            try:
                os.mkdir(directory, mode)
            except FileExistsError:
                continue  # made meanwhile: checked like any existing one below
            if mode == PARENT_MODE:
                os.chmod(directory, PARENT_MODE)  # whatever the umask: users must pass
    except OSError as exc:
        raise NoticeDirError(f"{path}: cannot create notice_dir: {exc.strerror or exc}; "
                             "create it (mode 0711) or name another in [announce] "
                             "notice_dir") from None


def _check_own_dir(path: Path, fd: int) -> None:
    """notice_dir is the running user's, writable by it alone; brought to exactly 0711."""
    info = os.fstat(fd)
    euid = os.geteuid()
    if info.st_uid != euid:
        raise NoticeDirError(f"{path}: notice_dir is owned by uid {info.st_uid}, not by the "
                             f"running user (uid {euid}); refusing it: chown {euid} {path}, "
                             "or remove it (it is recreated)")
    if info.st_mode & 0o022:
        raise NoticeDirError(f"{path}: notice_dir is writable by group or others; refusing "
                             f"it: chmod 0711 {path}")
    if stat.S_IMODE(info.st_mode) != NOTICE_DIR_MODE:
        os.fchmod(fd, NOTICE_DIR_MODE)


def _check_user_dir(where: Path, fd: int, uid: int, device: int) -> None:
    """A user's directory: theirs (or root's, left by a crash), on notice_dir's file system."""
    info = os.fstat(fd)
    if info.st_uid not in (uid, os.geteuid()):
        raise NoticeDirError(f"{where}: owned by uid {info.st_uid}, not by uid {uid}; "
                             f"refusing to write there: remove it (rm -r {where}), the next "
                             "run recreates it")
    if info.st_dev != device:
        raise NoticeDirError(f"{where}: another file system is mounted there; refusing to "
                             f"write there: unmount it (umount {where})")


def _adopt(fd: int, uid: int, gid: int) -> None:
    """The user's directory: owned by uid:gid, mode 0500 (whatever the user set)."""
    info = os.fstat(fd)
    if (info.st_uid, info.st_gid) != (uid, gid):
        os.fchown(fd, uid, gid)
    if stat.S_IMODE(info.st_mode) != USER_DIR_MODE:
        os.fchmod(fd, USER_DIR_MODE)


def _write_new(ufd: int, name: str, uid: int, gid: int, chunks: Iterable[bytes],
               target: Path, durable: bool) -> None:
    """Stream into a fresh temporary file, hand it to uid:gid 0400, rename it over ``name``."""
    temp, fd = _create_temp(ufd, name, target)
    try:
        try:
            with open(fd, "wb", buffering=_BUFFER, closefd=False) as out:
                for chunk in chunks:
                    out.write(chunk)
            os.fchmod(fd, FILE_MODE)
            info = os.fstat(fd)
            if (info.st_uid, info.st_gid) != (uid, gid):
                os.fchown(fd, uid, gid)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        _replace(ufd, temp, name, target)  # no fsync of the directory: a crash leaves
        # the old file or the new one, each whole, and the next run rewrites it
    except BaseException:
        try:
            os.unlink(temp, dir_fd=ufd)  # the name only: never follows what is there now
        except OSError:
            pass
        raise


def _sweep_temps(ufd: int, name: str, uid: int) -> None:
    """Remove temporary copies of ``name`` a killed run of ours left: regular files,
    ours or already handed to ``uid`` (a run killed between fchown and rename).
    Anything else a user planted stays; unlinking by name never follows a link."""
    prefix, owners = f".{name}.", (os.geteuid(), uid)
    for entry in os.scandir(ufd):
        if not (entry.name.startswith(prefix) and entry.name.endswith(".tmp")):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(info.st_mode) and info.st_uid in owners:
                os.unlink(entry.name, dir_fd=ufd)
        except OSError:
            continue


def _temp_token() -> str:
    return os.urandom(8).hex()  # secrets.token_hex(8), without importing secrets (5 ms)


def _create_temp(ufd: int, name: str, target: Path) -> tuple[str, int]:
    """A new file under a random hidden name; a name the user planted is skipped."""
    for _ in range(_TEMP_TRIES):
        temp = f".{name}.{_temp_token()}.tmp"
        try:
            return temp, os.open(temp, _TEMP_FLAGS, 0o600, dir_fd=ufd)
        except FileExistsError:
            continue
    raise NoticeDirError(f"{target}: no free temporary name after {_TEMP_TRIES} tries; "
                         f"remove the .*.tmp files in {target.parent}")


def _replace(ufd: int, temp: str, name: str, target: Path) -> None:
    """Rename ``temp`` over ``name``; an empty directory the user put there is removed."""
    try:
        os.rename(temp, name, src_dir_fd=ufd, dst_dir_fd=ufd)
    except IsADirectoryError:
        try:
            os.rmdir(name, dir_fd=ufd)
        except OSError:
            raise NoticeDirError(f"{target}: a directory is in the way; remove it "
                                 f"(rm -r {target})") from None
        os.rename(temp, name, src_dir_fd=ufd, dst_dir_fd=ufd)
