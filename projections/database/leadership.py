"""Who may run a piece of background work among the processes sharing a store:
the only process (SQLite), or the holder of an advisory lock (PostgreSQL)."""

from __future__ import annotations

import contextlib
import hashlib
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from projections.database.postgres import PostgresViews


class Leadership(Protocol):
    """An election among processes for the one projector of a view."""

    def try_acquire(self) -> bool: ...

    def release(self) -> None: ...


class SoleLeader:
    """One process owns the embedded store: it always leads."""

    def try_acquire(self) -> bool:
        return True

    def release(self) -> None:
        return None


def advisory_key(name: str) -> int:
    """The advisory lock (a signed 64-bit number) of leadership `name`."""
    return int.from_bytes(
        hashlib.sha256(name.encode()).digest()[:8], "big", signed=True
    )


class AdvisoryLock:
    """Leadership held as a session advisory lock on a connection of its own.

    The lock goes when the holder's session does (its process died, or the
    database restarted), and a standby's next try takes it.
    """

    def __init__(self, views: PostgresViews, name: str) -> None:
        self.views = views
        self.key = advisory_key(name)
        self._connection: Any = None

    def try_acquire(self) -> bool:
        import psycopg

        try:
            if self._connection is None or self._connection.closed:
                self._connection = psycopg.connect(
                    self.views.conninfo, autocommit=True, **self.views.connect_kwargs
                )
            row = self._connection.execute(
                "SELECT pg_try_advisory_lock(%s)", (self.key,)
            ).fetchone()
        except psycopg.Error:
            self.release()
            return False
        if row is None:
            return False
        (acquired,) = row
        return bool(acquired)

    def release(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None
