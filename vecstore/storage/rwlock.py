"""A readers-writer lock: searches share it, writers take it alone.

Writer-preferring, so a steady stream of searches cannot starve the indexer or a writer.
``read(blocking=False)`` lets the event loop try a quick read without ever waiting on a writer.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class WouldBlock(Exception):
    """A non-blocking attempt declined: a writer holds (or waits for) the lock, or the work is
    not quick enough to run on the event loop. The caller retries in a worker thread."""


class RWLock:
    def __init__(self) -> None:
        # Everyone takes the mutex directly (a C-level ``with``); only waiting and waking go
        # through the Condition built on it, whose Python-level enter and exit cost a search
        # more than the lock itself.
        self._mutex = threading.Lock()
        self._cond = threading.Condition(self._mutex)
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    def read(self, *, blocking: bool = True) -> _ReadHold:
        """``with lock.read(): ...`` (a plain object rather than a generator: a search takes
        two of these, and a generator-based context costs several times as much)."""
        return _ReadHold(self, blocking)

    def _acquire_read(self, blocking: bool) -> None:
        with self._mutex:
            while self._writer or self._writers_waiting:
                if not blocking:
                    raise WouldBlock("a writer holds or awaits the lock")
                self._cond.wait()
            self._readers += 1

    def _release_read(self) -> None:
        with self._mutex:
            self._readers -= 1
            # Only a writer waits for the readers to leave (readers wait for writers).
            if self._readers == 0 and self._writers_waiting:
                self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._mutex:
            self._writers_waiting += 1
            acquired = False
            try:
                while self._writer or self._readers:
                    self._cond.wait()
                acquired = True
            finally:
                self._writers_waiting -= 1
                if not acquired:
                    # The wait was interrupted: readers queued behind this writer may go now
                    # (the last reader out wakes only waiting writers).
                    self._cond.notify_all()
            self._writer = True
        try:
            yield
        finally:
            with self._mutex:
                self._writer = False
                self._cond.notify_all()


class _ReadHold:
    __slots__ = ("_blocking", "_lock")

    def __init__(self, lock: RWLock, blocking: bool) -> None:
        self._lock = lock
        self._blocking = blocking

    def __enter__(self) -> None:
        self._lock._acquire_read(self._blocking)

    def __exit__(self, *exc: object) -> None:
        self._lock._release_read()
