"""The PostgreSQL LISTEN connection that wakes this process: when a projector
elsewhere moved a view (its NOTIFY on commit), or the event store took new events.

It reconnects after any failure, and NOTIFYs itself when it heard nothing for a
heartbeat, so that a listener that stopped hearing is told apart from a quiet
database (readiness and the metrics ask `alive()`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Executor
from typing import Final

from projections.database import PostgresViews
from projections.executor import in_pool

log = logging.getLogger(__name__)

# The listener NOTIFYs itself when it heard nothing for a heartbeat; hearing
# nothing for longer than "stale" (or a lost connection) makes it dead.
LISTENER_HEARTBEAT_SECONDS: Final = 5.0
LISTENER_STALE_SECONDS: Final = 3 * LISTENER_HEARTBEAT_SECONDS
_HEARTBEAT_CHECK_SECONDS: Final = 1.0
_RETRY_AFTER_ERROR: Final = 1.0


async def notifications(
    db: PostgresViews, channels: Sequence[str]
) -> AsyncIterator[tuple[str, str]]:
    """The channel and payload of each NOTIFY received; ends when the
    connection breaks."""
    import psycopg
    from psycopg import sql

    connection = await psycopg.AsyncConnection.connect(
        db.conninfo, autocommit=True, **db.connect_kwargs
    )
    try:
        for channel in channels:
            await connection.execute(
                sql.SQL("LISTEN {}").format(sql.Identifier(channel))
            )
        async for notify in connection.notifies():
            yield notify.channel, notify.payload
    finally:
        await connection.close()


class NotifyListener:
    """Listens on `channels` and calls `heard(channel, payload)` for each
    notification."""

    def __init__(
        self,
        db: PostgresViews,
        executor: Executor,
        channels: Sequence[str],
        heard: Callable[[str, str], None],
    ) -> None:
        self.db = db
        self.executor = executor
        self.channels = list(channels)
        self.heard = heard
        self.listening = False  # connected and subscribed, as far as we know
        self.heard_at: float | None = None  # time.time() of the latest
        self.failures = 0  # connections lost or refused in a row
        self.error: str | None = None  # why the latest connection ended

    def alive(self, now: float | None = None) -> bool:
        """Whether it is connected and hears (its own heartbeat at least) lately."""
        heard_at = self.heard_at
        return (
            self.listening
            and heard_at is not None
            and (now or time.time()) - heard_at <= LISTENER_STALE_SECONDS
        )

    async def listen(self) -> None:
        """Listen until cancelled, connecting again after each failure."""
        this = asyncio.current_task()
        while True:
            try:
                async for channel, payload in notifications(self.db, self.channels):
                    self.listening = True
                    self.failures = 0
                    self.heard_at = time.time()
                    self.heard(channel, payload)
                self.error = "the connection ended"
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - the listener must outlive any failure
                self.failures += 1
                self.error = str(error) or type(error).__name__
                # Said once per outage; polling covers the gap meanwhile.
                (log.warning if self.failures == 1 else log.debug)(
                    "listening for notifications failed: %s", error
                )
            finally:
                self.listening = False
            if this is not None and this.cancelling():
                # The driver turned our cancellation into an ordinary end: honour it.
                raise asyncio.CancelledError
            await asyncio.sleep(_RETRY_AFTER_ERROR)

    async def heartbeat(self) -> None:
        """NOTIFY ourselves when nothing was heard for a while, until cancelled."""
        db = self.db

        def announce() -> None:
            with db.writing() as cursor:
                db.announce_progress(cursor)

        while True:
            heard_at = self.heard_at
            if heard_at is None or time.time() - heard_at >= LISTENER_HEARTBEAT_SECONDS:
                try:
                    await in_pool(self.executor, announce)
                except Exception as error:  # noqa: BLE001 - the listener reports it
                    log.debug("cannot send the listener's heartbeat: %s", error)
            await asyncio.sleep(_HEARTBEAT_CHECK_SECONDS)
