"""An exclusive lock on a run directory, held by the one process that writes into it.

Two ``symgen train`` (or ``eval``) processes writing into one run directory would interleave
``metrics.jsonl``, prune each other's checkpoints and leave a ``config.yaml`` that describes another run.
A writer therefore holds ``RUN/.lock`` for its whole life: an ``fcntl.flock`` lock (POSIX), which the
operating system releases when the process ends in any way, including ``kill -9``. The file also records
the holder's pid, host and start time, so a second writer is told who holds the run, and a lock file left
behind by a dead process (the lock itself is already gone) is detected and reported when it is taken over.

Hand-written: a few lines over ``fcntl``; the maintained lock packages (``filelock``) do not report the
holder or stale locks.
"""

from __future__ import annotations

import json
import os
import socket
import time
import warnings
from pathlib import Path
from typing import Any

__all__ = ["RunLock", "RunLockedError", "LOCK_NAME"]

LOCK_NAME = ".lock"


class RunLockedError(RuntimeError):
    """The run directory is held by another live process."""


class RunLock:
    """Exclusive writer lock on ``run_dir`` (use as a context manager, or :meth:`acquire`/:meth:`release`).

    Raises :class:`RunLockedError` naming the holder when another process holds the lock.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None
        self.stale: dict[str, Any] | None = None  # holder info of a stale lock file taken over

    @property
    def held(self) -> bool:
        return self._fd is not None

    def holder(self) -> dict[str, Any] | None:
        """What the lock file says about its writer (pid, host, started), or ``None``."""
        try:
            text = self.path.read_text()
        except OSError:
            return None
        try:
            info = json.loads(text)
        except ValueError:
            return None
        return info if isinstance(info, dict) else None

    def acquire(self) -> RunLock:
        if self._fd is not None:
            return self
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                info = self.holder() or {}
                who = f"process {info.get('pid', '?')} on {info.get('host', '?')}"
                since = info.get("started")
                raise RunLockedError(
                    f"{self.path.parent} is in use by {who}"
                    + (f" since {since}" if since else "")
                    + "; wait for it to finish or choose another --out"
                ) from None
            try:  # the holder may have released (and unlinked) the file between open and flock
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        previous = self.holder()
        if previous and previous.get("pid") != os.getpid():
            # we hold the flock, so whoever wrote this file no longer does: it ended without cleaning up
            self.stale = previous
            warnings.warn(
                f"{self.path.parent}: took over a stale lock left by process {previous.get('pid')} on "
                f"{previous.get('host')} (started {previous.get('started')}), which ended without "
                "releasing it (crash or kill -9)",
                RuntimeWarning,
                stacklevel=2,
            )
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        import fcntl

        try:
            self.path.unlink(missing_ok=True)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()
