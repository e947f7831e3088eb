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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from treesynth.errors import ConfigError, RunStateError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".treesynth.lock"
"""The lock file in a locked directory (it stays after the lock is released; it holds the last holder's pid)."""


class DirBusyError(ConfigError):
    """Another process holds the directory's lock (a usage conflict: exit 2, nothing was written)."""


class DirLock:
    """An exclusive lock on a directory, held from :meth:`acquire` until :meth:`release` or process exit."""

    def __init__(self, path: Path, fd: int | None) -> None:
        """Wrap a locked descriptor (``None``: no lock on this platform); prefer :meth:`acquire`."""
        self.path = path
        self._fd = fd

    @classmethod
    def acquire(cls, directory: Path, *, option: str = "--out") -> DirLock:
        """Lock ``directory`` (which must exist) or raise :class:`DirBusyError` naming the holder's pid.

        ``option`` names the flag that chose the directory, for the message.
        """
        path = directory / LOCK_NAME
        if fcntl is None:  # pragma: no cover - Windows
            return cls(path, None)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ConfigError(f"{option} {directory} is not writable ({exc.strerror}); choose a writable "
                              "directory") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise DirBusyError(f"{option} {directory} is in use by another treesynth process (pid {holder}); "
                               f"wait for it to finish or choose another {option}") from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        """Release the lock (idempotent); the lock file stays."""
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None

    def __enter__(self) -> DirLock:
        """The lock itself."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Release the lock."""
        self.release()


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
