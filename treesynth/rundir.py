"""What an output directory needs from the operating system: one writer at a time, and a clear disk-full error.

* :class:`DirLock` -- an exclusive, non-blocking ``flock`` on ``<dir>/.treesynth.lock``, held while a run
  (or a sweep, or a study) writes there. A second process gets a one-line :class:`DirBusyError` (exit 2)
  instead of interleaving its writes. The kernel drops an ``flock`` when its holder exits in any way,
  ``SIGKILL`` included, so a crashed run never leaves a stale lock: the lock file stays, the lock does not.
  ``fcntl.flock`` rather than the ``filelock`` package: filelock is not a dependency of treesynth, and on a
  filesystem without ``flock`` it falls back to marker-file locks, which a killed process leaves behind.
  On a platform without ``fcntl`` (Windows) the lock is not taken.
* :func:`storage_error` -- SQLite's "database or disk is full" and ``ENOSPC``/``EDQUOT`` from a write, as
  one line naming the fix (free space, then re-run to resume: every write is one transaction, so the
  store is as consistent after a full disk as after a kill).
"""

from __future__ import annotations

import errno
import os
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from treesynth.errors import ConfigError, RunStateError

if sys.platform != "win32":
    import fcntl

LOCK_NAME = ".treesynth.lock"
"""The lock file of a locked directory: empty, and left in place after the lock is released."""


class DirBusyError(ConfigError):
    """Another process holds the directory's lock (a usage conflict: exit 2, nothing was written)."""


class DirLock:
    """An exclusive lock on a directory, held from :meth:`acquire` until :meth:`release` or process exit."""

    def __init__(self, path: Path, fd: int | None, *, created: bool = False) -> None:
        """Wrap a locked descriptor (``None``: no lock on this platform; ``created``: the lock file is new);
        prefer :meth:`acquire`."""
        self.path, self._fd, self._created = path, fd, created

    @classmethod
    def acquire(cls, directory: Path, *, option: str = "--out") -> DirLock:
        """Lock ``directory`` (which must exist) or raise :class:`DirBusyError` when another process holds it.

        ``option`` names the flag that chose the directory, for the message.
        """
        path = directory / LOCK_NAME
        if sys.platform == "win32":  # pragma: no cover - no flock: not locked
            return cls(path, None)
        try:
            fd, created = _open_lock_file(path)
        except OSError as exc:
            raise ConfigError(f"{option} {directory} is not writable ({exc.strerror}); choose a writable "
                              "directory") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DirBusyError(f"{option} {directory} is in use by another treesynth process; wait for it to "
                               f"finish or choose another {option}") from None
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd, created=created)

    def release(self, *, discard: bool = False) -> None:
        """Release the lock (idempotent). The lock file stays, unless ``discard`` and :meth:`acquire` made it
        (a refused directory is left as it was)."""
        if self._fd is not None:
            if discard and self._created:
                with suppress(OSError):
                    os.unlink(self.path)  # while still locked: no other process holds this file's lock
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None

    def __enter__(self) -> DirLock:
        """The lock itself."""
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        """Release the lock; a command refused as a usage error (:class:`ConfigError`) leaves no lock file it made."""
        self.release(discard=exc_type is not None and issubclass(exc_type, ConfigError))


def _open_lock_file(path: Path) -> tuple[int, bool]:
    """A read-write descriptor of ``path``, and whether this call created the file."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644), True
    except FileExistsError:
        return os.open(path, os.O_RDWR), False


def storage_error(exc: BaseException, out: Path) -> RunStateError | None:
    """The one-line error for a write that failed because the disk under ``out`` is full, else ``None``."""
    full = (isinstance(exc, sqlite3.OperationalError) and "full" in str(exc).lower()) or (
        isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT))
    if not full:
        return None
    return RunStateError(f"no space left on the disk of {out}; free space there (or move the directory to a larger "
                         "disk and point --out at it), then re-run the same command to resume")


@contextmanager
def disk_full_as_error(out: Path) -> Iterator[None]:
    """Turn a full disk under ``out`` (raised alone or first in an exception group) into :func:`storage_error`'s."""
    try:
        yield
    except BaseException as exc:
        first = exc
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        if (full := storage_error(first, out)) is not None:
            raise full from None
        raise
