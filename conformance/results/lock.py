"""One run per report dir at a time: an advisory lock that dies with its process.

Two runs writing into one report dir would destroy or duplicate each other's
results. Every writer of a report dir (``conformance run``, and the pytest
plugin when it is not an adapter process of such a run) takes
``REPORT_DIR/.conformance.lock`` with ``flock`` first; a second writer is
refused with one line naming the holder. The kernel releases the lock when
its process ends, however it ends (even SIGKILL), so a stale lock never
blocks a later run. A lock path that is a symbolic link (planted, or left
by something else) is replaced by a file of our own: the lock never opens,
truncates or writes whatever the link points at.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_NAME = ".conformance.lock"


class ReportDirBusy(ValueError):
    """Another run holds this report dir; the message is one line."""


class ReportDirLock:
    """Held from ``acquire()`` until ``release()`` or the end of the process."""

    def __init__(self, report_dir: str | Path):
        self.path = Path(report_dir) / LOCK_NAME
        self.fd: int | None = None

    def acquire(self) -> ReportDirLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise ReportDirBusy(f"report dir {self.path.parent} is in use by another run ({holder}); "
                                "wait for it to end or choose another report dir") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}".encode())
        self.fd = fd
        return self

    def _open(self) -> int:
        """The lock file, opened without following a link: a link in its place is removed first
        (O_NOFOLLOW: one planted after that is refused, never followed)."""
        if self.path.is_symlink():
            self.path.unlink()  # the link only, never its target
        return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the flock; the file stays (removing it would race)
            self.fd = None
