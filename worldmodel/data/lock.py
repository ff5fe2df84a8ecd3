"""One writer per rollout file: an exclusive flock on `<file>.lock`, which the OS drops when the
process dies (SIGKILL included), so a crashed writer never blocks the next one."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from worldmodel.data.format import RolloutFormatError


def _lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def lock_writer(path: Path, wait_s: float = 2.0) -> int:
    """Takes the writer lock of `path`; returns its file descriptor (for `unlock_writer`).

    Waits up to `wait_s` (a reader's `writer_alive` probe holds the lock for an instant), then
    refuses. The lock file is unlinked on release; a process that opened it just before checks
    that it still locks the file at that name (else it would lock an orphan) and tries again.
    """
    lock, deadline = _lock_path(path), time.monotonic() + wait_s
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            if time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            raise RolloutFormatError(
                f"{path} is being written by another process (pid {holder}); two writers on one file would lose "
                "episodes. Wait for it to finish, or write to another file (out=...)."
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            return fd
        os.close(fd)


def unlock_writer(path: Path, fd: int) -> None:
    _lock_path(path).unlink(missing_ok=True)
    os.close(fd)


def writer_alive(path: Path) -> bool:
    """Whether another process holds the writer lock of `path` now (so the file may change)."""
    try:
        fd = os.open(_lock_path(path), os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return os.pread(fd, 32, 0).decode(errors="replace").strip() != str(os.getpid())
    finally:
        os.close(fd)  # also drops the shared lock
