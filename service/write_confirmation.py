"""A bound on how long a write waits for PostgreSQL to confirm it durable.

A commit waits for the log to be on disk and, with `synchronous_standby_names`,
for a synchronous standby to have it: with that standby gone, for ever, and the
writes behind it too. A statement_timeout does not end that wait (PostgreSQL
disables it before the commit); a cancel request does, and PostgreSQL then
returns with a warning that the commit is local only. The write's answer is then
a 503 saying it may have been stored (domain.exceptions.WriteUnconfirmed), and
/readyz and pm_order_writes_unconfirmed say so until a write is confirmed again.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final

import psycopg

log = logging.getLogger(__name__)

DEFAULT_CONFIRM_TIMEOUT: Final = 10.0
# /readyz's own durable write, while writes are unconfirmed: a short bound.
PROBE_SECONDS: Final = 2.0
_PROBE: Final = "SELECT pg_logical_emit_message(true, 'pm-order', 'probe')"


class CancelledAfter:
    """While in the block, a cancel request is sent to `conn`'s statement once
    `seconds` have passed; `fired` says whether it was."""

    def __init__(self, conn: psycopg.Connection[Any], seconds: float) -> None:
        self.conn = conn
        self.fired = False
        self._lock = threading.Lock()
        self._done = False
        self._timer = threading.Timer(seconds, self._cancel)
        self._timer.daemon = True

    def __enter__(self) -> CancelledAfter:
        self._timer.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # Never a cancel after the block: it could end the connection's next
        # statement, someone else's.
        with self._lock:
            self._done = True
        self._timer.cancel()

    def _cancel(self) -> None:
        with self._lock:
            if self._done:
                return
            self.fired = True
            self.conn.cancel_safe()


@dataclass
class Confirmation:
    """Whether this process's writes are being confirmed durable, and since when
    they are not."""

    timeout: float = DEFAULT_CONFIRM_TIMEOUT
    unconfirmed_since: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def confirmed(self) -> None:
        with self._lock:
            if self.unconfirmed_since is not None:
                log.warning("writes are confirmed durable again")
            self.unconfirmed_since = None

    def unconfirmed(self) -> None:
        with self._lock:
            if self.unconfirmed_since is None:
                self.unconfirmed_since = time.time()
                log.error(
                    "a write waited over %g s for the database to confirm it "
                    "durable: is the synchronous standby (synchronous_standby_names) "
                    "gone? Writes are answered 503 until one is confirmed; see "
                    "docs/standby-loss.md",
                    self.timeout,
                )

    def probe(self, conn: psycopg.Connection[Any]) -> bool:
        """One durable write of nothing, bounded: whether it was confirmed."""
        with CancelledAfter(conn, min(PROBE_SECONDS, self.timeout)) as bound:
            conn.execute(_PROBE)
        if bound.fired:
            return False
        self.confirmed()
        return True


def confirmation_of(recorder: object) -> Confirmation | None:
    """The recorder's `Confirmation` (PostgreSQL's); None for one without."""
    confirmation = getattr(recorder, "confirmation", None)
    return confirmation if isinstance(confirmation, Confirmation) else None


def probe_if_unconfirmed(recorder: Any) -> str | None:
    """While writes are unconfirmed, one bounded durable write: None once
    confirmed, else what /readyz says."""
    confirmation = confirmation_of(recorder)
    if confirmation is None or confirmation.unconfirmed_since is None:
        return None
    with recorder.datastore.get_connection() as conn:
        if confirmation.probe(conn):
            return None
    behind = time.time() - confirmation.unconfirmed_since
    return (
        f"writes are not confirmed durable (for {behind:.0f} s, each bound "
        f"{confirmation.timeout:g} s): PostgreSQL waits for a synchronous standby "
        "(synchronous_standby_names) that does not answer; writes are answered 503 "
        "and may have been stored"
    )
