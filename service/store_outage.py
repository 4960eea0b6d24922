"""Failing fast while the event store's database is down.

With the database stopped, each try at a connection waits for the pool's
timeout (2 s), and the writes queued behind one another each wait in turn: the
503s came after 0.1 to 10 s. Once a connection has failed, other callers fail at
once instead, and one caller a second tries again (and waits): a stopped
database is answered 503 within one connection timeout and a retry, whatever
the load (README: within 5 seconds).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final

import psycopg
from eventsourcing.persistence import OperationalError
from psycopg_pool import PoolTimeout

# After a failure, how long before one caller tries the database again.
RETRY_SECONDS: Final = 1.0


class Outage:
    """Whether the database is known unreachable, and who may try it next."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.down_since: float | None = None
        self._trying = False
        self._next_try = 0.0
        self._lock = threading.Lock()

    def check(self) -> None:
        """Return when the caller may try the database; else OperationalError
        at once (while it is down and another caller tries, or before the next
        try is due)."""
        with self._lock:
            if self.down_since is None:
                return
            now = self.clock()
            if not self._trying and now >= self._next_try:
                self._trying = True
                return
            down_for = now - self.down_since
        raise OperationalError(
            f"the database has not answered for {down_for:.0f} s; trying it again "
            f"every {RETRY_SECONDS:g} s"
        )

    def failed(self) -> None:
        with self._lock:
            now = self.clock()
            if self.down_since is None:
                self.down_since = now
            self._trying = False
            self._next_try = now + RETRY_SECONDS

    def answered(self) -> None:
        with self._lock:
            self.down_since = None
            self._trying = False


def unreachable(error: BaseException) -> bool:
    """A failure to reach the database (no connection, or it was lost), not an
    error of a statement (a lock timeout, a cancel: those have a SQLSTATE)."""
    cause = error.__cause__ or error
    if isinstance(cause, PoolTimeout):
        return True
    return isinstance(cause, psycopg.OperationalError) and cause.sqlstate is None


def guard_connections(datastore: Any) -> Outage:
    """Make `datastore.get_connection` fail fast while the database is down."""
    outage = Outage()
    connection = datastore.get_connection

    @contextmanager
    def guarded() -> Iterator[Any]:
        outage.check()
        try:
            with connection() as conn:
                yield conn
        except OperationalError as error:
            if unreachable(error):
                outage.failed()
            else:
                outage.answered()
            raise
        except BaseException:
            outage.answered()  # an answer, if an unwelcome one
            raise
        outage.answered()

    datastore.get_connection = guarded
    return outage
